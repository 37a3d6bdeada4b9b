"""One training run at a time; whatever arrives during a run becomes exactly one follow-up run.

The state is one ledger item (pk=pipeline, sk=training) changed only by conditional writes:
- running_job: the run holding the slot (absent when idle), running_since, running_trigger, running_reason;
  running_started: CreateTrainingJob succeeded; until then start_lease_until says how long the delivery that
  took the slot may still be starting it; running_after: the run it follows up (for follow-ups).
- pending: true when something asked for training during the run; pending_trigger is the newest asker,
  pending_count how many asked.
Start  = SET running_job IF idle (or the holder is stale, or never started and its starter's lease is over).
Coalesce = SET pending IF another run holds the slot. Finish = hand over to the follow-up IF pending, else
clear; both conditional on running_job being the finished job. A start that fails keeps the slot, so the
retried delivery (same trigger, same job name) starts it without losing what is pending; a retried completion
starts the follow-up it already handed the slot to. Every interleaving ends in exactly one follow-up, which
reads the whole validated/ prefix when it starts, so it trains on the newest data.
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
_RUNNING = ("running_job", "running_since", "running_trigger", "running_reason", "running_started",
            "start_lease_until", "running_after")


@dataclass(frozen=True)
class TrainingRequest:
    outcome: str  # started | already_started | coalesced
    job: str
    reason: str


def _stale_before(settings: Settings, now: float) -> int:
    # A run that outlived its own stopping condition by an hour lost its completion event: free the slot.
    return int(now - settings.max_runtime_seconds - 3600)


def _take_slot(settings: Settings, ledger: Ledger, job: str, trigger: str, why: str, moment: float,
               *, after: str | None = None, condition: str, condition_values: dict) -> None:
    ledger.update(*SLOT, set_values={
        "running_job": job, "running_since": int(moment), "running_trigger": trigger, "running_reason": why,
        "running_started": False, "start_lease_until": ledger.lease_end(moment), "pending": False,
        "pending_count": 0, **({"running_after": after} if after else {}),
    }, remove=("pending_trigger",) + (() if after else ("running_after",)), condition=condition,
        condition_values=condition_values)


_FREE = ("attribute_not_exists(#running_job) OR (#running_started = :true AND #running_since < :stale) "
         "OR (#running_started = :false AND #start_lease_until < :now)")


def request_training(settings: Settings, ledger: Ledger, trigger: str, why: str, *, subject: str | None = None,
                     file: str | None = None, now: float | None = None) -> TrainingRequest:
    """Start a training run on the current validated data, or coalesce into the follow-up of the running one."""
    moment = time.time() if now is None else now
    job = jobs.job_name(settings, "train", "run", trigger)
    for _ in range(_ATTEMPTS):
        try:
            _take_slot(settings, ledger, job, trigger, why, moment, condition=_FREE, condition_values={
                ":stale": _stale_before(settings, moment), ":now": int(moment), ":true": True, ":false": False})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
        else:
            _start(settings, ledger, job, why, trigger, file=file)
            return TrainingRequest("started", job, why)
        item = ledger.get(*SLOT) or {}
        if item.get("running_job") == job:
            # A redelivered request for the run it started: never reset what waits for its follow-up.
            return _resume(settings, ledger, item, why, file=file)
        try:
            item = ledger.update(*SLOT, set_values={
                "pending": True, "pending_trigger": trigger, "pending_updated_at": now_iso(moment),
            }, add={"pending_count": 1}, condition="attribute_exists(#running_job) AND #running_job <> :job",
                condition_values={":job": job})
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


def _resume(settings: Settings, ledger: Ledger, item: dict, why: str, *, file: str | None = None) -> TrainingRequest:
    """The slot is held by `job`, taken by an earlier delivery of the same request: start it if that delivery
    could not (or did not live to), else report it as started."""
    job = str(item["running_job"])
    if item.get("running_started"):
        # Said again: the delivery that started it may have failed later, and its unit of work (with the
        # training_started record) was then never written.
        ledger.record(f"job#{job}", "training_already_started", why, file=file, job=job,
                      details={"trigger": item.get("running_trigger")})
        return TrainingRequest("already_started", job, why)
    _start(settings, ledger, job, why, str(item.get("running_trigger") or ""), file=file)
    return TrainingRequest("started", job, why)


def finish_training(settings: Settings, ledger: Ledger, job: str, *, now: float | None = None) -> str | None:
    """The run `job` ended (any way). Hand the slot to the follow-up run if one is pending, else free it.
    Returns the follow-up job name, or None. A duplicate or stale completion event changes nothing, except that
    a completion retried after its follow-up failed to start starts it."""
    moment = time.time() if now is None else now
    for _ in range(_ATTEMPTS):
        item = ledger.get(*SLOT) or {}
        if item.get("running_job") != job:
            if item.get("running_job") and item.get("running_after") == job:
                _resume(settings, ledger, item, str(item.get("running_reason") or f"follow-up of {job}"))
                return str(item["running_job"])
            return None
        if item.get("pending"):
            trigger = str(item.get("pending_trigger") or f"after:{job}")
            follow_up = jobs.job_name(settings, "train", "follow-up", job, trigger)
            count = int(item.get("pending_count") or 1)
            why = f"follow-up of {job}: {count} request(s) arrived during that run; trains on the newest validated data"
            try:
                _take_slot(settings, ledger, follow_up, trigger, why, moment, after=job,
                           condition="#running_job = :job AND #pending = :true",
                           condition_values={":job": job, ":true": True})
            except Exception as exc:  # noqa: BLE001
                if not clients.is_conditional_failure(exc):
                    raise
                continue
            _start(settings, ledger, follow_up, why, trigger)
            return follow_up
        try:
            ledger.update(*SLOT, set_values={"last_job": job, "last_finished_at": now_iso(moment)},
                          remove=_RUNNING,
                          condition="#running_job = :job AND (attribute_not_exists(#pending) OR #pending = :false)",
                          condition_values={":job": job, ":false": False})
            return None
        except Exception as exc:  # noqa: BLE001 - something became pending in between: hand over instead
            if not clients.is_conditional_failure(exc):
                raise
    raise RuntimeError(f"could not release the training slot held by {job}")


def _start(settings: Settings, ledger: Ledger, job: str, why: str, trigger: str, *, file: str | None = None) -> None:
    """CreateTrainingJob for the run holding the slot. On failure the slot stays with it (not started), so the
    retried delivery starts it; only if no retry comes before its lease ends may another request take over."""
    try:
        inputs = snapshot_inputs(settings, job)
        try:
            clients.get("sagemaker").create_training_job(**jobs.training_request(settings, job, inputs))
            outcome = "training_started"
        except Exception as exc:  # noqa: BLE001
            if not clients.is_already_exists(exc):
                raise
            outcome = "training_already_started"
    except Exception:
        # End our start lease at once (the slot stays with this run, pending kept): the retried delivery starts
        # this very job; a different request arriving first may take the slot over with a run of its own, which
        # reads the same validated data.
        try:
            ledger.update(*SLOT, set_values={"start_lease_until": 0},
                          condition="#running_job = :job AND #running_started = :false",
                          condition_values={":job": job, ":false": False})
        except Exception as release_exc:  # noqa: BLE001 - the lease still ends with this invocation
            if not clients.is_conditional_failure(release_exc):
                raise
        raise
    try:
        ledger.update(*SLOT, set_values={"running_started": True}, remove=("start_lease_until",),
                      condition="#running_job = :job", condition_values={":job": job})
    except Exception as exc:  # noqa: BLE001 - our start outlived its lease and another run took the slot: both run
        if not clients.is_conditional_failure(exc):
            raise
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
            *, identity: str, force: bool = False, now: float | None = None) -> dict:
    """A drift alarm's action or a manual request. `identity` names the request, so that its redelivery (after
    a failure anywhere, even after the cooldown was taken) is the same request and trains the same run."""
    moment = time.time() if now is None else now
    subject = f"alarm#{alarm}" if alarm else "retrain#manual"
    if source == "alarm" and state != "ALARM":
        ledger.record(subject, "retrain_ignored", f"alarm state is {state}, not ALARM", ttl_days=30)
        return {"status": "ignored", "reason": f"alarm state {state}"}
    cooldown = settings.retrain_cooldown_seconds
    if not force:
        try:
            ledger.update(*RETRAIN, set_values={"last_retrain_at": int(moment), "last_reason": reason, "source": source,
                                                "last_request": identity},
                          condition="attribute_not_exists(#last_retrain_at) OR #last_retrain_at <= :cutoff "
                                    "OR #last_request = :me",
                          condition_values={":cutoff": int(moment - cooldown), ":me": identity})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
            last = (ledger.get(*RETRAIN) or {}).get("last_retrain_at", 0)
            why = (f"cooldown: last retrain {int(moment - int(last))}s ago, cooldown is {cooldown}s "
                   f"(trigger: {reason})")
            ledger.record(subject, "retrain_skipped_cooldown", why, ttl_days=30)
            return {"status": "cooldown", "reason": why}
    else:
        ledger.update(*RETRAIN, set_values={"last_retrain_at": int(moment), "last_reason": reason, "source": source,
                                            "last_request": identity})
    if not has_validated_data(settings):
        why = f"no validated data under s3://{settings.data_bucket}/{settings.validated_prefix} to retrain on"
        ledger.record(subject, "retrain_skipped", why)
        return {"status": "no_data", "reason": why}
    try:
        request = request_training(settings, ledger, f"retrain:{identity}",
                                   f"retrain ({source}): {reason}", subject=subject, now=moment)
        ledger.record(subject, "retrain_requested", f"{reason}; training {request.outcome} ({request.job})",
                      job=request.job)
    except Exception:
        # Hand the cooldown back: the retried delivery must be able to retrain, not be skipped as a repeat.
        try:
            ledger.update(*RETRAIN, remove=("last_retrain_at", "last_request"), condition="#last_request = :me",
                          condition_values={":me": identity})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
        raise
    return {"status": request.outcome, "job": request.job}
