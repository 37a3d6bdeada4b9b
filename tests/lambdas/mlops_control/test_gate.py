"""mlops_control.gate: threshold AND not worse than production beyond the tolerance."""
from __future__ import annotations

import pytest

from ..helpers import ENV


@pytest.fixture
def gate():
    from mlops_control.settings import Settings

    return Settings.from_env(ENV).quality_gate


def test_first_model_only_needs_the_threshold(gate):
    from mlops_control.gate import evaluate

    passed = evaluate(gate, "classification", {"roc_auc": 0.72}, None)
    assert passed.passed and "first model" in passed.reason
    failed = evaluate(gate, "classification", {"roc_auc": 0.69}, None)
    assert not failed.passed and "misses the threshold (>= 0.7)" in failed.reason


def test_better_model_passes_worse_model_fails_with_the_reason(gate):
    from mlops_control.gate import evaluate

    assert evaluate(gate, "classification", {"roc_auc": 0.85}, {"roc_auc": 0.80}).passed
    worse = evaluate(gate, "classification", {"roc_auc": 0.78}, {"roc_auc": 0.80})
    assert not worse.passed and "worse than production (0.8000) beyond the tolerance 0.01" in worse.reason
    assert evaluate(gate, "classification", {"roc_auc": 0.795}, {"roc_auc": 0.80}).passed  # within tolerance


def test_threshold_applies_even_when_better_than_production(gate):
    from mlops_control.gate import evaluate

    assert not evaluate(gate, "classification", {"roc_auc": 0.65}, {"roc_auc": 0.60}).passed


def test_lower_is_better_metrics():
    from mlops_control.gate import evaluate
    from mlops_control.settings import parse_quality_gate

    gate = parse_quality_gate({"classification": {"metric": "roc_auc", "threshold": 0.7},
                               "regression": {"metric": "rmse", "threshold": 10.0}, "tolerance": 0.5})
    assert evaluate(gate, "regression", {"rmse": 8.0}, None).passed
    assert not evaluate(gate, "regression", {"rmse": 11.0}, None).passed
    assert evaluate(gate, "regression", {"rmse": 8.4}, {"rmse": 8.0}).passed
    result = evaluate(gate, "regression", {"rmse": 8.6}, {"rmse": 8.0})
    assert not result.passed and "worse than production" in result.reason


def test_auto_task_is_inferred_from_the_metrics(gate):
    from mlops_control.gate import evaluate

    assert evaluate(gate, "auto", {"r2": 0.5, "rmse": 3.0}, None).metric == "r2"
    assert evaluate(gate, "auto", {"roc_auc": 0.9, "accuracy": 0.8}, None).metric == "roc_auc"


def test_missing_or_nan_metric_fails(gate):
    from mlops_control.gate import evaluate

    missing = evaluate(gate, "classification", {"accuracy": 0.99}, None)
    assert not missing.passed and "no test:roc_auc metric" in missing.reason and "accuracy" in missing.reason
    assert not evaluate(gate, "classification", {"roc_auc": float("nan")}, None).passed


def test_production_without_the_metric_falls_back_to_the_threshold(gate):
    from mlops_control.gate import evaluate

    result = evaluate(gate, "classification", {"roc_auc": 0.75}, {"accuracy": 0.9})
    assert result.passed and "production model has no roc_auc" in result.reason
