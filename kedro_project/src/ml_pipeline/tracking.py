"""`track`: one SageMaker training job as one MLflow run, its registered version and the `champion` alias.

The run is found by its tag `training_job`, so the same request twice, or `deployed` before `trained`, still
gives one run and at most one model version per training job. Everything the run holds is built from the
model directory by the pure functions below; `track` is the only code that talks to MLflow (its own client,
imported there: the other commands never load it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ml_pipeline import metrics as metric_functions
from ml_pipeline.entrypoints import IGNORED_PREFIXES
from ml_pipeline.errors import ConfigError, DataError

PHASES = ("trained", "deployed", "rolled_back")
DECISIONS = ("gate_passed", "gated_out")
# A data scientist's run of the production image outside the loop (workbench/): a run next to production's, never a
# model version (versions are what the gate let through).
EXPERIMENT = "experiment"
CHAMPION_ALIAS = "champion"
RUN_KEY = "training_job"  # the tag that finds a training job's run (and tags its model version)
MODEL_NAME = "model"
EXAMPLE_ROWS = 5
# Hyperparameters that say where a model came from, not how it was fitted: tags and lineage.json, not params.
LINEAGE_HYPERPARAMETERS = ("lineage_inputs", "image_uri", "champion_sha256")
# The smallest limits MLflow servers have had (500 characters a param value, 5000 a tag value): a server older than
# this client still takes every value.
PARAM_LIMIT = 500
TAG_LIMIT = 5000
_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


@dataclass(frozen=True)
class TrackRequest:
    """One `track` job's environment, as the control plane sets it (lambda/mlops_control/jobs.py)."""

    tracking_uri: str
    experiment: str
    registered_model: str
    phase: str
    training_job: str
    decision: str | None = None
    reason: str = ""
    image: str | None = None
    model_data_url: str | None = None
    package_arn: str | None = None
    model_sha256: str | None = None
    data_fingerprint: str | None = None  # the control plane's fingerprint of the training window (keys + versions)
    deployed_at: str | None = None  # with `deployed`: when the deploy was verified (ISO 8601 UTC, sortable)

    @property
    def registers(self) -> bool:
        """A gated-out model or an experiment gets no version; every other phase needs one."""
        return not (self.phase == "trained" and self.decision in ("gated_out", EXPERIMENT))


def request_from_env(environ: dict[str, str]) -> TrackRequest:
    """The request from the job's environment; ConfigError naming the variable that is missing or wrong.
    TARGET_COLUMN and TASK are not read: the model's metadata.json says what it was trained on."""
    def value(name: str) -> str | None:
        text = (environ.get(name) or "").strip()
        return text or None

    def required(name: str) -> str:
        text = value(name)
        if text is None:
            raise ConfigError(f"{name} is not set")
        return text

    phase = required("TRACK_PHASE")
    if phase not in PHASES:
        raise ConfigError(f"TRACK_PHASE must be one of {', '.join(PHASES)}, got {phase!r}")
    decision = value("TRACK_DECISION")
    if phase == "trained" and decision not in DECISIONS:
        raise ConfigError(f"TRACK_DECISION must be {' or '.join(DECISIONS)} with phase trained, got {decision!r}")
    job = required("TRACK_TRAINING_JOB")
    if not _JOB_NAME.fullmatch(job):
        raise ConfigError(f"TRACK_TRAINING_JOB {job!r} is not a SageMaker training job name")
    model = required("TRACK_REGISTERED_MODEL")
    if "'" in model:  # it is quoted inside MLflow search filters
        raise ConfigError(f"TRACK_REGISTERED_MODEL {model!r} must not contain a single quote")
    pin = (value("MODEL_SHA256") or "").lower() or None
    if pin is not None and not re.fullmatch(r"[0-9a-f]{64}", pin):
        raise ConfigError(f"MODEL_SHA256 is not a sha256 hex digest ({pin[:80]!r})")
    return TrackRequest(
        tracking_uri=required("MLFLOW_TRACKING_URI"), experiment=required("MLFLOW_EXPERIMENT_NAME"),
        registered_model=model, phase=phase, training_job=job,
        decision=decision if phase == "trained" else None, reason=value("TRACK_REASON") or "",
        image=value("TRACK_IMAGE"), model_data_url=value("TRACK_MODEL_DATA_URL"),
        package_arn=value("TRACK_PACKAGE_ARN"), model_sha256=pin, data_fingerprint=value("TRACK_DATA_FINGERPRINT"),
        deployed_at=value("TRACK_DEPLOYED_AT"))


# ---------------------------------------------------------------------------------------------------------
# The model directory
# ---------------------------------------------------------------------------------------------------------
def model_directory(input_dir: Path, into: Path, pin: str | None = None) -> tuple[Path, str]:
    """(the model directory, its MODEL_SHA256 digest): model.tar.gz under `input_dir` extracted into `into`
    (or `input_dir` itself when it already is a model directory); checked against `pin` when one is given."""
    from ml_pipeline.datasets import _model_archive, open_pinned

    archive = _model_archive(input_dir)
    if archive is None:
        raise DataError(f"no model.tar.gz under {input_dir}: the job needs the training job's model artifact")
    directory = archive if archive.is_dir() else into
    return directory, open_pinned(archive, directory, pin)


# ---------------------------------------------------------------------------------------------------------
# What the run holds (pure)
# ---------------------------------------------------------------------------------------------------------
def fitted_settings(pipeline) -> dict[str, Any]:
    """The estimator settings the model was fitted with (tuning's choices included) and the seed."""
    steps = getattr(pipeline, "steps", None)
    if not steps:
        return {}
    from ml_pipeline.model import ESTIMATOR_PARAMS

    estimator_params = steps[-1][1].get_params(deep=False)
    settings = {name: estimator_params[name] for name in ESTIMATOR_PARAMS if name in estimator_params}
    if estimator_params.get("random_state") is not None:
        settings["seed"] = estimator_params["random_state"]
    return settings


def run_params(metadata: dict, fitted: dict[str, Any]) -> dict[str, str]:
    """Target, task, the job's training hyperparameters and the fitted estimator's settings (which win: tuning
    may have chosen other values than the ones given)."""
    training = metadata.get("training") or {}
    params: dict[str, Any] = {"target_column": metadata.get("target"), "task": metadata.get("task"),
                              "tuning_iterations": training.get("tuning_iterations")}
    if training.get("cv_folds") is not None:
        params.update({"cv_folds": training["cv_folds"], "tuning_scoring": training.get("scoring")})
    given = (metadata.get("lineage") or {}).get("hyperparameters") or {}
    for name, value in given.items():
        if name in LINEAGE_HYPERPARAMETERS or name.startswith(IGNORED_PREFIXES):
            continue
        params.setdefault(name, value)
    params.update(fitted)
    return {name: _text(value)[:PARAM_LIMIT] for name, value in params.items() if value is not None}


def run_metrics(metadata: dict) -> dict[str, float]:
    """`<split>_<metric>` per split of metadata.json, the paired comparison (`champion_<m>`/`challenger_<m>` on
    the test rows, `champion_new_<m>`/`challenger_new_<m>` on the new rows, `comparison_rows`,
    `comparison_new_rows`) when the production model was scored, and the fit's size and time."""
    names = metric_functions.metric_names(metadata.get("task", "classification"))
    values: dict[str, Any] = {}
    for split, measured in (metadata.get("metrics") or {}).items():
        for name in names:
            values[f"{split}_{name}"] = (measured or {}).get(name)
    comparison = metadata.get("comparison") or {}
    if (comparison.get("champion") or {}).get("scored"):
        for part, infix in (("test", ""), ("new", "new_")):
            block = comparison.get(part) or {}
            if not block:
                continue
            values[f"comparison_{infix}rows"] = block.get("rows")
            for role in ("champion", "challenger"):
                for name in names:
                    values[f"{role}_{infix}{name}"] = (block.get(role) or {}).get(name)
    training = metadata.get("training") or {}
    values.update({"train_rows": training.get("train_rows"), "fit_seconds": training.get("fit_seconds"),
                   "tuning_best_score": training.get("best_score")})
    values.update(bias_metrics(metadata.get("bias") or {}))
    return {name: float(value) for name, value in values.items() if _finite(value)}


def bias_metrics(bias: dict) -> dict[str, Any]:
    """`bias_<facet>_<metric>` for every facet's pre- and post-training metric (Clarify's names): the facet as its
    column and values (or `gt<threshold>`), in the characters MLflow allows in a metric name."""
    values: dict[str, Any] = {}
    for facet in bias.get("facets") or []:
        if "threshold" in facet:
            which = f"gt{facet['threshold']}"
        else:
            which = "-".join(str(v) for v in facet.get("values") or [])
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{facet.get('column')}_{which}")
        for phase in ("pre_training", "post_training"):
            for metric, value in (facet.get(phase) or {}).items():
                values[f"bias_{name}_{metric}"] = value
    return values


def run_tags(metadata: dict, request: TrackRequest, model_sha256: str | None) -> dict[str, str]:
    """Where the model came from: the job, image, artifact and its pin, the data (fingerprint, files, inputs
    with their S3 versions) and the production model it was compared with."""
    lineage = metadata.get("lineage") or {}
    files = lineage.get("files") or []
    inputs = lineage.get("inputs") or []
    listed = json.dumps(inputs, separators=(",", ":"), sort_keys=True)
    champion = (metadata.get("comparison") or {}).get("champion") or {}
    tags = {
        RUN_KEY: request.training_job,
        "image": lineage.get("image") or request.image,  # the image that trained it; TRACK_IMAGE may be newer
        "model_data_url": request.model_data_url,
        "model_sha256": model_sha256,
        "created_at": metadata.get("created_at"),
        "data_fingerprint": lineage.get("fingerprint") or request.data_fingerprint,
        "data_files": str(len(files)) if files else None,
        "data_files_sha256": files_digest(files),
        "data_inputs": (listed if len(listed) <= TAG_LIMIT else f"{len(inputs)} inputs: see lineage.json")
        if inputs else None,
        "champion_training_job": champion.get("training_job") if champion.get("scored") else None,
        "champion_sha256": champion.get("sha256") if champion.get("scored") else None,
        "mlflow.note.content": _description(metadata, request, len(files)),
    }
    return {name: str(value)[:TAG_LIMIT] for name, value in tags.items() if value not in (None, "")}


def phase_tags(request: TrackRequest) -> tuple[dict[str, str], dict[str, str]]:
    """(run tags, model version tags) that this phase sets."""
    run: dict[str, str] = {}
    version: dict[str, str] = {RUN_KEY: request.training_job} if request.registers else {}
    if request.phase == "trained":
        run["gate"] = str(request.decision)
        if request.reason:
            run["gate_reason"] = request.reason[:TAG_LIMIT]
    elif request.phase == "deployed":
        version["deployed"] = "true"
        if request.deployed_at:
            version["deployed_at"] = request.deployed_at
    else:
        version["rolled_back"] = request.reason[:TAG_LIMIT] or "true"
    if request.phase != "trained" and request.package_arn:
        version["sagemaker_model_package_arn"] = request.package_arn
    return run, version


def files_digest(files: list[dict]) -> str | None:
    """sha256 of the training files' `<sha256>  <file>` lines, sorted: the same content gives the same digest."""
    lines = sorted(f"{f.get('sha256')}  {f.get('file')}\n" for f in files if f.get("sha256"))
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest() if lines else None


def input_example(metadata: dict, rows: int = EXAMPLE_ROWS):
    """A few rows in the model's input representation (float64 numerics, text categoricals), spread over the
    training data's quantiles and most frequent categories (the reference profile)."""
    import numpy as np
    import pandas as pd

    from ml_pipeline.model import MISSING_CATEGORY

    profile = (metadata.get("reference_profile") or {}).get("features") or {}
    columns = {}
    for feature in metadata["features"]:
        entry = profile.get(feature["name"]) or {}
        if feature["kind"] == "numeric":
            quantiles = entry.get("quantiles") or []
            if quantiles:
                positions = np.linspace(0.1, 0.9, rows) * (len(quantiles) - 1)
                values = [float(quantiles[int(round(p))]) for p in positions]
            else:
                values = [float(entry.get("mean", float("nan")))] * rows
            columns[feature["name"]] = pd.Series(values, dtype="float64")
        else:
            categories = list(entry.get("frequencies") or {}) or [MISSING_CATEGORY]  # what the model sees for a gap
            columns[feature["name"]] = pd.Series([categories[i % len(categories)] for i in range(rows)], dtype=object)
    return pd.DataFrame(columns)


def metric_timestamp(metadata: dict) -> int:
    """Milliseconds of the model's creation: a retried log writes the very same metric points."""
    try:
        return int(datetime.fromisoformat(str(metadata.get("created_at"))).timestamp() * 1000)
    except ValueError:
        return 0


def _description(metadata: dict, request: TrackRequest, files: int) -> str:
    task, target = metadata.get("task"), metadata.get("target")
    data = f", trained on {files} file(s)" if files else ""
    what = "Experiment" if request.decision == EXPERIMENT else "SageMaker training job"
    return (f"{what} `{request.training_job}`: a {task} model of `{target}` with "
            f"{len(metadata.get('features') or [])} features{data}.")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------------------
def track(request: TrackRequest, model_dir: Path, model_sha256: str | None = None) -> dict:
    """Log the training job's run once, ensure its model version, move `champion` on `deployed`; the content of
    tracking.json."""
    import mlflow
    from mlflow import MlflowClient

    from ml_pipeline.serving.predictor import load_model_files

    if not request.tracking_uri.startswith("arn:"):
        # sagemaker-mlflow's header provider claims every request and cannot parse a URI that is not an ARN: a
        # warning per request and no header (its headers only route requests to SageMaker's MLflow).
        logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(request.tracking_uri)
    mlflow.set_registry_uri(request.tracking_uri)
    client = MlflowClient(request.tracking_uri, request.tracking_uri)
    experiment_id = _experiment(client, request.experiment)
    run = _run(client, experiment_id, request.training_job)
    run_id = run.info.run_id
    model = _logged_model(client, experiment_id, run_id)
    tags_set: dict[str, dict[str, str]] = {"run": {}, "model_version": {}}
    logged = run.info.status != "FINISHED" or model is None
    if logged:  # new, or an earlier attempt died part way: log it all again (every write below is repeatable)
        pipeline, metadata = load_model_files(model_dir)
        tags_set["run"].update(run_tags(metadata, request, model_sha256))
        model = _log_run(client, run_id, model_dir, pipeline, metadata, tags_set["run"], model)
    run_phase, version_phase = phase_tags(request)
    for name, value in run_phase.items():
        client.set_tag(run_id, name, value)
    tags_set["run"].update(run_phase)
    version = None
    if request.registers:
        version = _model_version(client, request.registered_model, run_id, model)
        for name, value in version_phase.items():
            client.set_model_version_tag(request.registered_model, version, name, value)
        tags_set["model_version"] = version_phase
    moved = False
    if version is not None and request.phase == "deployed":
        # Two deploys' jobs may finish in either order: the alias goes to the newest verified deploy, not to
        # whichever job ran last.
        champion = newest_deployed(_all_versions(client, request.registered_model)) or version
        client.set_registered_model_alias(request.registered_model, CHAMPION_ALIAS, champion)
        moved = champion == version
    return {"training_job": request.training_job, "phase": request.phase, "run_id": run_id,
            "experiment_id": experiment_id, "experiment_name": request.experiment,
            "registered_model": request.registered_model, "model_version": version,
            "alias_moved": moved, "run_logged": logged, "tags_set": tags_set}


def newest_deployed(versions: list) -> str | None:
    """The version whose deploy was verified last (its `deployed_at` tag), or None when none carries one."""
    dated = [(v.tags.get("deployed_at"), int(v.version)) for v in versions if v.tags.get("deployed_at")]
    return str(max(dated)[1]) if dated else None


def _all_versions(client, name: str) -> list:
    found, token = [], None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def _log_run(client, run_id: str, model_dir: Path, pipeline, metadata: dict, tags: dict[str, str], model):
    """Params, metrics, tags, artifacts and (unless a finished one exists) the model; the run ends FINISHED,
    or FAILED when anything here fails, so the next attempt logs again."""
    import mlflow
    import mlflow.sklearn
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.models import infer_signature

    stamp = metric_timestamp(metadata)
    params = run_params(metadata, fitted_settings(pipeline))
    metrics = run_metrics(metadata)
    with mlflow.start_run(run_id=run_id):
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()],
                         params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()])
        client.log_artifact(run_id, str(model_dir / "metadata.json"))
        if (model_dir / "report").is_dir():
            client.log_artifacts(run_id, str(model_dir / "report"), "report")
        mlflow.log_dict(metadata.get("lineage") or {}, "lineage.json")
        if model is None:
            import pandas as pd

            example = input_example(metadata)
            predicted = pd.Series(pipeline.predict(example), name=metadata.get("target"))
            # cloudpickle: MLflow's default (skops) is not in the image, and serve unpickles the same model anyway.
            info = mlflow.sklearn.log_model(
                pipeline, name=MODEL_NAME, signature=infer_signature(example, predicted), input_example=example,
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True))
            model = client.get_logged_model(info.model_id)
    return model


def _experiment(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(name)  # another job created it meanwhile
    if found.lifecycle_stage != "active":
        raise ConfigError(f"MLflow experiment {name!r} is deleted: restore it, or name another one")
    return found.experiment_id


def _run(client, experiment_id: str, job: str):
    """The job's run; created when there is none. Two jobs that both create one keep the same (the oldest)."""
    runs = _runs_of(client, experiment_id, job)
    if runs:
        return runs[0]
    created = client.create_run(experiment_id, run_name=job, tags={RUN_KEY: job})
    runs = _runs_of(client, experiment_id, job) or [created]
    if runs[0].info.run_id != created.info.run_id:
        client.delete_run(created.info.run_id)
    return runs[0]


def _runs_of(client, experiment_id: str, job: str) -> list:
    runs = client.search_runs([experiment_id], filter_string=f"tags.{RUN_KEY} = '{job}'", max_results=100)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def _logged_model(client, experiment_id: str, run_id: str):
    """The run's finished model, if an earlier attempt logged one."""
    found = client.search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'")
    ready = [m for m in found if m.name == MODEL_NAME and str(getattr(m.status, "name", m.status)) == "READY"]
    return min(ready, key=lambda m: (m.creation_timestamp or 0, m.model_id)) if ready else None


def _model_version(client, name: str, run_id: str, model) -> str:
    """The one version of `name` made from this run, registered when missing and READY when returned."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as again:
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
    versions = _versions_of(client, name, run_id)
    if not versions:
        created = client.create_model_version(name, source=model.model_uri, run_id=run_id, model_id=model.model_id,
                                              await_creation_for=300)
        versions = _versions_of(client, name, run_id) or [created]
        if str(versions[0].version) != str(created.version):  # another job registered this run first
            client.delete_model_version(name, created.version)
    version = client.get_model_version(name, str(versions[0].version))
    if version.status != "READY":
        raise RuntimeError(f"model version {version.version} of {name!r} is {version.status}, not READY: "
                           f"{version.status_message or 'no message'}")
    return str(version.version)


def _versions_of(client, name: str, run_id: str) -> list:
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return sorted(versions, key=lambda v: int(v.version))
