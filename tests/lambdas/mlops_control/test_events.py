"""mlops_control.events: every event shape, URL-decoded keys, readable refusals."""
from __future__ import annotations

import pytest

from ..helpers import DATA, alarm_action, endpoint_state_change, eventbridge_object_created, job_state_change, s3_notification


def test_eventbridge_object_created():
    from mlops_control.events import parse_object_created

    [obj] = parse_object_created(eventbridge_object_created("incoming/a.csv", size=12, etag="e", version="v9"))
    assert (obj.bucket, obj.key, obj.size, obj.etag, obj.version_id, obj.raw_key) == (DATA, "incoming/a.csv", 12, "e", "v9", None)
    assert obj.uri == f"s3://{DATA}/incoming/a.csv" and obj.version_or_etag == "v9"


def test_s3_notification_decodes_keys_and_keeps_the_raw_reading():
    from mlops_control.events import parse_object_created

    [obj] = parse_object_created(s3_notification("incoming/%C3%A9t%C3%A9+1%2B1.csv", version=None, etag="tag"))
    assert obj.key == "incoming/été 1+1.csv" and obj.raw_key == "incoming/%C3%A9t%C3%A9+1%2B1.csv"
    assert obj.version_or_etag == "tag"


def test_several_records_are_all_parsed():
    from mlops_control.events import parse_object_created

    event = s3_notification("incoming/a.csv")
    event["Records"].append(s3_notification("incoming/b.csv")["Records"][0])
    assert [o.key for o in parse_object_created(event)] == ["incoming/a.csv", "incoming/b.csv"]


@pytest.mark.parametrize("event, message", [
    ({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}, "not an S3 Object Created event"),
    ({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}}, "missing detail.object"),
    ({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {}}}]}, "missing Records[0].s3.object.key"),
    ([], "not a JSON object"),
])
def test_malformed_object_events(event, message):
    from mlops_control.events import MalformedEvent, parse_object_created

    with pytest.raises(MalformedEvent, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_object_created(event)


def test_job_state_changes():
    from mlops_control.events import is_terminal, parse_job_state_change

    change = parse_job_state_change(job_state_change("training", "j", "Failed", "OOM"), "training")
    assert (change.name, change.status, change.failure_reason) == ("j", "Failed", "OOM") and is_terminal("Failed")
    assert not is_terminal("InProgress")
    from mlops_control.events import MalformedEvent

    with pytest.raises(MalformedEvent, match="expected detail-type"):
        parse_job_state_change(job_state_change("training", "j", "Completed"), "processing")


def test_endpoint_status_spellings_are_normalised():
    from mlops_control.events import parse_endpoint_state_change

    assert parse_endpoint_state_change(endpoint_state_change("e", "IN_SERVICE")).status == "InService"
    assert parse_endpoint_state_change(endpoint_state_change("e", "SYSTEM_UPDATING")).status == "SystemUpdating"
    assert parse_endpoint_state_change(endpoint_state_change("e", "Failed")).status == "Failed"


def test_alarm_payload_and_manual_invoke():
    from mlops_control.events import parse_retrain_request

    alarm = parse_retrain_request(alarm_action("drift", "ALARM"))
    assert (alarm.source, alarm.alarm_name, alarm.state) == ("alarm", "drift", "ALARM") and "Threshold" in alarm.reason
    manual = parse_retrain_request({"reason": "  labels fixed ", "force": True})
    assert (manual.source, manual.reason, manual.force) == ("manual", "labels fixed", True)


def test_custom_resource_request():
    from mlops_control.events import MalformedEvent, parse_custom_resource

    request = parse_custom_resource({"RequestType": "Update", "PhysicalResourceId": "ep", "ResourceProperties": {"a": 1}})
    assert (request.request_type, request.physical_id, request.properties) == ("Update", "ep", {"a": 1})
    with pytest.raises(MalformedEvent):
        parse_custom_resource({"RequestType": "Replace"})


def test_summary_is_bounded():
    from mlops_control.events import summarise

    assert summarise({"x": "y" * 5000}).endswith("...(truncated)") and len(summarise({"x": "y" * 5000})) < 1600
    assert summarise(object())  # not JSON-serialisable still gives text


def test_processing_failure_combines_failure_reason_and_the_containers_exit_message():
    from mlops_control.events import failure_text, parse_job_state_change

    event = job_state_change("processing", "j", "Failed", "AlgorithmError: the container exited with code 1")
    event["detail"]["ExitMessage"] = "cannot read parquet: magic bytes not found"
    assert parse_job_state_change(event, "processing").failure_reason == (
        "AlgorithmError: the container exited with code 1 — cannot read parquet: magic bytes not found")
    assert failure_text({"FailureReason": "x", "ExitMessage": "x"}) == "x"
    assert failure_text({}) is None
