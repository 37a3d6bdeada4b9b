"""S3 → EventBridge Object Created events (local.object_events) and their redelivery."""

from types import SimpleNamespace

from local.object_events import ObjectEvents


def write(events, bucket, key, version="v1"):
    events.object_created("s3:ObjectCreated:Put", SimpleNamespace(name=bucket),
                          SimpleNamespace(name=key, size=8, etag='"abc"', version_id=version))


def test_only_buckets_with_eventbridge_on_emit_and_the_event_has_the_eventbridge_shape():
    emitted = []
    events = ObjectEvents(emitted.append, "123456789012", "us-east-1")
    events.enable("data")
    write(events, "logs", "x.csv")
    write(events, "data", "incoming/a b+c.csv")
    (event,) = emitted
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["resources"] == ["arn:aws:s3:::data"]
    assert event["detail"]["object"] == {"key": "incoming/a+b%2Bc.csv", "size": 8, "etag": "abc", "version-id": "v1",
                                         "sequencer": event["detail"]["object"]["sequencer"]}
    assert event["detail"]["reason"] == "PutObject"


def test_sequencers_grow_and_redelivery_repeats_the_last_event_unchanged():
    emitted = []
    events = ObjectEvents(emitted.append, "123456789012", "us-east-1")
    events.enable("data")
    write(events, "data", "incoming/a.csv", "v1")
    write(events, "data", "incoming/a.csv", "v2")
    assert emitted[0]["detail"]["object"]["sequencer"] < emitted[1]["detail"]["object"]["sequencer"]
    assert events.redeliver("incoming/a.csv") == 1 and emitted[2] == emitted[1]
    assert events.redeliver("incoming/never.csv") == 0
