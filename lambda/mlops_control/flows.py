"""One flow per handler: parse the event, call the pure steps, return a small result dict.
Handlers wrap these in runtime.run (records + SNS on failure)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import events
from .runtime import exactly_once, once_per_job

if TYPE_CHECKING:
    from .ledger import Ledger
    from .settings import Settings

# Each flow imports the steps it needs, so that a function compiles only its own handler's modules
# (Lambda's /var/task is read-only: no bytecode cache). `prepare` does that at init, with the clients
# its typical event uses, so a SnapStart snapshot already holds them.
_PREPARE = {
    "trigger": (("intake",), ("dynamodb", "s3", "sagemaker")),
    "processing_done": (("intake",), ("dynamodb", "s3")),
    "training_done": (("deployer", "training", "notify"), ("dynamodb", "sagemaker")),
    "endpoint_state": (("deployer",), ("dynamodb", "sagemaker")),
    "retrain": (("training",), ("dynamodb", "s3")),
    "monitor_schedule": (("intake",), ("dynamodb", "s3")),
    "provision": (("deployer",), ("dynamodb", "sagemaker")),
}


def prepare(flow: str) -> None:
    """Called by a handler module at import (Lambda init)."""
    import gc
    from importlib import import_module

    from . import clients

    modules, services = _PREPARE[flow]
    for module in modules:
        import_module(f"{__package__}.{module}")
    clients.prewarm(*services)
    try:
        from snapshot_restore_py import register_after_restore  # in Lambda's managed Python runtimes
    except ImportError:  # tests, the local stack: nothing is ever restored from a snapshot
        pass
    else:
        register_after_restore(after_restore)
    # What init built (botocore's API models, mostly) lives as long as the environment. Frozen, the collector
    # no longer walks it in each invocation, nor writes to (and so copies) its pages after a restore.
    gc.freeze()


def after_restore() -> None:
    """Run by Lambda in each execution environment resumed from the snapshot. Every such environment starts
    with the snapshot's `random` state, so botocore's retry jitter would be the same in all of them and their
    throttled retries would collide; a seed from the OS makes each its own."""
    import random

    random.seed()


def trigger(settings: Settings, ledger: Ledger, event: Any) -> dict:
    from . import intake

    results = [intake.handle_upload(settings, ledger, obj) for obj in events.parse_object_created(event)]
    return results[0] if len(results) == 1 else {"status": "batch", "results": results}


def processing_done(settings: Settings, ledger: Ledger, event: Any) -> dict:
    from . import intake

    change = events.parse_job_state_change(event, "processing")
    if not events.is_terminal(change.status):
        return {"status": "not_terminal", "job_status": change.status}
    return intake.processing_finished(settings, ledger, change.name, change.status, change.failure_reason)


def training_done(settings: Settings, ledger: Ledger, event: Any) -> dict:
    change = events.parse_job_state_change(event, "training")
    if not events.is_terminal(change.status):
        return {"status": "not_terminal", "job_status": change.status}
    job = change.name
    if not job.startswith(f"{settings.name_prefix}-train-"):
        ledger.record(f"job#{job}", "ignored", "not a training job of this pipeline", job=job, ttl_days=30)
        return {"status": "ignored"}
    return once_per_job(ledger, job, change.status, lambda: _training_finished(settings, ledger, job))


def _training_finished(settings: Settings, ledger: Ledger, job: str) -> dict:
    from . import clients, deployer, training
    from .notify import announce

    described = clients.get("sagemaker").describe_training_job(TrainingJobName=job)
    status = described.get("TrainingJobStatus")
    # Free the slot first: the coalesced follow-up must start even if this model is gated out or its
    # deploy fails.
    follow_up = training.finish_training(settings, ledger, job)
    if status != "Completed":
        reason = f"training {str(status).lower()}: {described.get('FailureReason') or 'no reason given'}"
        ledger.record(f"job#{job}", "training_failed", reason, job=job, details={"follow_up": follow_up})
        announce(settings, ledger, f"Training failed: {job}", f"{reason}. The production model keeps serving.",
                {"job": job, "follow_up": follow_up})
        return {"status": "training_failed", "reason": reason, "follow_up": follow_up}
    result = deployer.deploy_training_job(settings, ledger, job, training=described)
    result["follow_up"] = follow_up
    return result


def endpoint_state(settings: Settings, ledger: Ledger, event: Any) -> dict:
    from . import deployer

    change = events.parse_endpoint_state_change(event)
    if change.name != settings.endpoint_name:
        return {"status": "ignored", "endpoint": change.name}
    # The event only says "look now": DescribeEndpoint is the truth (events arrive late, twice, or stale).
    return deployer.verify(settings, ledger)


def retrain(settings: Settings, ledger: Ledger, event: Any) -> dict:
    from . import training

    request = events.parse_retrain_request(event)

    def duplicate(_: Any) -> dict:
        ledger.record(f"alarm#{request.alarm_name}" if request.alarm_name else "retrain#manual", "duplicate_skipped",
                      f"retrain request {request.identity} already handled", ttl_days=30)
        return {"status": "duplicate"}

    return exactly_once(
        ledger, f"claim#retrain#{request.identity}", "retrain",
        lambda: training.retrain(settings, ledger, request.source, request.alarm_name, request.state,
                                 request.reason, identity=request.identity, force=request.force),
        busy=f"retrain request {request.identity} is being handled by another delivery", duplicate=duplicate)


def monitor_schedule(settings: Settings, ledger: Ledger, event: Any) -> dict:
    from . import intake

    tick = events.parse_scheduled_event(event)

    def duplicate(_: Any) -> dict:
        ledger.record(f"monitor#{settings.endpoint_name}", "duplicate_skipped",
                      f"schedule tick {tick.event_id} ({tick.time}) already handled", ttl_days=7)
        return {"status": "duplicate"}

    return exactly_once(ledger, f"claim#tick#{tick.event_id}", "monitor",
                        lambda: intake.start_monitoring(settings, ledger, tick.event_id, tick.time),
                        busy=f"schedule tick {tick.event_id} is being handled by another delivery",
                        duplicate=duplicate)


def provision(settings: Settings, ledger: Ledger, event: Any) -> dict:
    """custom_resources.Provider on_event: return the response, raise on failure (the framework answers
    CloudFormation either way). The physical id is always the endpoint name, so an Update never makes
    CloudFormation delete the endpoint as a 'replaced' resource."""
    from . import deployer

    request = events.parse_custom_resource(event)
    if request.request_type == "Delete":
        if request.physical_id not in (None, settings.endpoint_name):
            return {"PhysicalResourceId": request.physical_id, "Data": {"Status": "not ours"}}
        result = deployer.delete_all(settings, ledger)
    else:
        result = deployer.ensure_latest_served(settings, ledger)
    return {"PhysicalResourceId": settings.endpoint_name,
            "Data": {"Status": str(result.get("status")), "EndpointName": settings.endpoint_name}}
