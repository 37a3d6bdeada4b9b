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
    assert not worse.passed and "worse than production (0.8000, as recorded when it was trained) beyond the " \
        "tolerance 0.01" in worse.reason and worse.basis == "recorded production metrics"
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


def _comparison(test=(240, 0.80, 0.70), new=(120, 0.90, 0.55), scored=True, reason=None):
    """metadata.json `comparison`: (rows, challenger roc_auc, champion roc_auc) for the test split and new rows."""
    section = lambda rows, mine, theirs: {"rows": rows, "challenger": {"roc_auc": mine}, "champion": {"roc_auc": theirs}}
    return {"champion": {"scored": scored, "reason": reason, "training_job": "P-train-old"},
            "test": section(*test), "new": section(*new)}


def test_the_gate_compares_both_models_on_the_new_rows_when_there_are_enough(gate):
    """After a concept shift the production model's recorded metric (old data, its own split) says nothing about
    today's rows: the new model is judged against the production model on the same new rows."""
    from mlops_control.gate import evaluate

    # Recorded production metric 0.95 would block it; on the same new rows it is far better.
    result = evaluate(gate, "classification", {"roc_auc": 0.80}, {"roc_auc": 0.95}, _comparison(), min_new_rows=30)
    assert result.passed and result.basis == "new rows" and result.rows == 120
    assert (result.challenger_value, result.production_value) == (0.90, 0.55)
    assert "0.9000 (new model) vs 0.5500 (production model) on the 120 test rows from data" in result.reason
    # And the other way: a new model that is worse on the new rows is refused even though its test metric
    # beats the recorded one.
    worse = evaluate(gate, "classification", {"roc_auc": 0.99}, {"roc_auc": 0.80},
                     _comparison(new=(120, 0.70, 0.75)), min_new_rows=30)
    assert not worse.passed and "worse than the production model beyond the tolerance 0.01" in worse.reason


def test_with_few_new_rows_the_gate_uses_the_whole_test_split(gate):
    from mlops_control.gate import evaluate

    result = evaluate(gate, "classification", {"roc_auc": 0.80}, {"roc_auc": 0.95},
                      _comparison(test=(240, 0.80, 0.79), new=(12, 0.2, 0.9)), min_new_rows=30)
    assert result.passed and result.basis == "test rows" and result.rows == 240
    assert "only 12 from new data, fewer than 30" in result.reason
    tied = evaluate(gate, "classification", {"roc_auc": 0.80}, {"roc_auc": 0.8},
                    _comparison(test=(240, 0.795, 0.80), new=(0, None, None)), min_new_rows=30)
    assert tied.passed and tied.basis == "test rows"  # within the tolerance


def test_a_schema_change_deploys_on_the_threshold_alone_and_says_why(gate):
    from mlops_control.gate import evaluate

    reason = "it needs column 'plan', which the new data does not have"
    comparison = {"champion": {"scored": False, "reason": reason}, "test": {"rows": 240, "challenger": {"roc_auc": 0.8}}}
    result = evaluate(gate, "classification", {"roc_auc": 0.8}, {"roc_auc": 0.95}, comparison)
    assert result.passed and result.basis == "threshold only" and reason in result.reason
    assert not evaluate(gate, "classification", {"roc_auc": 0.6}, {"roc_auc": 0.95}, comparison).passed


def test_a_paired_comparison_without_the_metric_refuses(gate):
    from mlops_control.gate import evaluate

    comparison = _comparison()
    del comparison["new"]["champion"]["roc_auc"]
    result = evaluate(gate, "classification", {"roc_auc": 0.8}, {"roc_auc": 0.7}, comparison)
    assert not result.passed and "has no roc_auc for both models" in result.reason
