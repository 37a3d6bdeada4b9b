"""The one deployer: gate → Model Package → Model → versioned EndpointConfig → Create/UpdateEndpoint
(blue/green, auto-rollback alarms) → on the endpoint's state change verify, record, prune, autoscale.

Used by training_done (new models), endpoint_state (verification, deferred deploys) and provision (the
stack's custom resource), so `cdk deploy` and the retraining path can never disagree about what serves.

Slot item (pk=pipeline, sk=endpoint): inflight_config/job/package/model while an update is in flight,
pending_job when a newer model waits for it. Production item (pk=pipeline, sk=production): what serves.
"""
from __future__ import annotations

import json
import time
from typing import Any

from . import clients, gate, jobs
from .ledger import Ledger, now_iso
from .notify import publish
from .settings import Settings

SLOT = ("pipeline", "endpoint")
PRODUCTION = ("pipeline", "production")
STABLE = ("InService", "Failed", "OutOfService")
_INFLIGHT = ("inflight_config", "inflight_job", "inflight_package", "inflight_model", "inflight_since",
             "inflight_metrics", "inflight_task", "inflight_model_data_url", "inflight_requested", "previous_config")


def _sm() -> Any:
    return clients.get("sagemaker")


def describe_endpoint(settings: Settings) -> dict | None:
    try:
        return _sm().describe_endpoint(EndpointName=settings.endpoint_name)
    except Exception as exc:  # noqa: BLE001
        if clients.is_not_found(exc):
            return None
        raise


def ensure_model_package_group(settings: Settings) -> None:
    try:
        _sm().describe_model_package_group(ModelPackageGroupName=settings.model_package_group)
        return
    except Exception as exc:  # noqa: BLE001
        if not clients.is_not_found(exc):
            raise
    try:
        _sm().create_model_package_group(
            ModelPackageGroupName=settings.model_package_group,
            ModelPackageGroupDescription=f"Models of {settings.name_prefix}, registered by the control plane",
        )
    except Exception as exc:  # noqa: BLE001 - created concurrently by another invocation
        if not clients.is_already_exists(exc):
            raise


def _lineage(settings: Settings, training: dict, metrics: dict[str, float], task: str) -> dict:
    job = training["TrainingJobName"]
    inputs: list = []
    try:
        body = clients.get("s3").get_object(Bucket=settings.artifacts_bucket, Key=f"models/{job}/inputs.json")["Body"].read()
        inputs = json.loads(body).get("inputs", [])
    except Exception as exc:  # noqa: BLE001 - lineage of inputs is best-effort; the prefix is still recorded
        if not clients.is_not_found(exc):
            raise
    return {
        "training_job": job,
        "image": (training.get("AlgorithmSpecification") or {}).get("TrainingImage", settings.image_uri),
        "hyperparameters": training.get("HyperParameters") or {},
        "data": [c["DataSource"]["S3DataSource"]["S3Uri"] for c in training.get("InputDataConfig", [])
                 if "S3DataSource" in c.get("DataSource", {})],
        "inputs": inputs,
        "metrics": {"test": metrics},
        "task": task,
        "model_data_url": training["ModelArtifacts"]["S3ModelArtifacts"],
    }


def register_package(settings: Settings, training: dict, metrics: dict[str, float], task: str, reason: str) -> str:
    """A Model Package (approved: it passed the gate) with lineage: data URIs + versions, image,
    hyperparameters and metrics, in lineage.json next to the model and summarised in its metadata."""
    ensure_model_package_group(settings)
    job = training["TrainingJobName"]
    lineage = _lineage(settings, training, metrics, task)
    lineage_key = f"models/{job}/lineage.json"
    clients.get("s3").put_object(Bucket=settings.artifacts_bucket, Key=lineage_key, ContentType="application/json",
                                 Body=json.dumps(lineage, indent=1, default=str).encode(),
                                 ServerSideEncryption="aws:kms", SSEKMSKeyId=settings.kms_key_arn)
    customer = {"training_job": job, "task": task, "image": lineage["image"][:256],
                "data": ",".join(lineage["data"])[:256], "inputs": str(len(lineage["inputs"])),
                "lineage": f"s3://{settings.artifacts_bucket}/{lineage_key}"[:256],
                "hyperparameters": json.dumps(lineage["hyperparameters"], sort_keys=True)[:256]}
    customer.update({f"test_{k}": f"{v:.6g}" for k, v in metrics.items()})
    response = _sm().create_model_package(
        ModelPackageGroupName=settings.model_package_group,
        ModelPackageDescription=f"{job}: {reason}"[:1024],
        InferenceSpecification={
            "Containers": [{"Image": settings.image_uri, "ModelDataUrl": lineage["model_data_url"]}],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            "SupportedRealtimeInferenceInstanceTypes": [settings.serving_instance_type],
        },
        ModelApprovalStatus="Approved",
        ModelMetrics={"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"s3://{settings.artifacts_bucket}/{lineage_key}"}}},
        CustomerMetadataProperties=customer,
        ClientToken=jobs.identity_hash("package", job),
    )
    return response["ModelPackageArn"]


def create_model(settings: Settings, name: str, model_data_url: str) -> None:
    try:
        _sm().create_model(
            ModelName=name, ExecutionRoleArn=settings.sagemaker_role_arn, EnableNetworkIsolation=True,
            PrimaryContainer={"Image": settings.image_uri, "ModelDataUrl": model_data_url, "Mode": "SingleModel"},
            Tags=[{"Key": "pipeline", "Value": settings.name_prefix}],
        )
    except Exception as exc:  # noqa: BLE001 - a retried deploy finds its model already made
        if not clients.is_already_exists(exc):
            raise


def create_endpoint_config(settings: Settings, name: str, model: str) -> None:
    try:
        _sm().create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{
                "VariantName": settings.variant_name, "ModelName": model,
                "InitialInstanceCount": settings.serving_min_instances,
                "InstanceType": settings.serving_instance_type, "InitialVariantWeight": 1.0,
            }],
            DataCaptureConfig={
                "EnableCapture": settings.data_capture_percent > 0,
                "InitialSamplingPercentage": settings.data_capture_percent,
                "DestinationS3Uri": f"s3://{settings.artifacts_bucket}/datacapture/",
                "KmsKeyId": settings.kms_key_arn,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
            },
            KmsKeyId=settings.kms_key_arn,
            Tags=[{"Key": "pipeline", "Value": settings.name_prefix}],
        )
    except Exception as exc:  # noqa: BLE001
        if not clients.is_already_exists(exc):
            raise


def deployment_config(settings: Settings) -> dict:
    """Blue/green, all traffic at once after the new fleet is healthy, then a baking period during which
    any rollback alarm sends traffic back to the old fleet."""
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": 600,
        "MaximumExecutionTimeoutInSeconds": 3600,
    }}
    if settings.rollback_alarm_names:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in settings.rollback_alarm_names]}
    return config


def scaling_resource_id(settings: Settings) -> str:
    return f"endpoint/{settings.endpoint_name}/variant/{settings.variant_name}"


def _deregister_scaling(settings: Settings) -> None:
    aas = clients.get("application-autoscaling")
    try:
        aas.deregister_scalable_target(ServiceNamespace="sagemaker", ResourceId=scaling_resource_id(settings),
                                       ScalableDimension="sagemaker:variant:DesiredInstanceCount")
    except Exception as exc:  # noqa: BLE001
        if clients.error_code(exc) not in ("ObjectNotFoundException", "ValidationException"):
            raise


def register_scaling(settings: Settings) -> None:
    aas = clients.get("application-autoscaling")
    aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=scaling_resource_id(settings),
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=settings.serving_min_instances, MaxCapacity=settings.serving_max_instances,
    )
    aas.put_scaling_policy(
        PolicyName=f"{settings.name_prefix}-invocations", ServiceNamespace="sagemaker",
        ResourceId=scaling_resource_id(settings), ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(settings.scaling_target_invocations),
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300, "ScaleOutCooldown": 60,
        },
    )


def _instance_type_of(config_name: str | None) -> str | None:
    if not config_name:
        return None
    try:
        variants = _sm().describe_endpoint_config(EndpointConfigName=config_name).get("ProductionVariants", [])
    except Exception as exc:  # noqa: BLE001
        if clients.is_not_found(exc):
            return None
        raise
    return variants[0].get("InstanceType") if variants else None


# -- deploy -----------------------------------------------------------------------------------------------
def deploy_training_job(settings: Settings, ledger: Ledger, job: str, *, training: dict | None = None) -> dict:
    """Gate a completed training job against the production model and, if it passes, deploy it."""
    training = training or _sm().describe_training_job(TrainingJobName=job)
    metrics = jobs.test_metrics(training.get("FinalMetricDataList"))
    production = ledger.get(*PRODUCTION)
    result = gate.evaluate(settings.quality_gate, settings.task, metrics, (production or {}).get("metrics") if production else None)
    subject = f"job#{job}"
    details = {"metric": result.metric, "value": result.value, "threshold": result.threshold,
               "production": result.production_value, "production_job": (production or {}).get("training_job"),
               "metrics": metrics}
    if not result.passed:
        ledger.record(subject, "gated_out", result.reason, job=job, details=details)
        publish(settings, f"Model not deployed: {job}", f"The model from {job} did not pass the quality gate: "
                f"{result.reason}. The production model keeps serving.", details)
        return {"status": "gated_out", "reason": result.reason}
    ledger.record(subject, "gate_passed", result.reason, job=job, details=details)
    return deploy_model(settings, ledger, job, training["ModelArtifacts"]["S3ModelArtifacts"], metrics, result.task,
                        reason=result.reason, training=training)


def deploy_model(settings: Settings, ledger: Ledger, job: str, model_data_url: str, metrics: dict[str, float],
                 task: str, *, reason: str, training: dict | None = None, package_arn: str | None = None,
                 now: float | None = None) -> dict:
    moment = time.time() if now is None else now
    subject = f"job#{job}"
    endpoint = describe_endpoint(settings)
    status = endpoint.get("EndpointStatus") if endpoint else None
    if status == "Failed" and not (ledger.get(*SLOT) or {}).get("inflight_config"):
        # A Failed endpoint serves nothing and can only be deleted; the model deploys once it is gone.
        _sm().delete_endpoint(EndpointName=settings.endpoint_name)
        publish(settings, "Failed endpoint deleted", f"{settings.endpoint_name} was Failed "
                f"({endpoint.get('FailureReason') or 'no reason given'}); it is being deleted and {job} will "
                "create it again.", {"job": job})
        return _defer(settings, ledger, job, f"the endpoint was Failed ({endpoint.get('FailureReason')}) and is "
                                             "being deleted")
    if status not in (None, "InService"):
        return _defer(settings, ledger, job, f"the endpoint is {status}")
    cfg, model = jobs.config_name(settings, job), jobs.model_name(settings, job)
    try:
        ledger.update(*SLOT, set_values={
            "inflight_config": cfg, "inflight_job": job, "inflight_model": model, "inflight_since": int(moment),
            "inflight_metrics": metrics, "inflight_task": task, "inflight_model_data_url": model_data_url,
            "previous_config": (endpoint or {}).get("EndpointConfigName") or "",
        }, condition="attribute_not_exists(#inflight_config) OR #inflight_config = :cfg OR #inflight_since < :stale",
            condition_values={":cfg": cfg, ":stale": int(moment - 4 * 3600)})
    except Exception as exc:  # noqa: BLE001
        if not clients.is_conditional_failure(exc):
            raise
        return _defer(settings, ledger, job, "another deployment is in flight")
    try:
        if package_arn is None:
            package_arn = register_package(settings, training or _sm().describe_training_job(TrainingJobName=job),
                                           metrics, task, reason)
        ledger.update(*SLOT, set_values={"inflight_package": package_arn})
        create_model(settings, model, model_data_url)
        create_endpoint_config(settings, cfg, model)
        if endpoint is None:
            _sm().create_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=cfg,
                                  Tags=[{"Key": "pipeline", "Value": settings.name_prefix}])
            action = "create_endpoint"
        elif endpoint.get("EndpointConfigName") == cfg:
            action = "already_serving"
        else:
            if _instance_type_of(endpoint.get("EndpointConfigName")) not in (None, settings.serving_instance_type):
                # Application Auto Scaling blocks an update that changes a scaled variant's instance type.
                _deregister_scaling(settings)
            _sm().update_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=cfg,
                                  DeploymentConfig=deployment_config(settings))
            action = "update_endpoint"
    except Exception:
        ledger.update(*SLOT, remove=_INFLIGHT, condition="#inflight_config = :cfg", condition_values={":cfg": cfg})
        raise
    # Only now may an endpoint event judge this deployment: one arriving between taking the slot and the
    # Create/UpdateEndpoint call would otherwise see the old config and call it a rollback.
    ledger.update(*SLOT, set_values={"inflight_requested": True})
    ledger.record(subject, "deploy_requested",
                  f"{action}: {settings.endpoint_name} → {cfg} (previous: {(endpoint or {}).get('EndpointConfigName') or 'none'})",
                  job=job, model=package_arn, details={"config": cfg, "model_name": model, "action": action})
    if action == "already_serving":
        return verify(settings, ledger)
    return {"status": "deploy_requested", "config": cfg, "package": package_arn, "action": action}


def _defer(settings: Settings, ledger: Ledger, job: str, why: str) -> dict:
    ledger.update(*SLOT, set_values={"pending_job": job})
    ledger.record(f"job#{job}", "deploy_deferred", f"{why}; {job} deploys when it settles (newest model wins)", job=job)
    return {"status": "deferred", "reason": why}


# -- verify (endpoint state change) ------------------------------------------------------------------
def verify(settings: Settings, ledger: Ledger) -> dict:
    """Does the endpoint run the config we asked for? SageMaker rolls a failed blue/green update back
    silently, so the answer comes from DescribeEndpoint, not from the event."""
    endpoint = describe_endpoint(settings)
    status = endpoint.get("EndpointStatus") if endpoint else "Deleted"
    if endpoint is not None and status not in STABLE:
        return {"status": "waiting", "endpoint_status": status}
    slot = ledger.get(*SLOT) or {}
    requested = slot.get("inflight_config")
    if not requested:
        result: dict = {"status": "nothing_in_flight", "endpoint_status": status}
    elif not slot.get("inflight_requested"):
        return {"status": "waiting", "reason": f"the request for {requested} is being made"}
    else:
        claim = ledger.claim(f"claim#deploy#{requested}#{slot.get('inflight_since')}", "verify", lease_seconds=300)
        if claim.status == "busy":
            from .runtime import Busy

            raise Busy(f"verification of {requested} is being handled by another delivery")
        if not claim.acquired:
            return {"status": "duplicate"}
        live = endpoint.get("EndpointConfigName") if endpoint else None
        if status == "InService" and live == requested:
            result = _deployed(settings, ledger, slot, endpoint)
        else:
            result = _rolled_back(settings, ledger, slot, endpoint, status)
        ledger.update(*SLOT, remove=_INFLIGHT, condition="#inflight_config = :cfg", condition_values={":cfg": requested})
        ledger.complete(f"claim#deploy#{requested}#{slot.get('inflight_since')}", "verify", {"outcome": result["status"]})
    pending = (ledger.get(*SLOT) or {}).get("pending_job")
    if pending and status in ("InService", "Deleted"):
        ledger.update(*SLOT, remove=("pending_job",), condition="#pending_job = :job", condition_values={":job": pending})
        result["pending"] = deploy_training_job(settings, ledger, pending)
    return result


def _deployed(settings: Settings, ledger: Ledger, slot: dict, endpoint: dict) -> dict:
    cfg, job = slot["inflight_config"], slot.get("inflight_job")
    production = {
        "training_job": job, "model_package_arn": slot.get("inflight_package"), "model_name": slot.get("inflight_model"),
        "config_name": cfg, "metrics": slot.get("inflight_metrics") or {}, "task": slot.get("inflight_task"),
        "model_data_url": slot.get("inflight_model_data_url"), "deployed_at": now_iso(),
    }
    ledger.put_state(*PRODUCTION, production)
    register_scaling(settings)
    pruned = prune(settings, keep_configs={cfg})
    ledger.record(f"endpoint#{settings.endpoint_name}", "deployed",
                  f"{settings.endpoint_name} serves {cfg} (model of {job}); verified with DescribeEndpoint",
                  job=job, model=slot.get("inflight_package"),
                  details={"config": cfg, "previous": slot.get("previous_config"), "pruned": pruned,
                           "metrics": production["metrics"]})
    publish(settings, f"New model serving: {job}", f"{settings.endpoint_name} now serves the model of {job} "
            f"(endpoint config {cfg}).", {"metrics": production["metrics"], "package": slot.get("inflight_package")})
    return {"status": "deployed", "config": cfg, "pruned": pruned}


def _rolled_back(settings: Settings, ledger: Ledger, slot: dict, endpoint: dict | None, status: str | None) -> dict:
    requested, job, package = slot["inflight_config"], slot.get("inflight_job"), slot.get("inflight_package")
    live = (endpoint or {}).get("EndpointConfigName")
    failure = (endpoint or {}).get("FailureReason") or "no reason given"
    decision = "rolled_back" if status == "InService" else "deploy_failed"
    reason = (f"{settings.endpoint_name} runs {live}, not the requested {requested} (status {status}): "
              f"the update was rolled back ({failure}); the previous model keeps serving" if decision == "rolled_back"
              else f"{settings.endpoint_name} is {status} after requesting {requested}: {failure}")
    if package:
        try:  # so that provisioning ("latest approved model") never re-deploys a model that just failed
            _sm().update_model_package(ModelPackageArn=package, ModelApprovalStatus="Rejected",
                                       ApprovalDescription=reason[:1000])
        except Exception as exc:  # noqa: BLE001
            if not clients.is_not_found(exc):
                raise
    ledger.record(f"endpoint#{settings.endpoint_name}", decision, reason, job=job, model=package,
                  details={"requested": requested, "live": live, "status": status})
    publish(settings, f"Deployment {'rolled back' if decision == 'rolled_back' else 'failed'}: {job}", reason,
            {"requested": requested, "live": live, "package": package})
    return {"status": decision, "live": live, "requested": requested}


def prune(settings: Settings, keep_configs: set[str]) -> list[str]:
    """Delete our endpoint configs and models that are neither live nor in flight (nor waiting)."""
    sm = _sm()
    endpoint = describe_endpoint(settings)
    keep = set(keep_configs)
    if endpoint and endpoint.get("EndpointConfigName"):
        keep.add(endpoint["EndpointConfigName"])
    keep_models: set[str] = set()
    for cfg in keep:
        try:
            for variant in sm.describe_endpoint_config(EndpointConfigName=cfg).get("ProductionVariants", []):
                keep_models.add(variant.get("ModelName"))
        except Exception as exc:  # noqa: BLE001
            if not clients.is_not_found(exc):
                raise
    deleted: list[str] = []
    for cfg in _names(sm.list_endpoint_configs, "EndpointConfigs", "EndpointConfigName", f"{settings.name_prefix}-cfg-"):
        if cfg not in keep:
            sm.delete_endpoint_config(EndpointConfigName=cfg)
            deleted.append(cfg)
    for model in _names(sm.list_models, "Models", "ModelName", f"{settings.name_prefix}-model-"):
        if model not in keep_models:
            sm.delete_model(ModelName=model)
            deleted.append(model)
    return deleted


def _names(list_call: Any, field: str, name_field: str, prefix: str) -> list[str]:
    names, kwargs = [], {"NameContains": prefix, "MaxResults": 100}
    while True:
        page = list_call(**kwargs)
        names.extend(i[name_field] for i in page.get(field, []) if i[name_field].startswith(prefix))
        if not page.get("NextToken"):
            return names
        kwargs["NextToken"] = page["NextToken"]


# -- provisioning (CloudFormation custom resource) --------------------------------------------------------
def latest_approved_package(settings: Settings) -> dict | None:
    try:
        page = _sm().list_model_packages(ModelPackageGroupName=settings.model_package_group, ModelApprovalStatus="Approved",
                                         SortBy="CreationTime", SortOrder="Descending", MaxResults=1)
    except Exception as exc:  # noqa: BLE001
        if clients.is_not_found(exc):
            return None
        raise
    summaries = page.get("ModelPackageSummaryList", [])
    if not summaries:
        return None
    return _sm().describe_model_package(ModelPackageName=summaries[0]["ModelPackageArn"])


def ensure_latest_served(settings: Settings, ledger: Ledger) -> dict:
    """Create/Update of the stack: make the endpoint serve the latest approved model; never revert a newer one."""
    subject = f"endpoint#{settings.endpoint_name}"
    package = latest_approved_package(settings)
    if package is None:
        ledger.record(subject, "provision_noop", f"no approved model in {settings.model_package_group} yet; "
                      "the first trained model will create the endpoint")
        return {"status": "no_model"}
    props = package.get("CustomerMetadataProperties") or {}
    job = props.get("training_job")
    if not job:
        raise ValueError(f"model package {package['ModelPackageArn']} has no training_job metadata")
    cfg = jobs.config_name(settings, job)
    endpoint = describe_endpoint(settings)
    slot = ledger.get(*SLOT) or {}
    if endpoint and endpoint.get("EndpointConfigName") == cfg:
        ledger.record(subject, "provision_noop", f"already serves the latest approved model ({job})", job=job,
                      model=package["ModelPackageArn"])
        return {"status": "up_to_date", "config": cfg}
    if slot.get("inflight_config"):
        ledger.record(subject, "provision_noop", f"deployment of {slot['inflight_config']} is in flight", job=job)
        return {"status": "in_flight", "config": slot["inflight_config"]}
    metrics = {k[len("test_"):]: float(v) for k, v in props.items() if k.startswith("test_")}
    container = package["InferenceSpecification"]["Containers"][0]
    return deploy_model(settings, ledger, job, container["ModelDataUrl"], metrics, props.get("task") or settings.task,
                        reason="provisioned by the stack (latest approved model)", package_arn=package["ModelPackageArn"])


def delete_all(settings: Settings, ledger: Ledger) -> dict:
    """Delete of the stack: the endpoint, then every config and model this pipeline made."""
    sm = _sm()
    _deregister_scaling(settings)
    endpoint = describe_endpoint(settings)
    if endpoint:
        sm.delete_endpoint(EndpointName=settings.endpoint_name)
    deleted = []
    for cfg in _names(sm.list_endpoint_configs, "EndpointConfigs", "EndpointConfigName", f"{settings.name_prefix}-cfg-"):
        sm.delete_endpoint_config(EndpointConfigName=cfg)
        deleted.append(cfg)
    for model in _names(sm.list_models, "Models", "ModelName", f"{settings.name_prefix}-model-"):
        sm.delete_model(ModelName=model)
        deleted.append(model)
    ledger.client.delete_item(TableName=ledger.table, Key={"pk": {"S": SLOT[0]}, "sk": {"S": SLOT[1]}})
    ledger.client.delete_item(TableName=ledger.table, Key={"pk": {"S": PRODUCTION[0]}, "sk": {"S": PRODUCTION[1]}})
    ledger.record(f"endpoint#{settings.endpoint_name}", "endpoint_deleted",
                  "stack deleted: endpoint, configs and models removed (model packages are kept)",
                  details={"deleted": deleted, "endpoint_existed": bool(endpoint)})
    return {"status": "deleted", "deleted": deleted}
