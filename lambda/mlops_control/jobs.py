"""Deterministic SageMaker job names and the request bodies of the three jobs (CONTRACTS.md)."""
from __future__ import annotations

import hashlib
import json
import re

from .settings import KNOWN_METRICS, Settings

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
HASH_CHARS = 20


def identity_hash(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:HASH_CHARS]


def job_name(settings: Settings, kind: str, *identity: str) -> str:
    """`P-val-<hash>`, `P-train-<hash>`, `P-mon-<hash>`: the same event identity always gives the same name,
    so a redelivered event can never start a second job (SageMaker rejects the duplicate name)."""
    if kind not in ("val", "train", "mon"):
        raise ValueError(f"unknown job kind {kind!r}")
    name = f"{settings.name_prefix}-{kind}-{identity_hash(*identity)}"
    if not _NAME.match(name):
        raise ValueError(f"job name {name!r} is not a valid SageMaker name (<= 63 chars, [a-zA-Z0-9-])")
    return name


def suffix_of(settings: Settings, training_job: str) -> str:
    prefix = f"{settings.name_prefix}-train-"
    if not training_job.startswith(prefix):
        raise ValueError(f"{training_job!r} is not a training job of this pipeline ({prefix}*)")
    return training_job[len(prefix):]


def model_name(settings: Settings, training_job: str) -> str:
    return f"{settings.name_prefix}-model-{suffix_of(settings, training_job)}"


def config_name(settings: Settings, training_job: str) -> str:
    return f"{settings.name_prefix}-cfg-{suffix_of(settings, training_job)}"


def kind_of(settings: Settings, name: str) -> str | None:
    for kind in ("val", "train", "mon"):
        if name.startswith(f"{settings.name_prefix}-{kind}-"):
            return kind
    return None


def report_prefix(settings: Settings, kind: str, job: str) -> str:
    """Key prefix (in the artifacts bucket) of a validation/monitor job's report."""
    folder = {"val": "validation", "mon": "monitor"}[kind]
    return f"reports/{folder}/{job}/"


S3_KEY_LIMIT_BYTES = 1024


def validation_input_key(settings: Settings, job: str, key: str) -> str:
    """Key (in the artifacts bucket) of the copy of one uploaded version that validation job `job` reads.
    Alone under the job's folder, so the job's S3Prefix input matches nothing else: not a newer upload of the
    same key, not another key that starts with this one (`a.csv` / `a.csv.bak`)."""
    return f"{settings.validation_input_prefix}{job}/{key}"


def uploaded_key_of(settings: Settings, job: str, staged_uri: str) -> str | None:
    """The data-bucket key a validation job's staged input was copied from (None for any other URI)."""
    prefix = f"s3://{settings.artifacts_bucket}/{settings.validation_input_prefix}{job}/"
    return staged_uri[len(prefix):] if staged_uri.startswith(prefix) and len(staged_uri) > len(prefix) else None


def model_tarball(settings: Settings, training_job: str) -> str:
    return f"s3://{settings.artifacts_bucket}/models/{training_job}/output/model.tar.gz"


def capture_prefix(settings: Settings) -> str:
    return f"s3://{settings.artifacts_bucket}/datacapture/{settings.endpoint_name}/"


def _processing(settings: Settings, name: str, entrypoint: str, inputs: list[dict], kind: str) -> dict:
    return {
        "ProcessingJobName": name,
        "RoleArn": settings.processing_role_arn,
        # These jobs parse files anyone with upload rights wrote: no network, and a role that cannot write models.
        "NetworkConfig": {"EnableNetworkIsolation": True},
        "AppSpecification": {"ImageUri": settings.image_uri, "ContainerEntrypoint": [entrypoint]},
        "Environment": {"TARGET_COLUMN": settings.target_column, "TASK": settings.task},
        "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": 1, "InstanceType": settings.processing_instance_type, "VolumeSizeInGB": 30,
            "VolumeKmsKeyId": settings.kms_key_arn,
        }},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "KmsKeyId": settings.kms_key_arn,
            "Outputs": [{"OutputName": "report", "S3Output": {
                "S3Uri": f"s3://{settings.artifacts_bucket}/{report_prefix(settings, kind, name)}",
                "LocalPath": "/opt/ml/processing/output/report", "S3UploadMode": "EndOfJob",
            }}],
        },
        "Tags": [{"Key": "pipeline", "Value": settings.name_prefix}],
    }


def _model_input(production_model_uri: str | None) -> list[dict]:
    if not production_model_uri:
        return []
    return [{"InputName": "model", "S3Input": {
        "S3Uri": production_model_uri, "LocalPath": "/opt/ml/processing/input/model",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}]


def validation_request(settings: Settings, name: str, data_uri: str, production_model_uri: str | None) -> dict:
    """The uploaded version goes in alone (`data_uri`: its staged copy, one file with its own name); the
    production model, when there is one, gives the expectation suite and the reference profile."""
    data = {"InputName": "data", "S3Input": {
        "S3Uri": data_uri, "LocalPath": "/opt/ml/processing/input/data",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}
    return _processing(settings, name, "validate", [data, *_model_input(production_model_uri)], "val")


def monitor_request(settings: Settings, name: str, production_model_uri: str | None) -> dict:
    capture = {"InputName": "capture", "S3Input": {
        "S3Uri": capture_prefix(settings), "LocalPath": "/opt/ml/processing/input/capture",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}
    return _processing(settings, name, "monitor", [capture, *_model_input(production_model_uri)], "mon")


HYPERPARAMETER_VALUE_LIMIT = 2500  # SageMaker's limit on one hyperparameter value


def training_request(settings: Settings, name: str, inputs: list[dict] | None = None) -> dict:
    hyperparameters = {
        "target_column": settings.target_column, "task": settings.task,
        "tuning_iterations": "0", "cv_folds": "5", "seed": "42",
        **settings.training_hyperparameters,
    }
    if inputs:
        # Lineage for the model's metadata.json (the container hashes the files it reads either way); only
        # when it fits in one hyperparameter value.
        listed = json.dumps([{"uri": i["uri"], "version": i.get("version")} for i in inputs], separators=(",", ":"))
        if len(listed) <= HYPERPARAMETER_VALUE_LIMIT:
            hyperparameters["lineage_inputs"] = listed
    return {
        "TrainingJobName": name,
        "RoleArn": settings.training_role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": settings.image_uri, "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": f"test:{m}", "Regex": f"test:{m}=([-+0-9.eE]+)"} for m in KNOWN_METRICS],
        },
        "HyperParameters": hyperparameters,
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{settings.data_bucket}/{settings.validated_prefix}",
            "S3DataDistributionType": "FullyReplicated",
        }}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{settings.artifacts_bucket}/models/", "KmsKeyId": settings.kms_key_arn},
        "ResourceConfig": {"InstanceType": settings.training_instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30,
                           "VolumeKmsKeyId": settings.kms_key_arn},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "EnableNetworkIsolation": True,
        "Environment": {"IMAGE_URI": settings.image_uri},
        "Tags": [{"Key": "pipeline", "Value": settings.name_prefix}],
    }


def test_metrics(final_metric_data: list[dict] | None) -> dict[str, float]:
    """`test:<m>` entries of DescribeTrainingJob.FinalMetricDataList as {m: value}."""
    metrics = {}
    for entry in final_metric_data or []:
        name = str(entry.get("MetricName", ""))
        if name.startswith("test:") and entry.get("Value") is not None:
            metrics[name[len("test:"):]] = float(entry["Value"])
    return metrics
