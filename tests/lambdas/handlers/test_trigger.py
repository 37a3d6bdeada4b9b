"""handlers.trigger: S3 Object Created → checks, de-duplication, the validation job."""
from __future__ import annotations

import threading

import boto3
import pytest
from botocore.stub import Stubber

from ..helpers import capture_calls, ARTIFACTS, AtomicDynamoDB, DATA, ENV, P, PROCESSING_ROLE, REGION, eventbridge_object_created, s3_notification


def _handler():
    from handlers.trigger import handler

    return handler


def test_upload_starts_one_validation_job_with_the_contract_shape(aws):
    up = aws.upload("incoming/churn.csv")
    result = _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"]), None)
    assert result["status"] == "started"
    [job] = aws.processing_jobs()
    assert job == result["job"] and job.startswith(f"{P}-val-") and len(job) <= 63
    described = aws.sm.describe_processing_job(ProcessingJobName=job)
    assert described["AppSpecification"]["ContainerEntrypoint"] == ["validate"]
    # It parses a file anyone with upload rights wrote: no network, and a role that cannot write models.
    assert described["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert described["RoleArn"] == PROCESSING_ROLE
    inputs = {i["InputName"]: i["S3Input"] for i in described["ProcessingInputs"]}
    # The job reads its own copy of the announced version, alone under the job's folder.
    staged = f"validation-input/{job}/incoming/churn.csv"
    assert inputs["data"]["S3Uri"] == f"s3://{ARTIFACTS}/{staged}"
    assert aws.keys(ARTIFACTS, f"validation-input/{job}/") == [staged]
    assert aws.s3.get_object(Bucket=ARTIFACTS, Key=staged)["Body"].read() == \
        aws.s3.get_object(Bucket=DATA, Key="incoming/churn.csv")["Body"].read()
    assert inputs["data"]["LocalPath"] == "/opt/ml/processing/input/data"
    assert "model" not in inputs  # no production model yet
    [started] = aws.decisions("validation_started")
    assert started["file"] == f"s3://{DATA}/incoming/churn.csv" and started["job"] == job
    assert started["details"]["validation_input"] == f"s3://{ARTIFACTS}/{staged}"
    assert aws.keys(DATA, "incoming/") == ["incoming/churn.csv"]  # the upload itself is untouched


def test_validation_reads_the_announced_version_even_after_the_key_is_overwritten(aws):
    """Version 1's event arrives after version 2 replaced the key: validating the key by prefix would judge
    version 2 and then register version 1 under that verdict."""
    first = aws.upload("incoming/daily.csv", b"age,plan,churn\n30,a,no\n")
    aws.upload("incoming/daily.csv", b"age,plan,churn\n-999,zzz,maybe\n")
    result = _handler()(eventbridge_object_created(first["key"], size=first["size"], etag=first["etag"],
                                                   version=first["version"]), None)
    staged = f"validation-input/{result['job']}/incoming/daily.csv"
    assert aws.s3.get_object(Bucket=ARTIFACTS, Key=staged)["Body"].read() == b"age,plan,churn\n30,a,no\n"


def test_a_key_that_begins_another_key_is_validated_alone(aws):
    """`incoming/a.csv` as an S3Prefix would also read `incoming/a.csv.parquet`; its staged folder holds one file."""
    up = aws.upload("incoming/a.csv")
    aws.upload("incoming/a.csv.parquet", b"PAR1 not really")
    job = _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"]),
                     None)["job"]
    data = aws.sm.describe_processing_job(ProcessingJobName=job)["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    prefix = data[len(f"s3://{ARTIFACTS}/"):]
    assert aws.keys(ARTIFACTS, prefix) == [f"validation-input/{job}/incoming/a.csv"]


def test_version_deleted_before_the_event_is_handled_is_rejected_with_a_reason(aws):
    up = aws.upload("incoming/withdrawn.csv")
    aws.s3.delete_object(Bucket=DATA, Key=up["key"], VersionId=up["version"])
    result = _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"],
                                                   version=up["version"]), None)
    assert result["status"] == "rejected"
    assert aws.processing_jobs() == []
    [rejected] = aws.decisions("rejected")
    assert "no longer exists" in rejected["reason"] and up["version"] in rejected["reason"]
    assert "no longer exists" in aws.notifications()[0]["message"]


def test_key_too_long_for_its_validation_copy_is_rejected_with_a_reason(aws):
    key = "incoming/" + "k" * 990 + ".csv"  # a valid S3 key (1,003 bytes); with the job folder it would not be
    up = aws.upload(key)
    result = _handler()(eventbridge_object_created(key, size=up["size"], etag=up["etag"], version=up["version"]), None)
    assert result["status"] == "rejected" and aws.processing_jobs() == []
    [rejected] = aws.decisions("rejected")
    assert "too long to validate" in rejected["reason"] and "over S3's 1024" in rejected["reason"]
    assert aws.keys(DATA, "incoming/") == [key]


def test_hundred_deliveries_of_the_same_event_start_exactly_one_job(aws):
    up = aws.upload("incoming/burst.csv")
    event = eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"])
    results = [_handler()(event, None) for _ in range(100)]
    assert [r["status"] for r in results].count("started") == 1
    assert [r["status"] for r in results].count("duplicate") == 99
    assert len(aws.processing_jobs()) == 1
    assert len(aws.decisions("validation_started")) == 1
    assert len(aws.decisions("duplicate_skipped")) == 99


def test_concurrent_deliveries_start_one_job_and_the_rest_retry_or_skip(aws):
    """Threads race on the ledger's conditional write: one wins; a loser that finds the winner still at work
    raises Busy (Lambda retries it), which on redelivery becomes a duplicate."""
    from mlops_control import clients
    from mlops_control.runtime import Busy

    clients.override("dynamodb", AtomicDynamoDB(aws.ddb))
    up = aws.upload("incoming/race.csv")
    event = eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"])
    handler = _handler()
    outcomes: list[str] = []

    def deliver():
        try:
            outcomes.append(handler(event, None)["status"])
        except Busy:
            outcomes.append("busy")

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("started") == 1
    assert len(aws.processing_jobs()) == 1
    assert handler(event, None)["status"] == "duplicate"  # the retry of a busy delivery


def test_new_version_of_the_same_key_is_a_new_file(aws):
    first = aws.upload("incoming/data.csv", b"a,b\n1,2\n")
    second = aws.upload("incoming/data.csv", b"a,b\n3,4\n")
    for up in (first, second):
        _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"]), None)
    assert len(aws.processing_jobs()) == 2


@pytest.mark.parametrize("key, encoded", [
    ("incoming/my data file.csv", "incoming/my+data+file.csv"),
    ("incoming/a+b=c.csv", "incoming/a%2Bb%3Dc.csv"),
    ("incoming/données/été 2026 ünïcode.csv", "incoming/donn%C3%A9es/%C3%A9t%C3%A9+2026+%C3%BCn%C3%AFcode.csv"),
])
def test_s3_notification_keys_are_url_decoded(aws, key, encoded):
    up = aws.upload(key)
    result = _handler()(s3_notification(encoded, size=up["size"], etag=up["etag"], version=up["version"]), None)
    assert result["status"] == "started"
    [job] = aws.processing_jobs()
    data = aws.sm.describe_processing_job(ProcessingJobName=job)["ProcessingInputs"][0]["S3Input"]["S3Uri"]
    assert data == f"s3://{ARTIFACTS}/validation-input/{job}/{key}"
    [started] = aws.decisions("validation_started")
    assert started["file"] == f"s3://{DATA}/{key}"


def test_eventbridge_key_with_a_literal_plus_falls_back_to_the_raw_key(aws):
    """If a key arrives unencoded ('+' meaning '+'), decoding would turn it into a space; the trigger asks S3
    which reading exists instead of guessing."""
    up = aws.upload("incoming/c++ results.csv")
    result = _handler()(eventbridge_object_created("ignored", encoded_key="incoming/c++ results.csv",
                                                   size=up["size"], version=up["version"]), None)
    assert result["status"] == "started"
    [started] = aws.decisions("validation_started")
    assert started["file"] == f"s3://{DATA}/incoming/c++ results.csv"


@pytest.mark.parametrize("key", ["validated/churn.csv", "quarantine/churn.csv", "quarantine/churn.csv.report.json"])
def test_keys_the_system_writes_start_nothing(aws, key):
    aws.upload(key)
    result = _handler()(eventbridge_object_created(key), None)
    assert result["status"] == "ignored"
    assert aws.processing_jobs() == []
    assert aws.decisions() == []  # the pipeline's own writes leave no noise in the ledger
    assert aws.notifications() == []


def test_key_outside_incoming_is_ignored_with_a_record(aws):
    aws.upload("elsewhere/churn.csv")
    assert _handler()(eventbridge_object_created("elsewhere/churn.csv"), None)["status"] == "ignored"
    assert aws.processing_jobs() == []
    [record] = aws.decisions("ignored")
    assert "incoming/" in record["reason"]


@pytest.mark.parametrize("key, size, why", [
    ("incoming/notes.txt", 10, "extension '.txt'"),
    ("incoming/README", 10, "extension '(none)'"),
    ("incoming/empty.csv", 0, "empty (0 bytes)"),
    ("incoming/huge.parquet", 1_000_001, "over the limit of 1000000 bytes"),
])
def test_rejections_are_recorded_and_announced_once(aws, key, size, why):
    up = aws.upload(key, b"x" * size)  # S3's size counts, not the event's
    event = eventbridge_object_created(key, size=size, etag=up["etag"], version=up["version"])
    for _ in range(3):  # redeliveries of a bad file do not repeat the message
        _handler()(event, None)
    assert aws.processing_jobs() == []
    [rejected] = aws.decisions("rejected")
    assert why in rejected["reason"]
    [message] = aws.notifications()
    assert why in message["message"] and "left where it is" in message["message"]
    assert aws.keys(DATA, key) == [key]  # never deleted


def test_extension_check_ignores_case(aws):
    up = aws.upload("incoming/UPPER.CSV")
    assert _handler()(eventbridge_object_created(up["key"], size=up["size"], version=up["version"]), None)["status"] == "started"


def test_object_missing_by_the_time_the_event_arrives_is_recorded_and_announced(aws):
    result = _handler()(eventbridge_object_created("incoming/gone.csv", size=None, version=None), None)
    assert result["status"] == "rejected"
    [rejected] = aws.decisions("rejected")
    assert "no longer exists" in rejected["reason"]
    assert "no longer exists" in aws.notifications()[0]["message"]


@pytest.mark.parametrize("event", [
    {},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": DATA}}},
    {"Records": []},
    {"Records": [{"eventName": "ObjectRemoved:Delete", "s3": {}}]},
    {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": DATA},
                                                                       "object": {"key": "incoming/x.csv", "size": "big"}}},
    "not even an object",
])
def test_malformed_events_are_recorded_and_announced_never_crash(aws, event):
    result = _handler()(event, None)
    assert result["status"] == "malformed"
    [record] = aws.decisions("malformed_event")
    assert record["pk"] == "event#trigger" and record["reason"].startswith("malformed event:")
    assert "malformed event" in aws.notifications()[0]["message"]


def test_throttled_sagemaker_is_recorded_announced_and_raised_for_the_dlq_then_retry_succeeds(aws):
    from botocore.exceptions import ClientError
    from mlops_control import clients

    up = aws.upload("incoming/throttled.csv")
    event = eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"])
    throttled = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(throttled)
    stubber.add_client_error("create_processing_job", service_error_code="ThrottlingException",
                             service_message="Rate exceeded", http_status_code=400)
    clients.override("sagemaker", throttled)
    with stubber, pytest.raises(ClientError, match="Rate exceeded"):
        _handler()(event, None)
    [error] = aws.decisions("error")
    assert "ThrottlingException" in error["reason"] and error["pk"] == "event#trigger"
    assert any("kept for retry/DLQ" in (m["subject"] or "") for m in aws.notifications())
    # Lambda's retry of the same event takes over the released claim and starts the job.
    clients.reset()
    assert _handler()(event, None)["status"] == "started"
    assert len(aws.processing_jobs()) == 1


def test_duplicate_job_name_rejected_by_real_sagemaker_counts_as_started(aws):
    """Real SageMaker answers a second CreateProcessingJob with the same name with ResourceInUse (moto
    overwrites silently); a redelivery after a lost claim must treat that as 'already started'."""
    from mlops_control import clients

    up = aws.upload("incoming/dup.csv")
    event = eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"])
    real = boto3.client("sagemaker", region_name=REGION)
    stubber = Stubber(real)
    stubber.add_client_error("create_processing_job", service_error_code="ResourceInUse",
                             service_message="Job name must be unique within an AWS account and region, and a job "
                                             "with this name already exists", http_status_code=400)
    clients.override("sagemaker", real)
    with stubber:
        result = _handler()(event, None)
    stubber.assert_no_pending_responses()
    assert result["status"] == "started"
    [record] = aws.decisions("validation_already_started")
    assert "already exists" in record["reason"]


def test_a_person_accepts_a_quarantined_file_by_uploading_it_with_a_reason(aws):
    """Issue 14: re-uploaded with accept-reason (and accepted-by) metadata, the file's shift is reported, not
    refused (ACCEPT_SHIFT=1), and the ledger says who accepted it, when and why."""
    key = "incoming/penguins.csv"
    response = aws.s3.put_object(Bucket=DATA, Key=key, Body=b"bill,species\n40,Chinstrap\n",
                                 Metadata={"accepted-by": "alice", "accept-reason": "Chinstrap is a real species"})
    event = eventbridge_object_created(key, size=25, etag=response["ETag"].strip('"'), version=response["VersionId"])
    event["detail"]["requester"] = "123456789012"
    created = _creations()
    assert _handler()(event, None)["status"] == "started"
    [request] = created  # moto keeps no Environment: the request itself is checked
    assert request["Environment"]["ACCEPT_SHIFT"] == "1"
    [accepted] = aws.decisions("accepted")
    assert accepted["reason"] == "alice accepted this file's shift: Chinstrap is a real species"
    assert accepted["details"]["by"] == "alice" and accepted["details"]["requester"] == "123456789012"
    assert accepted["details"]["at"] == event["time"] and accepted["file"] == f"s3://{DATA}/{key}"


def test_an_upload_without_acceptance_is_validated_strictly_as_configured(aws, monkeypatch):
    from mlops_control import settings

    monkeypatch.setenv("STRICT_COLUMNS", "species, island")
    settings.reset()
    up = aws.upload("incoming/plain.csv")
    created = _creations()
    _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"]), None)
    [request] = created
    environment = request["Environment"]
    assert environment["ACCEPT_SHIFT"] == "0" and environment["STRICT_COLUMNS"] == "species,island"
    assert aws.decisions("accepted") == []


def _creations():
    from mlops_control import clients

    return capture_calls(clients.get("sagemaker"), "CreateProcessingJob")


def _production(aws):
    aws.ddb.put_item(TableName=ENV["LEDGER_TABLE"], Item={
        "pk": {"S": "pipeline"}, "sk": {"S": "production"}, "training_job": {"S": f"{P}-train-abc"}, "task": {"S": "classification"},
        "model_data_url": {"S": f"s3://{ARTIFACTS}/models/{P}-train-abc/output/model.tar.gz"}, "model_sha256": {"S": "ab" * 32}})


def test_labels_under_ground_truth_start_a_join_with_the_captured_requests(aws):
    _production(aws)
    up = aws.upload("ground-truth/week-48.csv", b"inference_id,churn\nreq-1,yes\n")
    created = _creations()
    result = _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"]), None)
    assert result["status"] == "started" and result["job"].startswith(f"{P}-gt-")
    described = aws.sm.describe_processing_job(ProcessingJobName=result["job"])
    assert described["AppSpecification"]["ContainerEntrypoint"] == ["join-labels"]
    assert described["NetworkConfig"]["EnableNetworkIsolation"] is True and described["RoleArn"] == PROCESSING_ROLE
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in described["ProcessingInputs"]}
    assert inputs == {"labels": f"s3://{ARTIFACTS}/labels-input/{result['job']}/ground-truth/week-48.csv",
                      "capture": f"s3://{ARTIFACTS}/datacapture/{P}-endpoint/",
                      "model": f"s3://{ARTIFACTS}/models/{P}-train-abc/output/model.tar.gz"}
    [request] = created
    assert request["Environment"]["GATE_METRIC"] == "roc_auc" and request["Environment"]["MODEL_SHA256"] == "ab" * 32
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in described["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["joined"] == f"s3://{ARTIFACTS}/ground-truth/{result['job']}/joined/"
    assert aws.decisions("ground_truth_started")


def test_labels_before_any_model_are_rejected_with_a_reason(aws):
    up = aws.upload("ground-truth/early.csv", b"inference_id,churn\nreq-1,yes\n")
    assert _handler()(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"],
                                                 version=up["version"]), None)["status"] == "rejected"
    [rejected] = aws.decisions("rejected")
    assert "no model has been deployed yet" in rejected["reason"] and aws.processing_jobs() == []
