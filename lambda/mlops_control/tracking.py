"""MLflow, off the deploy path: each decision about a model asks the image's `track` job to log it.

The Lambda asset holds no MLflow client. A decision (gated out, gate passed, deployed, rolled back) queues a
tracking request with its own commit (the ledger's outbox, as notifications are), so it is started after the
decision is durable, by this invocation or the next one of any function, and never delays or fails the deploy.
One job per (training job, phase): SageMaker refuses a second job of the same name, so a request started twice
starts one job. The job logs idempotently (one run per training job, one version per run), so the order in which
the phases' jobs run does not matter.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from . import clients, jobs
from .ledger import Ledger
from .settings import Settings

log = logging.getLogger("mlops_control")

PHASES = ("trained", "deployed", "rolled_back")
# Where the request travels in an outbox item (next to notifications, which carry "subject").
OUTBOX_FIELD = "track"


@dataclass(frozen=True)
class TrackRequest:
    phase: str
    training_job: str
    model_data_url: str
    decision: str = ""
    reason: str = ""
    package_arn: str = ""
    model_sha256: str = ""  # the deployer's pin: the job logs exactly the model that was judged
    data_fingerprint: str = ""  # of the training window (keys + S3 versions): runs on the same data compare
    deployed_at: str = ""  # `deployed`: when the deploy was verified; the alias follows the newest, whatever the order

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown tracking phase {self.phase!r}")


def job_for(settings: Settings, track: TrackRequest) -> str:
    return jobs.job_name(settings, "trk", track.training_job, track.phase)


def request(settings: Settings, ledger: Ledger, track: TrackRequest) -> None:
    """Ask for the `track` job: with the open unit of work (started once it commits), else at once."""
    if not settings.tracking_uri:
        return
    if not ledger.after_commit({OUTBOX_FIELD: asdict(track)}):
        start_or_record(settings, ledger, track)


def start(settings: Settings, track: TrackRequest) -> str | None:
    if not settings.tracking_uri:
        # Switched off since the request was queued: nothing to start it with (nor any grant for it).
        log.warning("MLflow tracking is off: the %s request of %s is dropped", track.phase, track.training_job)
        return None
    name = job_for(settings, track)
    try:
        clients.get("sagemaker").create_processing_job(**jobs.tracking_request(settings, name, track))
    except Exception as exc:  # noqa: BLE001
        if not clients.is_already_exists(exc):
            raise
    return name


def start_or_record(settings: Settings, ledger: Ledger, track: TrackRequest) -> None:
    try:
        start(settings, track)
    except Exception as exc:  # noqa: BLE001 - the decision stands; say that its MLflow record is missing
        log.exception("could not start tracking of %s", track.training_job)
        ledger.record(f"job#{track.training_job}", "tracking_failed",
                      f"{track.phase}: the track job did not start: {clients.error_message(exc)}",
                      job=track.training_job, ttl_days=90)


def from_outbox(entry: dict) -> TrackRequest | None:
    raw = entry.get(OUTBOX_FIELD)
    return TrackRequest(**raw) if isinstance(raw, dict) else None


def finished(settings: Settings, ledger: Ledger, job: str, status: str, failure: str | None) -> dict:
    """A `track` job ended: record the run and version, and write them on the model package."""
    described = clients.get("sagemaker").describe_processing_job(ProcessingJobName=job)
    environment = described.get("Environment") or {}
    training_job = environment.get("TRACK_TRAINING_JOB") or job
    subject = f"job#{training_job}"
    if status != "Completed":
        reason = f"{environment.get('TRACK_PHASE')}: {failure or 'no reason given'}"
        ledger.record(subject, "tracking_failed", reason, job=training_job, details={"tracking_job": job})
        return {"status": "tracking_failed", "reason": reason}
    key = f"{jobs.report_prefix(settings, 'trk', job)}tracking.json"
    body = clients.get("s3").get_object(Bucket=settings.artifacts_bucket, Key=key)["Body"].read()
    tracked = json.loads(body)
    if not isinstance(tracked, dict):
        raise ValueError(f"s3://{settings.artifacts_bucket}/{key} is not a JSON object")
    package = environment.get("TRACK_PACKAGE_ARN")
    if package:
        _annotate_package(package, tracked)
    ledger.record(subject, "tracked", f"{tracked.get('phase')}: MLflow run {tracked.get('run_id')}"
                  + (f", version {tracked['model_version']}" if tracked.get("model_version") else ""),
                  job=training_job, model=package or None, details={
                      "tracking_job": job, "run_id": tracked.get("run_id"),
                      "experiment": tracked.get("experiment_name"), "registered_model": tracked.get("registered_model"),
                      "model_version": tracked.get("model_version"), "alias_moved": tracked.get("alias_moved")})
    return {"status": "tracked", "run_id": tracked.get("run_id"), "model_version": tracked.get("model_version")}


def _annotate_package(package: str, tracked: dict[str, Any]) -> None:
    properties = {"mlflow_run_id": str(tracked.get("run_id") or ""),
                  "mlflow_experiment": str(tracked.get("experiment_name") or ""),
                  "mlflow_registered_model": str(tracked.get("registered_model") or ""),
                  "mlflow_model_version": str(tracked.get("model_version") or "")}
    try:
        clients.get("sagemaker").update_model_package(
            ModelPackageArn=package, CustomerMetadataProperties={k: v for k, v in properties.items() if v})
    except Exception as exc:  # noqa: BLE001 - pruned meanwhile: the ledger keeps the link
        if not clients.is_not_found(exc):
            raise
