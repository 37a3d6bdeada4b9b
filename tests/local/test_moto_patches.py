"""The SageMaker behaviour added to moto, and the S3 write hook — exercised in a child process.

A child process because the patches are process-wide and the lambdas' tests in this pytest process
rely on unpatched moto.
"""

import functools
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import json, boto3
from botocore.exceptions import ClientError
from local import aws
from local.events import s3_object_created

seen = {"created": [], "updated": [], "objects": []}
class Hooks:
    def training_job_created(self, n): seen["created"].append(n)
    def processing_job_created(self, n): seen["created"].append(n)
    def training_job_stop_requested(self, n): seen["created"].append("stop:" + n)
    def processing_job_stop_requested(self, n): pass
    def endpoint_created(self, n): seen["created"].append(n)
    def endpoint_updated(self, n, c, r, d): seen["updated"].append([n, c, d])
    def endpoint_deleted(self, n): pass

server = aws.AwsServer(); server.start()
aws.HOOKS.sagemaker = Hooks()
aws.HOOKS.object_created = lambda acct, ev, b, k: seen["objects"].append([ev, b.name, k.name, k.version_id])
sm = aws.client("sagemaker", server.url, "us-east-1")
s3 = aws.client("s3", server.url, "us-east-1")
out = {}
job = dict(TrainingJobName="p-train-1", RoleArn="arn:aws:iam::123456789012:role/r",
           AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File",
                                   "MetricDefinitions": [{"Name": "test:f1", "Regex": "test:f1=([0-9.]+)"}]},
           OutputDataConfig={"S3OutputPath": "s3://bkt/models"}, ResourceConfig={"InstanceType": "ml.m5.large",
           "InstanceCount": 1, "VolumeSizeInGB": 10}, StoppingCondition={"MaxRuntimeInSeconds": 60})
sm.create_training_job(**job)
d = sm.describe_training_job(TrainingJobName="p-train-1")
out["status"] = d["TrainingJobStatus"]
out["metric_definitions"] = d["AlgorithmSpecification"]["MetricDefinitions"]
out["has_artifacts"] = "ModelArtifacts" in d
try:
    sm.create_training_job(**job); out["duplicate"] = "accepted"
except ClientError as e:
    out["duplicate"] = e.response["Error"]["Code"] + ": " + e.response["Error"]["Message"]
sm.stop_training_job(TrainingJobName="p-train-1")
out["after_stop"] = sm.describe_training_job(TrainingJobName="p-train-1")["TrainingJobStatus"]
sm.create_processing_job(ProcessingJobName="p-val-1", RoleArn="arn:aws:iam::123456789012:role/r",
    AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["validate"]}, Environment={"TARGET_COLUMN": "y"},
    ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}})
p = sm.describe_processing_job(ProcessingJobName="p-val-1")
out["processing"] = [p["ProcessingJobStatus"], p.get("Environment")]
sm.create_model(ModelName="m1", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://bkt/m.tar.gz"})
for c in ("c1", "c2"):
    sm.create_endpoint_config(EndpointConfigName=c, ProductionVariants=[{"VariantName": "AllTraffic",
        "ModelName": "m1", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
        DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 20, "DestinationS3Uri": "s3://bkt/dc",
                           "CaptureOptions": [{"CaptureMode": "Input"}]})
sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
described = sm.describe_endpoint(EndpointName="ep")
out["endpoint_after_create"] = described["EndpointStatus"]
out["capture_summary"] = described["DataCaptureConfig"]
try:
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2"); out["update_while_creating"] = "accepted"
except ClientError as e:
    out["update_while_creating"] = e.response["Error"]["Code"]
aws.sagemaker_backend("us-east-1").endpoints["ep"].endpoint_status = "InService"
sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2",
                   DeploymentConfig={"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}})
out["endpoint_after_update"] = sm.describe_endpoint(EndpointName="ep")["EndpointStatus"]
s3.create_bucket(Bucket="bkt")
s3.put_bucket_versioning(Bucket="bkt", VersioningConfiguration={"Status": "Enabled"})
s3.put_object(Bucket="bkt", Key="incoming/a b+c.csv", Body=b"x,y\n1,2\n")
s3.copy_object(Bucket="bkt", Key="quarantine/a.csv", CopySource={"Bucket": "bkt", "Key": "incoming/a b+c.csv"})
out["seen"] = seen
ev, bucket, key, version = seen["objects"][0]
out["event"] = s3_object_created(bucket, key, 8, '"abc"', version, "PutObject", "123456789012", "us-east-1", "01")
print(json.dumps(out, default=str))
server.stop()
'''


@functools.lru_cache(maxsize=1)
def run():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_moto_behaves_like_sagemaker_where_the_stack_needs_it():
    out = run()
    assert out["status"] == "InProgress"  # moto would say Completed without running anything
    assert out["metric_definitions"] == [{"Name": "test:f1", "Regex": "test:f1=([0-9.]+)"}]  # not moto's example
    assert out["has_artifacts"] is False
    assert out["duplicate"].startswith("ValidationException") and "must be unique" in out["duplicate"]
    assert out["after_stop"] == "Stopping"
    assert out["processing"] == ["InProgress", {"TARGET_COLUMN": "y"}]
    assert out["endpoint_after_create"] == "Creating"
    assert out["capture_summary"] == {"EnableCapture": True, "CaptureStatus": "Started",
                                      "CurrentSamplingPercentage": 20, "DestinationS3Uri": "s3://bkt/dc"}
    assert out["update_while_creating"] == "ValidationException"
    assert out["endpoint_after_update"] == "Updating"
    assert out["seen"]["created"] == ["p-train-1", "stop:p-train-1", "p-val-1", "ep"]
    assert out["seen"]["updated"][0][:2] == ["ep", "c2"]
    kinds = [o[0] for o in out["seen"]["objects"]]
    assert kinds == ["s3:ObjectCreated:Put", "s3:ObjectCreated:Copy"]


def test_s3_object_created_event_has_the_eventbridge_shape():
    event = run()["event"]
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["resources"] == ["arn:aws:s3:::bkt"]
    obj = event["detail"]["object"]
    assert obj["key"] == "incoming/a+b%2Bc.csv"  # URL-encoded as S3 encodes keys in its events
    assert obj["etag"] == "abc" and obj["size"] == 8 and obj["version-id"] not in (None, "null")
    assert event["detail"]["reason"] == "PutObject" and event["detail"]["bucket"] == {"name": "bkt"}
