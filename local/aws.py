"""moto in server mode on loopback, with the SageMaker behaviour the embedded stack needs added in-process.

moto stores SageMaker metadata only: jobs are born ``Completed``, endpoints ``InService``, duplicate
job names silently overwrite, and ``UpdateEndpoint`` / ``StopTrainingJob`` do not exist. The server runs
in this process (``ThreadedMotoServer``), so these gaps are closed by patching its backend and response
classes: jobs start ``InProgress`` and are handed to the job runner, endpoints start ``Creating`` and are
handed to the endpoint manager, duplicate names are rejected as SageMaker rejects them, and
``UpdateEndpoint``/``StopTrainingJob`` are served. Object writes to S3 are reported to a listener so the
stack can emit the EventBridge ``Object Created`` events AWS would.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

log = logging.getLogger("local.aws")

ACCOUNT = "123456789012"  # moto's default account: every ARN the stack prints uses it


class SageMakerListener(Protocol):
    def training_job_created(self, name: str) -> None: ...

    def processing_job_created(self, name: str) -> None: ...

    def training_job_stop_requested(self, name: str) -> None: ...

    def processing_job_stop_requested(self, name: str) -> None: ...

    def endpoint_created(self, name: str) -> None: ...

    def endpoint_updated(self, name: str, new_config: str, retain_deployment_config: bool,
                         deployment_config: dict[str, Any] | None) -> None: ...

    def endpoint_deleted(self, name: str) -> None: ...


ObjectListener = Callable[[str, str, Any, Any], None]  # (account, event_name, bucket, key)
MessageListener = Callable[[str, str, str | None], None]  # (topic_arn, message, subject)


@dataclass
class Hooks:
    sagemaker: SageMakerListener | None = None
    object_created: ObjectListener | None = None
    sns_published: MessageListener | None = None


HOOKS = Hooks()
_patched = False
_patch_lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sagemaker_backend(region: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][region]


def cloudwatch_backend(region: str) -> Any:
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[ACCOUNT][region]


def s3_backend() -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[ACCOUNT]["aws"]


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


def _validation_error(message: str) -> Exception:
    from moto.sagemaker.exceptions import ValidationError

    return ValidationError(message=message)


def install_patches() -> None:
    """Idempotently add the missing SageMaker behaviour and the event hooks to moto (this process only)."""
    global _patched
    with _patch_lock:
        if _patched:
            return
        _patch_sagemaker()
        _patch_s3_notifications()
        _patch_sns()
        _patched = True


def _patch_sagemaker() -> None:
    from moto.core.responses import EmptyResult
    from moto.sagemaker import models, responses

    backend_cls = models.SageMakerModelBackend
    response_cls = responses.SageMakerResponse

    original_create_training = backend_cls.create_training_job
    original_create_processing = backend_cls.create_processing_job
    original_create_endpoint = backend_cls.create_endpoint
    original_delete_endpoint = backend_cls.delete_endpoint
    original_stop_processing = backend_cls.stop_processing_job

    def create_training_job(self: Any, training_job_name: str, *args: Any, **kwargs: Any) -> Any:
        if training_job_name in self.training_jobs:
            raise _validation_error(
                "Training job names must be unique within an AWS account and region, and a training job "
                f"with this name already exists ({self.training_jobs[training_job_name].arn})"
            )
        spec = kwargs.get("algorithm_specification") or {}
        definitions = copy.deepcopy(spec.get("MetricDefinitions"))
        job = original_create_training(self, training_job_name, *args, **kwargs)
        # moto replaces the caller's MetricDefinitions with its own example; SageMaker keeps them.
        if definitions is None:
            job.algorithm_specification.pop("MetricDefinitions", None)
        else:
            job.algorithm_specification["MetricDefinitions"] = definitions
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.training_end_time = None
        job.training_start_time = None
        job.final_metric_data_list = None
        job.model_artifacts = None
        job.failure_reason = None
        if HOOKS.sagemaker is not None:
            HOOKS.sagemaker.training_job_created(training_job_name)
        return job

    def create_processing_job(self: Any, **kwargs: Any) -> Any:
        name = kwargs["processing_job_name"]
        if name in self.processing_jobs:
            raise _validation_error(
                "Processing job names must be unique within an AWS account and region, and a processing job "
                f"with this name already exists ({self.processing_jobs[name].arn})"
            )
        job = original_create_processing(self, **kwargs)
        job.processing_job_status = "InProgress"
        job.processing_end_time = None
        job.processing_start_time = None
        job.failure_reason = None
        job.exit_message = None
        return job

    def stop_processing_job(self: Any, processing_job_name: str) -> None:
        job = self.processing_jobs.get(processing_job_name)
        if job is None or job.processing_job_status != "InProgress":
            return original_stop_processing(self, processing_job_name)
        job.processing_job_status = "Stopping"
        if HOOKS.sagemaker is not None:
            HOOKS.sagemaker.processing_job_stop_requested(processing_job_name)
        return None

    def stop_training_job(self: Any, training_job_name: str) -> None:
        job = self.training_jobs.get(training_job_name)
        if job is None:
            raise _validation_error(f"Could not find training job '{models.FakeTrainingJob.arn_formatter(training_job_name, self.account_id, self.region_name)}'.")
        if job.training_job_status != "InProgress":
            raise _validation_error(
                f"The request was rejected because the training job is in status {job.training_job_status}."
            )
        job.training_job_status = "Stopping"
        job.secondary_status = "Stopping"
        if HOOKS.sagemaker is not None:
            HOOKS.sagemaker.training_job_stop_requested(training_job_name)

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        if endpoint_name in self.endpoints:
            raise _validation_error(
                f"Cannot create already existing endpoint \"{self.endpoints[endpoint_name].arn}\"."
            )
        endpoint = original_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
        endpoint.endpoint_status = "Creating"
        endpoint.data_capture_config = data_capture_summary(endpoint.data_capture_config)
        if HOOKS.sagemaker is not None:
            HOOKS.sagemaker.endpoint_created(endpoint_name)
        return endpoint

    def update_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str,
                        retain_all_variant_properties: bool = False,
                        deployment_config: dict[str, Any] | None = None,
                        retain_deployment_config: bool = False) -> Any:
        endpoint = self.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = models.FakeEndpoint.arn_formatter(endpoint_name, self.account_id, self.region_name)
            raise _validation_error(f"Could not find endpoint \"{arn}\".")
        if endpoint_config_name not in self.endpoint_configs:
            arn = models.FakeEndpointConfig.arn_formatter(endpoint_config_name, self.account_id, self.region_name)
            raise _validation_error(f"Could not find endpoint configuration \"{arn}\".")
        if endpoint.endpoint_status != "InService":
            raise _validation_error(
                f"Cannot update in-progress endpoint \"{endpoint.arn}\"."
            )
        endpoint.endpoint_status = "Updating"
        endpoint.last_modified_time = models.utcnow()
        if HOOKS.sagemaker is not None:
            HOOKS.sagemaker.endpoint_updated(endpoint_name, endpoint_config_name, retain_deployment_config,
                                             deployment_config)
        return endpoint

    def delete_endpoint(self: Any, endpoint_name: str) -> None:
        original_delete_endpoint(self, endpoint_name)
        if HOOKS.sagemaker is not None:
            HOOKS.sagemaker.endpoint_deleted(endpoint_name)

    backend_cls.create_training_job = create_training_job
    backend_cls.create_processing_job = create_processing_job
    backend_cls.stop_processing_job = stop_processing_job
    backend_cls.stop_training_job = stop_training_job
    backend_cls.create_endpoint = create_endpoint
    backend_cls.update_endpoint = update_endpoint
    backend_cls.delete_endpoint = delete_endpoint

    def update_endpoint_response(self: Any) -> Any:
        from moto.core.responses import ActionResult

        endpoint = self.sagemaker_backend.update_endpoint(
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties", False)),
            deployment_config=self._get_param("DeploymentConfig"),
            retain_deployment_config=bool(self._get_param("RetainDeploymentConfig", False)),
        )
        return ActionResult({"EndpointArn": endpoint.arn})

    def stop_training_job_response(self: Any) -> Any:
        self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
        return EmptyResult()

    original_create_processing_response = response_cls.create_processing_job

    def create_processing_job_response(self: Any) -> Any:
        # moto drops Environment and ProcessingResources; the container needs the former.
        result = original_create_processing_response(self)
        name = self._get_param("ProcessingJobName")
        job = self.sagemaker_backend.processing_jobs.get(name)
        if job is not None:
            job.environment = self._get_param("Environment") or {}
            job.processing_resources = self._get_param("ProcessingResources")
            if HOOKS.sagemaker is not None:
                HOOKS.sagemaker.processing_job_created(name)
        return result

    response_cls.create_processing_job = create_processing_job_response
    response_cls.update_endpoint = update_endpoint_response
    response_cls.stop_training_job = stop_training_job_response


def _patch_s3_notifications() -> None:
    from moto.s3 import notifications

    original = notifications.send_event

    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        original(account_id, event_name, bucket, key)
        listener = HOOKS.object_created
        if listener is not None and str(getattr(event_name, "value", event_name)).startswith("s3:ObjectCreated:"):
            try:
                listener(account_id, str(getattr(event_name, "value", event_name)), bucket, key)
            except Exception:  # like AWS: event delivery never fails the PutObject
                log.exception("object-created listener failed for s3://%s/%s", bucket.name, key.name)

    notifications.send_event = send_event


def _patch_sns() -> None:
    from moto.sns import models

    original = models.Topic.publish

    def publish(self: Any, message: str, subject: str | None = None, *args: Any, **kwargs: Any) -> str:
        message_id = original(self, message, subject, *args, **kwargs)
        listener = HOOKS.sns_published
        if listener is not None:
            try:
                listener(self.arn, message, subject)
            except Exception:
                log.exception("SNS listener failed")
        return message_id

    models.Topic.publish = publish


class AwsServer:
    """``ThreadedMotoServer`` on loopback; ``url`` is what AWS_ENDPOINT_URL points at."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        from moto.server import ThreadedMotoServer

        install_patches()
        self.host = host
        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


def client_environment(url: str, region: str) -> dict[str, str]:
    """Environment that points boto3 (and the AWS CLI) at the local AWS API with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_SESSION_TOKEN": "local",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def boto3_session(url: str, region: str) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                 aws_session_token="local", region_name=region)


_clients: dict[tuple[str, str, str], Any] = {}
_clients_lock = threading.Lock()


def client(service: str, url: str, region: str) -> Any:
    """A cached boto3 client for the local AWS API (clients are thread-safe; creating them is slow)."""
    from botocore.config import Config

    key = (service, url, region)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = boto3_session(url, region).client(
                service, endpoint_url=url, config=Config(retries={"mode": "standard", "max_attempts": 3})
            )
        return _clients[key]


def clean_environ(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        env.pop(name, None)
    return env
