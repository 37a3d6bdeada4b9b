"""The SageMaker behaviours moto lacks (local.sagemaker_backend), installed per stack — in this process."""

import pytest
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/r"


class Work:
    def __init__(self):
        self.seen = []

    def job_created(self, kind, name):
        self.seen.append(("created", kind, name))

    def stop_requested(self, name):
        self.seen.append(("stop", name))

    def endpoint_created(self, name):
        self.seen.append(("endpoint", name))

    def endpoint_updated(self, name, config, deployment_config):
        self.seen.append(("update", name, config, deployment_config))

    def endpoint_deleted(self, name):
        self.seen.append(("deleted", name))


@pytest.fixture(scope="module")
def sm(moto):
    work = Work()
    moto.sagemaker.job_work = moto.sagemaker.endpoints_work = work
    client = moto.client("sagemaker")
    client.work = work
    return client


def training_job(name):
    return dict(TrainingJobName=name, RoleArn=ROLE, OutputDataConfig={"S3OutputPath": "s3://bkt/models"},
                AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File",
                                        "MetricDefinitions": [{"Name": "test:f1", "Regex": "test:f1=([0-9.]+)"}]},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
                StoppingCondition={"MaxRuntimeInSeconds": 60})


def test_a_training_job_starts_in_progress_with_its_own_metric_definitions_and_is_handed_over(sm):
    sm.create_training_job(**training_job("p-train-1"))
    described = sm.describe_training_job(TrainingJobName="p-train-1")
    assert described["TrainingJobStatus"] == "InProgress"  # moto alone: Completed, without running anything
    assert described["AlgorithmSpecification"]["MetricDefinitions"] == [{"Name": "test:f1", "Regex": "test:f1=([0-9.]+)"}]
    assert "ModelArtifacts" not in described
    assert ("created", "training", "p-train-1") in sm.work.seen


def test_a_duplicate_job_name_is_rejected_as_sagemaker_rejects_it(sm):
    sm.create_training_job(**training_job("p-train-dup"))
    with pytest.raises(ClientError) as error:
        sm.create_training_job(**training_job("p-train-dup"))
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "must be unique" in error.value.response["Error"]["Message"]


def test_stop_training_job_exists_and_is_handed_over(sm):
    sm.create_training_job(**training_job("p-train-stop"))
    sm.stop_training_job(TrainingJobName="p-train-stop")
    assert sm.describe_training_job(TrainingJobName="p-train-stop")["TrainingJobStatus"] == "Stopping"
    assert ("stop", "p-train-stop") in sm.work.seen
    with pytest.raises(ClientError, match="in status Stopping"):
        sm.stop_training_job(TrainingJobName="p-train-stop")


def test_a_processing_job_keeps_its_environment(sm):
    sm.create_processing_job(
        ProcessingJobName="p-val-1", RoleArn=ROLE, Environment={"TARGET_COLUMN": "y"},
        AppSpecification={"ImageUri": "img", "ContainerEntrypoint": ["validate"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}})
    described = sm.describe_processing_job(ProcessingJobName="p-val-1")
    assert [described["ProcessingJobStatus"], described["Environment"]] == ["InProgress", {"TARGET_COLUMN": "y"}]
    assert ("created", "processing", "p-val-1") in sm.work.seen


def test_endpoints_create_update_and_the_data_capture_summary(sm, moto):
    sm.create_model(ModelName="m1", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img", "ModelDataUrl": "s3://b/m"})
    for config in ("c1", "c2"):
        sm.create_endpoint_config(
            EndpointConfigName=config, ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m1",
                                                            "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 20, "DestinationS3Uri": "s3://b/dc",
                               "CaptureOptions": [{"CaptureMode": "Input"}]})
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
    described = sm.describe_endpoint(EndpointName="ep")
    assert described["EndpointStatus"] == "Creating"
    assert described["DataCaptureConfig"] == {"EnableCapture": True, "CaptureStatus": "Started",
                                              "CurrentSamplingPercentage": 20, "DestinationS3Uri": "s3://b/dc"}
    with pytest.raises(ClientError, match="in-progress"):
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2")
    moto.sagemaker.endpoint_serves("ep", "c1")  # what the endpoint manager does once the fleet answers /ping
    rollback = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}}
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=rollback)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Updating"
    assert ("update", "ep", "c2", rollback) in sm.work.seen
    moto.sagemaker.endpoint_not_deployed("ep", "did not pass the ping health check", is_create=False)
    described = sm.describe_endpoint(EndpointName="ep")
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", "c1")
    assert "ping" in described["FailureReason"]
    sm.delete_endpoint(EndpointName="ep")
    assert ("deleted", "ep") in sm.work.seen


def test_installed_per_stack_not_patched_per_process(moto):
    """moto's own classes are untouched: a backend made by moto itself has none of these behaviours."""
    from moto.sagemaker.models import SageMakerModelBackend, sagemaker_backends
    from moto.sagemaker.responses import SageMakerResponse

    assert sagemaker_backends["123456789012"]["us-east-1"] is moto.sagemaker
    assert not hasattr(SageMakerResponse, "update_endpoint")
    plain = SageMakerModelBackend("eu-west-1", "123456789012")
    job = plain.create_processing_job(
        app_specification={"ImageUri": "img"}, experiment_config=None, network_config=None, processing_inputs=[],
        processing_job_name="j", processing_output_config=None, role_arn=ROLE, tags=[], stopping_condition=None)
    assert job.processing_job_status == "Completed"


def test_updating_a_model_package_adds_metadata_and_keeps_the_rest_as_sagemaker_does(sm):
    sm.create_model_package_group(ModelPackageGroupName="merge-group")
    arn = sm.create_model_package(
        ModelPackageGroupName="merge-group", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/k/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        CustomerMetadataProperties={"training_job": "job-1", "model_sha256": "abc"})["ModelPackageArn"]
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"mlflow_run_id": "r1", "model_sha256": "def"})
    sm.update_model_package(ModelPackageArn=arn, CustomerMetadataPropertiesToRemove=["mlflow_run_id"])
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["CustomerMetadataProperties"] == {"training_job": "job-1", "model_sha256": "def"}
    assert described["ModelApprovalStatus"] == "Approved"


def test_a_model_packages_model_card_is_kept_and_described_as_sagemaker_does(sm):
    sm.create_model_package_group(ModelPackageGroupName="card-group")
    card = {"ModelCardContent": '{"intended_uses": {"intended_uses": "tests"}}', "ModelCardStatus": "PendingReview"}
    arn = sm.create_model_package(
        ModelPackageGroupName="card-group", ModelApprovalStatus="Approved", ModelCard=card,
        InferenceSpecification={"Containers": [{"Image": "img"}], "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    assert sm.describe_model_package(ModelPackageName=arn)["ModelCard"] == card
