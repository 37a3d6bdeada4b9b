"""Configuration of every function, read once from the environment the stack sets (CONTRACTS.md)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping


class ConfigError(RuntimeError):
    """The function's environment is incomplete or invalid: a deployment bug, so it must fail loudly."""


_REQUIRED = (
    "NAME_PREFIX", "LEDGER_TABLE", "DATA_BUCKET", "ARTIFACTS_BUCKET", "NOTIFY_TOPIC_ARN", "KMS_KEY_ARN",
    "IMAGE_URI", "TRAINING_ROLE_ARN", "PROCESSING_ROLE_ARN", "MODEL_ROLE_ARN", "ENDPOINT_NAME",
    "MODEL_PACKAGE_GROUP", "TARGET_COLUMN",
)

LOWER_IS_BETTER = frozenset({"rmse", "mae"})
# The metrics the image reports, per task (a contract test checks the image and the stack config agree).
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")
KNOWN_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS


@dataclass(frozen=True)
class GateRule:
    metric: str
    threshold: float


@dataclass(frozen=True)
class QualityGate:
    classification: GateRule
    regression: GateRule
    tolerance: float

    def rule_for(self, task: str) -> GateRule:
        return self.regression if task == "regression" else self.classification


@dataclass(frozen=True)
class Settings:
    name_prefix: str
    ledger_table: str
    data_bucket: str
    artifacts_bucket: str
    notify_topic_arn: str
    kms_key_arn: str
    image_uri: str
    # One role per job kind: only training writes models; validation and monitoring, which parse untrusted
    # files, run as the processing role; the endpoint runs as the model role.
    training_role_arn: str
    processing_role_arn: str
    model_role_arn: str
    endpoint_name: str
    model_package_group: str
    target_column: str
    task: str = "auto"
    allowed_extensions: tuple[str, ...] = (".csv", ".parquet")
    max_upload_bytes: int = 1024 ** 3
    processing_instance_type: str = "ml.m5.large"
    training_instance_type: str = "ml.m5.large"
    serving_instance_type: str = "ml.m5.large"
    serving_min_instances: int = 1
    serving_max_instances: int = 2
    scaling_target_invocations: float = 100.0
    quality_gate: QualityGate = field(default_factory=lambda: parse_quality_gate(_DEFAULT_GATE))
    drift_threshold: float = 0.2
    retrain_cooldown_seconds: int = 3600
    rollback_alarm_names: tuple[str, ...] = ()
    data_capture_percent: int = 100
    metric_namespace: str = "MLOps"
    max_runtime_seconds: int = 3600
    training_hyperparameters: Mapping[str, str] = field(default_factory=dict)
    # Blue/green baking period: the rollback alarms must be able to fire within it (checked at synth).
    deploy_bake_seconds: int = 600
    # Columns whose shift (new categories, ranges, classes, nulls) fails validation instead of being reported.
    strict_columns: tuple[str, ...] = ()
    # The training window: newest validated files within this many days (0: any age) and, newest first, up to
    # this many rows (0: no limit; the newest file is always included).
    training_window_days: int = 0
    training_window_max_rows: int = 0
    # The most rows x columns one training job may be given (its instance's memory, docs/scale.md; 0: no limit).
    training_max_cells: int = 0
    # The gate compares champion and challenger on the new rows when there are at least this many, else on the
    # whole test split.
    gate_min_new_rows: int = 30
    # SageMaker warm pools: keep the training instance this long for the next run (0: off).
    training_keep_alive_seconds: int = 0
    # MLflow (off when the URI is empty): a `track` processing job logs each model, as the tracking role.
    tracking_uri: str = ""
    tracking_role_arn: str = ""
    tracking_experiment: str = ""
    registered_model_name: str = ""
    # Responsible ML: the facets' JSON as the training job's hyperparameter `responsible_ml` ("" = none), and the
    # fairness gate {bias metric: (min, max)} ({} = off).
    responsible_ml: str = ""
    fairness_gate: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    # Prefixes the system itself writes in the data bucket: an event for them must never start anything.
    incoming_prefix: str = "incoming/"
    validated_prefix: str = "validated/"
    quarantine_prefix: str = "quarantine/"
    # In the artifacts bucket: the exact uploaded version each validation job reads, alone under its job's folder.
    validation_input_prefix: str = "validation-input/"
    # Labels for captured requests (data bucket) and the copy each ground-truth job reads (artifacts bucket).
    ground_truth_prefix: str = "ground-truth/"
    labels_input_prefix: str = "labels-input/"
    # Where the labeled rows a ground-truth job joined re-enter the pipeline as an upload (data bucket).
    labeled_prefix: str = "incoming/labeled/"

    @property
    def variant_name(self) -> str:
        return "AllTraffic"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        missing = [name for name in _REQUIRED if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        task = env.get("TASK", "auto")
        if task not in ("auto", "classification", "regression"):
            raise ConfigError(f"TASK must be auto, classification or regression, got {task!r}")
        extensions = tuple(
            ext if ext.startswith(".") else f".{ext}"
            for ext in (e.strip().lower() for e in env.get("ALLOWED_EXTENSIONS", ".csv,.parquet").split(","))
            if ext
        )
        hyperparameters = _json(env, "TRAINING_HYPERPARAMETERS", {})
        if not isinstance(hyperparameters, dict):
            raise ConfigError("TRAINING_HYPERPARAMETERS must be a JSON object")
        settings = cls(
            name_prefix=env["NAME_PREFIX"],
            ledger_table=env["LEDGER_TABLE"],
            data_bucket=env["DATA_BUCKET"],
            artifacts_bucket=env["ARTIFACTS_BUCKET"],
            notify_topic_arn=env["NOTIFY_TOPIC_ARN"],
            kms_key_arn=env["KMS_KEY_ARN"],
            image_uri=env["IMAGE_URI"],
            training_role_arn=env["TRAINING_ROLE_ARN"],
            processing_role_arn=env["PROCESSING_ROLE_ARN"],
            model_role_arn=env["MODEL_ROLE_ARN"],
            endpoint_name=env["ENDPOINT_NAME"],
            model_package_group=env["MODEL_PACKAGE_GROUP"],
            target_column=env["TARGET_COLUMN"],
            task=task,
            allowed_extensions=extensions,
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 1024 ** 3, minimum=1),
            processing_instance_type=env.get("PROCESSING_INSTANCE_TYPE", "ml.m5.large"),
            training_instance_type=env.get("TRAINING_INSTANCE_TYPE", "ml.m5.large"),
            serving_instance_type=env.get("SERVING_INSTANCE_TYPE", "ml.m5.large"),
            serving_min_instances=_int(env, "SERVING_MIN_INSTANCES", 1, minimum=1),
            serving_max_instances=_int(env, "SERVING_MAX_INSTANCES", 2, minimum=1),
            scaling_target_invocations=_float(env, "SCALING_TARGET_INVOCATIONS", 100.0),
            quality_gate=parse_quality_gate(_json(env, "QUALITY_GATE", _DEFAULT_GATE)),
            drift_threshold=_float(env, "DRIFT_THRESHOLD", 0.2),
            retrain_cooldown_seconds=_int(env, "RETRAIN_COOLDOWN_SECONDS", 3600, minimum=0),
            rollback_alarm_names=tuple(a.strip() for a in env.get("ROLLBACK_ALARM_NAMES", "").split(",") if a.strip()),
            data_capture_percent=_int(env, "DATA_CAPTURE_PERCENT", 100, minimum=0, maximum=100),
            metric_namespace=env.get("METRIC_NAMESPACE", "MLOps"),
            max_runtime_seconds=_int(env, "MAX_RUNTIME_SECONDS", 3600, minimum=1),
            training_hyperparameters={str(k): str(v) for k, v in hyperparameters.items()},
            deploy_bake_seconds=_int(env, "DEPLOY_BAKE_SECONDS", 600, minimum=0, maximum=3600),
            strict_columns=tuple(c.strip() for c in env.get("STRICT_COLUMNS", "").split(",") if c.strip()),
            training_window_days=_int(env, "TRAINING_WINDOW_DAYS", 0, minimum=0),
            training_window_max_rows=_int(env, "TRAINING_WINDOW_MAX_ROWS", 0, minimum=0),
            training_max_cells=_int(env, "TRAINING_MAX_CELLS", 0, minimum=0),
            gate_min_new_rows=_int(env, "GATE_MIN_NEW_ROWS", 30, minimum=1),
            training_keep_alive_seconds=_int(env, "TRAINING_KEEP_ALIVE_SECONDS", 0, minimum=0, maximum=3600),
            tracking_uri=env.get("TRACKING_URI", ""),
            tracking_role_arn=env.get("TRACKING_ROLE_ARN", ""),
            tracking_experiment=env.get("TRACKING_EXPERIMENT", "") or env["NAME_PREFIX"],
            registered_model_name=env.get("REGISTERED_MODEL_NAME", "") or f"{env['NAME_PREFIX']}-model",
            responsible_ml=env.get("RESPONSIBLE_ML", ""),
            fairness_gate=parse_fairness_gate(_json(env, "FAIRNESS_GATE", {})),
        )
        if settings.tracking_uri and not settings.tracking_role_arn:
            raise ConfigError("TRACKING_URI is set but TRACKING_ROLE_ARN is not: the track job needs its role")
        if settings.serving_max_instances < settings.serving_min_instances:
            raise ConfigError("SERVING_MAX_INSTANCES must be >= SERVING_MIN_INSTANCES")
        return settings


_DEFAULT_GATE = {
    "classification": {"metric": "roc_auc", "threshold": 0.7},
    "regression": {"metric": "r2", "threshold": 0.3},
    "tolerance": 0.01,
}


def parse_fairness_gate(raw: object) -> dict[str, tuple[float, float]]:
    """{metric: [min, max]} (validated at synth: stacks/config.py) as {metric: (min, max)}."""
    if not isinstance(raw, dict):
        raise ConfigError("FAIRNESS_GATE must be a JSON object")
    try:
        gate = {str(metric): (float(bounds[0]), float(bounds[1])) for metric, bounds in raw.items()}
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise ConfigError(f"FAIRNESS_GATE is malformed: {exc!r}") from exc
    if any(low > high for low, high in gate.values()):
        raise ConfigError("FAIRNESS_GATE: every range must be [min, max] with min <= max")
    return gate


def parse_quality_gate(raw: object) -> QualityGate:
    if not isinstance(raw, dict):
        raise ConfigError("QUALITY_GATE must be a JSON object")
    try:
        rules = {}
        for task in ("classification", "regression"):
            metric = str(raw[task]["metric"])
            if metric not in KNOWN_METRICS:
                raise ConfigError(f"QUALITY_GATE {task} metric {metric!r} is not one of {', '.join(KNOWN_METRICS)}")
            rules[task] = GateRule(metric=metric, threshold=float(raw[task]["threshold"]))
        tolerance = float(raw.get("tolerance", 0.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"QUALITY_GATE is malformed: {exc!r}") from exc
    if tolerance < 0:
        raise ConfigError("QUALITY_GATE tolerance must be >= 0")
    return QualityGate(classification=rules["classification"], regression=rules["regression"], tolerance=tolerance)


def _json(env: Mapping[str, str], name: str, default: object) -> object:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc}") from exc


def _int(env: Mapping[str, str], name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = env.get(name)
    try:
        value = int(raw) if raw not in (None, "") else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{name}={value} is out of range [{minimum}, {maximum}]")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


_cached: Settings | None = None


def load() -> Settings:
    """Settings of this process (read once per cold start; tests call reset())."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached


def reset() -> None:
    global _cached
    _cached = None
