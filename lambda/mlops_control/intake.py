"""Uploaded files: cheap checks, de-duplication and the validation job (trigger), then the verdict
(processing_done): validated and trained on, or quarantined with its report. The original is never touched."""
from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from . import clients, copies, jobs, keys, tracking
from .events import ObjectCreated
from .ledger import Claim, Ledger, now_iso
from .notify import announce, put_metrics, report_metrics
from .runtime import exactly_once, once_per_job
from .settings import Settings
from .training import request_training

PRODUCTION = keys.PRODUCTION


def file_subject(bucket: str, key: str) -> str:
    return f"file#s3://{bucket}/{key}"


def _system_prefixes(settings: Settings) -> tuple[str, ...]:
    return (settings.validated_prefix, settings.quarantine_prefix)


def handle_upload(settings: Settings, ledger: Ledger, obj: ObjectCreated) -> dict:
    """Decide what one uploaded object gets: ignored, rejected, skipped as duplicate, or a validation job."""
    if obj.bucket != settings.data_bucket:
        ledger.record(file_subject(obj.bucket, obj.key), "ignored", f"bucket {obj.bucket} is not the data bucket "
                      f"{settings.data_bucket}", file=obj.uri, ttl_days=30)
        return {"status": "ignored", "key": obj.key}
    labels = obj.key.startswith(settings.ground_truth_prefix)
    if not (obj.key.startswith(settings.incoming_prefix) or labels):
        # Keys the system writes itself (validated/, quarantine/) start nothing and need no record: that is
        # what keeps the pipeline from feeding on its own output.
        if not obj.key.startswith(_system_prefixes(settings)):
            ledger.record(file_subject(obj.bucket, obj.key), "ignored",
                          f"not under {settings.incoming_prefix} or {settings.ground_truth_prefix}; only files there "
                          "are processed", file=obj.uri, ttl_days=30)
        return {"status": "ignored", "key": obj.key}
    if obj.key.endswith("/"):
        return {"status": "ignored", "key": obj.key}  # a "folder" placeholder made by consoles

    subject = file_subject(obj.bucket, obj.key)

    def duplicate(claim: Claim) -> dict:
        ledger.record(subject, "duplicate_skipped", f"event for version {obj.version_or_etag} already handled "
                      f"({(claim.item or {}).get('outcome', 'done')})", file=obj.uri,
                      job=(claim.item or {}).get("job"), ttl_days=30)
        return {"status": "duplicate", "key": obj.key}

    work = _start_ground_truth if labels else _check_and_start
    return exactly_once(
        ledger, f"claim#obj#{obj.bucket}/{obj.key}#{obj.version_or_etag}", "trigger",
        lambda: work(settings, ledger, obj, subject), values={"file": obj.uri}, duplicate=duplicate,
        busy=f"another delivery of {obj.uri} ({obj.version_or_etag}) is being handled",
        completion=lambda result: {"outcome": result["status"], "job": result.get("job")})


def _reject(settings: Settings, ledger: Ledger, obj: ObjectCreated, subject: str, reason: str) -> dict:
    ledger.record(subject, "rejected", reason, file=obj.uri, details={"version": obj.version_or_etag})
    announce(settings, ledger, f"File rejected: {posixpath.basename(obj.key)}",
            f"{obj.uri} was not processed: {reason}. The file is left where it is.",
            {"file": obj.uri, "version": obj.version_or_etag})
    return {"status": "rejected", "key": obj.key, "reason": reason}


@dataclass(frozen=True)
class _Staged:
    obj: ObjectCreated
    size: int
    metadata: dict
    job: str
    uri: str


def _stage(settings: Settings, ledger: Ledger, obj: ObjectCreated, subject: str, kind: str) -> _Staged | dict:
    """The cheap checks, then a copy of exactly the announced version where job `kind` alone reads it. Returns
    the staged upload, or the rejection's result."""
    extension = posixpath.splitext(obj.key)[1].lower()
    if extension not in settings.allowed_extensions:
        return _reject(settings, ledger, obj, subject, f"extension {extension or '(none)'!r} is not one of "
                       f"{', '.join(settings.allowed_extensions)}")
    # Always asked: the size may be missing from the event, the key may have two readings, and the object's
    # metadata says whether a person accepted it.
    found = _head(settings, obj)
    if found is None:
        return _reject(settings, ledger, obj, subject, f"the object (version {obj.version_or_etag}) no longer exists "
                       "(deleted before processing)")
    obj, size, metadata = found
    if size == 0:
        return _reject(settings, ledger, obj, subject, "the file is empty (0 bytes)")
    if size > settings.max_upload_bytes:
        return _reject(settings, ledger, obj, subject, f"the file is {size} bytes, over the limit of "
                       f"{settings.max_upload_bytes} bytes")
    job = jobs.job_name(settings, kind, obj.bucket, obj.key, obj.version_or_etag)
    staged = (jobs.labels_input_key if kind == "gt" else jobs.validation_input_key)(settings, job, obj.key)
    staged_bytes = len(staged.encode("utf-8"))
    if staged_bytes > jobs.S3_KEY_LIMIT_BYTES:
        return _reject(settings, ledger, obj, subject, f"the key is too long to "
                       f"{'validate' if kind == 'val' else 'join'}: its copy for the job "
                       f"would be {staged_bytes} bytes, over S3's {jobs.S3_KEY_LIMIT_BYTES}; "
                       "use a shorter file name or fewer folders")
    try:
        # The job reads this copy of exactly the version the event announced: a later upload of the same key
        # can neither change what is checked nor what is then registered.
        _copy(obj.bucket, obj.key, obj.version_id, staged, target_bucket=settings.artifacts_bucket, size=size)
    except Exception as exc:  # noqa: BLE001
        if not clients.is_not_found(exc):
            raise
        return _reject(settings, ledger, obj, subject, f"the object (version {obj.version_or_etag}) no longer "
                       "exists (deleted before processing)")
    ledger.put_state(*keys.job_meta(job), {"bucket": obj.bucket, "key": obj.key, "version_id": obj.version_id,
                                             "etag": obj.etag, "file": obj.uri, "write_order": obj.write_order})
    return _Staged(obj, size, metadata, job, f"s3://{settings.artifacts_bucket}/{staged}")


def _create_processing_job(request: dict) -> bool:
    """False when the job exists already (a redelivered event)."""
    try:
        clients.get("sagemaker").create_processing_job(**request)
        return True
    except Exception as exc:  # noqa: BLE001
        if not clients.is_already_exists(exc):
            raise
        return False


ACCEPTED_BY, ACCEPT_REASON = "accepted-by", "accept-reason"  # S3 user metadata (x-amz-meta-...)


def _check_and_start(settings: Settings, ledger: Ledger, obj: ObjectCreated, subject: str) -> dict:
    staged = _stage(settings, ledger, obj, subject, "val")
    if not isinstance(staged, _Staged):
        return staged
    obj, job = staged.obj, staged.job
    acceptance = _acceptance(staged)
    if acceptance:
        ledger.record(subject, "accepted", f"{acceptance['by']} accepted this file's shift: {acceptance['reason']}",
                      file=obj.uri, job=job, details={"version": obj.version_or_etag, **acceptance})
    production = ledger.get(*PRODUCTION) or {}
    request = jobs.validation_request(settings, job, staged.uri, production.get("model_data_url"),
                                      accept_shift=bool(acceptance))
    if _create_processing_job(request):
        decision, why = "validation_started", f"validation job {job} started"
    else:
        decision, why = "validation_already_started", f"validation job {job} already exists (redelivered event)"
    ledger.record(subject, decision, why, file=obj.uri, job=job,
                  details={"version": obj.version_or_etag, "size": staged.size, "validation_input": staged.uri,
                           "reference_model": production.get("training_job") or "none (first model)",
                           **({"from_ground_truth": staged.metadata["ground-truth-job"]}
                              if "ground-truth-job" in staged.metadata else {})})
    return {"status": "started", "job": job, "key": obj.key}


def _acceptance(staged: _Staged) -> dict | None:
    """A person accepts a quarantined file by uploading it again with `accept-reason` (and `accepted-by`)
    metadata: its shift is then reported, not refused. Who, when and why go to the ledger."""
    reason = (staged.metadata.get(ACCEPT_REASON) or "").strip()
    if not reason:
        return None
    return {"by": (staged.metadata.get(ACCEPTED_BY) or "").strip() or "someone (no accepted-by metadata)",
            "reason": reason[:500], "requester": staged.obj.requester, "at": staged.obj.event_time}


def _start_ground_truth(settings: Settings, ledger: Ledger, obj: ObjectCreated, subject: str) -> dict:
    """Labels for captured requests: a job joins them with the captures and scores the production model."""
    production = ledger.get(*PRODUCTION) or {}
    if not production.get("model_data_url"):
        return _reject(settings, ledger, obj, subject, "labels need captured requests of a production model, and "
                       "no model has been deployed yet")
    staged = _stage(settings, ledger, obj, subject, "gt")
    if not isinstance(staged, _Staged):
        return staged
    created = _create_processing_job(jobs.ground_truth_request(settings, staged.job, staged.uri, production))
    ledger.record(subject, "ground_truth_started" if created else "ground_truth_already_started",
                  f"ground-truth job {staged.job} joins these labels with the captured requests of "
                  f"{production.get('training_job')}", file=obj.uri, job=staged.job,
                  details={"version": obj.version_or_etag, "labels_input": staged.uri,
                           "capture": jobs.capture_prefix(settings)})
    return {"status": "started", "job": staged.job, "key": obj.key}


def _head(settings: Settings, obj: ObjectCreated) -> tuple[ObjectCreated, int, dict] | None:
    s3 = clients.get("s3")
    for key in [obj.key] + ([obj.raw_key] if obj.raw_key else []):
        kwargs = {"Bucket": obj.bucket, "Key": key}
        if obj.version_id:
            kwargs["VersionId"] = obj.version_id
        try:
            head = s3.head_object(**kwargs)
        except Exception as exc:  # noqa: BLE001
            if clients.is_not_found(exc) or clients.error_code(exc) in ("400",):
                continue
            raise
        found = ObjectCreated(bucket=obj.bucket, key=key, size=int(head.get("ContentLength", 0)),
                              etag=obj.etag or str(head.get("ETag", "")).strip('"'), version_id=obj.version_id,
                              event_time=obj.event_time, sequencer=obj.sequencer, requester=obj.requester)
        return found, int(head.get("ContentLength", 0)), {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    return None


# -- processing job finished -------------------------------------------------------------------------
def read_report(settings: Settings, kind: str, job: str) -> tuple[dict | None, str | None]:
    """report.json of a validation/monitor job, or (None, why not)."""
    key = jobs.report_prefix(settings, kind, job) + "report.json"
    try:
        body = clients.get("s3").get_object(Bucket=settings.artifacts_bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001
        if clients.is_not_found(exc):
            return None, f"the job wrote no report (s3://{settings.artifacts_bucket}/{key} is missing)"
        raise
    try:
        report = json.loads(body)
    except ValueError as exc:
        return None, f"report.json is not valid JSON: {exc}"
    if not isinstance(report, dict) or not isinstance(report.get("passed"), bool):
        return None, "report.json has no boolean 'passed'"
    return report, None


def _source_of(settings: Settings, ledger: Ledger, job: str) -> dict | None:
    meta = ledger.get(*keys.job_meta(job))
    if meta:
        return meta
    try:  # the ledger lost it (TTL, manual job): the job's own input says which object it read
        described = clients.get("sagemaker").describe_processing_job(ProcessingJobName=job)
    except Exception as exc:  # noqa: BLE001
        if clients.is_not_found(exc):
            return None
        raise
    for item in described.get("ProcessingInputs", []):
        if item.get("InputName") in ("data", "labels"):  # a validation job's upload, a ground-truth job's labels
            uri = item["S3Input"]["S3Uri"]
            key = jobs.uploaded_key_of(settings, job, uri)
            if key is not None:  # the staged copy: its key says which upload it is (the version is not known)
                return {"bucket": settings.data_bucket, "key": key, "version_id": None,
                        "file": f"s3://{settings.data_bucket}/{key}"}
            bucket, _, key = uri[len("s3://"):].partition("/")
            return {"bucket": bucket, "key": key, "version_id": None, "file": uri}
    return None


def _unknown_source(settings: Settings, ledger: Ledger, job: str, status: str, what: str) -> dict:
    reason = f"{what} job {job} finished ({status}) but the file it read is unknown"
    ledger.record(f"job#{job}", "error", reason, job=job)
    announce(settings, ledger, f"{what.capitalize()} result without a file", reason, {"job": job})
    return {"status": "error", "reason": reason}


def validation_finished(settings: Settings, ledger: Ledger, job: str, status: str, failure: str | None) -> dict:
    source = _source_of(settings, ledger, job)
    if source is None:
        return _unknown_source(settings, ledger, job, status, "validation")
    bucket, key, version = source["bucket"], source["key"], source.get("version_id")
    subject, uri = file_subject(bucket, key), source.get("file") or f"s3://{bucket}/{key}"
    report, problem = (None, None)
    if status == "Completed":
        report, problem = read_report(settings, "val", job)
        if report is not None:
            metrics = report_metrics(report)
            if not report["passed"]:
                # A rejected file's drift is in its report; it must never raise the retrain alarm, which would
                # retrain on data that does not contain it.
                metrics.pop("DataDrift", None)
            put_metrics(settings, metrics, "validation")
    else:
        problem = f"validation job {status.lower()}: {failure or 'no reason given'}"
    relative = key[len(settings.incoming_prefix):] if key.startswith(settings.incoming_prefix) else key
    try:
        if report is not None and report["passed"]:
            target = settings.validated_prefix + relative
            details = {"copied_to": f"s3://{bucket}/{target}", "rows": report.get("rows"),
                       "drift": (report.get("drift") or {}).get("score")}
            newer = _register_validated(ledger, source, job)
            if newer is not None:
                # Validated out of order: the newer upload already holds validated/<path>. Nothing to copy and
                # nothing new to train on.
                details.update(copied_to=None, superseded_by=newer.get("version_id"))
                ledger.record(subject, "validated", f"{report.get('summary') or 'passed validation'}; not copied: a "
                              f"newer upload of this name (version {newer.get('version_id')}) is already validated",
                              file=uri, job=job, details=details)
                return {"status": "validated", "training": "not_requested", "superseded_by": newer.get("version_id")}
            _copy_once(bucket, key, version, target, identity=version or source.get("etag"))
            _keep_newest(ledger, source, target)
            # What the training window counts (rows per validated file): written now, because the run requested
            # below takes its snapshot before this verdict's unit commits (idempotent: a retry writes the same).
            counted = {"rows": int(report.get("rows") or 0)} | (
                {"columns": int(report["columns"])} if isinstance(report.get("columns"), int) else {})
            ledger.put_state(keys.VALIDATED_FILES, target, counted | {"job": job, "source_version": version,
                                                                      "file": uri, "validated_at": now_iso()})
            if report.get("accepted_shift"):
                details["accepted_shift"] = True
            details["shifts"] = (report.get("shifts") or [])[:20]
            ledger.record(subject, "validated", report.get("summary") or "passed validation", file=uri, job=job,
                          details=details)
            request = request_training(settings, ledger, f"file:{uri}#{version or source.get('etag') or ''}",
                                       f"new validated data {uri}", subject=subject, file=uri)
            return {"status": "validated", "training": request.outcome, "job": request.job}
        return _quarantine(settings, ledger, job, bucket, key, version, relative, subject, uri, report, problem)
    except Exception as exc:  # noqa: BLE001
        if not clients.is_not_found(exc):
            raise
        reason = f"{uri} (version {version}) no longer exists, so it could not be moved: {clients.error_message(exc)}"
        ledger.record(subject, "error", reason, file=uri, job=job)
        announce(settings, ledger, f"File vanished: {posixpath.basename(key)}", reason, {"file": uri, "job": job})
        return {"status": "missing", "reason": reason}


def _register_validated(ledger: Ledger, source: dict, job: str) -> dict | None:
    """Claim validated/<path> for this upload unless a later write of the same key already passed; returns
    that newer registration, or None. Ordered by S3's sequencer: validations finish in any order, but the
    newest upload must be the one left under validated/."""
    order = source.get("write_order")
    if not order:
        return None  # no order known (a manual event): the last to pass is copied, as before
    try:
        ledger.update(*keys.newest_validated(source['bucket'], source['key']), set_values={
            "write_order": order, "version_id": source.get("version_id"), "job": job,
        }, condition="attribute_not_exists(#write_order) OR #write_order <= :order",
            condition_values={":order": order})
        return None
    except Exception as exc:  # noqa: BLE001
        if not clients.is_conditional_failure(exc):
            raise
    return ledger.get(*keys.newest_validated(source['bucket'], source['key'])) or {}


def _keep_newest(ledger: Ledger, source: dict, target: str) -> None:
    """Our copy may have landed after the copy of a newer version that registered meanwhile: copy that one
    again, so validated/<path> ends with the newest version whichever copy ran last."""
    if not source.get("write_order"):
        return
    newest = ledger.get(*keys.newest_validated(source['bucket'], source['key'])) or {}
    if newest.get("write_order", "") > source["write_order"]:
        _copy_once(source["bucket"], source["key"], newest.get("version_id"), target, identity=newest.get("version_id"))


SOURCE_VERSION = "source-version-id"  # S3 user metadata on a validated copy: which upload version it holds


def _copy_once(bucket: str, key: str, version: str | None, target: str, *, identity: str | None) -> None:
    """Copy an upload version to validated/, unless the target already holds it. A retried verdict must not
    write the same data again: each copy is a new object version, and the training window's fingerprint
    (key + version) would then call unchanged data new."""
    s3 = clients.get("s3")
    try:
        held = s3.head_object(Bucket=bucket, Key=target).get("Metadata") or {}
    except Exception as exc:  # noqa: BLE001
        if not (clients.is_not_found(exc) or clients.error_code(exc) == "403"):
            raise
        held = {}
    if identity and held.get(SOURCE_VERSION) == identity:
        return
    source = {"Bucket": bucket, "Key": key, **({"VersionId": version} if version else {})}
    head = s3.head_object(**source)
    copies.copy(source, bucket, target, size=int(head["ContentLength"]),
                content_type=head.get("ContentType") or "binary/octet-stream",
                metadata={**(head.get("Metadata") or {}), SOURCE_VERSION: identity or ""})


def _copy(bucket: str, key: str, version: str | None, target: str, *, target_bucket: str | None = None,
          size: int | None = None) -> None:
    source = {"Bucket": bucket, "Key": key}
    if version:
        source["VersionId"] = version
    if size is None:
        size = int(clients.get("s3").head_object(**source)["ContentLength"])
    copies.copy(source, target_bucket or bucket, target, size=size)


def _quarantine(settings: Settings, ledger: Ledger, job: str, bucket: str, key: str, version: str | None,
                relative: str, subject: str, uri: str, report: dict | None, problem: str | None) -> dict:
    s3 = clients.get("s3")
    target = settings.quarantine_prefix + relative
    _copy(bucket, key, version, target)
    report_key = f"{target}.report.json"
    if report is not None:
        reason = report.get("summary") or "the data failed validation"
        s3.put_object(Bucket=bucket, Key=report_key, Body=json.dumps(report, indent=2).encode(),
                      ContentType="application/json")
        html_key = jobs.report_prefix(settings, "val", job) + "report.html"
        try:
            s3.copy_object(Bucket=bucket, Key=f"{target}.report.html",
                           CopySource={"Bucket": settings.artifacts_bucket, "Key": html_key})
        except Exception as exc:  # noqa: BLE001 - the JSON report is the required one; HTML is a courtesy
            if not clients.is_not_found(exc):
                raise
    else:
        reason = problem or "validation produced no verdict"
        s3.put_object(Bucket=bucket, Key=report_key, ContentType="application/json", Body=json.dumps({
            "kind": "validation", "passed": False, "summary": reason, "job": job, "failures": [],
        }, indent=2).encode())
    failures = (report or {}).get("failures") or []
    ledger.record(subject, "quarantined", reason, file=uri, job=job,
                  details={"copied_to": f"s3://{bucket}/{target}", "report": f"s3://{bucket}/{report_key}",
                           "failures": failures[:20]})
    announce(settings, ledger, f"File quarantined: {posixpath.basename(key)}",
            f"{uri} failed validation: {reason}\nA copy and its report are in s3://{bucket}/{target} "
            f"(+ .report.json); the original is kept.",
            {"file": uri, "version": version, "job": job, "failures": failures[:20]})
    return {"status": "quarantined", "reason": reason}


def monitor_finished(settings: Settings, ledger: Ledger, job: str, status: str, failure: str | None) -> dict:
    subject = f"job#{job}"
    if status != "Completed":
        reason = f"monitoring job {status.lower()}: {failure or 'no reason given'}"
        ledger.record(subject, "monitor_failed", reason, job=job)
        announce(settings, ledger, "Monitoring job failed", reason, {"job": job})
        return {"status": "failed", "reason": reason}
    report, problem = read_report(settings, "mon", job)
    if report is None:
        ledger.record(subject, "monitor_failed", problem or "no report", job=job)
        announce(settings, ledger, "Monitoring job produced no report", problem or "no report", {"job": job})
        return {"status": "failed", "reason": problem}
    metrics = report_metrics(report)
    put_metrics(settings, metrics, "monitor")
    drift = metrics.get("DataDrift")
    over = drift is not None and drift > settings.drift_threshold
    ledger.record(subject, "monitor_completed", (report.get("summary") or "monitoring finished") +
                  (f"; drift {drift:.4f} is over the threshold {settings.drift_threshold:g}" if over else ""),
                  job=job, details={"drift": drift, "rows": report.get("rows"), "rows_rejected": report.get("rows_rejected")})
    return {"status": "completed", "drift": drift}


def ground_truth_finished(settings: Settings, ledger: Ledger, job: str, status: str, failure: str | None) -> dict:
    """Labels joined with captures: publish the production model's quality on them, and send the labeled rows
    through the normal path as an upload (`incoming/labeled/`), so they are validated and trained on."""
    source = _source_of(settings, ledger, job)
    if source is None:
        return _unknown_source(settings, ledger, job, status, "ground-truth")
    subject, uri = file_subject(source["bucket"], source["key"]), source.get("file")
    report, problem = (read_report(settings, "gt", job) if status == "Completed"
                       else (None, f"ground-truth job {status.lower()}: {failure or 'no reason given'}"))
    if report is None or not report["passed"]:
        reason = problem or (report or {}).get("summary") or "the labels could not be joined"
        ledger.record(subject, "ground_truth_failed", reason, file=uri, job=job,
                      details={"failures": ((report or {}).get("failures") or [])[:20]})
        announce(settings, ledger, f"Labels not used: {posixpath.basename(source['key'])}",
                 f"{uri}: {reason}. Nothing was trained on it.", {"file": uri, "job": job})
        return {"status": "failed", "reason": reason}
    quality = report.get("model_quality") or {}
    if isinstance(quality.get("value"), (int, float)) and not isinstance(quality.get("value"), bool):
        put_metrics(settings, {"ModelQuality": float(quality["value"])}, "ground truth")
    relative = source["key"][len(settings.ground_truth_prefix):]
    stem = posixpath.splitext(relative)[0]
    labeled = f"{settings.labeled_prefix}{stem}-{job.rsplit('-', 1)[-1]}.csv"
    # Lineage travels with the rows: the trigger records it when the labeled file comes back as an upload.
    joined = {"Bucket": settings.artifacts_bucket, "Key": jobs.joined_key(settings, job)}
    copies.copy(joined, settings.data_bucket, labeled, size=int(clients.get("s3").head_object(**joined)["ContentLength"]),
                content_type="text/csv", metadata={"ground-truth-job": job, "labels-file": str(uri)[:1024]})
    ledger.record(subject, "ground_truth_joined", report.get("summary") or "labels joined with captured requests",
                  file=uri, job=job, details={
                      "labeled_rows": f"s3://{settings.data_bucket}/{labeled}", "matched": report.get("matched"),
                      "unmatched": report.get("unmatched"), "model_quality": quality,
                      "captures": (report.get("captures") or [])[:50]})
    return {"status": "joined", "labeled": labeled, "model_quality": quality.get("value")}


def processing_finished(settings: Settings, ledger: Ledger, job: str, status: str, failure: str | None) -> dict:
    kind = jobs.kind_of(settings, job)
    if kind not in ("val", "mon", "gt", "trk"):
        ledger.record(f"job#{job}", "ignored", "not a validation, monitoring, ground-truth or tracking job of this "
                      "pipeline", job=job, ttl_days=30)
        return {"status": "ignored"}
    if kind == "trk":
        return once_per_job(ledger, job, status, lambda: tracking.finished(settings, ledger, job, status, failure))
    finished = {"val": validation_finished, "mon": monitor_finished, "gt": ground_truth_finished}[kind]

    def finish() -> dict:
        reason = _job_failure(job) or failure if status != "Completed" else failure
        return finished(settings, ledger, job, status, reason)

    return once_per_job(ledger, job, status, finish)


def _job_failure(job: str) -> str | None:
    """The job's own account of why it failed (the event may carry only part of it)."""
    from .events import failure_text

    try:
        return failure_text(clients.get("sagemaker").describe_processing_job(ProcessingJobName=job))
    except Exception as exc:  # noqa: BLE001
        if clients.is_not_found(exc):
            return None
        raise


def start_monitoring(settings: Settings, ledger: Ledger, event_id: str, tick_time: str) -> dict:
    """The schedule: a monitoring job over the endpoint's captured requests, when there is something to watch."""
    subject = f"monitor#{settings.endpoint_name}"
    production = ledger.get(*PRODUCTION)
    if not production:
        ledger.record(subject, "monitor_skipped", "no production model yet", ttl_days=7)
        return {"status": "skipped", "reason": "no production model"}
    capture = jobs.capture_prefix(settings)
    page = clients.get("s3").list_objects_v2(Bucket=settings.artifacts_bucket,
                                             Prefix=capture[len(f"s3://{settings.artifacts_bucket}/"):], MaxKeys=1)
    if not (page.get("KeyCount") or page.get("Contents")):
        ledger.record(subject, "monitor_skipped", f"no captured requests under {capture} yet", ttl_days=7)
        return {"status": "skipped", "reason": "no captured data"}
    job = jobs.job_name(settings, "mon", "schedule", tick_time)
    try:
        clients.get("sagemaker").create_processing_job(**jobs.monitor_request(settings, job, production.get("model_data_url")))
        decision = "monitor_started"
    except Exception as exc:  # noqa: BLE001
        if not clients.is_already_exists(exc):
            raise
        decision = "monitor_already_started"
    ledger.record(subject, decision, f"monitoring job {job} over {capture}", job=job,
                  model=production.get("model_name"), details={"event": event_id})
    return {"status": "started", "job": job}
