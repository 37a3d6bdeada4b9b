"""The event bus (local.bus): moto's pattern matching, EventBridge's input shaping, in-order delivery."""

import json
import time

from local.bus import EventBus, Rule, Target


class Destinations:
    def __init__(self):
        self.sent = []

    def send(self, arn, payload, source, subject=None):
        self.sent.append((arn, payload, source))
        return True


EVENT = {"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
         "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": ["arn:aws:s3:::data"],
         "detail": {"bucket": {"name": "data"}, "object": {"key": "incoming/a.csv", "size": 3}}}
FN = "arn:aws:lambda:us-east-1:123456789012:function:p-trigger:live"


def rule(name, pattern, **target):
    return Rule(name=name, arn=f"arn:aws:events:us-east-1:123456789012:rule/{name}", pattern=pattern, schedule=None,
                targets=[Target(arn=FN, target_id="t", **target)])


def test_matching_rules_deliver_the_event_and_publish_triggered_rules(tmp_path):
    destinations, metrics = Destinations(), []
    bus = EventBus(destinations, lambda ns, data: metrics.append((ns, data)), journal=tmp_path / "events.jsonl")  # type: ignore[arg-type]
    bus.add_rule(rule("uploads", {"source": ["aws.s3"], "detail": {"object": {"key": [{"prefix": "incoming/"}]}}}))
    bus.add_rule(rule("jobs", {"source": ["aws.sagemaker"]}))
    assert bus.put(EVENT) == ["uploads"]
    assert destinations.sent == [(FN, EVENT, "rule:uploads")]
    assert metrics[0][0] == "AWS/Events" and metrics[0][1][0]["Dimensions"] == [{"Name": "RuleName", "Value": "uploads"}]
    journal = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert journal == [{"event": EVENT, "matched": ["uploads"]}]


def test_input_input_path_and_input_transformer():
    assert Target(arn=FN, target_id="t", input='{"fixed": 1}').payload(EVENT) == {"fixed": 1}
    assert Target(arn=FN, target_id="t", input_path="$.detail.object").payload(EVENT) == EVENT["detail"]["object"]
    transformer = {"InputPathsMap": {"key": "$.detail.object.key", "size": "$.detail.object.size"},
                   "InputTemplate": '{"file": "<key>", "bytes": <size>}'}  # strings go in raw
    assert Target(arn=FN, target_id="t", input_transformer=transformer).payload(EVENT) == {"file": "incoming/a.csv",
                                                                                           "bytes": 3}


def test_emitted_events_are_delivered_in_order_and_the_bus_says_when_it_is_busy():
    destinations = Destinations()
    bus = EventBus(destinations)  # type: ignore[arg-type]
    bus.add_rule(rule("all", {"source": ["aws.s3"]}))
    try:
        for i in range(20):
            bus.emit({**EVENT, "id": str(i)})
        deadline = time.time() + 10
        while bus.busy and time.time() < deadline:
            time.sleep(0.01)
        assert not bus.busy
        assert [payload["id"] for _, payload, _ in destinations.sent] == [str(i) for i in range(20)]
    finally:
        bus.stop()


def test_a_schedule_fires_its_own_targets_with_a_scheduled_event():
    destinations = Destinations()
    bus = EventBus(destinations)  # type: ignore[arg-type]
    scheduled = rule("daily", None)
    bus.fire_schedule(scheduled, "123456789012", "us-east-1")
    (arn, payload, source), = destinations.sent
    assert payload["detail-type"] == "Scheduled Event" and payload["resources"] == [scheduled.arn]
    assert source == "rule:daily"
