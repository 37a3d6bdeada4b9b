"""mlops_control.responsible and the fairness gate (gate.evaluate_fairness): what the Model Package carries of a
model's bias, explanations and card, and which models the fairness gate lets through."""
from __future__ import annotations

import json

import pytest

from ..helpers import P  # noqa: F401 - puts lambda/ on sys.path


def _facet(label="region in {south}", **post):
    return {"column": "region", "values": ["south"], "label": label, "n_d": 100, "n_a": 300,
            "pre_training": {"CI": 0.5, "DPL": 0.02}, "post_training": {"DPPL": 0.03, "DI": 0.95, **post},
            "reason": None}


def test_the_fairness_gate_passes_a_model_whose_every_facet_is_within_range():
    from mlops_control.gate import evaluate_fairness

    bias = {"configured": True, "facets": [_facet(), _facet("customer_age > 60", DI=1.2)]}
    result = evaluate_fairness({"DI": (0.8, 1.25), "DPL": (-0.1, 0.1)}, bias)
    assert result.passed
    assert [(c["facet"], c["metric"], c["value"]) for c in result.checks] == [
        ("region in {south}", "DI", 0.95), ("region in {south}", "DPL", 0.02),
        ("customer_age > 60", "DI", 1.2), ("customer_age > 60", "DPL", 0.02)]
    assert "DI=0.95 (region in {south})" in result.reason


def test_the_fairness_gate_refuses_a_facet_out_of_range_and_says_which():
    from mlops_control.gate import evaluate_fairness

    bias = {"configured": True, "facets": [_facet(), _facet("customer_age > 60", DI=0.62)]}
    result = evaluate_fairness({"DI": (0.8, 1.25)}, bias)
    assert not result.passed
    assert result.reason == "fairness gate: DI=0.62 for customer_age > 60 is outside [0.8, 1.25]"
    assert [c["passed"] for c in result.checks] == [True, False]


@pytest.mark.parametrize("bias, why", [
    ({"configured": True, "facets": [{**_facet(), "post_training": {"DI": None},
                                      "reason": "DI: no favourable predictions in a"}]},
     "DI of region in {south} could not be computed (DI: no favourable predictions in a)"),
    ({"configured": False, "facets": [], "reason": "no facets configured"}, "nothing to judge: no facets configured"),
    (None, "nothing to judge: the model has no bias report"),
])
def test_a_gate_that_cannot_look_does_not_let_the_model_through(bias, why):
    from mlops_control.gate import evaluate_fairness

    result = evaluate_fairness({"DI": (0.8, 1.25)}, bias)
    assert not result.passed and why in result.reason


def test_without_a_fairness_gate_every_model_passes_it():
    from mlops_control.gate import evaluate_fairness

    assert evaluate_fairness({}, None).passed


def test_only_reports_with_content_are_attached():
    from mlops_control.responsible import model_metrics, reports

    metadata = {"bias": {"configured": False, "facets": []}, "explainability": {"global": []}}
    assert list(reports(metadata)) == ["explainability"]
    assert list(reports({"bias": {"configured": True, "facets": [_facet()]}})) == ["bias"]
    assert reports(None) == {}
    assert model_metrics({"bias": "s3://a/b.json", "explainability": "s3://a/e.json"}) == {
        "Bias": {"Report": {"ContentType": "application/json", "S3Uri": "s3://a/b.json"}},
        "Explainability": {"Report": {"ContentType": "application/json", "S3Uri": "s3://a/e.json"}}}


def test_the_card_takes_a_model_packages_schema():
    """A package's card has no model_package_details and its overview holds only the creator and the artifact."""
    from mlops_control.responsible import CARD_STATUS, package_model_card

    card = {"model_overview": {"model_description": "Predicts churn", "model_creator": "training job j",
                               "algorithm_type": "HGB", "problem_type": "Binary Classification"},
            "intended_uses": {"intended_uses": "retention offers"},
            "training_details": {"objective_function": {"function": {"function": "Minimize", "facet": "Loss",
                                                                     "condition": "log loss"}}},
            "model_package_details": {"model_package_arn": "x"},
            "additional_information": {"custom_details": {"target": "churn"}}}
    packaged = package_model_card(card, "s3://artifacts/models/j/output/model.tar.gz")
    assert packaged["ModelCardStatus"] == CARD_STATUS == "PendingReview"
    content = json.loads(packaged["ModelCardContent"])
    assert content["model_overview"] == {"model_artifact": ["s3://artifacts/models/j/output/model.tar.gz"],
                                         "model_creator": "training job j"}
    assert "model_package_details" not in content
    assert content["additional_information"]["custom_details"] == {
        "model_description": "Predicts churn", "algorithm_type": "HGB", "problem_type": "Binary Classification",
        "target": "churn"}
    assert content["training_details"] == card["training_details"]  # the objective function stays nested
    assert package_model_card(None, "s3://x") is None
    huge = {**card, "intended_uses": {"intended_uses": "x" * 100_001}}
    assert package_model_card(huge, "s3://x") is None
