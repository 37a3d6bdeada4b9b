"""Job runner and endpoint manager against moto, with stub entrypoints that follow the /opt/ml contract.

Runs in a child process (the moto patches are process-wide). The real entrypoints are exercised by the
end-to-end tests; these pin the runner's own behaviour: inputs, outputs, metrics, failure reasons,
events, blue/green and rollback.
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STUBS = Path(__file__).resolve().parent / "stub_entrypoints"

SCRIPT = r'''
import json, sys, time, tempfile
from pathlib import Path
from local import aws
from local.jobs import ContainerRuntime, JobRunner
from local.endpoints import EndpointManager
from local.runtime import Invocation

work = Path(tempfile.mkdtemp())
server = aws.AwsServer(); server.start()
url, region = server.url, "us-east-1"
emitted = []
base_env = {"PATH": "/usr/bin:/bin", **aws.client_environment(url, region)}
runner = JobRunner(region, url, work / "jobs", ContainerRuntime("process"), emitted.append, base_env)
alarm_states = {"rollback-alarm": "OK"}
endpoints = EndpointManager(region, url, work / "endpoints", ContainerRuntime("process"), emitted.append, base_env,
                            health_timeout=4, flush_interval=3600, max_bake_seconds=1,
                            alarm_state=lambda name: alarm_states.get(name, "INSUFFICIENT_DATA"))
import atexit; atexit.register(endpoints.stop)  # no serving process outlives a failed run
class Hooks:
    def training_job_created(self, n): runner.training_job_created(n)
    def processing_job_created(self, n): runner.processing_job_created(n)
    def training_job_stop_requested(self, n): runner.stop_requested(n)
    def processing_job_stop_requested(self, n): runner.stop_requested(n)
    def endpoint_created(self, n): endpoints.endpoint_created(n)
    def endpoint_updated(self, n, c, r, d): endpoints.endpoint_updated(n, c, r, d)
    def endpoint_deleted(self, n): endpoints.endpoint_deleted(n)
aws.HOOKS.sagemaker = Hooks()
sm, s3 = aws.client("sagemaker", url, region), aws.client("s3", url, region)
s3.create_bucket(Bucket="data"); s3.create_bucket(Bucket="art")
s3.put_object(Bucket="data", Key="validated/a.csv", Body=b"x,y\n1,0\n")
s3.put_object(Bucket="data", Key="validated/sub/b.csv", Body=b"x,y\n2,1\n")
s3.put_object(Bucket="data", Key="incoming/up load.csv", Body=b"x,y\n3,1\n")
out = {}

def train(name, hp):
    sm.create_training_job(TrainingJobName=name, RoleArn="arn:aws:iam::123456789012:role/r", HyperParameters=hp,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File", "MetricDefinitions": [
            {"Name": "test:f1", "Regex": "test:f1=([-+0-9.eE]+)"}, {"Name": "test:roc_auc", "Regex": "test:roc_auc=([-+0-9.eE]+)"},
            {"Name": "test:rmse", "Regex": "test:rmse=([-+0-9.eE]+)"}]},
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
            "S3Uri": "s3://data/validated/"}}}],
        OutputDataConfig={"S3OutputPath": "s3://art/models"}, EnableNetworkIsolation=True,
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60})

train("t-ok", {"mode": "ok"}); train("t-bad", {"mode": "fail"})
sm.create_processing_job(ProcessingJobName="v-1", RoleArn="arn:aws:iam::123456789012:role/r",
    AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["validate"]}, Environment={"TARGET_COLUMN": "y"},
    ProcessingInputs=[{"InputName": "data", "S3Input": {"S3Uri": "s3://data/incoming/up load.csv", "LocalPath":
        "/opt/ml/processing/input/data", "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
    ProcessingOutputConfig={"Outputs": [{"OutputName": "report", "S3Output": {"S3Uri": "s3://art/reports/v-1/",
        "LocalPath": "/opt/ml/processing/output/report", "S3UploadMode": "EndOfJob"}}]},
    ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}})
sm.create_processing_job(ProcessingJobName="v-2", RoleArn="arn:aws:iam::123456789012:role/r",
    AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["validate"]}, Environment={"TARGET_COLUMN": "boom"},
    ProcessingInputs=[{"InputName": "data", "S3Input": {"S3Uri": "s3://data/incoming/up load.csv", "LocalPath":
        "/opt/ml/processing/input/data", "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
    ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}})
assert runner.wait_idle(60)
ok = sm.describe_training_job(TrainingJobName="t-ok")
bad = sm.describe_training_job(TrainingJobName="t-bad")
out["ok"] = {"status": ok["TrainingJobStatus"], "metrics": {m["MetricName"]: m["Value"] for m in ok["FinalMetricDataList"]},
             "artifacts": ok["ModelArtifacts"]["S3ModelArtifacts"]}
out["bad"] = {"status": bad["TrainingJobStatus"], "reason": bad.get("FailureReason"), "artifacts": "ModelArtifacts" in bad}
import tarfile, io
blob = s3.get_object(Bucket="art", Key="models/t-ok/output/model.tar.gz")["Body"].read()
with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
    out["model"] = json.loads(tar.extractfile("model.txt").read())
out["v1"] = [sm.describe_processing_job(ProcessingJobName="v-1")["ProcessingJobStatus"],
             json.loads(s3.get_object(Bucket="art", Key="reports/v-1/report.json")["Body"].read())]
v2 = sm.describe_processing_job(ProcessingJobName="v-2")
out["v2"] = [v2["ProcessingJobStatus"], v2.get("FailureReason"), v2.get("ExitMessage")]
out["job_events"] = [(e["detail-type"], e["detail"].get("TrainingJobName") or e["detail"].get("ProcessingJobName"),
                      e["detail"].get("TrainingJobStatus") or e["detail"].get("ProcessingJobStatus")) for e in emitted]
out["event_times_are_millis"] = all(isinstance(e["detail"]["CreationTime"], int) for e in emitted)
emitted.clear()

# endpoints: create, a good update (blue/green), a broken update (rollback)
for model, env in (("m-ok", {}), ("m-broken", {"STUB_BROKEN": "1"})):
    sm.create_model(ModelName=model, ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                    PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://art/models/t-ok/output/model.tar.gz",
                                      "Environment": env})
for config, model in (("c1", "m-ok"), ("c2", "m-ok"), ("c3", "m-broken"), ("c4", "m-ok")):
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{"VariantName": "AllTraffic",
        "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
        DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://art/datacapture", "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]})
def wait_endpoint():
    deadline = time.time() + 30
    while time.time() < deadline:
        if not endpoints.busy: return
        time.sleep(0.1)
sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1"); wait_endpoint()
out["created"] = [sm.describe_endpoint(EndpointName="ep")["EndpointStatus"], endpoints.live_config("ep")]
first_port = endpoints.route("ep").port
first_fleet = endpoints._live["ep"]
blue_green = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
              "TerminationWaitInSeconds": 600}, "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "rollback-alarm"}]}}
sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=blue_green); wait_endpoint()
d = sm.describe_endpoint(EndpointName="ep")
out["updated"] = [d["EndpointStatus"], d["EndpointConfigName"], endpoints.route("ep").port != first_port]
out["old_fleet_stopped"] = first_fleet.proc.poll() is not None
sm.update_endpoint(EndpointName="ep", EndpointConfigName="c3"); wait_endpoint()
d = sm.describe_endpoint(EndpointName="ep")
out["rolled_back"] = [d["EndpointStatus"], d["EndpointConfigName"], d.get("FailureReason", ""), endpoints.live_config("ep")]
live_before = endpoints._live["ep"]
alarm_states["rollback-alarm"] = "ALARM"
sm.update_endpoint(EndpointName="ep", EndpointConfigName="c4", DeploymentConfig=blue_green); wait_endpoint()
d = sm.describe_endpoint(EndpointName="ep")
baked = [f for f in endpoints._started if f.config_name == "c4"][0]
out["alarm_rollback"] = [d["EndpointStatus"], d["EndpointConfigName"], d.get("FailureReason", ""),
                         endpoints._live["ep"] is live_before, baked.proc.poll() is not None]
alarm_states["rollback-alarm"] = "OK"
out["endpoint_events"] = [(e["detail"]["EndpointStatus"], e["detail"]["EndpointConfigName"]) for e in emitted]
import urllib.request
route = endpoints.route("ep")
req = urllib.request.Request(f"http://127.0.0.1:{route.port}/invocations", data=b"1,2\n", headers={"Content-Type": "text/csv"})
body = urllib.request.urlopen(req, timeout=5).read()
endpoints.observe(Invocation("ep", "AllTraffic", b"1,2\n", "text/csv", "text/csv", 200, body, "text/csv", 1500.0, 20.0))
endpoints.flush()
keys = [o["Key"] for o in s3.list_objects_v2(Bucket="art", Prefix="datacapture/")["Contents"]]
out["capture_key"] = keys[0]
out["capture"] = json.loads(s3.get_object(Bucket="art", Key=keys[0])["Body"].read().decode().splitlines()[0])
cw = aws.cloudwatch_backend(region)
out["metrics"] = sorted({m.name for m in cw.metric_data if m.namespace == "AWS/SageMaker"})
endpoints.stop()
out["all_stopped"] = all(f.proc.poll() is not None for f in endpoints._started)
print(json.dumps(out))
server.stop()
'''


@functools.lru_cache(maxsize=1)
def run():
    env = {"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "LOCAL_ENTRYPOINT_DIR": str(STUBS)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=240,
                            env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_training_job_runs_with_its_inputs_and_reports_metrics_and_artifacts():
    out = run()
    assert out["ok"]["status"] == "Completed"
    assert out["ok"]["metrics"] == {"test:f1": 0.75, "test:roc_auc": 0.9}  # last match wins, unmatched absent
    assert out["ok"]["artifacts"] == "s3://art/models/t-ok/output/model.tar.gz"
    assert out["model"]["files"] == ["a.csv", "b.csv"] and out["model"]["hp"] == {"mode": "ok"}


def test_failed_training_job_carries_the_failure_file_as_reason():
    bad = run()["bad"]
    assert bad["status"] == "Failed" and bad["artifacts"] is False
    assert bad["reason"] == "AlgorithmError: target column 'y' not found, exit code: 3"


def test_processing_job_gets_environment_inputs_and_uploads_outputs():
    status, report = run()["v1"]
    assert status == "Completed"
    assert report == {"files": ["up load.csv"], "target": "y", "aws": True}
    assert run()["v2"] == ["Failed", "AlgorithmError: cannot read the data", "cannot read the data"]


def test_job_state_change_events_for_in_progress_and_final_states():
    out = run()
    events = out["job_events"]
    for name, final in (("t-ok", "Completed"), ("t-bad", "Failed"), ("v-1", "Completed"), ("v-2", "Failed")):
        statuses = [status for _, n, status in events if n == name]
        assert statuses == ["InProgress", final], (name, statuses)
    assert out["event_times_are_millis"]


def test_endpoint_blue_green_update_and_rollback_of_a_fleet_that_never_gets_healthy():
    out = run()
    assert out["created"] == ["InService", "c1"]
    assert out["updated"] == ["InService", "c2", True]
    status, config, reason, live = out["rolled_back"]
    assert (status, config, live) == ("InService", "c2", "c2")
    assert "ping health check" in reason
    assert out["old_fleet_stopped"]
    assert out["endpoint_events"] == [["CREATING", "c1"], ["IN_SERVICE", "c1"], ["UPDATING", "c1"],
                                      ["IN_SERVICE", "c2"], ["UPDATING", "c2"], ["IN_SERVICE", "c2"],
                                      ["UPDATING", "c2"], ["IN_SERVICE", "c2"]]


def test_an_auto_rollback_alarm_during_the_bake_rolls_the_update_back():
    status, config, reason, old_fleet_serves, new_fleet_stopped = run()["alarm_rollback"]
    assert (status, config) == ("InService", "c2")
    assert "rollback-alarm" in reason
    assert old_fleet_serves and new_fleet_stopped
    assert run()["all_stopped"]


def test_data_capture_and_endpoint_metrics():
    out = run()
    assert out["capture_key"].startswith("datacapture/ep/AllTraffic/") and out["capture_key"].endswith(".jsonl")
    capture = out["capture"]["captureData"]
    assert capture["endpointInput"] == {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2\n",
                                        "encoding": "CSV"}
    assert capture["endpointOutput"]["mode"] == "OUTPUT" and capture["endpointOutput"]["data"].endswith("|1,2\n")
    assert out["capture"]["eventVersion"] == "0" and "eventId" in out["capture"]["eventMetadata"]
    assert {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency"} <= set(out["metrics"])


def test_a_manifest_channel_downloads_exactly_the_listed_objects(tmp_path):
    """The training window reaches a run as a ManifestFile channel; the runner lays out what SageMaker would."""
    import types

    import boto3
    from moto import mock_aws

    from local.jobs import JobRunner

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        s3.create_bucket(Bucket="art")
        for key in ("validated/a.csv", "validated/sub/b.csv", "validated/left-out.csv"):
            s3.put_object(Bucket="data", Key=key, Body=key.encode())
        s3.put_object(Bucket="art", Key="models/j/manifest.json",
                      Body=json.dumps([{"prefix": "s3://data/validated/"}, "a.csv", "sub/b.csv"]).encode())
        runner = types.SimpleNamespace(_s3=s3)
        runner._download_manifest = functools.partial(JobRunner._download_manifest, runner)
        keys = JobRunner._download(runner, "s3://art/models/j/manifest.json", "ManifestFile", tmp_path / "train")
    assert keys == ["validated/a.csv", "validated/sub/b.csv"]
    assert sorted(p.relative_to(tmp_path / "train").as_posix() for p in (tmp_path / "train").rglob("*") if p.is_file()) \
        == ["a.csv", "sub/b.csv"]
    assert (tmp_path / "train" / "sub" / "b.csv").read_bytes() == b"validated/sub/b.csv"
