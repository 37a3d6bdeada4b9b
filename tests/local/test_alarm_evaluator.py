"""Alarm evaluation over moto's received datapoints, and the actions it fires (local.alarm_evaluator)."""

import json
from datetime import datetime, timedelta, timezone

from local.alarm_evaluator import AlarmEvaluator
from local.destinations import Destinations

RETRAIN = "arn:aws:lambda:us-east-1:123456789012:function:p-retrain:live"


class Fn:
    def __init__(self):
        self.calls = []

    def invoke_async(self, payload, source):
        self.calls.append((payload, source))


def test_a_breaching_metric_moves_the_alarm_and_fires_its_lambda_and_sns_actions(moto, tmp_path):
    fn = Fn()
    functions = type("Functions", (), {"lookup": lambda self, arn: fn if arn == RETRAIN else None})()
    destinations = Destinations(moto.client, tmp_path / "dead.jsonl", functions)  # type: ignore[arg-type]
    topic = moto.client("sns").create_topic(Name="alarm-topic")["TopicArn"]
    evaluator = AlarmEvaluator(destinations, "123456789012", moto.region)
    props = {"AlarmName": "p-drift", "Namespace": "Evaluator/Test", "MetricName": "DataDrift",
             "Dimensions": [{"Name": "Pipeline", "Value": "p"}], "Statistic": "Maximum", "Period": 300,
             "EvaluationPeriods": 1, "Threshold": 0.25, "ComparisonOperator": "GreaterThanThreshold",
             "TreatMissingData": "notBreaching", "AlarmActions": [RETRAIN, topic]}
    moto.client("cloudwatch").put_metric_alarm(**props)
    evaluator.add("p-drift", "arn:aws:cloudwatch:us-east-1:123456789012:alarm:p-drift", props)
    evaluator.add("p-math", "arn:...", {"AlarmName": "p-math", "Metrics": [{"Id": "e", "Expression": "a+b"}],
                                        "EvaluationPeriods": 1, "Threshold": 1, "ComparisonOperator": "GreaterThanThreshold"})
    assert evaluator.state("p-drift") == "INSUFFICIENT_DATA" and "p-math" in evaluator.unsupported

    now = datetime.now(timezone.utc)
    assert evaluator.evaluate(now)["p-drift"] == "OK"  # notBreaching: no data is fine
    moto.client("cloudwatch").put_metric_data(Namespace="Evaluator/Test", MetricData=[{
        "MetricName": "DataDrift", "Value": 0.4, "Timestamp": now - timedelta(seconds=5),
        "Dimensions": [{"Name": "Pipeline", "Value": "p"}]}])
    moto.messages.clear()
    assert evaluator.evaluate(now)["p-drift"] == "ALARM"
    (payload, source), = fn.calls
    assert source == "alarm:p-drift" and payload["alarmData"]["state"]["value"] == "ALARM"
    assert payload["alarmData"]["previousState"]["value"] == "OK"
    (arn, message, subject), = moto.messages
    assert arn == topic and json.loads(message)["NewStateValue"] == "ALARM" and subject.startswith("ALARM: ")
    described = moto.client("cloudwatch").describe_alarms(AlarmNames=["p-drift"])["MetricAlarms"][0]
    assert described["StateValue"] == "ALARM"  # written back to moto
    assert evaluator.evaluate(now)["p-drift"] == "ALARM" and len(fn.calls) == 1  # no transition, no action
