"""workbench.reproduce's comparison: every number the model reported, exactly."""

from __future__ import annotations

from workbench.reproduce import flat_metrics, metric_differences


def test_every_metric_and_comparison_number_is_compared_by_its_dotted_name():
    metadata = {"metrics": {"test": {"f1": 0.5, "roc_auc": 0.7}, "validation": {"f1": 0.6}},
                "comparison": {"test": {"rows": 120, "challenger": {"f1": 0.5}}, "champion": {"scored": False}},
                "features": [{"name": "x"}]}
    assert flat_metrics(metadata) == {"metrics.test.f1": 0.5, "metrics.test.roc_auc": 0.7,
                                      "metrics.validation.f1": 0.6, "comparison.test.rows": 120.0,
                                      "comparison.test.challenger.f1": 0.5}


def test_a_difference_in_the_last_bit_or_a_missing_metric_is_a_difference_and_nan_equals_nan():
    recorded = {"a": 0.1 + 0.2, "b": float("nan"), "c": 1.0}
    assert metric_differences(recorded, dict(recorded)) == []
    assert metric_differences(recorded, {"a": 0.3, "b": float("nan"), "c": 1.0}) == [
        {"metric": "a", "recorded": 0.1 + 0.2, "reproduced": 0.3}]
    assert metric_differences(recorded, {"a": 0.1 + 0.2, "b": float("nan")}) == [
        {"metric": "c", "recorded": 1.0, "reproduced": None}]
