"""Experimenting with the production image: train it on a recorded run's data (or your own) with the hyperparameters
you change, and log the run to the stack's MLflow next to production's runs (tag `gate=experiment`: never a model
version, never the champion)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from workbench.container import LocalRun, train_locally
from workbench.records import (Stack, TrainingRecord, download_inputs, download_object, latest_job,
                               training_record)

log = logging.getLogger("workbench")
DATA_SUFFIXES = (".csv", ".parquet", ".pq")


class ExperimentError(Exception):
    """The experiment cannot start as asked; the message says what to change."""


@dataclass(frozen=True)
class Plan:
    """What one local training run gets: hyperparameters, channels and where they came from."""

    job: str
    image: str
    hyperparameters: dict[str, str]
    channels: dict[str, Path]
    record: TrainingRecord | None = None
    notes: list[str] = field(default_factory=list)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`key=value` pairs, as SageMaker hyperparameters (strings)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ExperimentError(f"--set {item!r}: expected key=value")
        overrides[key.strip()] = value
    return overrides


def plan_from_record(stack: Stack, record: TrainingRecord, image: str, job: str, workdir: Path,
                     overrides: dict[str, str]) -> Plan:
    """The recorded run's inputs at their exact versions, its champion (so the paired comparison is the same),
    its hyperparameters with `overrides` on top."""
    channels = {"train": workdir / "channels" / "train"}
    files = download_inputs(stack, record.inputs, channels["train"])
    notes = [f"data: {len(files)} file(s) of training job {record.job} at their recorded S3 versions"]
    hyperparameters = dict(record.hyperparameters)
    if record.champion_url and hyperparameters.get("champion_sha256"):
        channels["champion"] = workdir / "channels" / "champion"
        download_object(stack, record.champion_url, channels["champion"])
        notes.append(f"champion: {record.champion_url} (pinned by champion_sha256)")
    else:
        hyperparameters.pop("champion_sha256", None)
    changed = {k: v for k, v in overrides.items() if hyperparameters.get(k) != v}
    hyperparameters.update(overrides)
    if changed:
        notes.append("changed: " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
    return Plan(job, image, hyperparameters, channels, record, notes)


def plan_from_files(data: Path, image: str, job: str, workdir: Path, target: str | None,
                    overrides: dict[str, str]) -> Plan:
    """Your own CSV/Parquet file or directory; `target` names the label column unless --set target_column= does."""
    if not data.exists():
        raise ExperimentError(f"{data} does not exist")
    files = [data] if data.is_file() else sorted(p for p in data.rglob("*") if p.suffix.lower() in DATA_SUFFIXES)
    if not files or any(p.suffix.lower() not in DATA_SUFFIXES for p in files):
        raise ExperimentError(f"{data}: expected CSV or Parquet file(s) ({', '.join(DATA_SUFFIXES)})")
    hyperparameters = {"target_column": target} if target else {}
    hyperparameters.update(overrides)
    if not hyperparameters.get("target_column"):
        raise ExperimentError("name the label column: --target COLUMN (or --from-job JOB to reuse a run's settings)")
    train = workdir / "channels" / "train"
    train.mkdir(parents=True, exist_ok=True)
    for path in files:
        target_path = train / (path.relative_to(data) if data.is_dir() else path.name)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target_path)
    return Plan(job, image, hyperparameters, {"train": train}, None, [f"data: {len(files)} file(s) from {data}"])


def resolve_record(stack: Stack, from_job: str | None) -> TrainingRecord:
    return training_record(stack, from_job if from_job and from_job != "latest" else latest_job(stack))


def run(plan: Plan, workdir: Path) -> LocalRun:
    (workdir / "plan.json").write_text(json.dumps(
        {"job": plan.job, "image": plan.image, "hyperparameters": plan.hyperparameters,
         "channels": {k: str(v) for k, v in plan.channels.items()}, "notes": plan.notes,
         "from_job": plan.record.job if plan.record else None}, indent=1) + "\n")
    # The compose project is named after `workdir` (the job name): two runs never share containers.
    return train_locally(plan.image, plan.channels, plan.hyperparameters, workdir, plan.job)


def tracking_target(stack: Stack | None, uri: str | None, experiment: str | None) -> tuple[str, str] | None:
    """(tracking URI, experiment) of the stack's MLflow, or the ones given; None when there is none."""
    outputs = stack.outputs if stack else {}
    uri = uri or outputs.get("MlflowTrackingUri") or outputs.get("MlflowAppArn")
    experiment = experiment or outputs.get("MlflowExperimentName")
    if not uri:
        return None
    if not experiment:
        raise ExperimentError("name the MLflow experiment: --experiment NAME (the stack's outputs have no "
                              "MlflowExperimentName)")
    return uri, experiment


def log_run(result: LocalRun, uri: str, experiment: str, note: str = "", data_fingerprint: str | None = None) -> dict:
    """The run in MLflow exactly as production's `track` logs one (params, metrics, lineage, model), tagged
    `gate=experiment` and without a model version."""
    from ml_pipeline import tracking
    from ml_pipeline.datasets import open_pinned

    request = tracking.TrackRequest(tracking_uri=uri, experiment=experiment, registered_model="", phase="trained",
                                    training_job=result.job, decision=tracking.EXPERIMENT, reason=note,
                                    image=result.image, model_data_url=result.archive.as_uri(),
                                    data_fingerprint=data_fingerprint)
    digest = open_pinned(result.model_dir, result.model_dir, None)
    return tracking.track(request, result.model_dir, digest)
