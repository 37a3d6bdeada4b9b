"""One training run at a time; whatever arrives during a run becomes exactly one follow-up run.

The state is one ledger item (pk=pipeline, sk=training) changed only by conditional writes:
- running_job: the run in progress (absent when idle), running_since, running_trigger
- pending: true when something asked for training during the run; pending_trigger is the newest asker,
  pending_count how many asked.
Start  = SET running_job IF idle (or the holder is stale, or it is our own half-done start).
Coalesce = SET pending IF running. Finish = hand over to the follow-up IF pending, else clear; both
conditional on running_job being the finished job. Every interleaving ends in exactly one follow-up.
The follow-up reads the whole validated/ prefix when it starts, so it trains on the newest data.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from . import clients, jobs
from .ledger import Ledger, now_iso
from .settings import Settings

SLOT = ("pipeline", "training")
_ATTEMPTS = 8


@dataclass(frozen=True)
class TrainingRequest:
    outcome: str  # started | coalesced
    job: str
    reason: str


def _stale_before(settings: Settings, now: float) -> int:
    # A run that outlived its own stopping condition by an hour lost its completion event: free the slot.
    return int(now - settings.max_runtime_seconds - 3600)


def request_training(settings: Settings, ledger: Ledger, trigger: str, why: str, *, subject: str | None = None,
                     file: str | None = None, now: float | None = None) -> TrainingRequest:
    """Start a training run on the current validated data, or coalesce into the follow-up of the running one."""
    moment = time.time() if now is None else now
    job = jobs.job_name(settings, "train", "run", trigger)
    for _ in range(_ATTEMPTS):
        try:
            ledger.update(*SLOT, set_values={
                "running_job": job, "running_since": int(moment), "running_trigger": trigger,
                "running_reason": why, "pending": False, "pending_count": 0,
            }, remove=("pending_trigger",),
                condition="attribute_not_exists(#running_job) OR #running_since < :stale OR #running_job = :job",
                condition_values={":stale": _stale_before(settings, moment), ":job": job})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
        else:
            _start(settings, ledger, job, why, trigger, file=file)
            return TrainingRequest("started", job, why)
        try:
            item = ledger.update(*SLOT, set_values={
                "pending": True, "pending_trigger": trigger, "pending_updated_at": now_iso(moment),
            }, add={"pending_count": 1}, condition="attribute_exists(#running_job)")
        except Exception as exc:  # noqa: BLE001 - the run finished in between: try to start again
            if not clients.is_conditional_failure(exc):
                raise
            continue
        running = str(item["running_job"])
        reason = (f"training {running} is in progress; {why} joins its single follow-up run "
                  f"({item.get('pending_count', 1)} request(s) waiting)")
        ledger.record(subject or f"job#{running}", "training_coalesced", reason, file=file, job=running,
                      details={"trigger": trigger}, ttl_days=90)
        return TrainingRequest("coalesced", running, reason)
    raise RuntimeError("could not start or coalesce training: the training slot kept changing")


def finish_training(settings: Settings, ledger: Ledger, job: str, *, now: float | None = None) -> str | None:
    """The run `job` ended (any way). Hand the slot to the follow-up run if one is pending, else free it.
    Returns the follow-up job name, or None. A duplicate or stale completion event changes nothing."""
    moment = time.time() if now is None else now
    for _ in range(_ATTEMPTS):
        item = ledger.get(*SLOT) or {}
        if item.get("running_job") != job:
            return None
        if item.get("pending"):
            trigger = str(item.get("pending_trigger") or f"after:{job}")
            follow_up = jobs.job_name(settings, "train", "follow-up", job, trigger)
            count = int(item.get("pending_count") or 1)
            try:
                ledger.update(*SLOT, set_values={
                    "running_job": follow_up, "running_since": int(moment), "running_trigger": trigger,
                    "running_reason": f"follow-up of {job}", "pending": False, "pending_count": 0,
                }, remove=("pending_trigger",), condition="#running_job = :job AND #pending = :true",
                    condition_values={":job": job, ":true": True})
            except Exception as exc:  # noqa: BLE001
                if not clients.is_conditional_failure(exc):
                    raise
                continue
            why = f"follow-up of {job}: {count} request(s) arrived during that run; trains on the newest validated data"
            _start(settings, ledger, follow_up, why, trigger)
            return follow_up
        try:
            ledger.update(*SLOT, set_values={"last_job": job, "last_finished_at": now_iso(moment)},
                          remove=("running_job", "running_since", "running_trigger", "running_reason"),
                          condition="#running_job = :job AND (attribute_not_exists(#pending) OR #pending = :false)",
                          condition_values={":job": job, ":false": False})
            return None
        except Exception as exc:  # noqa: BLE001 - something became pending in between: hand over instead
            if not clients.is_conditional_failure(exc):
                raise
    raise RuntimeError(f"could not release the training slot held by {job}")


def _start(settings: Settings, ledger: Ledger, job: str, why: str, trigger: str, *, file: str | None = None) -> None:
    try:
        inputs = snapshot_inputs(settings, job)
        try:
            clients.get("sagemaker").create_training_job(**jobs.training_request(settings, job, inputs))
            outcome = "training_started"
        except Exception as exc:  # noqa: BLE001
            if not clients.is_already_exists(exc):
                raise
            outcome = "training_already_started"
    except Exception as exc:
        # Give the slot back (keeping anything pending) so that the retried event can start it again.
        try:
            ledger.update(*SLOT, remove=("running_job", "running_since", "running_trigger", "running_reason"),
                          condition="#running_job = :job", condition_values={":job": job})
        except Exception as release_exc:  # noqa: BLE001
            if not clients.is_conditional_failure(release_exc):
                raise
        raise exc
    ledger.record(f"job#{job}", outcome, why, file=file, job=job,
                  details={"trigger": trigger, "inputs": len(inputs),
                           "data": f"s3://{settings.data_bucket}/{settings.validated_prefix}"})


def snapshot_inputs(settings: Settings, job: str) -> list[dict[str, Any]]:
    """Lineage: the validated objects (key, version, etag) present when the run starts, kept next to the model."""
    s3 = clients.get("s3")
    inputs: list[dict[str, Any]] = []
    kwargs = {"Bucket": settings.data_bucket, "Prefix": settings.validated_prefix}
    while True:
        page = s3.list_object_versions(**kwargs)
        for version in page.get("Versions", []):
            if version.get("IsLatest"):
                inputs.append({"uri": f"s3://{settings.data_bucket}/{version['Key']}",
                               "version": version.get("VersionId"), "etag": str(version.get("ETag", "")).strip('"'),
                               "size": version.get("Size")})
        if not page.get("IsTruncated"):
            break
        kwargs.update(KeyMarker=page.get("NextKeyMarker"), VersionIdMarker=page.get("NextVersionIdMarker"))
    s3.put_object(Bucket=settings.artifacts_bucket, Key=f"models/{job}/inputs.json",
                  Body=json.dumps({"training_job": job, "inputs": inputs}, indent=1).encode(),
                  ContentType="application/json", ServerSideEncryption="aws:kms", SSEKMSKeyId=settings.kms_key_arn)
    return inputs


def has_validated_data(settings: Settings) -> bool:
    page = clients.get("s3").list_objects_v2(Bucket=settings.data_bucket, Prefix=settings.validated_prefix, MaxKeys=1)
    return bool(page.get("KeyCount") or page.get("Contents"))


# -- retrain (drift alarm / manual) ------------------------------------------------------------------
RETRAIN = ("pipeline", "retrain")


def retrain(settings: Settings, ledger: Ledger, source: str, alarm: str | None, state: str | None, reason: str,
            *, force: bool = False, now: float | None = None) -> dict:
    moment = time.time() if now is None else now
    subject = f"alarm#{alarm}" if alarm else "retrain#manual"
    if source == "alarm" and state != "ALARM":
        ledger.record(subject, "retrain_ignored", f"alarm state is {state}, not ALARM", ttl_days=30)
        return {"status": "ignored", "reason": f"alarm state {state}"}
    cooldown = settings.retrain_cooldown_seconds
    if not force:
        try:
            ledger.update(*RETRAIN, set_values={"last_retrain_at": int(moment), "last_reason": reason, "source": source},
                          condition="attribute_not_exists(#last_retrain_at) OR #last_retrain_at <= :cutoff",
                          condition_values={":cutoff": int(moment - cooldown)})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
            last = (ledger.get(*RETRAIN) or {}).get("last_retrain_at", 0)
            why = (f"cooldown: last retrain {int(moment - int(last))}s ago, cooldown is {cooldown}s "
                   f"(trigger: {reason})")
            ledger.record(subject, "retrain_skipped_cooldown", why, ttl_days=30)
            return {"status": "cooldown", "reason": why}
    else:
        ledger.update(*RETRAIN, set_values={"last_retrain_at": int(moment), "last_reason": reason, "source": source})
    if not has_validated_data(settings):
        why = f"no validated data under s3://{settings.data_bucket}/{settings.validated_prefix} to retrain on"
        ledger.record(subject, "retrain_skipped", why)
        return {"status": "no_data", "reason": why}
    # The window start makes the run id deterministic: a redelivered alarm action maps to the same job name.
    window = int(moment // max(cooldown, 1)) if not force else int(moment)
    try:
        request = request_training(settings, ledger, f"retrain:{alarm or 'manual'}:{window}",
                                   f"retrain ({source}): {reason}", subject=subject, now=moment)
    except Exception:
        # Hand the cooldown back: the retried delivery must be able to retrain, not be skipped as a repeat.
        try:
            ledger.update(*RETRAIN, remove=("last_retrain_at",), condition="#last_retrain_at = :mine",
                          condition_values={":mine": int(moment)})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
        raise
    ledger.record(subject, "retrain_requested", f"{reason}; training {request.outcome} ({request.job})", job=request.job)
    return {"status": request.outcome, "job": request.job}
