"""handlers.processing_done: validation verdicts (validated → training, or quarantine) and monitor reports."""
from __future__ import annotations

import json

import pytest

from ..helpers import ARTIFACTS, DATA, TABLE, P, eventbridge_object_created, job_state_change

PASSED = {"kind": "validation", "passed": True, "rows": 2, "rows_rejected": 0,
          "drift": {"score": 0.03, "method": "psi/ks", "features": {}}, "failures": [],
          "reference": "self", "summary": "2 rows, all expectations met"}
FAILED = {"kind": "validation", "passed": False, "rows": 2, "rows_rejected": 1,
          "drift": {"score": 0.41, "method": "psi/ks", "features": {}},
          "failures": [{"column": "age", "expectation": "expect_column_values_to_be_between",
                        "expected": "0 <= value <= 120", "found": [-4], "unexpected_count": 1}],
          "reference": "production-model", "summary": "1 of 2 rows has age outside 0..120"}


def _trigger(aws, key, body=b"age,plan,churn\n30,a,no\n41,b,yes\n"):
    from handlers.trigger import handler

    up = aws.upload(key, body)
    return handler(eventbridge_object_created(key, size=up["size"], etag=up["etag"], version=up["version"]), None)["job"], up


def _done(job, status="Completed", failure=None):
    from handlers.processing_done import handler

    return handler(job_state_change("processing", job, status, failure), None)


def _metrics(aws):
    listed = aws.cloudwatch.list_metrics(Namespace="MLOpsTest")["Metrics"]
    return {m["MetricName"]: m["Dimensions"] for m in listed}


def test_pass_copies_to_validated_records_and_starts_training(aws):
    job, up = _trigger(aws, "incoming/batch 1.csv")
    aws.put_report("val", job, PASSED)
    result = _done(job)
    assert result["status"] == "validated" and result["training"] == "started"
    assert aws.keys(DATA, "validated/") == ["validated/batch 1.csv"]
    assert aws.s3.get_object(Bucket=DATA, Key="validated/batch 1.csv")["Body"].read() == b"age,plan,churn\n30,a,no\n41,b,yes\n"
    assert aws.keys(DATA, "incoming/") == ["incoming/batch 1.csv"]  # the original stays
    [train] = aws.training_jobs()
    assert train.startswith(f"{P}-train-")
    described = aws.sm.describe_training_job(TrainingJobName=train)
    # The run reads exactly its training window: a manifest of the validated files.
    source = described["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    assert source["S3DataType"] == "ManifestFile" and source["S3Uri"] == f"s3://{ARTIFACTS}/models/{train}/manifest.json"
    manifest = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{train}/manifest.json")["Body"].read())
    assert manifest == [{"prefix": f"s3://{DATA}/validated/"}, "batch 1.csv"]
    assert described["HyperParameters"]["target_column"] == "churn"
    assert described["HyperParameters"]["n_estimators"] == "50"
    inputs = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{train}/inputs.json")["Body"].read())
    assert [i["uri"] for i in inputs["inputs"]] == [f"s3://{DATA}/validated/batch 1.csv"]
    assert inputs["inputs"][0]["version"]
    assert [d["decision"] for d in aws.decisions() if d["decision"] in ("validated", "training_started")] == [
        "validated", "training_started"]
    assert _metrics(aws) == {"DataDrift": [{"Name": "Pipeline", "Value": P}],
                             "RowsRejected": [{"Name": "Pipeline", "Value": P}]}


def test_fail_quarantines_file_and_report_keeps_original_and_says_why(aws):
    job, _ = _trigger(aws, "incoming/bad.csv", b"age,plan,churn\n-4,a,no\n41,b,yes\n")
    aws.put_report("val", job, FAILED)
    result = _done(job)
    assert result["status"] == "quarantined"
    assert aws.keys(DATA, "quarantine/") == ["quarantine/bad.csv", "quarantine/bad.csv.report.html",
                                            "quarantine/bad.csv.report.json"]
    report = json.loads(aws.s3.get_object(Bucket=DATA, Key="quarantine/bad.csv.report.json")["Body"].read())
    assert report["failures"][0]["column"] == "age"
    assert aws.keys(DATA, "incoming/") == ["incoming/bad.csv"]
    assert aws.keys(DATA, "validated/") == [] and aws.training_jobs() == []
    [record] = aws.decisions("quarantined")
    assert record["reason"] == FAILED["summary"] and record["details"]["failures"][0]["column"] == "age"
    [message] = aws.notifications()
    assert "age outside 0..120" in message["message"] and "original is kept" in message["message"]
    # Its drift (0.41, over the alarm's threshold) is in the report, but it must not raise the retrain alarm.
    assert set(_metrics(aws)) == {"RowsRejected"}
    stats = aws.cloudwatch.get_metric_statistics(
        Namespace="MLOpsTest", MetricName="RowsRejected", Dimensions=[{"Name": "Pipeline", "Value": P}],
        StartTime="2000-01-01", EndTime="2100-01-01", Period=3600, Statistics=["Maximum"])
    assert stats["Datapoints"][0]["Maximum"] == 1.0


def test_failed_job_quarantines_with_the_failure_reason(aws):
    job, _ = _trigger(aws, "incoming/corrupt.parquet", b"PAR1 not really parquet")
    result = _done(job, "Failed", "ClientError: cannot read parquet: magic bytes not found")
    assert result["status"] == "quarantined"
    report = json.loads(aws.s3.get_object(Bucket=DATA, Key="quarantine/corrupt.parquet.report.json")["Body"].read())
    assert report["passed"] is False and "magic bytes" in report["summary"]
    assert "magic bytes" in aws.notifications()[0]["message"]


def test_completed_job_without_a_report_is_quarantined_not_trained_on(aws):
    job, _ = _trigger(aws, "incoming/noreport.csv")
    assert _done(job)["status"] == "quarantined"
    [record] = aws.decisions("quarantined")
    assert "wrote no report" in record["reason"]
    assert aws.training_jobs() == []


def test_duplicate_completion_events_are_handled_once(aws):
    job, _ = _trigger(aws, "incoming/once.csv")
    aws.put_report("val", job, PASSED)
    results = [_done(job)["status"] for _ in range(5)]
    assert results == ["validated"] + ["duplicate"] * 4
    assert len(aws.training_jobs()) == 1 and len(aws.decisions("validated")) == 1


def test_in_progress_state_changes_are_not_acted_on(aws):
    job, _ = _trigger(aws, "incoming/busy.csv")
    assert _done(job, "InProgress")["status"] == "not_terminal"
    assert aws.decisions("validated") == [] and aws.decisions("quarantined") == []


def test_original_deleted_before_the_copy_is_recorded_and_announced(aws):
    job, up = _trigger(aws, "incoming/deleted.csv")
    aws.put_report("val", job, PASSED)
    aws.s3.delete_object(Bucket=DATA, Key=up["key"], VersionId=up["version"])
    result = _done(job)
    assert result["status"] == "missing"
    [record] = aws.decisions("error")
    assert "no longer exists" in record["reason"]
    assert "no longer exists" in aws.notifications()[0]["message"]
    assert aws.training_jobs() == []


def test_verdict_finds_its_upload_from_the_job_when_the_ledger_lost_it(aws):
    """The job's metadata record is gone (deleted by hand, or an old job): the staged input's key says which
    upload it validated."""
    job, up = _trigger(aws, "incoming/sub dir/late.csv")
    aws.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"job#{job}"}, "sk": {"S": "meta"}})
    aws.put_report("val", job, PASSED)
    assert _done(job)["status"] == "validated"
    assert aws.keys(DATA, "validated/") == ["validated/sub dir/late.csv"]


def test_unknown_validation_job_is_recorded_and_announced(aws):
    result = _done(f"{P}-val-0123456789abcdef0123")
    assert result["status"] == "error"
    assert "unknown" in aws.decisions("error")[0]["reason"]
    assert aws.notifications()


def test_monitor_report_publishes_drift_and_records_it(aws):
    job = f"{P}-mon-0123456789abcdef0123"
    aws.put_report("mon", job, {"kind": "monitor", "passed": True, "rows": 500, "rows_rejected": 3,
                                "drift": {"score": 0.35, "method": "psi/ks", "features": {}}, "failures": [],
                                "reference": "production-model", "summary": "500 captured rows"})
    result = _done(job)
    assert result == {"status": "completed", "drift": 0.35}
    [record] = aws.decisions("monitor_completed")
    assert "over the threshold 0.2" in record["reason"]
    stats = aws.cloudwatch.get_metric_statistics(
        Namespace="MLOpsTest", MetricName="DataDrift", Dimensions=[{"Name": "Pipeline", "Value": P}],
        StartTime="2000-01-01", EndTime="2100-01-01", Period=3600, Statistics=["Maximum"])
    assert stats["Datapoints"][0]["Maximum"] == 0.35


def test_monitor_failure_is_recorded_and_announced(aws):
    result = _done(f"{P}-mon-0123456789abcdef0124", "Failed", "no captured data")
    assert result["status"] == "failed"
    assert aws.decisions("monitor_failed") and "no captured data" in aws.notifications()[0]["message"]


@pytest.mark.parametrize("event", [
    {"detail-type": "SageMaker Training Job State Change", "detail": {}},
    {"detail-type": "SageMaker Processing Job State Change", "detail": {"ProcessingJobName": "x"}},
    None,
])
def test_malformed_events_are_recorded(aws, event):
    from handlers.processing_done import handler

    assert handler(event, None)["status"] == "malformed"
    assert aws.decisions("malformed_event") and aws.notifications()


def test_job_of_another_pipeline_is_ignored_with_a_record(aws):
    assert _done("someone-elses-job")["status"] == "ignored"
    assert aws.decisions("ignored")


def _version_event(aws, key, body, sequencer):
    from handlers.trigger import handler

    up = aws.upload(key, body)
    event = eventbridge_object_created(key, size=up["size"], etag=up["etag"], version=up["version"], sequencer=sequencer)
    return handler(event, None)["job"], up


def test_versions_validated_out_of_order_leave_the_newest_in_validated(aws):
    """Issue 12 item 6: v2 of a key passes first, then v1 (older) passes: validated/ keeps v2."""
    older, _ = _version_event(aws, "incoming/same.csv", b"age,plan,churn\n1,a,no\n", "0061000000000000A1")
    newer, _ = _version_event(aws, "incoming/same.csv", b"age,plan,churn\n2,b,yes\n", "0061000000000000B2")
    aws.put_report("val", newer, PASSED)
    aws.put_report("val", older, PASSED)
    assert _done(newer)["status"] == "validated"
    late = _done(older)
    assert late["status"] == "validated" and late["training"] == "not_requested"
    assert aws.s3.get_object(Bucket=DATA, Key="validated/same.csv")["Body"].read() == b"age,plan,churn\n2,b,yes\n"
    [_, stale] = aws.decisions("validated")
    assert "newer upload" in stale["reason"] and stale["details"]["copied_to"] is None


def test_an_older_copy_landing_after_the_newer_one_is_repaired(aws, monkeypatch):
    """The older version registers first, the newer one registers and copies, then the older copy lands: the
    older verdict sees the newer registration and copies the newer version back."""
    from mlops_control import intake

    older, _ = _version_event(aws, "incoming/race.csv", b"age,plan,churn\n1,a,no\n", "0061000000000000A1")
    newer, _ = _version_event(aws, "incoming/race.csv", b"age,plan,churn\n2,b,yes\n", "0061000000000000B2")
    aws.put_report("val", newer, PASSED)
    aws.put_report("val", older, PASSED)
    real_copy, interleaved = intake._copy_once, []

    def copy_after_the_newer_verdict(bucket, key, version, target, **kwargs):
        if target == "validated/race.csv" and not interleaved:
            interleaved.append("running")
            interleaved[0] = _done(newer)  # the newer verdict runs to the end in between
        return real_copy(bucket, key, version, target, **kwargs)

    monkeypatch.setattr(intake, "_copy_once", copy_after_the_newer_verdict)
    assert _done(older)["status"] == "validated" and interleaved[0]["status"] == "validated"
    assert aws.s3.get_object(Bucket=DATA, Key="validated/race.csv")["Body"].read() == b"age,plan,churn\n2,b,yes\n"


GROUND_TRUTH = {"kind": "ground_truth", "passed": True, "labels": 3, "matched": 2, "unmatched": 1, "duplicates": 0,
                "model_quality": {"metric": "roc_auc", "value": 0.61, "rows": 2},
                "metrics": {"roc_auc": 0.61, "accuracy": 0.5}, "captures": ["datacapture/x.jsonl"],
                "summary": "2 of 3 labels matched a captured request; roc_auc 0.61 on them"}


def _labels(aws):
    from handlers.trigger import handler

    aws.ddb.put_item(TableName=TABLE, Item={
        "pk": {"S": "pipeline"}, "sk": {"S": "production"}, "training_job": {"S": f"{P}-train-abc"},
        "model_data_url": {"S": f"s3://{ARTIFACTS}/models/{P}-train-abc/output/model.tar.gz"}})
    up = aws.upload("ground-truth/week 48.csv", b"inference_id,churn\nr1,yes\nr2,no\nr3,no\n")
    return handler(eventbridge_object_created(up["key"], size=up["size"], etag=up["etag"], version=up["version"]),
                   None)["job"]


def test_joined_labels_publish_model_quality_and_come_back_as_an_upload(aws):
    """The production model's quality on the labeled captures becomes the ModelQuality metric (its alarm
    retrains), and the labeled rows enter the normal path under incoming/labeled/ with their lineage."""
    job = _labels(aws)
    aws.put_report("gt", job, GROUND_TRUTH)
    aws.s3.put_object(Bucket=ARTIFACTS, Key=f"ground-truth/{job}/joined/labeled.csv", Body=b"age,plan,churn\n3,a,yes\n")
    result = _done(job)
    assert result["status"] == "joined" and result["model_quality"] == 0.61
    labeled = result["labeled"]
    assert labeled.startswith("incoming/labeled/week 48-") and labeled.endswith(".csv")
    copied = aws.s3.get_object(Bucket=DATA, Key=labeled)
    assert copied["Body"].read() == b"age,plan,churn\n3,a,yes\n"
    assert copied["Metadata"] == {"ground-truth-job": job, "labels-file": f"s3://{DATA}/ground-truth/week 48.csv"}
    stats = aws.cloudwatch.get_metric_statistics(
        Namespace="MLOpsTest", MetricName="ModelQuality", Dimensions=[{"Name": "Pipeline", "Value": P}],
        StartTime="2000-01-01", EndTime="2100-01-01", Period=3600, Statistics=["Minimum"])
    assert stats["Datapoints"][0]["Minimum"] == 0.61
    [joined] = aws.decisions("ground_truth_joined")
    assert joined["details"]["matched"] == 2 and joined["details"]["model_quality"]["value"] == 0.61


def test_labels_that_match_nothing_are_recorded_and_announced(aws):
    job = _labels(aws)
    aws.put_report("gt", job, {**GROUND_TRUTH, "passed": False, "matched": 0,
                               "failures": [{"column": "inference_id", "expectation": "labels_match_captures",
                                             "expected": "ids of captured requests", "found": ["r1"],
                                             "unexpected_count": 3}],
                               "summary": "none of 3 labels matched a captured request"})
    assert _done(job)["status"] == "failed"
    [failed] = aws.decisions("ground_truth_failed")
    assert "none of 3 labels matched" in failed["reason"]
    assert aws.keys(DATA, "incoming/labeled/") == [] and "Labels not used" in aws.notifications()[0]["subject"]
    assert "ModelQuality" not in _metrics(aws)


def test_a_retried_verdict_does_not_write_the_validated_copy_again(aws):
    """Each copy is a new object version, and the training window's fingerprint is keys + versions: copying the
    same upload twice would make unchanged data look new (and train it twice)."""
    job, up = _trigger(aws, "incoming/once.csv")
    aws.put_report("val", job, PASSED)
    _done(job)
    from mlops_control import intake

    versions = aws.s3.list_object_versions(Bucket=DATA, Prefix="validated/once.csv")["Versions"]
    intake._copy_once(DATA, "incoming/once.csv", up["version"], "validated/once.csv", identity=up["version"])
    assert aws.s3.list_object_versions(Bucket=DATA, Prefix="validated/once.csv")["Versions"] == versions
    held = aws.s3.head_object(Bucket=DATA, Key="validated/once.csv")["Metadata"]
    assert held == {"source-version-id": up["version"]}


def test_the_run_a_verdict_starts_counts_the_rows_of_the_file_it_just_validated(aws, monkeypatch):
    """The training window counts rows per validated file; the run requested by a verdict must see that file's
    rows (else a window of N rows would read it as empty and add older files)."""
    from mlops_control import settings

    monkeypatch.setenv("TRAINING_WINDOW_MAX_ROWS", "2")
    settings.reset()
    older, _ = _trigger(aws, "incoming/older.csv")
    aws.put_report("val", older, PASSED)
    _done(older)
    newer, _ = _trigger(aws, "incoming/newer.csv")
    aws.put_report("val", newer, PASSED)  # 2 rows: the window is full with this file alone
    from mlops_control.training import finish_training
    from mlops_control.ledger import Ledger

    finish_training(settings.load(), Ledger(TABLE), aws.state("training")["running_job"])
    result = _done(newer)
    inputs = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{result['job']}/inputs.json")["Body"].read())
    assert [i["uri"].rsplit("/", 1)[-1] for i in inputs["inputs"]] == ["newer.csv"] and inputs["rows"] == 2


def test_a_ground_truth_verdict_finds_its_labels_file_from_the_job_when_the_ledger_lost_it(aws):
    job = _labels(aws)
    aws.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": f"job#{job}"}, "sk": {"S": "meta"}})
    aws.put_report("gt", job, GROUND_TRUTH)
    aws.s3.put_object(Bucket=ARTIFACTS, Key=f"ground-truth/{job}/joined/labeled.csv", Body=b"age,plan,churn\n3,a,yes\n")
    assert _done(job)["status"] == "joined"
    [joined] = aws.decisions("ground_truth_joined")
    assert joined["file"] == f"s3://{DATA}/ground-truth/week 48.csv"


def test_a_window_larger_than_the_training_instance_holds_is_refused_and_nothing_is_lost(aws, monkeypatch):
    """The too-large-data decision: validation counted rows x columns; a window of more cells than
    TRAINING_MAX_CELLS starts no training job, says why in the ledger and to people (the limit and the ways past
    it), keeps every file, and frees the slot so that a smaller window trains."""
    from mlops_control import settings

    monkeypatch.setenv("TRAINING_MAX_CELLS", "10")
    settings.reset()
    wide = {**PASSED, "rows": 4, "columns": 3}  # 12 cells > 10
    job, up = _trigger(aws, "incoming/big.csv")
    aws.put_report("val", job, wide)
    result = _done(job)
    assert result["status"] == "validated" and result["training"] == "refused"
    assert aws.training_jobs() == []
    [refused] = aws.decisions("training_refused_too_large")
    assert refused["details"]["cells"] == 12 and refused["details"]["limit_cells"] == 10
    assert refused["details"]["rows"] == 4 and refused["details"]["instance_type"] == "ml.m5.large"
    for option in ("training_instance_type", "training_window_max_rows", "training_max_cells"):
        assert option in refused["reason"]
    [message] = [n for n in aws.notifications() if "refused" in n["subject"]]
    assert "12 cells" in message["message"].replace(",", "")
    assert "running_job" not in aws.state("training")  # the slot is free again
    # Nothing is lost: the upload and its validated copy are both still there, at the uploaded version.
    assert aws.s3.head_object(Bucket=DATA, Key="incoming/big.csv")["VersionId"] == up["version"]
    assert aws.keys(DATA, "validated/") == ["validated/big.csv"]

    # With the newest file alone under the limit (a training window of 3 rows), the next upload trains.
    monkeypatch.setenv("TRAINING_WINDOW_MAX_ROWS", "3")
    settings.reset()
    small, _ = _trigger(aws, "incoming/small.csv")
    aws.put_report("val", small, {**PASSED, "rows": 3, "columns": 3})  # 9 cells
    started = _done(small)
    assert started["training"] == "started" and aws.training_jobs() == [started["job"]]
    inputs = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{started['job']}/inputs.json")["Body"].read())
    assert [i["uri"].rsplit("/", 1)[-1] for i in inputs["inputs"]] == ["small.csv"]
