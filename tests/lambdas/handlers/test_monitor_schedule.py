"""handlers.monitor_schedule: the schedule starts the monitoring job over the captured data."""
from __future__ import annotations

from ..helpers import ARTIFACTS, P, scheduled_event


def _tick(event=None):
    from handlers.monitor_schedule import handler

    return handler(event or scheduled_event(), None)


def _production(aws):
    from mlops_control import settings
    from mlops_control.ledger import Ledger

    s = settings.load()
    Ledger(s.ledger_table).put_state("pipeline", "production", {
        "training_job": f"{P}-train-abc", "model_name": f"{P}-model-abc",
        "model_data_url": f"s3://{ARTIFACTS}/models/{P}-train-abc/output/model.tar.gz"})


def test_starts_the_monitor_job_over_the_capture_prefix_once_per_tick(aws):
    _production(aws)
    aws.s3.put_object(Bucket=ARTIFACTS, Key=f"datacapture/{P}-endpoint/AllTraffic/2026/11/21/10/x.jsonl", Body=b"{}\n")
    assert _tick()["status"] == "started"
    assert _tick()["status"] == "duplicate"  # a redelivered tick starts nothing more
    [job] = aws.processing_jobs()
    assert described_network_isolation(aws, job)
    assert job.startswith(f"{P}-mon-")
    described = aws.sm.describe_processing_job(ProcessingJobName=job)
    assert described["AppSpecification"]["ContainerEntrypoint"] == ["monitor"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in described["ProcessingInputs"]}
    assert inputs == {"capture": f"s3://{ARTIFACTS}/datacapture/{P}-endpoint/",
                      "model": f"s3://{ARTIFACTS}/models/{P}-train-abc/output/model.tar.gz"}
    output = described["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert output == f"s3://{ARTIFACTS}/reports/monitor/{job}/"


def described_network_isolation(aws, job):
    """Monitoring parses captured requests (untrusted): no network, and the processing role (not training's)."""
    described = aws.sm.describe_processing_job(ProcessingJobName=job)
    return described.get("NetworkConfig", {}).get("EnableNetworkIsolation") is True and \
        described["RoleArn"].endswith("-processing")


def test_skips_with_a_record_without_a_model_or_without_captured_data(aws):
    assert _tick()["reason"] == "no production model"
    _production(aws)
    assert _tick(scheduled_event("2026-11-21T13:00:00Z"))["reason"] == "no captured data"
    assert aws.processing_jobs() == [] and len(aws.decisions("monitor_skipped")) == 2


def test_malformed_tick_is_recorded(aws):
    assert _tick({"detail-type": "Something"})["status"] == "malformed"
    assert aws.decisions("malformed_event")
