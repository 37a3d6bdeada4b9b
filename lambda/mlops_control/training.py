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

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from . import clients, jobs, keys, notify
from .ledger import Ledger, from_item, now_iso
from .settings import Settings

SLOT = keys.TRAINING
_ATTEMPTS = 8
_RUNNING = ("running_job", "running_since", "running_trigger", "running_reason", "running_started",
            "start_lease_until", "running_after", "running_fingerprint")


@dataclass(frozen=True)
class TrainingRequest:
    outcome: str  # started | already_started | coalesced | skipped (the window's data was trained on already)
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
                     file: str | None = None, force: bool = False, now: float | None = None) -> TrainingRequest:
    """Start a training run on the current validated data, or coalesce into the follow-up of the running one.
    A run whose data (the window's files and versions) was trained on already is not started, unless `force`."""
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
            return _outcome(_start(settings, ledger, job, why, trigger, file=file, force=force), job, why)
        item = ledger.get(*SLOT) or {}
        if item.get("running_job") == job:
            # A redelivered request for the run it started: never reset what waits for its follow-up.
            return _resume(settings, ledger, item, why, file=file, force=force)
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


# The decisions of _start that start nothing, and the request outcome each one is.
_NOT_STARTED = {"training_skipped_same_data": "skipped", "training_refused_too_large": "refused"}


def _outcome(decision: str, job: str, why: str) -> TrainingRequest:
    return TrainingRequest(_NOT_STARTED.get(decision, "started"), job, why)


def _resume(settings: Settings, ledger: Ledger, item: dict, why: str, *, file: str | None = None,
            force: bool = False) -> TrainingRequest:
    """The slot is held by `job`, taken by an earlier delivery of the same request: start it if that delivery
    could not (or did not live to), else report it as started."""
    job = str(item["running_job"])
    if item.get("running_started"):
        # Said again: the delivery that started it may have failed later, and its unit of work (with the
        # training_started record) was then never written.
        ledger.record(f"job#{job}", "training_already_started", why, file=file, job=job,
                      details={"trigger": item.get("running_trigger")})
        return TrainingRequest("already_started", job, why)
    return _outcome(_start(settings, ledger, job, why, str(item.get("running_trigger") or ""), file=file, force=force),
                    job, why)


def finish_training(settings: Settings, ledger: Ledger, job: str, *, now: float | None = None) -> str | None:
    """The run `job` ended (any way). Hand the slot to the follow-up run if one is pending, else free it.
    Returns the follow-up job name, or None. A duplicate or stale completion event changes nothing, except that
    a completion retried after its follow-up failed to start starts it."""
    moment = time.time() if now is None else now
    for _ in range(_ATTEMPTS):
        item = ledger.get(*SLOT) or {}
        if item.get("running_job") != job:
            if item.get("running_job") and item.get("running_after") == job:
                resumed = _resume(settings, ledger, item, str(item.get("running_reason") or f"follow-up of {job}"))
                return None if resumed.outcome in _NOT_STARTED.values() else resumed.job
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
            decision = _start(settings, ledger, follow_up, why, trigger)
            return None if decision in _NOT_STARTED else follow_up
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


def _start(settings: Settings, ledger: Ledger, job: str, why: str, trigger: str, *, file: str | None = None,
           force: bool = False) -> str:
    """CreateTrainingJob for the run holding the slot, on the training window's data as it is now. On failure
    the slot stays with it (not started), so the retried delivery starts it; only if no retry comes before its
    lease ends may another request take over. Returns the decision: training_started, training_already_started,
    training_skipped_same_data (a run was already made on exactly this data) or training_refused_too_large (the
    window holds more than the training instance's memory; `force` does not override it); the last two pass the
    slot on."""
    try:
        snapshot = take_snapshot(settings, ledger)
        same_as = None if force else same_data_as(ledger, snapshot.fingerprint, job)
        too_large = same_as is None and too_large_for_training(settings, snapshot)
        if same_as is None and not too_large:
            write_snapshot(settings, job, snapshot)
            champion = ledger.get(*keys.PRODUCTION)
            try:
                clients.get("sagemaker").create_training_job(**jobs.training_request(settings, job, snapshot, champion))
                outcome = "training_started"
            except Exception as exc:  # noqa: BLE001
                if not clients.is_already_exists(exc):
                    raise
                outcome = "training_already_started"
            # Only a run that exists makes this data "trained on" (a retry of this request finds it under its name).
            _remember_fingerprint(ledger, snapshot.fingerprint, job)
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
    if same_as is not None:
        ledger.record(f"job#{job}", "training_skipped_same_data",
                      f"{why}: not started, the training window holds exactly the data {same_as} was trained on "
                      f"(fingerprint {snapshot.fingerprint[:12]})", file=file, job=job,
                      details={"trigger": trigger, "fingerprint": snapshot.fingerprint, "same_as": same_as})
        _pass_on(settings, ledger, job)
        return "training_skipped_same_data"
    if too_large:
        _refuse_too_large(settings, ledger, job, why, trigger, snapshot, file=file)
        _pass_on(settings, ledger, job)
        return "training_refused_too_large"
    try:
        ledger.update(*SLOT, set_values={"running_started": True, "running_fingerprint": snapshot.fingerprint},
                      remove=("start_lease_until",), condition="#running_job = :job", condition_values={":job": job})
    except Exception as exc:  # noqa: BLE001 - our start outlived its lease and another run took the slot: both run
        if not clients.is_conditional_failure(exc):
            raise
    ledger.record(f"job#{job}", outcome, why, file=file, job=job, details={
        "trigger": trigger, "inputs": len(snapshot.inputs), "rows": snapshot.rows, "fingerprint": snapshot.fingerprint,
        "window": snapshot.window, "champion": (champion or {}).get("training_job"),
        "data": f"s3://{settings.data_bucket}/{settings.validated_prefix}"})
    return outcome


def too_large_for_training(settings: Settings, snapshot: Snapshot) -> bool:
    """Whether the window's rows x columns exceed TRAINING_MAX_CELLS (a window whose size is unknown is not refused:
    files validated before validation counted columns have rows only)."""
    return bool(settings.training_max_cells) and snapshot.cells is not None and snapshot.cells > settings.training_max_cells


def _refuse_too_large(settings: Settings, ledger: Ledger, job: str, why: str, trigger: str, snapshot: Snapshot, *,
                      file: str | None) -> None:
    """The decision, with the limit and the ways past it, in the ledger and to people; the data stays where it is."""
    limit = settings.training_max_cells
    columns = snapshot.cells // snapshot.rows if snapshot.rows else 0
    message = (f"{why}: not started: the training window holds {snapshot.rows:,} rows x {columns} columns = "
               f"{snapshot.cells:,} cells, more than one {settings.training_instance_type} training job is given "
               f"(training_max_cells {limit:,}). Options: a training instance with more memory "
               f"(training_instance_type), a smaller training window (training_window_max_rows, training_window_days) "
               f"or, if you measured headroom, a higher training_max_cells (docs/scale.md). The validated files are "
               f"kept; nothing was deleted.")
    details = {"trigger": trigger, "rows": snapshot.rows, "cells": snapshot.cells, "limit_cells": limit,
               "instance_type": settings.training_instance_type, "window": snapshot.window,
               "fingerprint": snapshot.fingerprint,
               "options": ["training_instance_type", "training_window_max_rows", "training_window_days",
                           "training_max_cells"]}
    ledger.record(f"job#{job}", "training_refused_too_large", message, file=file, job=job, details=details)
    notify.announce(settings, ledger, "Training refused: too much data for the training instance", message, details)


def _remember_fingerprint(ledger: Ledger, fingerprint: str, job: str) -> None:
    try:
        ledger.update(*keys.fingerprint(fingerprint), set_values={"job": job, "at": now_iso()},
                      condition="attribute_not_exists(#job) OR #job = :job", condition_values={":job": job})
    except Exception as exc:  # noqa: BLE001 - another run holds this fingerprint: same_data_as saw it first
        if not clients.is_conditional_failure(exc):
            raise


def _pass_on(settings: Settings, ledger: Ledger, job: str) -> None:
    """The run holding the slot will not run: hand the slot on as its completion would (follow-up or free)."""
    ledger.update(*SLOT, set_values={"running_started": True}, remove=("start_lease_until",),
                  condition="#running_job = :job", condition_values={":job": job})
    finish_training(settings, ledger, job)


# -- the training window and its fingerprint -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The validated files a run reads (newest first, after the window), with their versions: what it trains on."""

    inputs: list[dict[str, Any]]
    fingerprint: str
    rows: int | None  # None when a selected file's row count is not known
    window: dict[str, Any]
    left_out: int = 0
    cells: int | None = None  # rows x columns; None when a selected file's row or column count is not known


def take_snapshot(settings: Settings, ledger: Ledger, now: float | None = None) -> Snapshot:
    moment = time.time() if now is None else now
    s3 = clients.get("s3")
    listed: list[dict[str, Any]] = []
    kwargs = {"Bucket": settings.data_bucket, "Prefix": settings.validated_prefix}
    while True:
        page = s3.list_object_versions(**kwargs)
        for version in page.get("Versions", []):
            if version.get("IsLatest") and not version["Key"].endswith("/"):
                modified = version.get("LastModified")
                listed.append({"uri": f"s3://{settings.data_bucket}/{version['Key']}", "key": version["Key"],
                               "version": version.get("VersionId"), "etag": str(version.get("ETag", "")).strip('"'),
                               "size": version.get("Size"),
                               "modified": modified.timestamp() if hasattr(modified, "timestamp") else None})
        if not page.get("IsTruncated"):
            break
        kwargs.update(KeyMarker=page.get("NextKeyMarker"), VersionIdMarker=page.get("NextVersionIdMarker"))
    registered = validated_files(ledger) if listed else {}
    for item in listed:
        item["validated_at"] = (registered.get(item["key"]) or {}).get("validated_at", "")
    rows = {key: entry["rows"] for key, entry in registered.items() if "rows" in entry}
    columns = {key: entry["columns"] for key, entry in registered.items() if "columns" in entry}
    return select_window(listed, rows, settings.training_window_days, settings.training_window_max_rows, moment,
                         columns=columns)


def select_window(listed: list[dict[str, Any]], rows: dict[str, int], days: int, max_rows: int,
                  now: float, columns: dict[str, int] | None = None) -> Snapshot:
    """Newest first: files within `days` (0: any age), then up to `max_rows` rows (0: no limit). The newest
    file is always in, so a window never starves a run; a file whose row count is unknown counts as 0 rows.
    S3 times have whole seconds: files validated within one second are ordered by when they were validated."""
    newest_first = sorted(listed, key=lambda i: (i.get("modified") or 0, i.get("validated_at") or "", i["key"]),
                          reverse=True)
    chosen: list[dict[str, Any]] = []
    total, known = 0, True
    cells: int | None = 0
    for item in newest_first:
        if days and chosen and (item.get("modified") or 0) < now - days * 86400:
            break
        count = rows.get(item["key"])
        known &= count is not None
        if max_rows and chosen and total + (count or 0) > max_rows:
            break
        chosen.append({k: v for k, v in item.items() if k not in ("modified", "validated_at")} | {"rows": count})
        total += count or 0
        width = (columns or {}).get(item["key"])
        cells = None if cells is None or count is None or width is None else cells + count * width
    lines = sorted(f"{i['key']}\x1f{i.get('version') or i.get('etag') or ''}" for i in chosen)
    fingerprint = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    window = {"days": days or None, "max_rows": max_rows or None, "files": len(chosen), "of": len(listed)}
    return Snapshot(chosen, fingerprint, total if known else None, window, left_out=len(listed) - len(chosen),
                    cells=cells)


def validated_files(ledger: Ledger) -> dict[str, dict]:
    """Per validated key: its rows and columns as validation counted them, and when it was validated."""
    files, kwargs = {}, {"TableName": ledger.table, "KeyConditionExpression": "pk = :p",
                         "ExpressionAttributeValues": {":p": {"S": keys.VALIDATED_FILES}},
                         "ProjectionExpression": "sk, #r, #c, validated_at",
                         "ExpressionAttributeNames": {"#r": "rows", "#c": "columns"}}
    while True:
        page = ledger.client.query(**kwargs)
        for item in page.get("Items", []):
            entry = from_item(item) or {}
            files[str(entry.pop("sk"))] = entry
        if "LastEvaluatedKey" not in page:
            return files
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def write_snapshot(settings: Settings, job: str, snapshot: Snapshot) -> None:
    """inputs.json (lineage: files, versions, fingerprint, window) and the run's manifest, next to its model."""
    s3 = clients.get("s3")
    encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": settings.kms_key_arn}
    s3.put_object(Bucket=settings.artifacts_bucket, Key=f"models/{job}/inputs.json", ContentType="application/json",
                  Body=json.dumps({"training_job": job, "inputs": snapshot.inputs, "fingerprint": snapshot.fingerprint,
                                   "rows": snapshot.rows, "window": snapshot.window}, indent=1).encode(), **encryption)
    prefix = settings.validated_prefix
    manifest = [{"prefix": f"s3://{settings.data_bucket}/{prefix}"},
                *(i["key"][len(prefix):] for i in snapshot.inputs)]
    s3.put_object(Bucket=settings.artifacts_bucket, Key=jobs.manifest_key(job), ContentType="application/json",
                  Body=json.dumps(manifest).encode(), **encryption)


def same_data_as(ledger: Ledger, fingerprint: str, job: str | None = None) -> str | None:
    """The run (production's, the running one, or any run made) that trained on exactly this data, if any."""
    production = ledger.get(*keys.PRODUCTION) or {}
    if production.get("fingerprint") == fingerprint:
        return str(production.get("training_job"))
    slot = ledger.get(*SLOT) or {}
    if slot.get("running_fingerprint") == fingerprint and slot.get("running_job") != job:
        return str(slot.get("running_job"))
    made = (ledger.get(*keys.fingerprint(fingerprint)) or {}).get("job")
    return str(made) if made and made != job else None


# -- retrain (drift alarm / manual) ------------------------------------------------------------------
RETRAIN = keys.RETRAIN


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
    snapshot = take_snapshot(settings, ledger, moment)
    if not snapshot.inputs:
        why = f"no validated data under s3://{settings.data_bucket}/{settings.validated_prefix} to retrain on"
        ledger.record(subject, "retrain_skipped", why)
        return {"status": "no_data", "reason": why}
    same_as = None if force else same_data_as(ledger, snapshot.fingerprint)
    if same_as is not None:
        return _no_new_data(settings, ledger, subject, source, reason, same_as, snapshot)
    try:
        request = request_training(settings, ledger, f"retrain:{identity}",
                                   f"retrain ({source}): {reason}", subject=subject, force=force, now=moment)
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


def _no_new_data(settings: Settings, ledger: Ledger, subject: str, source: str, reason: str, same_as: str,
                 snapshot: Snapshot) -> dict:
    """A retrain on the data a model was already trained on would only make that model again. Say what would
    help instead: labels for the requests the drift was seen in."""
    why = (f"retrain ({source}) not started: the training window holds exactly the data {same_as} was trained on "
           f"(fingerprint {snapshot.fingerprint[:12]}, {len(snapshot.inputs)} file(s)); drift alone needs new "
           f"labeled data. Trigger: {reason}")
    ledger.record(subject, "retrain_skipped_no_new_data", why,
                  details={"fingerprint": snapshot.fingerprint, "same_as": same_as, "window": snapshot.window})
    if source == "alarm":
        from .notify import announce

        announce(settings, ledger, "Drift seen: labeled data needed",
                 f"{why}\n\nTo retrain on the new distribution, label recent requests: download the captures "
                 f"(aws s3 sync s3://{settings.artifacts_bucket}/datacapture/{settings.endpoint_name}/ captures/), "
                 "list them with `python -m ml_pipeline.captures captures/ --out to-label.csv`, add the target "
                 f"column {settings.target_column!r}, and upload the file under "
                 f"s3://{settings.data_bucket}/{settings.ground_truth_prefix}. Or upload newly labeled data under "
                 f"s3://{settings.data_bucket}/{settings.incoming_prefix}.",
                 {"fingerprint": snapshot.fingerprint, "same_as": same_as})
    return {"status": "no_new_data", "same_as": same_as}
