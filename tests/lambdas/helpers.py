"""Constants, the moto account of the stack, and AWS-shaped events for the control-plane tests."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"
if str(LAMBDA_DIR) not in sys.path:  # `lambda` is a keyword: its modules are imported from the directory
    sys.path.insert(0, str(LAMBDA_DIR))

ACCOUNT = "123456789012"
REGION = "us-east-1"
P = "mlops-test"
DATA = f"{P}-data-{ACCOUNT}-{REGION}"
ARTIFACTS = f"{P}-artifacts-{ACCOUNT}-{REGION}"
TABLE = f"{P}-ledger"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0000-test"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/{P}-training"
PROCESSING_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{P}-processing"
MODEL_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{P}-model"

ENV = {
    "NAME_PREFIX": P,
    "LEDGER_TABLE": TABLE,
    "DATA_BUCKET": DATA,
    "ARTIFACTS_BUCKET": ARTIFACTS,
    "NOTIFY_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{P}-notify",
    "KMS_KEY_ARN": KMS,
    "IMAGE_URI": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{P}:latest",
    "TRAINING_ROLE_ARN": ROLE,
    "PROCESSING_ROLE_ARN": PROCESSING_ROLE,
    "MODEL_ROLE_ARN": MODEL_ROLE,
    "DEPLOY_BAKE_SECONDS": "300",
    "ENDPOINT_NAME": f"{P}-endpoint",
    "MODEL_PACKAGE_GROUP": f"{P}-models",
    "TARGET_COLUMN": "churn",
    "TASK": "classification",
    "ALLOWED_EXTENSIONS": ".csv,.parquet",
    "MAX_UPLOAD_BYTES": "1000000",
    "PROCESSING_INSTANCE_TYPE": "ml.m5.large",
    "TRAINING_INSTANCE_TYPE": "ml.m5.large",
    "SERVING_INSTANCE_TYPE": "ml.m5.large",
    "SERVING_MIN_INSTANCES": "1",
    "SERVING_MAX_INSTANCES": "3",
    "SCALING_TARGET_INVOCATIONS": "200",
    "QUALITY_GATE": json.dumps({"classification": {"metric": "roc_auc", "threshold": 0.7},
                                "regression": {"metric": "r2", "threshold": 0.3}, "tolerance": 0.01}),
    "DRIFT_THRESHOLD": "0.2",
    "RETRAIN_COOLDOWN_SECONDS": "3600",
    "ROLLBACK_ALARM_NAMES": f"{P}-5xx,{P}-latency",
    "DATA_CAPTURE_PERCENT": "50",
    "METRIC_NAMESPACE": "MLOpsTest",
    "MAX_RUNTIME_SECONDS": "3600",
    "TRAINING_HYPERPARAMETERS": json.dumps({"n_estimators": "50"}),
}


class Aws:
    """The stack's resources in moto, plus helpers to look at what the control plane did."""

    def __init__(self):
        import boto3

        self.s3 = boto3.client("s3", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sm = boto3.client("sagemaker", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.cloudwatch = boto3.client("cloudwatch", region_name=REGION)
        for bucket in (DATA, ARTIFACTS):
            self.s3.create_bucket(Bucket=bucket)
            self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        self.ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                    {"AttributeName": "sk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                         {"AttributeName": "sk", "KeyType": "RANGE"}])
        topic = self.sns.create_topic(Name=f"{P}-notify")["TopicArn"]
        assert topic == ENV["NOTIFY_TOPIC_ARN"]
        self.queue = self.sqs.create_queue(QueueName="notifications")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        self._messages: list[dict] = []
        self.training_metrics: dict[str, dict[str, float]] = {}

    # -- observation --------------------------------------------------------------------------------
    def notifications(self) -> list[dict]:
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return list(self._messages)
            for message in got:
                body = json.loads(message["Body"])
                self._messages.append({"subject": body.get("Subject"), "message": body.get("Message")})
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])

    def decisions(self, decision: str | None = None) -> list[dict]:
        from mlops_control.ledger import Ledger

        records = Ledger(TABLE, self.ddb).scan_decisions()
        return [r for r in records if decision is None or r["decision"] == decision]

    def state(self, sk: str) -> dict | None:
        from mlops_control.ledger import Ledger

        return Ledger(TABLE, self.ddb).get("pipeline", sk)

    def processing_jobs(self) -> list[str]:
        return [j["ProcessingJobName"] for j in self.sm.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]]

    def training_jobs(self) -> list[str]:
        return [j["TrainingJobName"] for j in self.sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]]

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(o["Key"] for o in self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))

    # -- inputs -------------------------------------------------------------------------------------
    def upload(self, key: str, body: bytes = b"age,plan,churn\n30,a,no\n41,b,yes\n") -> dict:
        response = self.s3.put_object(Bucket=DATA, Key=key, Body=body)
        return {"key": key, "size": len(body), "etag": response["ETag"].strip('"'), "version": response.get("VersionId")}

    def put_report(self, kind: str, job: str, report: dict, html: bool = True) -> None:
        folder = {"val": "validation", "mon": "monitor", "gt": "ground-truth"}[kind]
        self.s3.put_object(Bucket=ARTIFACTS, Key=f"reports/{folder}/{job}/report.json", Body=json.dumps(report).encode())
        if html:
            self.s3.put_object(Bucket=ARTIFACTS, Key=f"reports/{folder}/{job}/report.html", Body=b"<html>report</html>")

    def inject_training_metrics(self, client: Any) -> None:
        """moto reports no FinalMetricDataList; fill it the way SageMaker does from the container's
        `test:<m>=<v>` lines, per job, in the parsed DescribeTrainingJob response."""

        def add_metrics(parsed, **_):
            metrics = self.training_metrics.get(parsed.get("TrainingJobName"))
            if metrics is not None:
                parsed["FinalMetricDataList"] = [{"MetricName": f"test:{k}", "Value": v} for k, v in metrics.items()]
            failure = self.training_metrics.get(("failed", parsed.get("TrainingJobName")))
            if failure:
                parsed["TrainingJobStatus"] = "Failed"
                parsed["FailureReason"] = failure

        client.meta.events.register("after-call.sagemaker.DescribeTrainingJob", add_metrics)

    def write_model_artifacts(self, client: Any) -> None:
        """moto runs no training: give every training job the model.tar.gz a real one leaves, so the deployer
        can pin it (S3 version + digest) as it does on AWS."""

        def write(params, **_):
            self.put_model(params["TrainingJobName"])

        client.meta.events.register("provide-client-params.sagemaker.CreateTrainingJob", write)

    def put_model(self, job: str, files: dict[str, bytes] | None = None) -> str:
        key = f"models/{job}/output/model.tar.gz"
        self.s3.put_object(Bucket=ARTIFACTS, Key=key, Body=model_tarball(files or {
            "model.joblib": f"model of {job}".encode(), "metadata.json": b"{}"}))
        return f"s3://{ARTIFACTS}/{key}"


def model_tarball(files: dict[str, bytes]) -> bytes:
    """A model.tar.gz as SageMaker packs /opt/ml/model (members named ./<path>)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(f"./{path}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def request_with_new_data(aws: "Aws", settings: Any, ledger: Any, name: str, why: str | None = None, **kwargs: Any):
    """A training request as the control plane makes one: after a new file was validated (the same data twice
    would not train again)."""
    from mlops_control.training import request_training

    aws.upload(f"validated/{name}.csv")
    return request_training(settings, ledger, f"file:{name}", why or name, **kwargs)


# -- event shapes (as AWS sends them) ------------------------------------------------------------------
def eventbridge_object_created(key: str, *, size: int | None = 10, etag: str = "abc", version: str | None = "v1",
                               bucket: str = DATA, encoded_key: str | None = None,
                               sequencer: str = "00617F08299329D189") -> dict:
    obj: dict[str, Any] = {"key": encoded_key if encoded_key is not None else key, "etag": etag, "sequencer": sequencer}
    if size is not None:
        obj["size"] = size
    if version:
        obj["version-id"] = version
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": ACCOUNT, "time": "2026-11-21T10:00:00Z", "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "request-id": "N4N7GDK58NMKJ12R",
                   "requester": ACCOUNT, "source-ip-address": "1.2.3.4", "reason": "PutObject"},
    }


def s3_notification(encoded_key: str, *, size: int = 10, etag: str = "abc", version: str | None = "v1",
                    bucket: str = DATA) -> dict:
    obj: dict[str, Any] = {"key": encoded_key, "size": size, "eTag": etag, "sequencer": "0A1B2C3D4E5F678901"}
    if version:
        obj["versionId"] = version
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION, "eventTime": "2026-11-21T10:00:00.000Z",
        "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "incoming",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }]}


def job_state_change(kind: str, name: str, status: str, failure: str | None = None) -> dict:
    prefix = "ProcessingJob" if kind == "processing" else "TrainingJob"
    detail = {f"{prefix}Name": name, f"{prefix}Status": status,
              f"{prefix}Arn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}-job/{name}"}
    if failure:
        detail["FailureReason"] = failure
    return {"version": "0", "id": "8c4ec9a6-2e3a-4a3d-9d8e-1b2f0e6e1c11",
            "detail-type": f"SageMaker {kind.title()} Job State Change", "source": "aws.sagemaker",
            "account": ACCOUNT, "time": "2026-11-21T10:05:00Z", "region": REGION,
            "resources": [detail[f"{prefix}Arn"]], "detail": detail}


def endpoint_state_change(name: str, status: str = "IN_SERVICE", config: str | None = None) -> dict:
    detail = {"EndpointName": name, "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}",
              "EndpointStatus": status, "CreationTime": 1700000000000, "LastModifiedTime": 1700000300000}
    if config:
        detail["EndpointConfigName"] = config
    return {"version": "0", "id": "d2b1e4a6-0000-4c7b-9a77-5b7f2a3c9e01", "detail-type": "SageMaker Endpoint State Change",
            "source": "aws.sagemaker", "account": ACCOUNT, "time": "2026-11-21T10:20:00Z", "region": REGION,
            "resources": [detail["EndpointArn"]], "detail": detail}


def alarm_action(name: str = f"{P}-drift", state: str = "ALARM", at: str = "2026-11-21T12:36:15.490+0000") -> dict:
    return {
        "source": "aws.cloudwatch", "alarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{name}",
        "accountId": ACCOUNT, "time": "2026-11-21T12:36:15.490+0000", "region": REGION,
        "alarmData": {
            "alarmName": name,
            "state": {"value": state, "reason": "Threshold Crossed: 1 datapoint [0.41] was greater than 0.2",
                      "timestamp": at},
            "previousState": {"value": "OK", "reason": "ok", "timestamp": "2026-11-21T11:00:00.000+0000"},
            "configuration": {"description": "drift", "metrics": [{"id": "m1", "metricStat": {
                "metric": {"namespace": "MLOpsTest", "name": "DataDrift", "dimensions": {"Pipeline": P}},
                "period": 300, "stat": "Maximum"}, "returnData": True}]},
        },
    }


def scheduled_event(time: str = "2026-11-21T12:00:00Z") -> dict:
    import uuid

    tick_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"tick:{time}"))  # one id per tick, as EventBridge gives
    return {"version": "0", "id": tick_id, "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT, "time": time, "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{P}-monitor"], "detail": {}}


class AtomicDynamoDB:
    """DynamoDB guarantees that a conditional write is checked and applied atomically; moto's in-process
    backend does not lock, so concurrent threads could both pass a condition. This proxy serialises writes
    (what DynamoDB does per item) so that race tests exercise our conditions, not moto's missing lock."""

    def __init__(self, client: Any):
        import threading

        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in ("put_item", "update_item", "delete_item", "transact_write_items"):
            return attribute

        def locked(**kwargs: Any) -> Any:
            with self._lock:
                return attribute(**kwargs)

        return locked


class SageMakerWithUpdateEndpoint:
    """moto's SageMaker plus UpdateEndpoint, which moto lacks, and processing jobs' Environment, which it drops. Each request is checked against the real API
    model by botocore's Stubber (parameter validation included), then the endpoint in moto goes to Updating.
    `settle()` ends the update the way SageMaker does: on the new config, or rolled back to the old one."""

    def __init__(self, client: Any):
        import boto3

        self._client = client
        self._stubbed = boto3.client("sagemaker", region_name=REGION)
        self.updates: list[dict] = []
        self._environments: dict[str, dict] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def create_processing_job(self, **kwargs: Any) -> dict:
        response = self._client.create_processing_job(**kwargs)
        self._environments[kwargs["ProcessingJobName"]] = dict(kwargs.get("Environment") or {})
        return response

    def describe_processing_job(self, **kwargs: Any) -> dict:
        """moto drops a processing job's Environment; SageMaker returns it."""
        response = self._client.describe_processing_job(**kwargs)
        environment = self._environments.get(kwargs["ProcessingJobName"])
        return {**response, "Environment": environment} if environment else response

    def _endpoint(self, name: str) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][REGION].endpoints[name]

    def update_endpoint(self, **kwargs: Any) -> dict:
        from botocore.stub import Stubber

        endpoint = self._endpoint(kwargs["EndpointName"])
        stubber = Stubber(self._stubbed)
        response = {"EndpointArn": endpoint.arn}
        stubber.add_response("update_endpoint", response, kwargs)
        with stubber:
            self._stubbed.update_endpoint(**kwargs)
        self.updates.append(kwargs)
        endpoint.endpoint_status = "Updating"
        return response

    def settle(self, endpoint_name: str, *, rolled_back: bool = False, failure: str | None = None) -> None:
        endpoint = self._endpoint(endpoint_name)
        endpoint.endpoint_status = "InService"
        if rolled_back:
            endpoint.failure_reason = failure or "Alarm mlops-test-5xx went into ALARM during baking; rolled back"
        else:
            endpoint.endpoint_config_name = self.updates[-1]["EndpointConfigName"]


def capture_calls(client: Any, operation: str) -> list[dict]:
    """The parameters of every `operation` call made through `client` (for what moto does not store)."""
    calls: list[dict] = []

    def remember(params, **_):
        calls.append(dict(params))

    client.meta.events.register(f"provide-client-params.{client.meta.service_model.endpoint_prefix}.{operation}", remember)
    return calls


def handlers_sagemaker(aws: Aws) -> SageMakerWithUpdateEndpoint:
    """moto's SageMaker as the handlers use it: UpdateEndpoint, training metrics and model artifacts, one validated
    file."""
    from mlops_control import clients

    proxy = SageMakerWithUpdateEndpoint(aws.sm)
    aws.inject_training_metrics(aws.sm)
    aws.write_model_artifacts(aws.sm)
    clients.override("sagemaker", proxy)
    aws.upload("validated/base.csv")
    return proxy
