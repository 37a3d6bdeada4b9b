"""The container's commands: `train`, `validate`, `monitor`, `join-labels`, `track` (SageMaker jobs) and `serve`
(endpoint).

Each job runs a Kedro session in the `sagemaker` environment (the /opt/ml layout, rooted at OPT_ML_ROOT when
set). On any error a job writes a readable reason — `/opt/ml/output/failure` for training (FailureReason),
`/opt/ml/output/message` for processing (ExitMessage) — and exits non-zero. Validation, monitoring and the
ground-truth join exit 0 when the data itself is bad: their report says so. `track` runs no Kedro session: it
logs one training job to MLflow (ml_pipeline/tracking.py).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from ml_pipeline import paths
from ml_pipeline.allocator import release_arrow_memory
from ml_pipeline.errors import ConfigError, DataError

log = logging.getLogger("ml_pipeline.entrypoints")
METRIC_ORDER = ("accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae", "r2")
INT_HYPERPARAMETERS = {"tuning_iterations", "cv_folds", "seed", "max_iter", "max_leaf_nodes", "max_depth",
                       "min_samples_leaf", "max_bins", "n_iter_no_change"}
FLOAT_HYPERPARAMETERS = {"learning_rate", "l2_regularization", "max_features", "validation_fraction"}
IGNORED_PREFIXES = ("sagemaker_", "_")  # SageMaker's own hyperparameters (e.g. _tuning_objective_metric)
# The Kedro pipelines each job runs, and so the only ones its session registers (pipeline_registry.py).
JOB_PIPELINES = {"train": ("data_processing", "training", "evaluation"), "validate": ("data_validation",),
                 "monitor": ("monitoring",), "join-labels": ("ground_truth",)}


class JobStopped(Exception):
    """SIGTERM: SageMaker is stopping the job."""


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    raise JobStopped("stopped by SIGTERM (the job was stopped or hit its time limit)")


def _quiet_environment() -> None:
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/matplotlib")
    # Before kedro is imported: it configures logging on import.
    os.environ.setdefault("KEDRO_LOGGING_CONFIG", str(paths.project_path() / "conf" / "logging.yml"))


def _job(command):
    """A job command: once it has its exit code, its outputs are written and closed, and nothing it allocated is
    needed again. Freezing the heap then keeps Python's shutdown from running cyclic collections over every
    object Kedro, Great Expectations, scikit-learn and the data left behind: ≈ 0.7 s of a 1,000-row validation
    (bench startup). atexit handlers, logging's flush and stdout/stderr flushing still run."""
    @functools.wraps(command)
    def run(argv: list[str] | None = None) -> int:
        code = command(argv)
        gc.freeze()
        return code

    return run


def _readable(exc: BaseException) -> str:
    """The innermost human message: our errors verbatim, anything else as type + message."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (DataError, ConfigError, JobStopped)):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fail(reason_file: Path, exc: BaseException, what: str) -> int:
    reason = f"{what} failed: {_readable(exc)}"
    traceback.print_exc(file=sys.stderr)
    print(reason, file=sys.stderr, flush=True)
    try:
        reason_file.parent.mkdir(parents=True, exist_ok=True)
        reason_file.write_text(reason[:1000] + "\n", encoding="utf-8")
    except OSError as write_error:
        print(f"could not write {reason_file}: {write_error}", file=sys.stderr)
    return 143 if isinstance(exc, JobStopped) else 1


def _run_kedro(pipelines: list[str], runtime_params: dict) -> None:
    import warnings

    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession

    from ml_pipeline.pipeline_registry import PIPELINES_VARIABLE

    warnings.filterwarnings("ignore", message=".*register_new_resolver.*")
    project = paths.project_path()
    # The job registers only its own pipelines (pipeline_registry.py): the others' nodes and libraries stay
    # unimported. Restored afterwards, so a caller in the same process registers as it would have.
    previous = os.environ.get(PIPELINES_VARIABLE)
    os.environ[PIPELINES_VARIABLE] = ",".join(pipelines)
    try:
        configure_project("ml_pipeline")
        with KedroSession.create(project_path=project, env="sagemaker", runtime_params=runtime_params) as session:
            session.run(pipeline_names=pipelines)
    finally:
        if previous is None:
            os.environ.pop(PIPELINES_VARIABLE, None)
        else:
            os.environ[PIPELINES_VARIABLE] = previous


# ---------------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------------
def read_hyperparameters(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        values = json.loads(path.read_text(encoding="utf-8") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return {str(k): v for k, v in values.items()}


def _typed(name: str, value: Any) -> Any:
    text = str(value).strip()
    try:
        if name in INT_HYPERPARAMETERS:
            return int(float(text))
        if name in FLOAT_HYPERPARAMETERS:
            return float(text)
    except ValueError:
        raise ConfigError(f"hyperparameter {name}={value!r} is not a number") from None
    if name == "early_stopping":
        lowered = text.lower()
        return "auto" if lowered == "auto" else lowered in ("true", "1", "yes")
    return text


def training_runtime_params(hyperparameters: dict[str, Any], environ: dict[str, str]) -> dict:
    """Kedro runtime parameters: base parameters < TARGET_COLUMN/TASK env < hyperparameters.json.

    `responsible_ml` (JSON: bias facets, positive label or label threshold, group column, intended use) is checked
    for shape here, so a malformed one fails before any data is read; its columns are checked against the data by
    the evaluation pipeline."""
    from ml_pipeline.bias import parse_config
    from ml_pipeline.model import ESTIMATOR_PARAMS

    params: dict[str, Any] = {}
    training: dict[str, Any] = {}
    estimator: dict[str, Any] = {}
    for env_name, key in (("TARGET_COLUMN", "target_column"), ("TASK", "task")):
        if environ.get(env_name):
            params[key] = environ[env_name]
    for name, value in hyperparameters.items():
        if name in ("target_column", "task"):
            params[name] = str(value).strip()
        elif name == "champion_sha256":
            params[name] = str(value).strip()  # the champion channel's pin, checked when it is extracted
        elif name == "seed":
            params["seed"] = _typed(name, value)
        elif name in ("tuning_iterations", "cv_folds"):
            training[name] = _typed(name, value)
        elif name in ESTIMATOR_PARAMS:
            estimator[name] = _typed(name, value)
        elif name == "responsible_ml":
            config = parse_config(value)
            if config["facets"] or any(v is not None for k, v in config.items() if k != "facets"):
                params["responsible_ml"] = config
        elif name in ("lineage_inputs", "image_uri"):
            continue  # lineage, below
        elif name.startswith(IGNORED_PREFIXES):
            continue
        else:
            raise ConfigError(f"unknown hyperparameter {name!r}; known: target_column, task, seed, tuning_iterations, "
                              f"cv_folds, lineage_inputs, image_uri, champion_sha256, responsible_ml, "
                              f"{', '.join(ESTIMATOR_PARAMS)}")
    if params.get("task", "auto") not in ("auto", "classification", "regression"):
        raise ConfigError(f"task must be auto, classification or regression, got {params['task']!r}")
    if estimator:
        training["estimator"] = estimator
    if training:
        params["training"] = training
    return params


def _lineage(hyperparameters: dict[str, Any], channel: Path, environ: dict[str, str]) -> dict:
    inputs: list[dict] = []
    declared = hyperparameters.get("lineage_inputs")
    if declared:
        try:
            parsed = json.loads(declared) if isinstance(declared, str) else declared
        except json.JSONDecodeError as exc:
            raise ConfigError(f"hyperparameter lineage_inputs is not JSON: {exc}") from None
        inputs.extend({"uri": item} if isinstance(item, str) else item for item in parsed)
    files = []
    if channel.is_dir():
        for file in sorted(p for p in channel.rglob("*") if p.is_file()):
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            files.append({"file": str(file.relative_to(channel)), "bytes": file.stat().st_size,
                          "sha256": digest.hexdigest()})
    return {
        "inputs": inputs,
        "files": files,
        "training_job": environ.get("TRAINING_JOB_NAME"),
        "image": str(hyperparameters.get("image_uri") or environ.get("IMAGE_URI") or "") or None,
        "hyperparameters": {k: str(v) for k, v in hyperparameters.items()},
    }


def print_metrics(metadata: dict) -> None:
    """`test:<metric>=<value>` lines for SageMaker MetricDefinitions (CONTRACTS.md), then validation ones, then
    what the champion comparison found (worded so that no MetricDefinitions regex matches it)."""
    for split in ("test", "validation"):
        values = metadata.get("metrics", {}).get(split, {})
        for name in METRIC_ORDER:
            value = values.get(name)
            if value is not None:
                print(f"{split}:{name}={value:.6f}", flush=True)
    comparison = metadata.get("comparison")
    if comparison is None:
        return
    champion = comparison["champion"]
    if "new" in comparison:
        print(f"comparison:new_rows={comparison['new']['rows']}", flush=True)
    if champion.get("scored"):
        print(f"comparison: production model {champion.get('training_job')} scored on the same "
              f"{comparison['test']['rows']} test rows", flush=True)
    elif "new" not in comparison:
        print("comparison: no production model to compare with", flush=True)
    else:
        print(f"comparison: production model not scored: {champion.get('reason')}", flush=True)


@_job
def train(argv: list[str] | None = None) -> int:
    """SageMaker training: /opt/ml/input → /opt/ml/model (model.joblib, metadata.json, report/)."""
    _quiet_environment()
    release_arrow_memory()
    signal.signal(signal.SIGTERM, _on_sigterm)
    failure_file = paths.training_failure_file()
    try:
        hyperparameters = read_hyperparameters(paths.hyperparameters_file())
        params = training_runtime_params(hyperparameters, dict(os.environ))
        params["lineage"] = _lineage(hyperparameters, paths.training_channel(), dict(os.environ))
        channel = paths.training_channel()
        if not channel.exists():
            raise DataError(f"no training data: channel 'train' ({channel}) is missing")
        _run_kedro(list(JOB_PIPELINES["train"]), params)
        metadata = json.loads((paths.model_dir() / "metadata.json").read_text(encoding="utf-8"))
        print_metrics(metadata)
        print(f"model written to {paths.model_dir()} ({metadata['task']}, target {metadata['target']!r})", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001 — every failure must leave a reason for SageMaker
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        for partial in ("model.joblib", "metadata.json"):
            (paths.model_dir() / partial).unlink(missing_ok=True)
        shutil.rmtree(paths.model_dir() / "forest", ignore_errors=True)  # the compiled trees of a failed run
        return _fail(failure_file, exc, "training")


# ---------------------------------------------------------------------------------------------------------
# validate / monitor (Processing jobs)
# ---------------------------------------------------------------------------------------------------------
def _processing_params(environ: dict[str, str]) -> dict:
    params: dict[str, Any] = {}
    if environ.get("TARGET_COLUMN"):
        params["target_column"] = environ["TARGET_COLUMN"]
    if environ.get("TASK"):
        params["task"] = environ["TASK"]
    return params


def _flag(name: str, environ: dict[str, str]) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be 0 or 1, got {environ[name]!r}")


def validation_params(environ: dict[str, str]) -> dict:
    """Runtime parameters of `validate`: TARGET_COLUMN / TASK, STRICT_COLUMNS (comma list) and ACCEPT_SHIFT."""
    params = _processing_params(environ)
    policy: dict[str, Any] = {}
    if "STRICT_COLUMNS" in environ:
        policy["strict_columns"] = [c.strip() for c in environ["STRICT_COLUMNS"].split(",") if c.strip()]
    if "ACCEPT_SHIFT" in environ:
        policy["accept_shift"] = _flag("ACCEPT_SHIFT", environ)
    if policy:
        params["shift_policy"] = policy
    return params


def ground_truth_params(environ: dict[str, str]) -> dict:
    """Runtime parameters of `join-labels`: TARGET_COLUMN, GATE_METRIC and the model's pin MODEL_SHA256."""
    settings: dict[str, Any] = {}
    if environ.get("TARGET_COLUMN"):
        settings["target_column"] = environ["TARGET_COLUMN"].strip()
    if environ.get("GATE_METRIC"):
        settings["gate_metric"] = environ["GATE_METRIC"].strip()
    params: dict[str, Any] = {"ground_truth": settings} if settings else {}
    if environ.get("MODEL_SHA256", "").strip():
        params["model_sha256"] = environ["MODEL_SHA256"].strip()
    return params


def _print_drift_report(report: dict) -> None:
    print(f"drift_score={report['drift']['score']:.6f}", flush=True)
    print(f"rows_rejected={report['rows_rejected']}", flush=True)


def _print_ground_truth_report(report: dict) -> None:
    quality = report.get("model_quality") or {}
    value = quality.get("value")
    print(f"matched={report.get('matched', 0)}", flush=True)
    if value is not None:
        print(f"model_quality:{quality['metric']}={value:.6f}", flush=True)


def _processing(job: str, what: str, params: dict | None = None, printer=_print_drift_report) -> int:
    # Validation and monitoring compute column statistics, no model fit: extra OpenMP/BLAS threads only wait
    # for each other on shared cores. Set before numpy is imported; an explicit setting wins.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    _quiet_environment()
    signal.signal(signal.SIGTERM, _on_sigterm)
    report_file = paths.opt_ml_root() / "processing" / "output" / "report" / "report.json"
    try:
        _run_kedro(list(JOB_PIPELINES[job]), _processing_params(dict(os.environ)) if params is None else params)
        report = json.loads(report_file.read_text(encoding="utf-8"))
        print(f"{what}: {'passed' if report['passed'] else 'FAILED'}: {report['summary']}", flush=True)
        printer(report)
        return 0
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        return _fail(paths.processing_message_file(), exc, what)


@_job
def validate(argv: list[str] | None = None) -> int:
    """Processing job: /opt/ml/processing/input/{data,model} → /opt/ml/processing/output/report/."""
    try:
        params = validation_params(dict(os.environ))
    except ConfigError as exc:
        return _fail(paths.processing_message_file(), exc, "validation")
    return _processing("validate", "validation", params)


@_job
def monitor(argv: list[str] | None = None) -> int:
    """Processing job: /opt/ml/processing/input/{capture,model} → /opt/ml/processing/output/report/."""
    return _processing("monitor", "monitoring")


@_job
def join_labels(argv: list[str] | None = None) -> int:
    """Processing job: /opt/ml/processing/input/{labels,capture,model} → /opt/ml/processing/output/{joined,report}/."""
    return _processing("join-labels", "ground truth", ground_truth_params(dict(os.environ)),
                       _print_ground_truth_report)


# ---------------------------------------------------------------------------------------------------------
# track (Processing job, with network: it writes to the MLflow tracking server)
# ---------------------------------------------------------------------------------------------------------
@_job
def track(argv: list[str] | None = None) -> int:
    """Processing job: /opt/ml/processing/input/model/model.tar.gz → one MLflow run per training job (its model
    version, the `champion` alias) and /opt/ml/processing/output/report/tracking.json."""
    _quiet_environment()
    # DO_NOT_TRACK=1 is not MLflow's spelling (it wants "true"): say it in MLflow's own variable.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    signal.signal(signal.SIGTERM, _on_sigterm)
    processing = paths.opt_ml_root() / "processing"
    try:
        from ml_pipeline import tracking

        request = tracking.request_from_env(dict(os.environ))
        with tempfile.TemporaryDirectory(prefix="model-") as extracted:
            model_dir, digest = tracking.model_directory(processing / "input" / "model", Path(extracted),
                                                         request.model_sha256)
            result = tracking.track(request, model_dir, digest)
        report = processing / "output" / "report" / "tracking.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        version = result["model_version"]
        outcome = f"{request.registered_model} version {version}" if version else "no model version"
        if result["alias_moved"]:
            outcome += f", alias {tracking.CHAMPION_ALIAS} moved to it"
        print(f"tracking: {request.phase} {request.training_job}: run {result['run_id']} in experiment "
              f"{request.experiment!r}, {outcome}", flush=True)
        return 0
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        return _fail(paths.processing_message_file(), exc, "tracking")


# ---------------------------------------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------------------------------------
def worker_count(environ: dict[str, str]) -> int:
    # serve's modules are imported by serve only: timeouts brings asyncio, which no Kedro job needs.
    from ml_pipeline.serving import cores

    explicit = environ.get("SERVE_WORKERS") or environ.get("SAGEMAKER_MODEL_SERVER_WORKERS")
    if explicit:
        return max(1, int(explicit))
    return cores.available_cores()


def serve(argv: list[str] | None = None) -> int:
    """HTTP server on SAGEMAKER_BIND_TO_PORT (8080): one uvicorn worker per core, uvloop + httptools."""
    from ml_pipeline.serving import cores, timeouts

    workers = worker_count(dict(os.environ))
    try:
        batch_threads = cores.thread_limit(dict(os.environ), cores.available_cores())
        # Read again by each worker; checked here so that a bad value stops serve instead of every worker.
        for variable in (timeouts.HEADER_VARIABLE, timeouts.BODY_VARIABLE):
            timeouts.seconds(os.environ, variable)
    except ValueError as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    # One thread per worker: workers already use every core, and OpenMP threads fighting over them cost far
    # more than they gain on single rows. Large batches borrow the cores of idle workers (serving/cores.py).
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SERVE_THREADS", "1"))
    # libgomp's idle threads spin ≈ 300k times before sleeping; when the machine is busy anyway, a borrowed
    # thread spinning on a core it cannot get made 10k-row predicts take up to 900 ms (10k spins: ≤ 100 ms).
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    _quiet_environment()
    import uvicorn

    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("SERVE_HOST", "0.0.0.0")
    print(f"serve: http://{host}:{port} with {workers} worker(s), model {paths.model_dir()}", flush=True)
    # Twice the slots: a restart (SIGHUP) starts each replacement before it retires the old worker.
    share = None
    if batch_threads > 1:
        try:
            share = cores.create_file(tempfile.gettempdir(), 2 * workers)
        except OSError as exc:  # no writable temp directory: serve as before, every request on one thread
            print(f"serve: large batches stay on one thread: cannot create the shared file ({exc})", flush=True)
    if share is not None:
        os.environ[cores.FILE_VARIABLE] = share
        _remove_when_signalled(share)
    try:
        # httptools plus a deadline for request headers (serving/protocol.py); the app times out bodies itself.
        uvicorn.run("ml_pipeline.serving.app:app", host=host, port=port, workers=workers, loop="uvloop",
                    http="ml_pipeline.serving.protocol:HeaderTimeoutProtocol", lifespan="on", access_log=False,
                    log_level=os.environ.get("SERVE_LOG_LEVEL", "info"),
                    timeout_keep_alive=int(os.environ.get("SERVE_KEEP_ALIVE", "75")),
                    timeout_graceful_shutdown=int(os.environ.get("SERVE_GRACEFUL_SECONDS", "15")),
                    backlog=2048)
    finally:
        if share is not None:
            _remove(share)
    return 0


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_when_signalled(path: str) -> None:
    """A single uvicorn process re-raises SIGTERM/SIGINT after its shutdown: remove the file, then die of it."""
    def stop(signum, _frame) -> None:
        _remove(path)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


COMMANDS = {"train": train, "validate": validate, "monitor": monitor, "join-labels": join_labels, "track": track,
            "serve": serve}


def main(argv: list[str] | None = None) -> int:
    """`python -m ml_pipeline.entrypoints <train|serve|validate|monitor|join-labels|track>` (the image's commands)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: {{{','.join(COMMANDS)}}} — got {args[:1] or 'nothing'}", file=sys.stderr)
        return 2
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
