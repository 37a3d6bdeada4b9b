"""The quality gate: absolute threshold from config AND not worse than production beyond a tolerance."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .settings import LOWER_IS_BETTER, QualityGate

_CLASSIFICATION = ("roc_auc", "accuracy", "f1", "precision", "recall")
_REGRESSION = ("r2", "rmse", "mae")


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    task: str
    metric: str
    value: float | None
    threshold: float
    production_value: float | None


def infer_task(configured: str, metrics: Mapping[str, float]) -> str:
    if configured in ("classification", "regression"):
        return configured
    if any(m in metrics for m in _CLASSIFICATION):
        return "classification"
    if any(m in metrics for m in _REGRESSION):
        return "regression"
    return "classification"


def _better_or_equal(metric: str, value: float, reference: float) -> bool:
    return value <= reference if metric in LOWER_IS_BETTER else value >= reference


def evaluate(gate: QualityGate, task: str, candidate: Mapping[str, float],
             production: Mapping[str, float] | None) -> GateResult:
    """Decide whether a candidate model may replace production. `production` is None for the first model,
    which then only needs the absolute threshold."""
    task = infer_task(task, candidate)
    rule = gate.rule_for(task)
    metric, threshold = rule.metric, rule.threshold
    lower = metric in LOWER_IS_BETTER
    direction = "<=" if lower else ">="
    value = candidate.get(metric)
    production_value = (production or {}).get(metric)

    def result(passed: bool, reason: str) -> GateResult:
        return GateResult(passed, reason, task, metric, value, threshold, production_value)

    if value is None:
        return result(False, f"the training job reported no test:{metric} metric ({task}); "
                             f"reported: {', '.join(sorted(candidate)) or 'none'}")
    if value != value:  # NaN
        return result(False, f"test:{metric} is NaN")
    if not _better_or_equal(metric, value, threshold):
        return result(False, f"{metric}={value:.4f} misses the threshold ({direction} {threshold:g})")
    if production_value is None:
        why = "first model" if not production else f"production model has no {metric}"
        return result(True, f"{metric}={value:.4f} meets the threshold ({direction} {threshold:g}); {why}, "
                            "so only the threshold applies")
    floor = production_value + gate.tolerance if lower else production_value - gate.tolerance
    if not _better_or_equal(metric, value, floor):
        return result(False, f"{metric}={value:.4f} is worse than production ({production_value:.4f}) beyond the "
                             f"tolerance {gate.tolerance:g}")
    return result(True, f"{metric}={value:.4f} meets the threshold ({direction} {threshold:g}) and is within "
                        f"{gate.tolerance:g} of or better than production ({production_value:.4f})")
