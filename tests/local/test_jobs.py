"""The job runner (local.jobs) against moto, with stub entrypoints that follow the /opt/ml contract.

The real entrypoints are exercised by the end-to-end tests; these pin the runner's own behaviour: inputs,
outputs, metrics, failure reasons, events.
"""

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from local import aws
from local.containers import ContainerRuntime
from local.jobs import JobRunner, extract_metrics

STUBS = Path(__file__).resolve().parent / "stub_entrypoints"
ROLE = "arn:aws:iam::123456789012:role/r"


@pytest.fixture(scope="module")
def run(moto, tmp_path_factory):
    os.environ["LOCAL_ENTRYPOINT_DIR"] = str(STUBS)
    emitted = []
    base_env = {"PATH": "/usr/bin:/bin", **aws.client_environment(moto.url, moto.region)}
    runner = JobRunner(moto.sagemaker, moto.url, tmp_path_factory.mktemp("jobs") / "jobs", ContainerRuntime("process"),
                       emitted.append, base_env)
    moto.sagemaker.job_work = runner
    sm, s3 = moto.client("sagemaker"), moto.client("s3")
    try:
        s3.create_bucket(Bucket="data")
        s3.create_bucket(Bucket="art")
        s3.put_object(Bucket="data", Key="validated/a.csv", Body=b"x,y\n1,0\n")
        s3.put_object(Bucket="data", Key="validated/sub/b.csv", Body=b"x,y\n2,1\n")
        s3.put_object(Bucket="data", Key="incoming/up load.csv", Body=b"x,y\n3,1\n")
        for name, mode in (("t-ok", "ok"), ("t-bad", "fail")):
            sm.create_training_job(
                TrainingJobName=name, RoleArn=ROLE, HyperParameters={"mode": mode},
                AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File", "MetricDefinitions": [
                    {"Name": f"test:{m}", "Regex": f"test:{m}=([-+0-9.eE]+)"} for m in ("f1", "roc_auc", "rmse")]},
                InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": "s3://data/validated/"}}}],
                OutputDataConfig={"S3OutputPath": "s3://art/models"}, EnableNetworkIsolation=True,
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
                StoppingCondition={"MaxRuntimeInSeconds": 60})
        for name, target in (("v-1", "y"), ("v-2", "boom")):
            sm.create_processing_job(
                ProcessingJobName=name, RoleArn=ROLE, Environment={"TARGET_COLUMN": target},
                AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["validate"]},
                ProcessingInputs=[{"InputName": "data", "S3Input": {
                    "S3Uri": "s3://data/incoming/up load.csv", "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
                ProcessingOutputConfig={"Outputs": [{"OutputName": "report", "S3Output": {
                    "S3Uri": f"s3://art/reports/{name}/", "LocalPath": "/opt/ml/processing/output/report",
                    "S3UploadMode": "EndOfJob"}}]},
                ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                       "VolumeSizeInGB": 5}})
        assert runner.wait_idle(60)
        yield {"sm": sm, "s3": s3, "emitted": emitted}
    finally:
        del os.environ["LOCAL_ENTRYPOINT_DIR"]


def test_training_job_runs_with_its_inputs_and_reports_metrics_and_artifacts(run):
    ok = run["sm"].describe_training_job(TrainingJobName="t-ok")
    assert ok["TrainingJobStatus"] == "Completed"
    assert {m["MetricName"]: m["Value"] for m in ok["FinalMetricDataList"]} == {"test:f1": 0.75, "test:roc_auc": 0.9}
    assert ok["ModelArtifacts"]["S3ModelArtifacts"] == "s3://art/models/t-ok/output/model.tar.gz"
    blob = run["s3"].get_object(Bucket="art", Key="models/t-ok/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        model = json.loads(tar.extractfile("model.txt").read())
    assert model == {"files": ["a.csv", "b.csv"], "hp": {"mode": "ok"}}


def test_failed_training_job_carries_the_failure_file_as_reason(run):
    bad = run["sm"].describe_training_job(TrainingJobName="t-bad")
    assert bad["TrainingJobStatus"] == "Failed" and "ModelArtifacts" not in bad
    assert bad["FailureReason"] == "AlgorithmError: target column 'y' not found, exit code: 3"


def test_processing_job_gets_environment_inputs_and_uploads_outputs(run):
    assert run["sm"].describe_processing_job(ProcessingJobName="v-1")["ProcessingJobStatus"] == "Completed"
    report = json.loads(run["s3"].get_object(Bucket="art", Key="reports/v-1/report.json")["Body"].read())
    assert report == {"files": ["up load.csv"], "target": "y", "aws": True}
    v2 = run["sm"].describe_processing_job(ProcessingJobName="v-2")
    assert [v2["ProcessingJobStatus"], v2["FailureReason"], v2["ExitMessage"]] == [
        "Failed", "AlgorithmError: cannot read the data", "cannot read the data"]


def test_job_state_change_events_for_in_progress_and_final_states(run):
    events = [(e["detail"].get("TrainingJobName") or e["detail"].get("ProcessingJobName"),
               e["detail"].get("TrainingJobStatus") or e["detail"].get("ProcessingJobStatus")) for e in run["emitted"]]
    for name, final in (("t-ok", "Completed"), ("t-bad", "Failed"), ("v-1", "Completed"), ("v-2", "Failed")):
        assert [status for n, status in events if n == name] == ["InProgress", final], name
    assert all(isinstance(e["detail"]["CreationTime"], int) for e in run["emitted"])  # epoch millis, as AWS sends


def test_metric_extraction_takes_the_last_match_of_each_definition():
    from datetime import datetime, timezone

    when = datetime.now(timezone.utc)
    found = extract_metrics([{"Name": "f1", "Regex": "f1=([0-9.]+)"}, {"Name": "auc", "Regex": "auc=([0-9.]+)"}],
                            "f1=0.1\nf1=0.2\n", when)
    assert found == [{"MetricName": "f1", "Value": 0.2, "Timestamp": when}]
