"""Deliveries to an ARN and Lambda's on-failure destination (local.destinations)."""

import json

from local.destinations import Destinations
from local.functions import FunctionError, FunctionSpec


class Fn:
    def __init__(self):
        self.async_calls = []

    def invoke_async(self, payload, source):
        self.async_calls.append((payload, source))


class Functions:
    def __init__(self, fn):
        self.fn = fn

    def lookup(self, arn):
        return self.fn if "p-retrain" in arn else None


def test_a_function_gets_an_asynchronous_invocation_and_an_unknown_one_nothing(moto, tmp_path):
    fn = Fn()
    destinations = Destinations(moto.client, tmp_path / "dead.jsonl", Functions(fn))  # type: ignore[arg-type]
    assert destinations.send("arn:aws:lambda:us-east-1:123456789012:function:p-retrain:live", {"a": 1}, "alarm:x")
    assert fn.async_calls == [({"a": 1}, "alarm:x")]
    assert not destinations.send("arn:aws:lambda:us-east-1:123456789012:function:other", {}, "rule:r")
    assert not destinations.send("arn:aws:states:us-east-1:123456789012:stateMachine:s", {}, "rule:r")


def test_topics_and_queues_are_motos(moto, tmp_path):
    destinations = Destinations(moto.client, tmp_path / "dead.jsonl")
    topic = moto.client("sns").create_topic(Name="dest-topic")["TopicArn"]
    url = moto.client("sqs").create_queue(QueueName="dest-queue")["QueueUrl"]
    destinations.add_queue("dest-queue", url)
    moto.messages.clear()
    assert destinations.send(topic, {"AlarmName": "a"}, "alarm:a", subject="ALARM: a")
    assert moto.messages == [(topic, '{"AlarmName": "a"}', "ALARM: a")]
    assert destinations.send("arn:aws:sqs:us-east-1:123456789012:dest-queue", {"b": 2}, "rule:r")
    body = moto.client("sqs").receive_message(QueueUrl=url)["Messages"][0]["Body"]
    assert json.loads(body) == {"b": 2}


def test_a_failed_invocation_is_recorded_and_sent_to_the_on_failure_destination(moto, tmp_path):
    destinations = Destinations(moto.client, tmp_path / "dead.jsonl")
    url = moto.client("sqs").create_queue(QueueName="dlq")["QueueUrl"]
    destinations.add_queue("dlq", url)
    spec = FunctionSpec(name="p-trigger", arn="arn:aws:lambda:us-east-1:123456789012:function:p-trigger",
                        handler="h.h", code_dir=tmp_path, environment={},
                        failure_destination="arn:aws:sqs:us-east-1:123456789012:dlq")
    destinations.dead_letter(spec, {"x": 1}, FunctionError("p-trigger", {"errorType": "ValueError", "errorMessage": "no"}))
    record = json.loads((tmp_path / "dead.jsonl").read_text())
    assert record["requestPayload"] == {"x": 1} and record["responsePayload"]["errorType"] == "ValueError"
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    queued = json.loads(moto.client("sqs").receive_message(QueueUrl=url)["Messages"][0]["Body"])
    assert queued == record
