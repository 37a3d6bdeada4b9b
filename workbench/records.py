"""What the deployed system recorded about a training run, read back: where the stack is, which training job made
a model, that job's hyperparameters, image and champion, and its training data at the exact S3 object versions.

A data scientist works against either stack: the embedded one (`make up`: `.local/outputs.json` names its AWS
endpoint) or the one in an AWS account (`make deploy` writes `cdk-outputs.json`; the default credentials apply).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

EMBEDDED_OUTPUTS = Path(".local/outputs.json")
DEPLOYED_OUTPUTS = Path("cdk-outputs.json")
# Hyperparameters that say where a run's inputs came from, not how it fits: a new run gets its own.
PROVENANCE_HYPERPARAMETERS = ("lineage_inputs", "champion_sha256")
PACKAGE_ARN = re.compile(r"arn:aws[a-z-]*:sagemaker:[^:]*:\d{12}:model-package/[^/]+/\d+")


class RecordError(Exception):
    """What was asked for is not on record (no such job, package or output): the message says what is missing."""


@dataclass(frozen=True)
class Stack:
    """The outputs of one deployed (or embedded) stack, flattened, and how to reach its AWS APIs."""

    outputs: dict[str, str]
    source: Path

    @classmethod
    def load(cls, path: Path | None = None) -> "Stack":
        candidates = [path] if path else [EMBEDDED_OUTPUTS, DEPLOYED_OUTPUTS]
        for candidate in candidates:
            if candidate is not None and candidate.is_file():
                blocks = json.loads(candidate.read_text())
                flat = {k: str(v) for block in blocks.values() if isinstance(block, dict) for k, v in block.items()}
                return cls(flat, candidate)
        raise RecordError(f"no stack outputs in {' or '.join(map(str, candidates))}: start the embedded stack "
                          "(make up) or deploy one (make deploy writes cdk-outputs.json), or pass --outputs")

    @property
    def embedded(self) -> bool:
        return "AwsEndpointUrl" in self.outputs

    def output(self, key: str) -> str:
        if key not in self.outputs:
            raise RecordError(f"{self.source} has no output {key}")
        return self.outputs[key]

    def client(self, service: str):
        if not self.embedded:
            return boto3.client(service, config=Config(retries={"mode": "standard"}))
        session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                        region_name=self.outputs.get("Region", "us-east-1"))
        return session.client(service, endpoint_url=self.outputs["AwsEndpointUrl"],
                              config=Config(retries={"mode": "standard"}))


@dataclass(frozen=True)
class InputFile:
    uri: str
    version: str | None
    relative: str  # its path under the training channel, as SageMaker lays out a ManifestFile channel


@dataclass(frozen=True)
class TrainingRecord:
    """One training job as recorded: enough to run it again."""

    job: str
    image: str
    hyperparameters: dict[str, str]
    inputs: list[InputFile]
    fingerprint: str | None
    model_data_url: str | None
    champion_url: str | None = None
    package_arn: str | None = None

    def fitting_hyperparameters(self) -> dict[str, str]:
        """The hyperparameters that decide the fit: the recorded ones without their provenance."""
        return {k: v for k, v in self.hyperparameters.items() if k not in PROVENANCE_HYPERPARAMETERS}


def parse_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise RecordError(f"{uri!r} is not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def _json_object(s3, uri: str) -> Any:
    bucket, key = parse_s3(uri)
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        raise RecordError(f"{uri} does not exist") from None


def job_of(stack: Stack, model: str) -> tuple[str, str | None]:
    """(training job, package ARN or None) for a model package ARN, a package version number of the stack's
    group, or a training job name."""
    sm = stack.client("sagemaker")
    arn = None
    if PACKAGE_ARN.fullmatch(model):
        arn = model
    elif model.isdigit():
        group = _package_group(stack)
        packages = sm.list_model_packages(ModelPackageGroupName=group, MaxResults=100)["ModelPackageSummaryList"]
        arn = next((p["ModelPackageArn"] for p in packages if str(p.get("ModelPackageVersion")) == model), None)
        if arn is None:
            raise RecordError(f"model package group {group} has no version {model}")
    if arn is None:
        return model, None
    try:
        described = sm.describe_model_package(ModelPackageName=arn)
    except sm.exceptions.ClientError as exc:
        raise RecordError(f"no model package {arn}: {exc}") from None
    job = (described.get("CustomerMetadataProperties") or {}).get("training_job")
    if not job:
        raise RecordError(f"{arn} records no training_job (CustomerMetadataProperties)")
    return job, arn


def _package_group(stack: Stack) -> str:
    if "ModelPackageGroupName" in stack.outputs:
        return stack.outputs["ModelPackageGroupName"]
    sm = stack.client("sagemaker")
    groups = sm.list_model_package_groups(MaxResults=100)["ModelPackageGroupSummaryList"]
    if len(groups) != 1:
        raise RecordError("pass the model package ARN: the account has "
                          f"{len(groups)} model package groups, not one")
    return groups[0]["ModelPackageGroupName"]


def training_record(stack: Stack, job: str, package_arn: str | None = None) -> TrainingRecord:
    """The job's description, and its inputs.json (the exact S3 object versions it read) next to its model."""
    sm, s3 = stack.client("sagemaker"), stack.client("s3")
    try:
        described = sm.describe_training_job(TrainingJobName=job)
    except sm.exceptions.ClientError as exc:
        raise RecordError(f"no training job {job}: {exc}") from None
    artifacts = stack.output("ArtifactsBucketName")
    snapshot = _json_object(s3, f"s3://{artifacts}/models/{job}/inputs.json")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in described.get("InputDataConfig", [])
                if "S3DataSource" in c.get("DataSource", {})}
    train = channels.get("train")
    if train is None:
        raise RecordError(f"training job {job} has no S3 channel 'train'")
    prefix = None
    if train.get("S3DataType") == "ManifestFile":
        prefix = next((e["prefix"] for e in _json_object(s3, train["S3Uri"]) if isinstance(e, dict)), None)
    inputs = []
    for entry in snapshot.get("inputs") or []:
        uri = entry.get("uri") or f"s3://{entry['bucket']}/{entry['key']}"
        relative = uri[len(prefix):] if prefix and uri.startswith(prefix) else uri.rsplit("/", 1)[-1]
        inputs.append(InputFile(uri, entry.get("version"), relative))
    if not inputs:
        raise RecordError(f"s3://{artifacts}/models/{job}/inputs.json lists no input files")
    return TrainingRecord(
        job=job, image=described["AlgorithmSpecification"]["TrainingImage"],
        hyperparameters=dict(described.get("HyperParameters") or {}), inputs=inputs,
        fingerprint=snapshot.get("fingerprint"),
        model_data_url=(described.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        champion_url=(channels.get("champion") or {}).get("S3Uri"), package_arn=package_arn)


def latest_job(stack: Stack) -> str:
    """The newest completed training job of the stack."""
    sm = stack.client("sagemaker")
    jobs = sm.list_training_jobs(StatusEquals="Completed", SortBy="CreationTime", SortOrder="Descending",
                                 MaxResults=100)["TrainingJobSummaries"]
    if not jobs:
        raise RecordError("the stack has no completed training job yet: upload data first")
    return max(jobs, key=lambda j: j["CreationTime"])["TrainingJobName"]


def download_inputs(stack: Stack, inputs: list[InputFile], into: Path) -> list[Path]:
    """Each file at its recorded version (never the newest: the object may have been overwritten since)."""
    s3 = stack.client("s3")
    written = []
    for item in inputs:
        bucket, key = parse_s3(item.uri)
        target = into / item.relative
        if not target.resolve().is_relative_to(into.resolve()):
            raise RecordError(f"{item.uri} would be written outside {into}")
        target.parent.mkdir(parents=True, exist_ok=True)
        extra = {"VersionId": item.version} if item.version else {}
        body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        target.write_bytes(body)
        written.append(target)
    return written


def download_object(stack: Stack, uri: str, into: Path) -> Path:
    bucket, key = parse_s3(uri)
    into.mkdir(parents=True, exist_ok=True)
    target = into / key.rsplit("/", 1)[-1]
    stack.client("s3").download_file(bucket, key, str(target))
    return target
