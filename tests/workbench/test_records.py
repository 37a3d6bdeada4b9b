"""workbench.records against moto: a training job read back as recorded, its data at the recorded S3 versions."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from workbench.records import RecordError, Stack, download_inputs, job_of, training_record

ROLE = "arn:aws:iam::123456789012:role/training"


@pytest.fixture()
def stack(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("data", "artifacts"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        outputs = tmp_path / "cdk-outputs.json"
        outputs.write_text(json.dumps({"storage": {"ArtifactsBucketName": "artifacts", "DataBucketName": "data"},
                                       "pipeline": {"ModelPackageGroupName": "models"}}))
        yield Stack.load(outputs)


def _record_job(s3, sm, job: str, files: dict[str, bytes]) -> dict[str, str]:
    versions = {key: s3.put_object(Bucket="data", Key=key, Body=body)["VersionId"] for key, body in files.items()}
    inputs = [{"key": k, "uri": f"s3://data/{k}", "version": v} for k, v in versions.items()]
    s3.put_object(Bucket="artifacts", Key=f"models/{job}/inputs.json",
                  Body=json.dumps({"training_job": job, "inputs": inputs, "fingerprint": "fp-1"}))
    s3.put_object(Bucket="artifacts", Key=f"manifests/{job}.json",
                  Body=json.dumps([{"prefix": "s3://data/validated/"}, *(k[len("validated/"):] for k in files)]))
    sm.create_training_job(
        TrainingJobName=job, RoleArn=ROLE, HyperParameters={"target_column": "churn", "seed": "42",
                                                            "lineage_inputs": "[]"},
        AlgorithmSpecification={"TrainingImage": "image:1", "TrainingInputMode": "File"},
        InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "ManifestFile", "S3Uri": f"s3://artifacts/manifests/{job}.json",
            "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": "s3://artifacts/models/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60})
    return versions


def test_a_job_is_read_back_with_its_files_at_the_versions_it_read_even_after_they_were_overwritten(stack, tmp_path):
    s3, sm = stack.client("s3"), stack.client("sagemaker")
    _record_job(s3, sm, "job-1", {"validated/2026/a.csv": b"x,churn\n1,yes\n", "validated/b.csv": b"x,churn\n2,no\n"})
    s3.put_object(Bucket="data", Key="validated/2026/a.csv", Body=b"x,churn\n99,no\n")  # overwritten since

    record = training_record(stack, "job-1")
    assert record.image == "image:1" and record.fingerprint == "fp-1"
    assert sorted(i.relative for i in record.inputs) == ["2026/a.csv", "b.csv"]  # the channel's layout
    assert "lineage_inputs" not in record.fitting_hyperparameters()
    written = download_inputs(stack, record.inputs, tmp_path / "train")
    assert (tmp_path / "train" / "2026" / "a.csv").read_bytes() == b"x,churn\n1,yes\n"
    assert len(written) == 2


def test_a_package_leads_to_its_training_job_and_what_is_not_on_record_is_named(stack):
    sm = stack.client("sagemaker")
    sm.create_model_package_group(ModelPackageGroupName="models")
    arn = sm.create_model_package(
        ModelPackageGroupName="models", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "image:1"}], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={"training_job": "job-7"})["ModelPackageArn"]
    assert job_of(stack, arn) == ("job-7", arn)
    assert job_of(stack, "1") == ("job-7", arn)
    assert job_of(stack, "job-3") == ("job-3", None)
    with pytest.raises(RecordError, match="has no version 5"):
        job_of(stack, "5")
    with pytest.raises(RecordError, match="no training job job-3"):
        training_record(stack, "job-3")


def test_no_outputs_file_says_how_to_get_one(tmp_path):
    with pytest.raises(RecordError, match="make up"):
        Stack.load(tmp_path / "missing.json")
