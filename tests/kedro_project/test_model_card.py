"""The model card (ml_pipeline/model_card.py): filled from the run, in the SageMaker Model Card content layout (checked
against the SageMaker SDK's own shapes, unknown fields refused), rendered in the report."""

from __future__ import annotations

import json
import typing

import pydantic
import pytest
from sagemaker.core.shapes import model_card_shapes as shapes

from ml_pipeline import model_card
from ml_pipeline.pipelines.evaluation import nodes
from pipeline_support import responsible_outputs

EVALUATION = {"shap_max_rows": 40, "local_rows": 2, "seed": 1}
LINEAGE = {"inputs": [{"uri": "s3://data/validated/a.csv", "version": "v1"}, {"uri": "s3://data/validated/b.csv"}],
           "files": [{"file": "a.csv", "bytes": 10, "sha256": "aa"}, {"file": "b.csv", "bytes": 20, "sha256": "bb"}],
           "training_job": "mlops-train-1", "image": "123.dkr.ecr.eu-west-1.amazonaws.com/ml:1",
           "hyperparameters": {"target_column": "churn", "lineage_inputs": "x" * 400}}
CONFIG = {"facets": [{"column": "region", "values": ["north"]}], "intended_use": "Rank customers for retention calls."}


@pytest.fixture(scope="module")
def card(fitted, processed):
    return responsible_outputs(fitted, processed, CONFIG, LINEAGE, EVALUATION)["model_card"]


def _unknown_fields(value, shape, where="") -> list[str]:
    """Paths of keys the SageMaker shape does not define (pydantic itself ignores them)."""
    origin = typing.get_origin(shape)
    if origin is typing.Union:
        candidates = [a for a in typing.get_args(shape) if a is not type(None)]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, pydantic.BaseModel)]
        if isinstance(value, dict) and models:
            return min((_unknown_fields(value, c, where) for c in models), key=len)
        return _unknown_fields(value, candidates[0], where) if len(candidates) == 1 else []
    if origin is list:
        if not isinstance(value, list) or not typing.get_args(shape):
            return []
        (item,) = typing.get_args(shape)
        return [p for i, v in enumerate(value) for p in _unknown_fields(v, item, f"{where}[{i}]")]
    if isinstance(shape, type) and issubclass(shape, pydantic.BaseModel) and isinstance(value, dict):
        fields = shape.model_fields
        out = [f"{where}.{k}" for k in value if k not in fields]
        for k, v in value.items():
            if k in fields and v is not None:
                out += _unknown_fields(v, fields[k].annotation, f"{where}.{k}")
        return out
    return []


def _without_objective(card: dict) -> dict:
    """The card minus training_details.objective_function, which the SDK's shapes flatten: the service's schema (and
    CloudFormation's AWS::SageMaker::ModelCard) nest it as {"function": {"function", "facet", "condition"}, "notes"}."""
    training = {k: v for k, v in card["training_details"].items() if k != "objective_function"}
    return {**card, "training_details": training}


def test_card_follows_the_sagemaker_model_card_layout(card):
    assert json.loads(json.dumps(card, allow_nan=False)) == card
    shapes.ModelCardContent.model_validate(_without_objective(card))  # types, enums and length limits
    assert _unknown_fields(_without_objective(card), shapes.ModelCardContent) == []
    assert card["training_details"]["objective_function"] == {
        "function": {"function": "Minimize", "facet": "Loss", "condition": "log loss"},
        "notes": "gradient boosting minimises the loss of its raw score on the training split"}
    assert set(card) == {"model_overview", "intended_uses", "training_details", "evaluation_details",
                         "additional_information"}


def test_card_is_filled_from_what_the_run_knows(card, processed):
    assert card["intended_uses"]["intended_uses"] == CONFIG["intended_use"]
    assert card["model_overview"]["problem_type"] == "Binary Classification"
    assert "HistGradientBoostingClassifier" in card["model_overview"]["algorithm_type"]
    jobs = card["training_details"]["training_job_details"]
    assert jobs["training_datasets"] == ["s3://data/validated/a.csv (version v1)", "s3://data/validated/b.csv"]
    assert jobs["training_environment"]["container_image"] == [LINEAGE["image"]]
    assert {"name": "validation:roc_auc"} .items() <= jobs["training_metrics"][-1].items()
    assert max(len(h["value"]) for h in jobs["hyper_parameters"]) == 255  # clipped to the schema's limit
    evaluation = card["evaluation_details"][0]
    groups = {g["name"]: g for g in evaluation["metric_groups"]}
    assert {m["name"] for m in groups["model quality (test split)"]["metric_data"]} == {
        "accuracy", "precision", "recall", "f1", "roc_auc"}
    assert "bias pre-training: region in {north}" in groups and "bias post-training: region in {north}" in groups
    assert evaluation["metadata"]["rows"] == str(len(processed["test"]))
    fingerprint = model_card.data_fingerprint(LINEAGE)
    assert fingerprint.startswith("sha256:") and evaluation["metadata"]["data_fingerprint"] == fingerprint
    # the fingerprint is of the content: file order does not change it, a changed file does
    assert model_card.data_fingerprint({"files": LINEAGE["files"][::-1]}) == fingerprint
    changed = [{**LINEAGE["files"][0], "sha256": "ab"}, LINEAGE["files"][1]]
    assert model_card.data_fingerprint({"files": changed}) != fingerprint
    info = card["additional_information"]
    assert "region in {north}" in info["ethical_considerations"] and "DPPL" in info["ethical_considerations"]
    assert "Trained on the validated files" in info["caveats_and_recommendations"]
    assert "TreeSHAP" in info["custom_details"]["explainability"]


def test_card_without_facets_or_intended_use_says_so(fitted, processed):
    model, summary = fitted
    schema = processed["schema"]
    bias = nodes.compute_bias(model, processed["train"], processed["test"], schema, None)
    explanations = nodes.explain_model(model, processed["test"], schema, EVALUATION)
    card = nodes.build_model_card(schema, {"test": {}, "validation": {}}, summary, {"inputs": []}, bias, explanations,
                                  None, processed["test"])
    shapes.ModelCardContent.model_validate(_without_objective(card))
    assert card["intended_uses"]["intended_uses"].startswith("Not stated")
    assert "No facets were configured" in card["additional_information"]["ethical_considerations"]
    assert card["training_details"]["training_job_details"]["training_datasets"] == []


def test_card_renders_as_html(card):
    rendered = model_card.render(card)
    assert CONFIG["intended_use"] in rendered and "s3://data/validated/a.csv (version v1)" in rendered
    assert "<table>" in rendered and "roc_auc" in rendered
