"""Deterministic SageMaker job names and the request bodies of the three jobs (CONTRACTS.md)."""
from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from .settings import KNOWN_METRICS, Settings

if TYPE_CHECKING:
    from .tracking import TrackRequest
    from .training import Snapshot

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
HASH_CHARS = 20
JOB_KINDS = ("val", "train", "mon", "gt", "trk")


def identity_hash(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:HASH_CHARS]


def job_name(settings: Settings, kind: str, *identity: str) -> str:
    """`P-val-<hash>`, `P-train-<hash>`, `P-mon-<hash>`, `P-gt-<hash>`: the same event identity always gives the
    same name, so a redelivered event can never start a second job (SageMaker rejects the duplicate name)."""
    if kind not in JOB_KINDS:
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
    for kind in JOB_KINDS:
        if name.startswith(f"{settings.name_prefix}-{kind}-"):
            return kind
    return None


def report_prefix(settings: Settings, kind: str, job: str) -> str:
    """Key prefix (in the artifacts bucket) of a validation/monitor/ground-truth job's report."""
    folder = {"val": "validation", "mon": "monitor", "gt": "ground-truth", "trk": "tracking"}[kind]
    return f"reports/{folder}/{job}/"


def joined_key(settings: Settings, job: str) -> str:
    """The labeled rows a ground-truth job joined (artifacts bucket)."""
    return f"ground-truth/{job}/joined/labeled.csv"


S3_KEY_LIMIT_BYTES = 1024


def validation_input_key(settings: Settings, job: str, key: str) -> str:
    """Key (in the artifacts bucket) of the copy of one uploaded version that validation job `job` reads.
    Alone under the job's folder, so the job's S3Prefix input matches nothing else: not a newer upload of the
    same key, not another key that starts with this one (`a.csv` / `a.csv.bak`)."""
    return f"{settings.validation_input_prefix}{job}/{key}"


def labels_input_key(settings: Settings, job: str, key: str) -> str:
    """Key (in the artifacts bucket) of the copy of one uploaded labels file that ground-truth job `job` reads."""
    return f"{settings.labels_input_prefix}{job}/{key}"


def uploaded_key_of(settings: Settings, job: str, staged_uri: str) -> str | None:
    """The data-bucket key a job's staged input was copied from (None for any other URI)."""
    folder = settings.labels_input_prefix if kind_of(settings, job) == "gt" else settings.validation_input_prefix
    prefix = f"s3://{settings.artifacts_bucket}/{folder}{job}/"
    return staged_uri[len(prefix):] if staged_uri.startswith(prefix) and len(staged_uri) > len(prefix) else None


def model_tarball(settings: Settings, training_job: str) -> str:
    return f"s3://{settings.artifacts_bucket}/models/{training_job}/output/model.tar.gz"


def capture_prefix(settings: Settings) -> str:
    return f"s3://{settings.artifacts_bucket}/datacapture/{settings.endpoint_name}/"


def _processing(settings: Settings, name: str, entrypoint: str, inputs: list[dict], kind: str,
                environment: dict[str, str] | None = None, outputs: list[dict] | None = None, *,
                role_arn: str | None = None, network_isolation: bool = True) -> dict:
    return {
        "ProcessingJobName": name,
        "RoleArn": role_arn or settings.processing_role_arn,
        # These jobs parse files anyone with upload rights wrote: no network, and a role that cannot write models.
        "NetworkConfig": {"EnableNetworkIsolation": network_isolation},
        "AppSpecification": {"ImageUri": settings.image_uri, "ContainerEntrypoint": [entrypoint]},
        "Environment": {"TARGET_COLUMN": settings.target_column, "TASK": settings.task, **(environment or {})},
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
            }}, *(outputs or [])],
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


def validation_request(settings: Settings, name: str, data_uri: str, production_model_uri: str | None, *,
                       accept_shift: bool = False) -> dict:
    """The uploaded version goes in alone (`data_uri`: its staged copy, one file with its own name); the
    production model, when there is one, gives the expectation suite and the reference profile."""
    data = {"InputName": "data", "S3Input": {
        "S3Uri": data_uri, "LocalPath": "/opt/ml/processing/input/data",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}
    return _processing(settings, name, "validate", [data, *_model_input(production_model_uri)], "val", environment={
        "STRICT_COLUMNS": ",".join(settings.strict_columns), "ACCEPT_SHIFT": "1" if accept_shift else "0"})


def ground_truth_request(settings: Settings, name: str, labels_uri: str, production: dict) -> dict:
    """Join an uploaded labels file with the captured requests; the production model scores them."""
    labels = {"InputName": "labels", "S3Input": {
        "S3Uri": labels_uri, "LocalPath": "/opt/ml/processing/input/labels",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}
    capture = {"InputName": "capture", "S3Input": {
        "S3Uri": capture_prefix(settings), "LocalPath": "/opt/ml/processing/input/capture",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}
    joined = {"OutputName": "joined", "S3Output": {
        "S3Uri": f"s3://{settings.artifacts_bucket}/ground-truth/{name}/joined/",
        "LocalPath": "/opt/ml/processing/output/joined", "S3UploadMode": "EndOfJob",
    }}
    rule = settings.quality_gate.rule_for(production.get("task") or settings.task)
    return _processing(settings, name, "join-labels", [labels, capture, *_model_input(production.get("model_data_url"))],
                       "gt", environment={"GATE_METRIC": rule.metric, "MODEL_SHA256": production.get("model_sha256") or ""},
                       outputs=[joined])


def monitor_request(settings: Settings, name: str, production_model_uri: str | None) -> dict:
    capture = {"InputName": "capture", "S3Input": {
        "S3Uri": capture_prefix(settings), "LocalPath": "/opt/ml/processing/input/capture",
        "S3DataType": "S3Prefix", "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated",
    }}
    return _processing(settings, name, "monitor", [capture, *_model_input(production_model_uri)], "mon")


ENVIRONMENT_VALUE_LIMIT = 256  # SageMaker's limit on one processing job environment value


def tracking_request(settings: Settings, name: str, track: "TrackRequest") -> dict:
    """The `track` job: the model goes in as input, the decision as environment. It reaches MLflow over the
    network (unlike the jobs that parse uploads), as a role that can read models and talk to MLflow only."""
    environment = {
        "MLFLOW_TRACKING_URI": settings.tracking_uri, "MLFLOW_EXPERIMENT_NAME": settings.tracking_experiment,
        "TRACK_REGISTERED_MODEL": settings.registered_model_name, "TRACK_PHASE": track.phase,
        "TRACK_TRAINING_JOB": track.training_job, "TRACK_DECISION": track.decision,
        "TRACK_REASON": track.reason, "TRACK_IMAGE": settings.image_uri,
        "TRACK_MODEL_DATA_URL": track.model_data_url, "TRACK_PACKAGE_ARN": track.package_arn,
        "MODEL_SHA256": track.model_sha256, "TRACK_DATA_FINGERPRINT": track.data_fingerprint,
        "TRACK_DEPLOYED_AT": track.deployed_at,
    }
    environment = {k: v[:ENVIRONMENT_VALUE_LIMIT] for k, v in environment.items() if v}
    return _processing(settings, name, "track", _model_input(track.model_data_url), "trk", environment,
                       role_arn=settings.tracking_role_arn, network_isolation=False)


HYPERPARAMETER_VALUE_LIMIT = 2500  # SageMaker's limit on one hyperparameter value


def training_request(settings: Settings, name: str, snapshot: "Snapshot", champion: dict | None = None) -> dict:
    """The run reads exactly the window's files (a manifest), and gets the production model as `champion`."""
    hyperparameters = {
        "target_column": settings.target_column, "task": settings.task,
        "tuning_iterations": "0", "cv_folds": "5", "seed": "42",
        **settings.training_hyperparameters,
    }
    if settings.responsible_ml:
        hyperparameters["responsible_ml"] = settings.responsible_ml  # the facets whose bias the image measures
    inputs = snapshot.inputs
    if inputs:
        # Lineage for the model's metadata.json (the container hashes the files it reads either way); only
        # when it fits in one hyperparameter value.
        listed = json.dumps([{"uri": i["uri"], "version": i.get("version")} for i in inputs], separators=(",", ":"))
        if len(listed) <= HYPERPARAMETER_VALUE_LIMIT:
            hyperparameters["lineage_inputs"] = listed
    channels = [{"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "ManifestFile", "S3Uri": f"s3://{settings.artifacts_bucket}/{manifest_key(name)}",
        "S3DataDistributionType": "FullyReplicated",
    }}}]
    if champion and champion.get("model_data_url") and champion.get("model_sha256"):
        channels.append({"ChannelName": "champion", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": champion["model_data_url"], "S3DataDistributionType": "FullyReplicated",
        }}})
        hyperparameters["champion_sha256"] = champion["model_sha256"]
    resources: dict[str, Any] = {"InstanceType": settings.training_instance_type, "InstanceCount": 1,
                                 "VolumeSizeInGB": 30, "VolumeKmsKeyId": settings.kms_key_arn}
    if settings.training_keep_alive_seconds:
        resources["KeepAlivePeriodInSeconds"] = settings.training_keep_alive_seconds  # warm pool
    return {
        "TrainingJobName": name,
        "RoleArn": settings.training_role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": settings.image_uri, "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": f"test:{m}", "Regex": f"test:{m}=([-+0-9.eE]+)"} for m in KNOWN_METRICS],
        },
        "HyperParameters": hyperparameters,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{settings.artifacts_bucket}/models/", "KmsKeyId": settings.kms_key_arn},
        "ResourceConfig": resources,
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "EnableNetworkIsolation": True,
        "Environment": {"IMAGE_URI": settings.image_uri},
        "Tags": [{"Key": "pipeline", "Value": settings.name_prefix}],
    }


def manifest_key(job: str) -> str:
    """The training run's ManifestFile (artifacts bucket): the window's files, relative to validated/."""
    return f"models/{job}/manifest.json"


def test_metrics(final_metric_data: list[dict] | None) -> dict[str, float]:
    """`test:<m>` entries of DescribeTrainingJob.FinalMetricDataList as {m: value}."""
    metrics = {}
    for entry in final_metric_data or []:
        name = str(entry.get("MetricName", ""))
        if name.startswith("test:") and entry.get("Value") is not None:
            metrics[name[len("test:"):]] = float(entry["Value"])
    return metrics
