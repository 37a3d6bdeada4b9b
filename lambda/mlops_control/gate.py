"""The quality gate: absolute threshold from config AND not worse than production beyond a tolerance."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .settings import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS, QualityGate


@dataclass(frozen=True)
class GateResult:
    passed: bool
    reason: str
    task: str
    metric: str
    value: float | None
    threshold: float
    production_value: float | None
    # What the comparison with production stood on: "new rows" / "test rows" (champion and challenger scored on
    # the same rows), "recorded production metrics" (an image without the paired comparison), "threshold only".
    basis: str = "threshold only"
    rows: int | None = None
    challenger_value: float | None = None


def infer_task(configured: str, metrics: Mapping[str, float]) -> str:
    if configured in ("classification", "regression"):
        return configured
    if any(m in metrics for m in CLASSIFICATION_METRICS):
        return "classification"
    if any(m in metrics for m in REGRESSION_METRICS):
        return "regression"
    return "classification"


def _better_or_equal(metric: str, value: float, reference: float) -> bool:
    return value <= reference if metric in LOWER_IS_BETTER else value >= reference


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value else None


def evaluate(gate: QualityGate, task: str, candidate: Mapping[str, float], production: Mapping[str, float] | None,
             comparison: Mapping | None = None, min_new_rows: int = 30) -> GateResult:
    """Decide whether a candidate model may replace production. `production` (its recorded metrics) is None for
    the first model, which then only needs the absolute threshold. `comparison` is the candidate's
    metadata.json `comparison`: champion and challenger scored on the same rows, which is what the candidate is
    judged against — on the rows from data the champion never saw when there are at least `min_new_rows` of
    them (the world as it is now), else on the whole test split."""
    task = infer_task(task, candidate)
    rule = gate.rule_for(task)
    metric, threshold = rule.metric, rule.threshold
    lower = metric in LOWER_IS_BETTER
    direction = "<=" if lower else ">="
    value = candidate.get(metric)
    production_value = (production or {}).get(metric)

    def result(passed: bool, reason: str, **paired) -> GateResult:
        return GateResult(passed, reason, task, metric, value, threshold,
                          paired.pop("production_value", production_value), **paired)

    if value is None:
        return result(False, f"the training job reported no test:{metric} metric ({task}); "
                             f"reported: {', '.join(sorted(candidate)) or 'none'}")
    if value != value:  # NaN
        return result(False, f"test:{metric} is NaN")
    if not _better_or_equal(metric, value, threshold):
        return result(False, f"{metric}={value:.4f} misses the threshold ({direction} {threshold:g})")
    meets = f"{metric}={value:.4f} meets the threshold ({direction} {threshold:g})"
    if production is None:
        return result(True, f"{meets}; first model, so only the threshold applies")
    champion = (comparison or {}).get("champion") or {}
    if comparison is not None and champion.get("scored"):
        passed, reason, paired = _paired(gate, metric, comparison, min_new_rows)
        return result(passed, f"{meets}{reason}", **paired)
    if comparison is not None and champion.get("reason") and champion.get("reason") != "no production model":
        return result(True, f"{meets}; the production model could not score these rows ({champion['reason']}): "
                            "after a schema change only the threshold applies")
    if production_value is None:
        return result(True, f"{meets}; production model has no {metric}, so only the threshold applies")
    floor = production_value + gate.tolerance if lower else production_value - gate.tolerance
    basis = {"basis": "recorded production metrics"}
    if not _better_or_equal(metric, value, floor):
        return result(False, f"{metric}={value:.4f} is worse than production ({production_value:.4f}, as recorded "
                             f"when it was trained) beyond the tolerance {gate.tolerance:g}", **basis)
    return result(True, f"{meets} and is within {gate.tolerance:g} of or better than production "
                        f"({production_value:.4f}, as recorded when it was trained; no paired comparison)", **basis)


def _paired(gate: QualityGate, metric: str, comparison: Mapping, min_new_rows: int) -> tuple[bool, str, dict]:
    """The verdict on champion and challenger scored on the same rows: (passed, the reason's second half, the
    numbers for the record)."""
    new = comparison.get("new") or {}
    use_new = int(new.get("rows") or 0) >= min_new_rows
    section = new if use_new else (comparison.get("test") or {})
    rows = int(section.get("rows") or 0)
    challenger = _number((section.get("challenger") or {}).get(metric))
    champion = _number((section.get("champion") or {}).get(metric))
    paired = {"basis": "new rows" if use_new else "test rows", "rows": rows, "challenger_value": challenger,
              "production_value": champion}
    where = (f"the {rows} test rows from data the production model was not trained on" if use_new else
             f"the same {rows} test rows (only {int(new.get('rows') or 0)} from new data, fewer than {min_new_rows})")
    if challenger is None or champion is None:
        return False, f", but the paired comparison on {where} has no {metric} for both models", paired
    floor = champion + gate.tolerance if metric in LOWER_IS_BETTER else champion - gate.tolerance
    versus = f"{metric} {challenger:.4f} (new model) vs {champion:.4f} (production model) on {where}"
    if not _better_or_equal(metric, challenger, floor):
        return False, f", but it is worse than the production model beyond the tolerance {gate.tolerance:g}: {versus}", paired
    return True, f" and is within {gate.tolerance:g} of or better than the production model: {versus}", paired


@dataclass(frozen=True)
class FairnessResult:
    passed: bool
    reason: str
    # One line per facet and gated metric: {"facet", "metric", "value", "min", "max", "passed"}.
    checks: tuple[dict, ...] = ()


def evaluate_fairness(rules: Mapping[str, tuple[float, float]], bias: Mapping | None) -> FairnessResult:
    """The fairness gate: every gated bias metric of every facet within its [min, max]. A metric the model's
    bias report lacks or could not compute (no rows of a facet in the test split, one class only) fails: a gate
    that cannot look does not let a model through."""
    if not rules:
        return FairnessResult(True, "no fairness gate")
    facets = (bias or {}).get("facets") or []
    if not (bias or {}).get("configured") or not facets:
        why = (bias or {}).get("reason") or "the model has no bias report (an image without it, or no facets)"
        return FairnessResult(False, f"fairness gate: nothing to judge: {why}")
    checks, failures = [], []
    for facet in facets:
        label = facet.get("label") or facet.get("column")
        measured = {**(facet.get("pre_training") or {}), **(facet.get("post_training") or {})}
        for metric, (low, high) in sorted(rules.items()):
            value = _number(measured.get(metric))
            passed = value is not None and low <= value <= high
            checks.append({"facet": label, "metric": metric, "value": value, "min": low, "max": high, "passed": passed})
            if value is None:
                failures.append(f"{metric} of {label} could not be computed"
                                + (f" ({facet['reason']})" if facet.get("reason") else ""))
            elif not passed:
                failures.append(f"{metric}={value:.4g} for {label} is outside [{low:g}, {high:g}]")
    if failures:
        return FairnessResult(False, "fairness gate: " + "; ".join(failures), tuple(checks))
    within = ", ".join(f"{c['metric']}={c['value']:.4g} ({c['facet']})" for c in checks)
    return FairnessResult(True, f"fairness gate: within range: {within}", tuple(checks))
