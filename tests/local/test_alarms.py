"""Alarm evaluation: period alignment, M of N, missing-data treatment, statistics, action payloads."""

from datetime import datetime, timedelta, timezone

import pytest

from local.alarms import AlarmDefinition, Datapoint, UnsupportedAlarm, evaluate, lambda_action_payload, statistic

NOW = datetime(2026, 11, 21, 12, 0, 30, tzinfo=timezone.utc)
DIMS = (("Pipeline", "mlops-dev"),)


def drift_alarm(**overrides):
    props = {
        "AlarmName": "mlops-dev-drift", "Namespace": "MLOps", "MetricName": "DataDrift",
        "Dimensions": [{"Name": "Pipeline", "Value": "mlops-dev"}], "Period": 300, "Statistic": "Maximum",
        "Threshold": 0.2, "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": ["arn:aws:lambda:us-east-1:123456789012:function:retrain"],
    }
    props.update(overrides)
    return AlarmDefinition.from_properties(props)


def point(value, seconds_ago=10, dims=DIMS):
    return Datapoint(timestamp=NOW - timedelta(seconds=seconds_ago), dimensions=dims, value=value)


def test_breaching_datapoint_alarms_and_low_one_is_ok():
    assert evaluate(drift_alarm(), [point(0.5)], NOW).state == "ALARM"
    assert evaluate(drift_alarm(), [point(0.1)], NOW).state == "OK"


def test_threshold_is_exclusive_for_greater_than():
    assert evaluate(drift_alarm(), [point(0.2)], NOW).state == "OK"
    assert evaluate(drift_alarm(ComparisonOperator="GreaterThanOrEqualToThreshold"), [point(0.2)], NOW).state == "ALARM"


def test_dimensions_must_match_exactly():
    other = (("Pipeline", "mlops-prod"),)
    assert evaluate(drift_alarm(), [point(0.9, dims=other)], NOW).state == "OK"  # notBreaching
    assert evaluate(drift_alarm(), [point(0.9, dims=())], NOW).state == "OK"


def test_old_datapoints_fall_out_of_the_window():
    assert evaluate(drift_alarm(), [point(0.9, seconds_ago=900)], NOW).state == "OK"


def test_missing_data_treatments():
    assert evaluate(drift_alarm(TreatMissingData="missing"), [], NOW).state == "INSUFFICIENT_DATA"
    assert evaluate(drift_alarm(TreatMissingData="notBreaching"), [], NOW).state == "OK"
    assert evaluate(drift_alarm(TreatMissingData="breaching"), [], NOW).state == "ALARM"
    assert evaluate(drift_alarm(TreatMissingData="ignore"), [], NOW, current_state="ALARM").state == "ALARM"


def test_m_out_of_n():
    alarm = drift_alarm(EvaluationPeriods=3, DatapointsToAlarm=2, Period=60, TreatMissingData="missing")
    one = [point(0.9, seconds_ago=10)]
    two = one + [point(0.9, seconds_ago=70)]
    assert evaluate(alarm, one, NOW).state == "OK"
    assert evaluate(alarm, two, NOW).state == "ALARM"


def test_statistics():
    pts = [point(v) for v in (1.0, 2.0, 3.0, 10.0)]
    assert statistic(pts, "Average") == 4.0
    assert statistic(pts, "Sum") == 16.0
    assert statistic(pts, "SampleCount") == 4
    assert statistic(pts, "Maximum") == 10.0
    assert statistic(pts, "Minimum") == 1.0
    assert statistic(pts, "p50") == 2.0
    assert statistic(pts, "p99") == 10.0
    agg = Datapoint(NOW, DIMS, sample_count=4, total=20.0, minimum=1.0, maximum=9.0)
    assert statistic([agg], "Average") == 5.0 and statistic([agg], "Maximum") == 9.0
    assert statistic([agg], "p99") is None  # percentiles need raw values


def test_metric_math_is_refused_not_guessed():
    with pytest.raises(UnsupportedAlarm):
        AlarmDefinition.from_properties({"AlarmName": "x", "EvaluationPeriods": 1, "Threshold": 1,
                                         "ComparisonOperator": "GreaterThanThreshold",
                                         "Metrics": [{"Id": "e", "Expression": "m1*2"}, {"Id": "m1", "ReturnData": False,
                                                     "MetricStat": {}}]})


def test_lambda_action_payload_shape():
    alarm = drift_alarm()
    new = evaluate(alarm, [point(0.5)], NOW)
    old = evaluate(alarm, [], NOW)
    payload = lambda_action_payload(alarm, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:mlops-dev-drift",
                                    "123456789012", "us-east-1", new, old, NOW)
    assert payload["source"] == "aws.cloudwatch"
    assert payload["alarmData"]["alarmName"] == "mlops-dev-drift"
    assert payload["alarmData"]["state"]["value"] == "ALARM"
    assert payload["alarmData"]["previousState"]["value"] == "OK"
    metric = payload["alarmData"]["configuration"]["metrics"][0]["metricStat"]
    assert metric["metric"] == {"namespace": "MLOps", "name": "DataDrift", "dimensions": {"Pipeline": "mlops-dev"}}
    assert payload["time"].endswith("+0000")


def test_a_datapoint_just_before_the_period_boundary_is_still_evaluated():
    just_after_boundary = datetime(2026, 11, 21, 13, 0, 1, tzinfo=timezone.utc)
    late = Datapoint(datetime(2026, 11, 21, 12, 59, 59, tzinfo=timezone.utc), DIMS, value=0.9)
    assert evaluate(drift_alarm(Period=3600), [late], just_after_boundary).state == "ALARM"
    future = Datapoint(just_after_boundary + timedelta(seconds=30), DIMS, value=0.9)
    assert evaluate(drift_alarm(Period=3600), [future], just_after_boundary).state == "OK"
