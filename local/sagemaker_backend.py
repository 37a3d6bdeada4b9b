"""The SageMaker behaviours moto lacks, as a subclass of moto's SageMaker backend installed per stack.

moto stores SageMaker metadata only: jobs are born ``Completed``, endpoints ``InService``, a duplicate job
name silently overwrites the job, ``UpdateEndpoint`` and ``StopTrainingJob`` do not exist, a processing job's
``Environment`` is dropped, training ``MetricDefinitions`` are replaced by moto's example and
``DescribeEndpoint``'s ``DataCaptureConfig`` has the endpoint config's input shape. ``LocalSageMakerBackend``
(a ``SageMakerModelBackend``) starts jobs ``InProgress`` and endpoints ``Creating``/``Updating``, rejects
duplicate names as SageMaker does, and hands the work to the stack's job runner and endpoint manager (its
``job_work`` and ``endpoints_work``); ``LocalSageMakerResponse`` serves the two missing operations and passes
``Environment`` through (DescribeProcessingJob returns it, as SageMaker does). The stack puts one backend instance in moto's registry for its account and region
(:func:`local.aws.install_backend`) and routes its moto server's SageMaker requests to the response subclass
(:class:`local.aws.AwsServer`): nothing is patched, another moto in the same process is unaffected.

Relies on moto 5.2's names: ``SageMakerModelBackend`` and its methods' signatures, ``SageMakerResponse`` and
``_get_param``/``sagemaker_backend`` (the API every moto response class is written with), ``FakeEndpoint`` and the
job objects' attributes, ``ValidationError``; and, through :class:`local.aws.MotoUrls`, on ``_url_module``, the one
private member overridden (moto has no public way to say where a backend's routes are). A moto upgrade that
changes these fails ``tests/local/test_sagemaker_backend.py``.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, FakeTrainingJob, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from .aws import MotoUrls


class JobWork(Protocol):
    """Who runs the jobs the API creates (the stack's :class:`local.jobs.JobRunner`)."""

    def job_created(self, kind: str, name: str) -> None: ...  # kind: "training" | "processing"

    def stop_requested(self, name: str) -> None: ...


class EndpointWork(Protocol):
    """Who deploys the endpoints the API creates (the stack's :class:`local.endpoints.EndpointManager`)."""

    def endpoint_created(self, name: str) -> None: ...

    def endpoint_updated(self, name: str, new_config: str, deployment_config: dict[str, Any] | None) -> None: ...

    def endpoint_deleted(self, name: str) -> None: ...


def data_capture_summary(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """DescribeEndpoint's ``DataCaptureConfig`` is a summary (moto returns the endpoint config's input shape)."""
    if not config:
        return None
    enabled = bool(config.get("EnableCapture", False))
    summary = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": int(config.get("InitialSamplingPercentage", 0)),
        "DestinationS3Uri": config.get("DestinationS3Uri", ""),
    }
    if config.get("KmsKeyId"):
        summary["KmsKeyId"] = config["KmsKeyId"]
    return summary


def _unique(kind: str, existing: Any) -> ValidationError:
    return ValidationError(message=f"{kind.capitalize()} job names must be unique within an AWS account and "
                                   f"region, and a {kind} job with this name already exists ({existing.arn})")


class LocalSageMakerBackend(MotoUrls, SageMakerModelBackend):
    def __init__(self, region_name: str, account_id: str, jobs: JobWork | None = None,
                 endpoints: EndpointWork | None = None):
        super().__init__(region_name, account_id)
        self.job_work = jobs
        self.endpoints_work = endpoints

    # -- model packages -------------------------------------------------------------------------
    def update_model_package(self, model_package_arn: str, model_approval_status: str | None,
                             approval_description: str | None, customer_metadata_properties: dict[str, str] | None,
                             customer_metadata_properties_to_remove: list[str],
                             additional_inference_specifications_to_add: list[Any] | None) -> str:
        """SageMaker adds the CustomerMetadataProperties a call names to the package's and keeps what the call
        leaves out (approval included); moto replaces the whole map, so an update (the `track` result's mlflow_*)
        would erase training_job, which the stack's provisioner reads."""
        package = self.model_packages.get(self.model_package_name_mapping.get(model_package_arn, model_package_arn))
        if package is not None:
            customer_metadata_properties = {**(package.customer_metadata_properties or {}),
                                            **(customer_metadata_properties or {})}
            model_approval_status = model_approval_status or package.model_approval_status
            if approval_description is None:
                approval_description = package.approval_description
        return super().update_model_package(model_package_arn, model_approval_status, approval_description,
                                            customer_metadata_properties, customer_metadata_properties_to_remove,
                                            additional_inference_specifications_to_add)

    # -- jobs ---------------------------------------------------------------------------------
    def create_training_job(self, training_job_name: str, *args: Any, **kwargs: Any) -> FakeTrainingJob:
        if training_job_name in self.training_jobs:
            raise _unique("training", self.training_jobs[training_job_name])
        definitions = copy.deepcopy((kwargs.get("algorithm_specification") or {}).get("MetricDefinitions"))
        job = super().create_training_job(training_job_name, *args, **kwargs)
        if definitions is None:  # moto puts its own example in; SageMaker keeps the caller's
            job.algorithm_specification.pop("MetricDefinitions", None)
        else:
            job.algorithm_specification["MetricDefinitions"] = definitions
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        job.training_start_time = job.training_end_time = None
        job.final_metric_data_list = job.model_artifacts = job.failure_reason = None
        if self.job_work is not None:
            self.job_work.job_created("training", training_job_name)
        return job

    def create_processing_job(self, environment: dict[str, str] | None = None,  # type: ignore[override]
                              processing_resources: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        name = kwargs["processing_job_name"]
        if name in self.processing_jobs:
            raise _unique("processing", self.processing_jobs[name])
        job = super().create_processing_job(**kwargs)
        job.environment = environment or {}
        job.processing_resources = processing_resources
        job.processing_job_status = "InProgress"
        job.processing_start_time = job.processing_end_time = None
        job.failure_reason = job.exit_message = None
        if self.job_work is not None:
            self.job_work.job_created("processing", name)
        return job

    def describe_processing_job(self, processing_job_name: str) -> dict[str, Any]:
        response = super().describe_processing_job(processing_job_name)
        environment = getattr(self.processing_jobs[processing_job_name], "environment", None)
        return {**response, "Environment": dict(environment)} if environment else response

    def stop_processing_job(self, processing_job_name: str) -> None:
        job = self.processing_jobs.get(processing_job_name)
        if job is None or job.processing_job_status != "InProgress":
            return super().stop_processing_job(processing_job_name)
        job.processing_job_status = "Stopping"
        if self.job_work is not None:
            self.job_work.stop_requested(processing_job_name)
        return None

    def stop_training_job(self, training_job_name: str) -> None:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            arn = FakeTrainingJob.arn_formatter(training_job_name, self.account_id, self.region_name)
            raise ValidationError(message=f"Could not find training job '{arn}'.")
        if job.training_job_status != "InProgress":
            raise ValidationError(
                message=f"The request was rejected because the training job is in status {job.training_job_status}.")
        job.training_job_status = job.secondary_status = "Stopping"
        if self.job_work is not None:
            self.job_work.stop_requested(training_job_name)

    # -- endpoints ----------------------------------------------------------------------------
    def create_endpoint(self, endpoint_name: str, endpoint_config_name: str, tags: Any) -> FakeEndpoint:
        if endpoint_name in self.endpoints:
            raise ValidationError(message=f"Cannot create already existing endpoint \"{self.endpoints[endpoint_name].arn}\".")
        endpoint = super().create_endpoint(endpoint_name, endpoint_config_name, tags)
        endpoint.endpoint_status = "Creating"
        endpoint.data_capture_config = data_capture_summary(endpoint.data_capture_config)
        if self.endpoints_work is not None:
            self.endpoints_work.endpoint_created(endpoint_name)
        return endpoint

    def update_endpoint(self, endpoint_name: str, endpoint_config_name: str,
                        deployment_config: dict[str, Any] | None = None) -> FakeEndpoint:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise ValidationError(message=f"Could not find endpoint \"{arn}\".")
        if endpoint_config_name not in self.endpoint_configs:
            arn = FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id, self.region_name)
            raise ValidationError(message=f"Could not find endpoint configuration \"{arn}\".")
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f"Cannot update in-progress endpoint \"{endpoint.arn}\".")
        endpoint.endpoint_status = "Updating"
        endpoint.last_modified_time = utcnow()
        if self.endpoints_work is not None:
            self.endpoints_work.endpoint_updated(endpoint_name, endpoint_config_name, deployment_config)
        return endpoint

    def delete_endpoint(self, endpoint_name: str) -> None:
        super().delete_endpoint(endpoint_name)
        if self.endpoints_work is not None:
            self.endpoints_work.endpoint_deleted(endpoint_name)

    def endpoint_serves(self, endpoint_name: str, config_name: str) -> None:
        """A deployment succeeded: the endpoint is InService on ``config_name`` (variants and capture from it)."""
        old = self.endpoints[endpoint_name]
        config = self.describe_endpoint_config(config_name)
        endpoint = FakeEndpoint(self.account_id, self.region_name, endpoint_name, config_name,
                                config["ProductionVariants"], data_capture_summary(config.get("DataCaptureConfig")),
                                old.tags)
        endpoint.creation_time = old.creation_time
        self.endpoints[endpoint_name] = endpoint

    def endpoint_not_deployed(self, endpoint_name: str, reason: str, is_create: bool) -> None:
        """A deployment failed: a new endpoint is Failed; an updated one rolls back and stays InService."""
        endpoint = self.endpoints[endpoint_name]
        endpoint.failure_reason = reason[:1024]
        endpoint.endpoint_status = "Failed" if is_create else "InService"
        endpoint.last_modified_time = utcnow()


class LocalSageMakerResponse(SageMakerResponse):
    """moto's SageMaker responses plus ``UpdateEndpoint``, ``StopTrainingJob``, processing ``Environment`` and a
    model package's ``ModelCard``."""

    def create_model_package(self) -> ActionResult:
        result = super().create_model_package()
        card = self._get_param("ModelCard")
        if card is not None:  # moto drops it; SageMaker keeps it and describes it
            arn = result.result["ModelPackageArn"]  # type: ignore[index]
            package = self.sagemaker_backend.model_packages.get(
                self.sagemaker_backend.model_package_name_mapping.get(arn, arn))
            if package is not None:
                package.model_card = copy.deepcopy(card)
        return result

    def describe_model_package(self) -> ActionResult:
        package = self.sagemaker_backend.describe_model_package(model_package_name=self._get_param("ModelPackageName"))
        described = package.gen_response_object()
        if getattr(package, "model_card", None) is not None:
            described["ModelCard"] = package.model_card
        return ActionResult(described)

    def create_processing_job(self) -> ActionResult:
        job = self.sagemaker_backend.create_processing_job(
            environment=self._get_param("Environment"),
            processing_resources=self._get_param("ProcessingResources"),
            app_specification=self._get_param("AppSpecification"),
            experiment_config=self._get_param("ExperimentConfig"),
            network_config=self._get_param("NetworkConfig"),
            processing_inputs=self._get_param("ProcessingInputs"),
            processing_job_name=self._get_param("ProcessingJobName"),
            processing_output_config=self._get_param("ProcessingOutputConfig"),
            role_arn=self._get_param("RoleArn"),
            stopping_condition=self._get_param("StoppingCondition"),
            tags=self._get_param("Tags"),
        )
        return ActionResult({"ProcessingJobArn": job.arn})

    def update_endpoint(self) -> ActionResult:
        endpoint = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            deployment_config=self._get_param("DeploymentConfig"),
        )
        return ActionResult({"EndpointArn": endpoint.arn})

    def stop_training_job(self) -> ActionResult:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()
