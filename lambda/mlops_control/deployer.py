"""The one deployer: gate → Model Package → Model → versioned EndpointConfig → Create/UpdateEndpoint
(blue/green, auto-rollback alarms) → on the endpoint's state change verify, record, prune, autoscale.

Used by training_done (new models), endpoint_state (verification, deferred deploys) and provision (the
stack's custom resource), so `cdk deploy` and the retraining path can never disagree about what serves.

Slot item (pk=pipeline, sk=endpoint): inflight_config/job/package/model while an update is in flight,
pending_job when a newer model waits for it. Production item (pk=pipeline, sk=production): what serves.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from . import clients, gate, jobs, keys, model_digest, responsible, tracking
from .ledger import Ledger, now_iso
from .notify import announce
from .settings import Settings

log = logging.getLogger("mlops_control")

MODEL_SHA256_VARIABLE = "MODEL_SHA256"  # the serving container's environment (CONTRACTS.md, "Serving")
SLOT = keys.DEPLOYMENT
PRODUCTION = keys.PRODUCTION
STABLE = ("InService", "Failed", "OutOfService")
_INFLIGHT = ("inflight_config", "inflight_job", "inflight_package", "inflight_model", "inflight_since",
             "inflight_metrics", "inflight_task", "inflight_model_data_url", "inflight_requested", "previous_config",
             "inflight_model_sha256", "inflight_model_version", "inflight_lease_until", "inflight_fingerprint")


def _track(settings: Settings, ledger: Ledger, phase: str, job: str | None, model_data_url: str | None,
           **decision: str) -> None:
    if not (settings.tracking_uri and job and model_data_url):  # a slot recorded before either was kept: nothing
        return
    if phase == "trained":
        decision["data_fingerprint"] = _fingerprint_of(settings, job) or ""
    tracking.request(settings, ledger, tracking.TrackRequest(phase, job, model_data_url, **decision))


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
    snapshot: dict = {}
    try:
        body = clients.get("s3").get_object(Bucket=settings.artifacts_bucket, Key=f"models/{job}/inputs.json")["Body"].read()
        snapshot = json.loads(body)
    except Exception as exc:  # noqa: BLE001 - lineage of inputs is best-effort; the channel is still recorded
        if not clients.is_not_found(exc):
            raise
    inputs = snapshot.get("inputs", [])
    return {
        "training_job": job,
        "image": (training.get("AlgorithmSpecification") or {}).get("TrainingImage", settings.image_uri),
        "hyperparameters": training.get("HyperParameters") or {},
        "data": [c["DataSource"]["S3DataSource"]["S3Uri"] for c in training.get("InputDataConfig", [])
                 if "S3DataSource" in c.get("DataSource", {})],
        "inputs": inputs,
        "fingerprint": snapshot.get("fingerprint"),
        "window": snapshot.get("window"),
        "metrics": {"test": metrics},
        "task": task,
        "model_data_url": training["ModelArtifacts"]["S3ModelArtifacts"],
    }


def _fingerprint_of(settings: Settings, job: str) -> str | None:
    try:
        body = clients.get("s3").get_object(Bucket=settings.artifacts_bucket, Key=f"models/{job}/inputs.json")["Body"].read()
    except Exception as exc:  # noqa: BLE001 - a run started before fingerprints (or by hand) has none
        if not clients.is_not_found(exc):
            raise
        return None
    return json.loads(body).get("fingerprint")


def register_package(settings: Settings, training: dict, metrics: dict[str, float], task: str, reason: str,
                     pinned: model_digest.Pinned) -> str:
    """A Model Package (approved: it passed the gate) with lineage: data URIs + versions, image,
    hyperparameters and metrics, in lineage.json next to the model and summarised in its metadata, and the
    pin of the artifact (S3 version, digests) that the endpoint will insist on."""
    ensure_model_package_group(settings)
    job = training["TrainingJobName"]
    lineage = _lineage(settings, training, metrics, task)
    lineage["model"] = {"uri": lineage["model_data_url"], "version": pinned.version_id, "sha256": pinned.digest,
                        "tarball_sha256": pinned.tarball_sha256, "files": pinned.files}
    lineage["comparison"] = (pinned.metadata or {}).get("comparison")
    lineage_key = f"models/{job}/lineage.json"
    clients.get("s3").put_object(Bucket=settings.artifacts_bucket, Key=lineage_key, ContentType="application/json",
                                 Body=json.dumps(lineage, indent=1, default=str).encode(),
                                 ServerSideEncryption="aws:kms", SSEKMSKeyId=settings.kms_key_arn)
    customer = {"training_job": job, "task": task, "image": lineage["image"][:256],
                "data": ",".join(lineage["data"])[:256], "inputs": str(len(lineage["inputs"])),
                "lineage": f"s3://{settings.artifacts_bucket}/{lineage_key}"[:256],
                "hyperparameters": json.dumps(lineage["hyperparameters"], sort_keys=True)[:256]}
    customer.update({f"test_{k}": f"{v:.6g}" for k, v in metrics.items()})
    customer.update({"model_sha256": pinned.digest, "model_version": str(pinned.version_id or "")[:256],
                     "fingerprint": str(lineage.get("fingerprint") or "")})
    report_uris = {}
    for name, report in responsible.reports(pinned.metadata).items():
        key = f"models/{job}/{name}.json"
        clients.get("s3").put_object(Bucket=settings.artifacts_bucket, Key=key, ContentType="application/json",
                                     Body=json.dumps(report, indent=1, default=str).encode(),
                                     ServerSideEncryption="aws:kms", SSEKMSKeyId=settings.kms_key_arn)
        report_uris[name] = f"s3://{settings.artifacts_bucket}/{key}"
    card = responsible.package_model_card((pinned.metadata or {}).get("model_card"), lineage["model_data_url"])
    extra = {"ModelCard": card} if card else {}
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
            "ContentType": "application/json", "S3Uri": f"s3://{settings.artifacts_bucket}/{lineage_key}"}},
            **responsible.model_metrics(report_uris)},
        CustomerMetadataProperties=customer,
        ClientToken=jobs.identity_hash("package", job),
        **extra,
    )
    return response["ModelPackageArn"]


def create_model(settings: Settings, name: str, model_data_url: str, model_sha256: str) -> None:
    try:
        _sm().create_model(
            ModelName=name, ExecutionRoleArn=settings.model_role_arn, EnableNetworkIsolation=True,
            # ModelDataUrl takes no S3 version: `serve` refuses any directory whose digest is not this one.
            PrimaryContainer={"Image": settings.image_uri, "ModelDataUrl": model_data_url, "Mode": "SingleModel",
                              "Environment": {MODEL_SHA256_VARIABLE: model_sha256}},
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
    """Blue/green, all traffic at once after the new fleet is healthy, then a baking period (the wait before
    the old fleet is terminated) during which any rollback alarm sends traffic back to the old fleet."""
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "TerminationWaitInSeconds": settings.deploy_bake_seconds,
        # Must exceed the waits; the rest is time to provision the new fleet.
        "MaximumExecutionTimeoutInSeconds": settings.deploy_bake_seconds + 3000,
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
    """Pin a completed training job's model, gate it against the production model on the same rows and, if it
    passes, deploy it."""
    production = ledger.get(*PRODUCTION)
    if production and production.get("training_job") == job:
        # A retried or deferred request for the model that already serves (its deploy was verified meanwhile).
        return {"status": "already_production", "job": job}
    training = training or _sm().describe_training_job(TrainingJobName=job)
    metrics = jobs.test_metrics(training.get("FinalMetricDataList"))
    subject = f"job#{job}"
    model_data_url = training["ModelArtifacts"]["S3ModelArtifacts"]
    try:
        # Read once: the digest `serve` will insist on, and metadata.json with the paired comparison.
        pinned = model_digest.pin(clients.get("s3"), model_data_url)
    except Exception as exc:  # noqa: BLE001
        if not (isinstance(exc, model_digest.InvalidModel) or clients.is_not_found(exc)):
            raise
        reason = f"the model artifact cannot be deployed: {clients.error_message(exc)}"
        ledger.record(subject, "gated_out", reason, job=job, details={"metrics": metrics, "model_data_url": model_data_url})
        _track(settings, ledger, "trained", job, model_data_url, decision="gated_out", reason=reason)
        announce(settings, ledger, f"Model not deployed: {job}", f"{reason}. The production model keeps serving.",
                 {"job": job, "model_data_url": model_data_url})
        return {"status": "gated_out", "reason": reason}
    comparison = (pinned.metadata or {}).get("comparison")
    result = gate.evaluate(settings.quality_gate, settings.task, metrics, (production or {}).get("metrics") if production
                           else None, comparison if isinstance(comparison, dict) else None, settings.gate_min_new_rows)
    details = {"metric": result.metric, "value": result.value, "threshold": result.threshold,
               "production": result.production_value, "production_job": (production or {}).get("training_job"),
               "basis": result.basis, "rows": result.rows, "challenger_on_rows": result.challenger_value,
               "metrics": metrics,
               "model": {"version": pinned.version_id, "sha256": pinned.digest, "tarball_sha256": pinned.tarball_sha256}}
    if not result.passed:
        ledger.record(subject, "gated_out", result.reason, job=job, details=details)
        _track(settings, ledger, "trained", job, model_data_url, decision="gated_out", reason=result.reason,
               model_sha256=pinned.digest)
        announce(settings, ledger, f"Model not deployed: {job}", f"The model from {job} did not pass the quality gate: "
                 f"{result.reason}. The production model keeps serving.", details)
        return {"status": "gated_out", "reason": result.reason}
    fairness = gate.evaluate_fairness(settings.fairness_gate, (pinned.metadata or {}).get("bias"))
    reason = result.reason
    if settings.fairness_gate:
        details["fairness"] = list(fairness.checks)
        reason = f"{result.reason}; {fairness.reason}"
    if not fairness.passed:
        ledger.record(subject, "gated_out", reason, job=job, details=details)
        _track(settings, ledger, "trained", job, model_data_url, decision="gated_out", reason=reason,
               model_sha256=pinned.digest)
        announce(settings, ledger, f"Model not deployed: {job}", f"The model from {job} did not pass the fairness "
                 f"gate: {fairness.reason}. The production model keeps serving.", details)
        return {"status": "gated_out", "reason": reason}
    ledger.record(subject, "gate_passed", reason, job=job, details=details)
    _track(settings, ledger, "trained", job, model_data_url, decision="gate_passed", reason=reason,
           model_sha256=pinned.digest)
    return deploy_model(settings, ledger, job, model_data_url, metrics, result.task, reason=reason,
                        training=training, pinned=pinned)


def deploy_model(settings: Settings, ledger: Ledger, job: str, model_data_url: str, metrics: dict[str, float],
                 task: str, *, reason: str, pinned: model_digest.Pinned, training: dict | None = None,
                 package_arn: str | None = None, now: float | None = None) -> dict:
    moment = time.time() if now is None else now
    subject = f"job#{job}"
    endpoint = describe_endpoint(settings)
    status = endpoint.get("EndpointStatus") if endpoint else None
    if status == "Failed" and not (ledger.get(*SLOT) or {}).get("inflight_config"):
        # A Failed endpoint serves nothing and can only be deleted; the model deploys once it is gone.
        _sm().delete_endpoint(EndpointName=settings.endpoint_name)
        announce(settings, ledger, "Failed endpoint deleted", f"{settings.endpoint_name} was Failed "
                f"({endpoint.get('FailureReason') or 'no reason given'}); it is being deleted and {job} will "
                "create it again.", {"job": job})
        return _defer(settings, ledger, job, f"the endpoint was Failed ({endpoint.get('FailureReason')}) and is "
                                             "being deleted")
    cfg, model = jobs.config_name(settings, job), jobs.model_name(settings, job)
    slot = ledger.get(*SLOT) or {}
    adopt = (slot.get("inflight_config") == cfg and not slot.get("inflight_requested")
             and int(slot.get("inflight_lease_until") or 0) < moment and status in ("Creating", "Updating"))
    if adopt:
        # The delivery that took the slot died right after asking SageMaker (nothing else can change this
        # endpoint while the slot is held): the change under way is this deployment.
        ledger.update(*SLOT, set_values={"inflight_requested": True},
                      condition="#inflight_config = :cfg AND attribute_not_exists(#inflight_requested)",
                      condition_values={":cfg": cfg})
        slot["inflight_requested"] = True
    if slot.get("inflight_config") == cfg and slot.get("inflight_requested"):
        # A retried delivery: this very deployment was requested before that delivery failed.
        ledger.record(subject, "deploy_requested", f"{settings.endpoint_name} → {cfg} was already requested",
                      job=job, model=slot.get("inflight_package"), details={"config": cfg, "action": "already_requested"})
        return {"status": "deploy_requested", "config": cfg, "package": slot.get("inflight_package"),
                "action": "already_requested"}
    if status not in (None, "InService"):
        return _defer(settings, ledger, job, f"the endpoint is {status}")
    try:
        ledger.update(*SLOT, set_values={
            "inflight_config": cfg, "inflight_job": job, "inflight_model": model, "inflight_since": int(moment),
            "inflight_metrics": metrics, "inflight_task": task, "inflight_model_data_url": model_data_url,
            "inflight_model_sha256": pinned.digest, "inflight_model_version": pinned.version_id,
            "inflight_fingerprint": _fingerprint_of(settings, job),
            "previous_config": (endpoint or {}).get("EndpointConfigName") or "",
            # Until the Create/UpdateEndpoint request is recorded as made, the slot is this invocation's.
            "inflight_lease_until": ledger.lease_end(moment),
        }, remove=("inflight_requested",), condition="attribute_not_exists(#inflight_config) OR #inflight_config = :cfg OR #inflight_since < :stale",
            condition_values={":cfg": cfg, ":stale": int(moment - 4 * 3600)})
    except Exception as exc:  # noqa: BLE001
        if not clients.is_conditional_failure(exc):
            raise
        return _defer(settings, ledger, job, "another deployment is in flight")
    requested = False
    try:
        if package_arn is None:
            package_arn = register_package(settings, training or _sm().describe_training_job(TrainingJobName=job),
                                           metrics, task, reason, pinned)
        ledger.update(*SLOT, set_values={"inflight_package": package_arn})
        create_model(settings, model, model_data_url, pinned.digest)
        create_endpoint_config(settings, cfg, model)
        if endpoint is None:
            _sm().create_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=cfg,
                                  Tags=[{"Key": "pipeline", "Value": settings.name_prefix}])
            action, requested = "create_endpoint", True
        elif endpoint.get("EndpointConfigName") == cfg:
            action = "already_serving"
        else:
            if _instance_type_of(endpoint.get("EndpointConfigName")) not in (None, settings.serving_instance_type):
                # Application Auto Scaling blocks an update that changes a scaled variant's instance type.
                _deregister_scaling(settings)
            _sm().update_endpoint(EndpointName=settings.endpoint_name, EndpointConfigName=cfg,
                                  DeploymentConfig=deployment_config(settings))
            action, requested = "update_endpoint", True
        # Only now may an endpoint event judge this deployment: one arriving between taking the slot and the
        # Create/UpdateEndpoint call would otherwise see the old config and call it a rollback.
        ledger.update(*SLOT, set_values={"inflight_requested": True}, condition="#inflight_config = :cfg",
                      condition_values={":cfg": cfg})
    except Exception:
        try:
            if requested:  # SageMaker is acting on it: keep the slot, so its endpoint event is judged
                ledger.update(*SLOT, set_values={"inflight_requested": True}, condition="#inflight_config = :cfg",
                              condition_values={":cfg": cfg})
            else:
                ledger.update(*SLOT, remove=_INFLIGHT, condition="#inflight_config = :cfg",
                              condition_values={":cfg": cfg})
        except Exception:  # noqa: BLE001 - verify reclaims a slot whose requester's lease is over
            log.exception("could not settle the deployment slot held for %s", cfg)
        raise
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
    from .runtime import exactly_once

    endpoint = describe_endpoint(settings)
    status = endpoint.get("EndpointStatus") if endpoint else "Deleted"
    if endpoint is not None and status not in STABLE:
        return {"status": "waiting", "endpoint_status": status}
    slot = ledger.get(*SLOT) or {}
    requested = slot.get("inflight_config")
    if not requested:
        result: dict = {"status": "nothing_in_flight", "endpoint_status": status}
    elif not slot.get("inflight_requested"):
        if int(slot.get("inflight_lease_until") or 0) >= time.time():
            return {"status": "waiting", "reason": f"the request for {requested} is being made"}
        result = _reclaim(settings, ledger, slot, endpoint, status)
    else:
        # The verdict, the production record and the freed slot are one commit: a delivery that fails
        # anywhere leaves the deployment in flight for its retry, never half-recorded.
        result = exactly_once(
            ledger, f"claim#deploy#{requested}#{slot.get('inflight_since')}", "verify",
            lambda: _settle(settings, ledger, slot, endpoint, status),
            busy=f"verification of {requested} is being handled by another delivery",
            duplicate=lambda _: {"status": "duplicate"})
    follow_through = _after_deploy(settings, ledger)
    if follow_through:
        result["after_deploy"] = follow_through
    pending = (ledger.get(*SLOT) or {}).get("pending_job")
    if pending and status in ("InService", "Deleted"):
        ledger.update(*SLOT, remove=("pending_job",), condition="#pending_job = :job", condition_values={":job": pending})
        try:
            result["pending"] = deploy_training_job(settings, ledger, pending)
        except Exception:
            # Put the waiting model back (unless a newer one is waiting now), so the retry deploys it.
            try:
                ledger.update(*SLOT, set_values={"pending_job": pending}, condition="attribute_not_exists(#pending_job)")
            except Exception as exc:  # noqa: BLE001
                if not clients.is_conditional_failure(exc):
                    raise
            raise
    return result


def _reclaim(settings: Settings, ledger: Ledger, slot: dict, endpoint: dict | None, status: str) -> dict:
    """The invocation that took the slot died (or could not free it) before recording its request. The model
    goes back to waiting, so the pending-deploy step below deploys it again (or finds it already serving)."""
    requested, job = slot["inflight_config"], slot.get("inflight_job")
    try:
        ledger.update(*SLOT, remove=_INFLIGHT, set_values={"pending_job": job},
                      condition="#inflight_config = :cfg AND attribute_not_exists(#inflight_requested)",
                      condition_values={":cfg": requested})
    except Exception as exc:  # noqa: BLE001 - another delivery reclaimed or completed it meanwhile
        if not clients.is_conditional_failure(exc):
            raise
        return {"status": "reclaimed_elsewhere", "config": requested}
    ledger.record(f"endpoint#{settings.endpoint_name}", "deploy_reclaimed",
                  f"the deployment of {requested} was left unfinished by an invocation that stopped; {job} is "
                  "deployed again", job=job, details={"endpoint_status": status,
                                                     "live": (endpoint or {}).get("EndpointConfigName")})
    return {"status": "reclaimed", "config": requested}


def _settle(settings: Settings, ledger: Ledger, slot: dict, endpoint: dict | None, status: str) -> dict:
    requested = slot["inflight_config"]
    live = endpoint.get("EndpointConfigName") if endpoint else None
    if status == "InService" and live == requested:
        result = _deployed(settings, ledger, slot)
    else:
        result = _rolled_back(settings, ledger, slot, endpoint, status)
    ledger.stage_update(*SLOT, remove=_INFLIGHT, condition="#inflight_config = :cfg",
                        condition_values={":cfg": requested})
    return result


def _deployed(settings: Settings, ledger: Ledger, slot: dict) -> dict:
    cfg, job = slot["inflight_config"], slot.get("inflight_job")
    production = {
        "training_job": job, "model_package_arn": slot.get("inflight_package"), "model_name": slot.get("inflight_model"),
        "config_name": cfg, "metrics": slot.get("inflight_metrics") or {}, "task": slot.get("inflight_task"),
        "model_data_url": slot.get("inflight_model_data_url"), "deployed_at": now_iso(),
        "model_sha256": slot.get("inflight_model_sha256"), "model_version": slot.get("inflight_model_version"),
        # The data it was trained on: a retrain on exactly this data would make the same model again.
        "fingerprint": slot.get("inflight_fingerprint"),
        # Autoscaling and pruning follow the commit (_after_deploy) and are retried until they are done.
        "after_deploy": "pending",
    }
    ledger.stage_state(*PRODUCTION, production)
    ledger.record(f"endpoint#{settings.endpoint_name}", "deployed",
                  f"{settings.endpoint_name} serves {cfg} (model of {job}); verified with DescribeEndpoint",
                  job=job, model=slot.get("inflight_package"),
                  details={"config": cfg, "previous": slot.get("previous_config"), "metrics": production["metrics"]})
    _track(settings, ledger, "deployed", job, slot.get("inflight_model_data_url"),
           package_arn=slot.get("inflight_package") or "", model_sha256=slot.get("inflight_model_sha256") or "",
           data_fingerprint=slot.get("inflight_fingerprint") or "", deployed_at=production["deployed_at"])
    announce(settings, ledger, f"New model serving: {job}", f"{settings.endpoint_name} now serves the model of {job} "
             f"(endpoint config {cfg}).", {"metrics": production["metrics"], "package": slot.get("inflight_package")})
    return {"status": "deployed", "config": cfg}


def _after_deploy(settings: Settings, ledger: Ledger) -> dict | None:
    """Register autoscaling and prune old versions for the production model, once. A failure is recorded and
    re-raised (the event is retried); every later endpoint event tries again until it is done."""
    production = ledger.get(*PRODUCTION) or {}
    if production.get("after_deploy") != "pending":
        return None
    cfg = production.get("config_name")
    try:
        register_scaling(settings)
        pruned = prune(settings, keep_configs={cfg} if cfg else set())
    except Exception as exc:
        raise AfterDeployError(f"{cfg} serves (model of {production.get('training_job')}), but autoscaling/pruning "
                               f"failed; every endpoint event retries it: {type(exc).__name__}: {exc}") from exc
    try:
        ledger.update(*PRODUCTION, set_values={"after_deploy": "done", "pruned": pruned},
                      condition="#config_name = :cfg", condition_values={":cfg": cfg})
    except Exception as exc:  # noqa: BLE001 - a newer model is production now; its own follow-through runs
        if not clients.is_conditional_failure(exc):
            raise
    return {"scaling": "registered", "pruned": pruned}


class AfterDeployError(RuntimeError):
    """A verified model serves, but what follows the deployment (autoscaling, pruning) failed."""


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
    _track(settings, ledger, "rolled_back", job, slot.get("inflight_model_data_url"), reason=reason,
           package_arn=package or "", model_sha256=slot.get("inflight_model_sha256") or "",
           data_fingerprint=slot.get("inflight_fingerprint") or "")
    announce(settings, ledger, f"Deployment {'rolled back' if decision == 'rolled_back' else 'failed'}: {job}", reason,
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
    if props.get("model_sha256"):
        pinned = model_digest.Pinned(digest=props["model_sha256"], tarball_sha256="",
                                     version_id=props.get("model_version") or None, files=0)
    else:  # registered before models were pinned: pin what is there now
        pinned = model_digest.pin(clients.get("s3"), container["ModelDataUrl"])
    return deploy_model(settings, ledger, job, container["ModelDataUrl"], metrics, props.get("task") or settings.task,
                        reason="provisioned by the stack (latest approved model)", package_arn=package["ModelPackageArn"],
                        pinned=pinned)


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
