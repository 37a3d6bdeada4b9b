"""The one configuration object of a stage, loaded from cdk.json context and validated.

Resolution order for every key: ``stage_defaults`` < ``stages.<stage>`` < a top-level context key of
the same name (``cdk synth -c target_column=price``). Values given on the command line are strings;
they are converted to the field's type here. Any invalid or unknown key stops synthesis with a
``ConfigError`` that names the key.
"""

from __future__ import annotations

import json
import re
import typing
from types import MappingProxyType
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the key."""

    def __init__(self, key: str, message: str, stage: str | None = None) -> None:
        where = f" (stage '{stage}')" if stage else ""
        super().__init__(f"invalid config key '{key}'{where}: {message}")
        self.key = key


# CloudWatch Logs accepts only these retention periods: days -> aws_logs.RetentionDays member name.
LOG_RETENTION_PERIODS = MappingProxyType({
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS",
    1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS"})
LOG_RETENTION_DAYS = tuple(LOG_RETENTION_PERIODS)
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("r2", "rmse", "mae")
# Keys the training Lambda sets itself from other config keys; overriding them here would fork the truth.
RESERVED_HYPERPARAMETERS = ("target_column", "task", "responsible_ml")
# SageMaker Clarify's bias metrics (names and definitions: docs/ml.md), which the image computes per facet: on the
# training data before training, on the test split's predictions after. A contract test checks these against the
# image's (ml_pipeline.bias).
PRE_TRAINING_BIAS_METRICS = ("CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL")
POST_TRAINING_BIAS_METRICS = ("DPPL", "DI", "DCAcc", "DCR", "RD", "SD", "DAR", "DRR", "AD", "TE", "CDDPL")
RESPONSIBLE_ML_KEYS = ("facets", "positive_label", "label_threshold", "group_column", "intended_use")
HYPERPARAMETER_VALUE_LIMIT = 2500  # SageMaker's limit on one hyperparameter value
# responsible_ml travels in every function's environment (Lambda allows 4 KB for all variables together; the others
# take about 2.5 KB) and then as one hyperparameter.
RESPONSIBLE_ML_LIMIT = 1024
MAX_PREFIX_LENGTH = 24  # keeps P-artifacts-<account>-<region> within S3's 63 characters
# The trigger and the verdict each copy an upload server-side within one invocation (CopyObject up to 5 GiB, then
# UploadPartCopy parts one after another: lambda/mlops_control/copies.py). Not measured here (no AWS account): S3's
# server-side copy is assumed to sustain 100 MiB/s per request stream, and an invocation keeps 30 s for the rest.
ASSUMED_COPY_BYTES_PER_SECOND = 100 * 1024 ** 2
COPY_RESERVE_SECONDS = 30
# The most data one training job is given, in cells (rows x columns of the training window), when the stage leaves
# training_max_cells at 0: what the training instance's memory holds (docs/scale.md). bench/train_bench.py measures
# the training job's peak memory (kernel max RSS): a fixed part (interpreter, libraries, the evaluation's fixed work)
# plus a part that grows with the cells (its slope between 1M and 10M rows x 21 columns: 0.37 GiB per million rows,
# 19.1 bytes a cell, on 2026-12-05; rounded up). The OS, the container and SageMaker's agents keep the rest.
TRAINING_PEAK_BYTES_PER_CELL = 20
TRAINING_FIXED_MEMORY_GIB = 0.5
TRAINING_MEMORY_USABLE_FRACTION = 0.8
# GiB of memory per vCPU of SageMaker's general-purpose (m), compute (c) and memory (r) instance families from the
# 4th generation on (c4 and c5n differ, and GPU instances are not sized here: set training_max_cells for them).
_MEMORY_PER_VCPU_GIB = {"c": 2, "m": 4, "r": 8}
_SIZED_INSTANCE = re.compile(r"^ml\.(?P<family>[cmr])(?P<generation>[4-8])(?:i|d)?(?:-flex)?\."
                             r"(?P<size>large|xlarge|(?P<n>\d+)xlarge)$")
_OTHER_INSTANCE_MEMORY_GIB = MappingProxyType({
    "ml.c4.xlarge": 7.5, "ml.c4.2xlarge": 15, "ml.c4.4xlarge": 30, "ml.c4.8xlarge": 60,
    "ml.t3.medium": 4, "ml.t3.large": 8, "ml.t3.xlarge": 16, "ml.t3.2xlarge": 32})


def instance_memory_gib(instance_type: str) -> float | None:
    """The memory of a SageMaker CPU instance type, or None when it is not sized here."""
    match = _SIZED_INSTANCE.match(instance_type)
    if match is None or (match["family"] == "c" and match["generation"] == "4"):
        return _OTHER_INSTANCE_MEMORY_GIB.get(instance_type)
    size = match["size"]
    vcpus = 2 if size == "large" else 4 * int(match["n"] or 1)
    return vcpus * _MEMORY_PER_VCPU_GIB[match["family"]]


# Blue/green rollback timing (checked at synth so an alarm can always fire before the old fleet is gone).
# SageMaker publishes endpoint metrics (Invocation5XXErrors, ModelLatency) once a minute, so an alarm period
# is a whole number of minutes. Assumed delay between the end of a period and CloudWatch acting on it:
# metric delivery plus the alarm's own evaluation cadence, about 2 minutes in practice (not an AWS guarantee).
ALARM_EVALUATION_DELAY_SECONDS = 120
# SageMaker's bounds on BlueGreenUpdatePolicy.TerminationWaitInSeconds (the bake time).
MAX_DEPLOY_BAKE_SECONDS = 3600
# CloudWatch: evaluation_periods x period may cover at most one day.
MAX_ALARM_WINDOW_SECONDS = 86400

_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """Everything that differs between deployments. See docs/deploy.md for each key's meaning."""

    stage: str
    project: str
    account: str
    region: str
    # data and training
    target_column: str
    task: str
    allowed_extensions: tuple[str, ...]
    max_upload_bytes: int
    processing_instance_type: str
    training_instance_type: str
    max_runtime_seconds: int
    training_hyperparameters: Mapping[str, str]
    # quality gate
    gate_classification_metric: str
    gate_classification_threshold: float
    gate_regression_metric: str
    gate_regression_threshold: float
    gate_tolerance: float
    # serving
    serving_instance_type: str
    serving_min_instances: int
    serving_max_instances: int
    scaling_target_invocations: int
    data_capture_percent: int
    api_auth: str
    api_throttle_rate_limit: float
    api_throttle_burst_limit: int
    strict_columns: tuple[str, ...]
    training_window_days: int
    training_window_max_rows: int
    training_max_cells: int
    training_keep_alive_seconds: int
    gate_min_new_rows: int
    # monitoring and retraining
    drift_threshold: float
    model_quality_threshold: float
    retrain_cooldown_seconds: int
    monitor_schedule: str
    metric_namespace: str
    alarm_5xx_threshold: int
    alarm_latency_ms: int
    alarm_period_seconds: int
    alarm_evaluation_periods: int
    alarm_datapoints_to_alarm: int
    deploy_bake_seconds: int
    notification_email: str
    # control plane
    lambda_memory_mb: int
    lambda_timeout_seconds: int
    lambda_reserved_concurrency: int
    lambda_snap_start: bool
    async_retry_attempts: int
    async_max_event_age_seconds: int
    log_retention_days: int
    retain_data: bool
    base_image: str
    # experiment tracking: every training run logged to SageMaker's managed MLflow (an MLflow App)
    mlflow_tracking: bool
    # responsible ML: the facets (sensitive groups) whose bias every model is measured on, the favourable outcome,
    # the model card's intended use ({"facets": [{"column", "values" | "threshold"}], "positive_label",
    # "label_threshold", "group_column", "intended_use"}); and the fairness gate ({metric: [min, max]}, {}: off)
    responsible_ml: Mapping[str, Any]
    fairness_gate: Mapping[str, Any]

    @property
    def prefix(self) -> str:
        """``P`` of CONTRACTS.md: every resource name starts with it."""
        return f"{self.project}-{self.stage}"

    @property
    def quality_gate(self) -> dict[str, Any]:
        """The QUALITY_GATE document of CONTRACTS.md."""
        return {
            "classification": {"metric": self.gate_classification_metric,
                               "threshold": self.gate_classification_threshold},
            "regression": {"metric": self.gate_regression_metric,
                           "threshold": self.gate_regression_threshold},
            "tolerance": self.gate_tolerance,
        }

    @property
    def model_quality_lower_is_better(self) -> bool:
        """Whether ModelQuality (the gate metric of the production model on labels) is an error (rmse/mae):
        only a regression stage's gate metric can be; with task `auto` the alarm reads it as a score."""
        return self.task == "regression" and self.gate_regression_metric in ("rmse", "mae")

    @property
    def training_cell_limit(self) -> int:
        """TRAINING_MAX_CELLS: training_max_cells, or (0) what the training instance's memory holds."""
        if self.training_max_cells:
            return self.training_max_cells
        memory = instance_memory_gib(self.training_instance_type) or 0
        usable = memory * TRAINING_MEMORY_USABLE_FRACTION - TRAINING_FIXED_MEMORY_GIB
        return max(0, int(usable * 1024 ** 3 / TRAINING_PEAK_BYTES_PER_CELL))

    @property
    def rollback_alarm_seconds(self) -> int:
        """Worst case from the first bad request to a rollback alarm in ALARM: up to one period until the first
        whole period starts, ``alarm_datapoints_to_alarm`` breaching periods, then CloudWatch's delay."""
        return self.alarm_period_seconds * (self.alarm_datapoints_to_alarm + 1) + ALARM_EVALUATION_DELAY_SECONDS

    def __post_init__(self) -> None:
        _validate(self)


def _fail(key: str, message: str, stage: str) -> typing.NoReturn:
    raise ConfigError(key, message, stage)


def _validate(c: StageConfig) -> None:  # noqa: C901 - one flat list of rules reads best
    s = c.stage

    def check(key: str, ok: bool, message: str) -> None:
        if not ok:
            _fail(key, message, s)

    check("stage", bool(re.fullmatch(r"[a-z][a-z0-9]{0,9}", s)),
          f"{s!r} must be lowercase letters/digits, at most 10 characters")
    check("project", bool(re.fullmatch(r"[a-z][a-z0-9-]*[a-z0-9]", c.project)),
          f"{c.project!r} must be lowercase letters, digits and '-' (it prefixes S3 bucket names)")
    check("project", len(c.prefix) <= MAX_PREFIX_LENGTH,
          f"name prefix {c.prefix!r} is longer than {MAX_PREFIX_LENGTH} characters")
    check("account", c.account == "" or bool(re.fullmatch(r"\d{12}", c.account)),
          f"{c.account!r} must be empty (environment-agnostic) or a 12-digit AWS account id")
    check("region", c.region == "" or bool(re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", c.region)),
          f"{c.region!r} must be empty (environment-agnostic) or a region such as eu-west-1")
    check("target_column", c.target_column.strip() != "" and c.target_column == c.target_column.strip(),
          "must be a non-empty column name without surrounding spaces")
    check("task", c.task in ("auto", "classification", "regression"),
          f"{c.task!r} must be one of auto, classification, regression")
    check("allowed_extensions", len(c.allowed_extensions) > 0, "must list at least one extension")
    for ext in c.allowed_extensions:
        check("allowed_extensions", bool(re.fullmatch(r"\.[a-z0-9]+", ext)),
              f"{ext!r} must look like '.csv' (lowercase, leading dot)")
    check("max_upload_bytes", c.max_upload_bytes > 0, "must be a positive number of bytes")
    copy_seconds = c.lambda_timeout_seconds - COPY_RESERVE_SECONDS
    check("max_upload_bytes", c.max_upload_bytes <= copy_seconds * ASSUMED_COPY_BYTES_PER_SECOND,
          f"{c.max_upload_bytes} bytes cannot be copied within lambda_timeout_seconds ({c.lambda_timeout_seconds} s, "
          f"of which {COPY_RESERVE_SECONDS} s are kept for the rest) at the assumed "
          f"{ASSUMED_COPY_BYTES_PER_SECOND // 1024 ** 2} MiB/s of a server-side copy: raise lambda_timeout_seconds "
          f"(at most 900) or lower max_upload_bytes")
    for key in ("processing_instance_type", "training_instance_type", "serving_instance_type"):
        value = getattr(c, key)
        check(key, bool(_INSTANCE_TYPE.match(value)), f"{value!r} is not a SageMaker instance type (ml.m5.large)")
    check("max_runtime_seconds", 60 <= c.max_runtime_seconds <= 432000,
          "must be between 60 and 432000 seconds (SageMaker's processing job limit)")
    for key, value in c.training_hyperparameters.items():
        check("training_hyperparameters", isinstance(key, str) and isinstance(value, str),
              f"{key!r}: keys and values must be strings (SageMaker hyperparameters are strings)")
        check("training_hyperparameters", key not in RESERVED_HYPERPARAMETERS,
              f"{key!r} is set from its own config key; remove it here")
        check("training_hyperparameters", 0 < len(key) <= 256 and len(value) <= HYPERPARAMETER_VALUE_LIMIT,
              f"{key!r}: SageMaker allows keys up to 256 and values up to 2500 characters")
    check("gate_classification_metric", c.gate_classification_metric in CLASSIFICATION_METRICS,
          f"{c.gate_classification_metric!r} must be one of {', '.join(CLASSIFICATION_METRICS)}")
    check("gate_classification_threshold", 0.0 <= c.gate_classification_threshold <= 1.0,
          "must be between 0 and 1")
    check("gate_regression_metric", c.gate_regression_metric in REGRESSION_METRICS,
          f"{c.gate_regression_metric!r} must be one of {', '.join(REGRESSION_METRICS)}")
    if c.gate_regression_metric == "r2":
        check("gate_regression_threshold", c.gate_regression_threshold <= 1.0, "r2 cannot exceed 1")
    else:
        check("gate_regression_threshold", c.gate_regression_threshold > 0,
              f"{c.gate_regression_metric} is an error: the threshold is a positive maximum")
    check("gate_tolerance", 0.0 <= c.gate_tolerance < 1.0, "must be in [0, 1)")
    check("serving_min_instances", c.serving_min_instances >= 1, "must be at least 1")
    if c.stage == "prod":
        check("serving_min_instances", c.serving_min_instances >= 2,
              "prod needs at least 2 instances (one per Availability Zone)")
    check("serving_max_instances", c.serving_max_instances >= c.serving_min_instances,
          f"must be >= serving_min_instances ({c.serving_min_instances})")
    check("scaling_target_invocations", c.scaling_target_invocations > 0,
          "must be a positive number of invocations per instance per minute")
    check("data_capture_percent", 0 <= c.data_capture_percent <= 100, "must be between 0 and 100")
    check("api_auth", c.api_auth in ("iam", "api_key"), f"{c.api_auth!r} must be 'iam' or 'api_key'")
    check("api_throttle_rate_limit", c.api_throttle_rate_limit > 0, "must be positive (requests per second)")
    check("api_throttle_burst_limit", c.api_throttle_burst_limit > 0, "must be positive")
    check("drift_threshold", c.drift_threshold > 0, "must be positive")
    for column in c.strict_columns:
        check("strict_columns", column == column.strip() and column != "" and "," not in column,
              f"{column!r} must be a column name (no commas or surrounding spaces)")
    check("training_window_days", 0 <= c.training_window_days <= 36500, "must be between 0 (no limit) and 36500")
    check("training_window_max_rows", c.training_window_max_rows >= 0, "must be >= 0 (0: no limit)")
    check("training_max_cells", c.training_max_cells >= 0,
          "must be >= 0 (0: what the training instance's memory holds)")
    check("training_max_cells", c.training_max_cells > 0 or instance_memory_gib(c.training_instance_type) is not None,
          f"0 derives the limit from the training instance's memory, but {c.training_instance_type!r} is not sized "
          "here (GPU and other families): set the most rows x columns one training job may be given (docs/scale.md)")
    check("training_keep_alive_seconds", 0 <= c.training_keep_alive_seconds <= 3600,
          "must be between 0 (no warm pool) and 3600 (SageMaker's KeepAlivePeriodInSeconds)")
    check("gate_min_new_rows", c.gate_min_new_rows >= 1, "must be at least 1")
    check("model_quality_threshold", c.model_quality_threshold > 0 if c.model_quality_lower_is_better else
          0.0 <= c.model_quality_threshold <= 1.0,
          "must be between 0 and 1 (the quality gate's metric of the production model on labeled requests)")
    check("retrain_cooldown_seconds", c.retrain_cooldown_seconds >= 0, "must be >= 0")
    check("monitor_schedule", bool(_SCHEDULE.match(c.monitor_schedule)),
          f"{c.monitor_schedule!r} must be an EventBridge rate(...) or cron(...) expression")
    check("metric_namespace", bool(re.fullmatch(r"[A-Za-z0-9._/#:-]{1,255}", c.metric_namespace))
          and not c.metric_namespace.startswith("AWS/"),
          f"{c.metric_namespace!r} must be a custom CloudWatch namespace (not AWS/...)")
    check("alarm_5xx_threshold", c.alarm_5xx_threshold >= 1, "must be at least 1 error")
    check("alarm_latency_ms", c.alarm_latency_ms >= 1, "must be at least 1 ms")
    check("alarm_period_seconds", c.alarm_period_seconds >= 60 and c.alarm_period_seconds % 60 == 0,
          f"{c.alarm_period_seconds} must be a multiple of 60 (SageMaker publishes endpoint metrics per minute)")
    check("alarm_evaluation_periods", 1 <= c.alarm_evaluation_periods <= 10, "must be between 1 and 10")
    check("alarm_evaluation_periods", c.alarm_evaluation_periods * c.alarm_period_seconds <= MAX_ALARM_WINDOW_SECONDS,
          f"alarm_evaluation_periods x alarm_period_seconds must be at most {MAX_ALARM_WINDOW_SECONDS} s (CloudWatch)")
    check("alarm_datapoints_to_alarm", 1 <= c.alarm_datapoints_to_alarm <= c.alarm_evaluation_periods,
          f"must be between 1 and alarm_evaluation_periods ({c.alarm_evaluation_periods})")
    check("deploy_bake_seconds", 0 < c.deploy_bake_seconds <= MAX_DEPLOY_BAKE_SECONDS,
          f"must be between 1 and {MAX_DEPLOY_BAKE_SECONDS} seconds (SageMaker's TerminationWaitInSeconds)")
    check("deploy_bake_seconds", c.rollback_alarm_seconds <= c.deploy_bake_seconds,
          f"a bake of {c.deploy_bake_seconds} s ends before the rollback alarms can fire: they need up to "
          f"{c.rollback_alarm_seconds} s (alarm_period_seconds {c.alarm_period_seconds} x "
          f"(alarm_datapoints_to_alarm {c.alarm_datapoints_to_alarm} + 1 period to align) + "
          f"{ALARM_EVALUATION_DELAY_SECONDS} s CloudWatch delay); raise deploy_bake_seconds or shorten "
          "alarm_period_seconds / alarm_datapoints_to_alarm")
    check("notification_email", c.notification_email == "" or bool(_EMAIL.match(c.notification_email)),
          f"{c.notification_email!r} must be empty or an e-mail address")
    check("lambda_memory_mb", 128 <= c.lambda_memory_mb <= 10240, "must be between 128 and 10240")
    check("lambda_timeout_seconds", 3 <= c.lambda_timeout_seconds <= 900, "must be between 3 and 900")
    check("lambda_reserved_concurrency", c.lambda_reserved_concurrency >= 1,
          "must be at least 1 (0 would disable the functions)")
    check("async_retry_attempts", 0 <= c.async_retry_attempts <= 2, "Lambda allows 0, 1 or 2")
    check("async_max_event_age_seconds", 60 <= c.async_max_event_age_seconds <= 21600,
          "must be between 60 and 21600 seconds")
    check("log_retention_days", c.log_retention_days in LOG_RETENTION_DAYS,
          f"{c.log_retention_days} is not a CloudWatch Logs retention; use one of {LOG_RETENTION_DAYS}")
    check("base_image", bool(re.fullmatch(r"[a-z0-9./_:@-]+", c.base_image)) and c.base_image != "",
          f"{c.base_image!r} is not an image reference")
    _validate_responsible_ml(c, check)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _validate_responsible_ml(c: StageConfig, check: typing.Callable[[str, bool, str], None]) -> None:
    ml = c.responsible_ml
    unknown = sorted(set(ml) - set(RESPONSIBLE_ML_KEYS))
    check("responsible_ml", not unknown, f"unknown key(s) {unknown}; known: {', '.join(RESPONSIBLE_ML_KEYS)}")
    facets = ml.get("facets", [])
    check("responsible_ml", isinstance(facets, list), "facets must be a list")
    for facet in facets:
        check("responsible_ml", isinstance(facet, dict) and set(facet) in ({"column", "values"}, {"column", "threshold"}),
              f"facet {facet!r} must be {{'column': ..., 'values': [...]}} or {{'column': ..., 'threshold': number}}")
        check("responsible_ml", isinstance(facet["column"], str) and facet["column"].strip() == facet["column"] != "",
              f"facet column {facet['column']!r} must be a column name")
        check("responsible_ml", facet["column"] != c.target_column,
              f"facet column {facet['column']!r} is the target column")
        if "values" in facet:
            values = facet["values"]
            check("responsible_ml", isinstance(values, list) and len(values) > 0
                  and all(isinstance(v, str) or _number(v) for v in values),
                  f"facet {facet['column']!r}: values must be a non-empty list of strings or numbers")
        else:
            check("responsible_ml", _number(facet["threshold"]),
                  f"facet {facet['column']!r}: threshold must be a number (values above it form the facet)")
    check("responsible_ml", len({f["column"] for f in facets}) == len(facets), "each facet column at most once")
    for key, kind in (("positive_label", str), ("group_column", str), ("intended_use", str)):
        check("responsible_ml", key not in ml or isinstance(ml[key], kind), f"{key} must be a string")
    check("responsible_ml", "label_threshold" not in ml or _number(ml["label_threshold"]),
          "label_threshold must be a number")
    check("responsible_ml", not ("label_threshold" in ml and "positive_label" in ml),
          "positive_label (classification) and label_threshold (regression) exclude each other")
    check("responsible_ml", len(json.dumps(dict(ml), sort_keys=True)) <= RESPONSIBLE_ML_LIMIT,
          f"is longer than {RESPONSIBLE_ML_LIMIT} characters as JSON (it travels in the functions' environment, "
          "which Lambda limits to 4 KB in all, and as one SageMaker hyperparameter)")
    known = PRE_TRAINING_BIAS_METRICS + POST_TRAINING_BIAS_METRICS
    for metric, bounds in c.fairness_gate.items():
        check("fairness_gate", metric in known, f"{metric!r} is not a bias metric; known: {', '.join(known)}")
        check("fairness_gate", isinstance(bounds, list) and len(bounds) == 2 and all(_number(b) for b in bounds)
              and bounds[0] <= bounds[1], f"{metric}: expected [min, max] with min <= max, got {bounds!r}")
    check("fairness_gate", not c.fairness_gate or bool(facets),
          "a fairness gate needs facets to judge: set responsible_ml.facets")


CONFIG_KEYS = tuple(f.name for f in fields(StageConfig) if f.name != "stage")


def _convert(key: str, raw: Any, target: Any, stage: str) -> Any:
    """Convert a context value (JSON from cdk.json, or a string from ``-c``) to the field's type."""
    origin = typing.get_origin(target)
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("true", "false"):
                return raw.lower() == "true"
            raise TypeError("must be true or false")
        if target is int:
            if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
                raise TypeError("must be an integer")
            return int(raw)
        if target is float:
            if isinstance(raw, bool):
                raise TypeError("must be a number")
            return float(raw)
        if target is str:
            if raw is None:
                return ""
            if not isinstance(raw, str):
                raise TypeError("must be a string")
            return raw
        if origin is tuple:
            items = raw.split(",") if isinstance(raw, str) else raw
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise TypeError("must be a list of strings or a comma-separated string")
            return tuple(i.strip() for i in items if i.strip())
        if origin is Mapping:
            value = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(value, dict):
                raise TypeError("must be a JSON object")
            return MappingProxyType(dict(value))  # frozen all the way down
    except (TypeError, ValueError) as err:
        raise ConfigError(key, f"{raw!r}: {err}", stage) from None
    raise AssertionError(f"no converter for {key}: {target}")  # a new field type needs a converter


def load_config(context: Mapping[str, Any]) -> StageConfig:
    """Build the stage's config from the CDK context (cdk.json context merged with ``-c`` values)."""
    stage = context.get("stage") or "dev"
    stages = context.get("stages")
    if not isinstance(stages, Mapping) or not stages:
        raise ConfigError("stages", "cdk.json context must define 'stages' (dev, prod, ...)")
    if stage not in stages:
        raise ConfigError("stage", f"{stage!r} is not one of the stages in cdk.json: {', '.join(stages)}")
    defaults = context.get("stage_defaults") or {}
    for source_name, source in (("stage_defaults", defaults), (f"stages.{stage}", stages[stage])):
        if not isinstance(source, Mapping):
            raise ConfigError(source_name, "must be an object")
        unknown = sorted(set(source) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(unknown[0], f"unknown key in {source_name}; known keys: {', '.join(CONFIG_KEYS)}",
                              stage)
    merged: dict[str, Any] = {**defaults, **stages[stage]}
    for key in CONFIG_KEYS:
        if key in context:  # `-c key=value` beats the stage's value
            merged[key] = context[key]
    hints = typing.get_type_hints(StageConfig)
    values: dict[str, Any] = {"stage": stage}
    for key in CONFIG_KEYS:
        if key not in merged:
            raise ConfigError(key, "missing (set it in cdk.json stage_defaults or the stage)", stage)
        values[key] = _convert(key, merged[key], hints[key], stage)
    return StageConfig(**values)


def as_dict(config: StageConfig) -> dict[str, Any]:
    """Plain JSON-able view (used in docs and tests)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
    return out
