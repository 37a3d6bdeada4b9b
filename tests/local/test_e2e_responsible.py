"""Responsible ML end to end, on a stack of its own with a fairness gate (DI within [0.8, 1.25] for region south):
data whose labels are biased against `south` trains a model that the bias metrics flag — with the values this test
computes itself from the same split and the model's own predictions — and the gate refuses it with its reason in
the ledger; unbiased data then trains a model that passes, whose Model Package carries the bias and explainability
reports and the model card."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from test_e2e_retraining import _decisions, _settle  # tests/local is on sys.path

pytestmark = pytest.mark.e2e

FACETS = {"facets": [{"column": "region", "values": ["south"]}], "positive_label": "yes",
          "intended_use": "Retention offers for customers likely to churn (e2e test)."}
GATE = {"DI": [0.8, 1.25]}


@pytest.fixture(scope="module")
def own_stack(stack_starter, tmp_path_factory):
    # The window holds the newest 3000 rows: the second upload alone.
    with stack_starter(tmp_path_factory.mktemp("responsible"), "training_window_max_rows=3000",
                       f"responsible_ml={json.dumps(FACETS)}", f"fairness_gate={json.dumps(GATE)}") as running:
        yield running


def _biased(frame: pd.DataFrame, target: str, seed: int) -> pd.DataFrame:
    """Most of south's churners relabelled as staying: the labels (and a model that learns them) disfavour south."""
    rng = np.random.default_rng(seed)
    biased = frame.copy()
    flip = (biased["region"] == "south") & (biased[target] == "yes") & (rng.random(len(biased)) < 0.85)
    biased.loc[flip, target] = "no"
    return biased


def _model_files(stack, job: str) -> tuple[object, dict]:
    import joblib

    body = stack.client("s3").get_object(Bucket=stack.output("ArtifactsBucketName"),
                                         Key=f"models/{job}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        metadata = json.load(archive.extractfile("metadata.json"))
        pipeline = joblib.load(archive.extractfile("model.joblib"))
    return pipeline, metadata


def _splits(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training job's train and test splits of one uploaded file, by the image's own node functions with the
    stage's seed (cdk.json training_hyperparameters) and the project's split."""
    from ml_pipeline.pipelines.data_processing.nodes import clean_data, infer_schema, prepare_model_input, split_data

    cleaned, _ = clean_data(frame, target)
    model_input = prepare_model_input(cleaned, infer_schema(cleaned, target, "auto"))
    train, test, _ = split_data(model_input, {"train": 0.7, "test": 0.2, "validation": 0.1}, 42)
    return train, test


def test_biased_labels_are_measured_exactly_and_the_fairness_gate_refuses_the_model(own_stack, sample, tmp_path):
    stack, target = own_stack, own_stack.env["TARGET_COLUMN"]
    bucket = stack.output("DataBucketName")
    data = _biased(pd.read_csv(sample(tmp_path / "biased.csv", 3000, seed=11, target=target)), target, seed=5)
    data.to_csv(tmp_path / "biased.csv", index=False)
    stack.client("s3").upload_file(str(tmp_path / "biased.csv"), bucket, "incoming/biased.csv")
    [refused] = stack.wait_for("the biased model judged", lambda: _decisions(stack, "gated_out"), timeout=420)
    assert "fairness gate: DI=" in refused["reason"] and "region" in refused["reason"]
    assert refused["reason"].endswith("is outside [0.8, 1.25]")
    assert stack.live_config() is None  # nothing was deployed
    [check] = refused["details"]["fairness"]
    assert check["metric"] == "DI" and check["passed"] is False

    # The numbers, computed here from the same rows: labels on the training split, predictions on the test split.
    pipeline, metadata = _model_files(stack, refused["job"])
    [facet] = metadata["bias"]["facets"]
    train, test = _splits(pd.read_csv(tmp_path / "biased.csv"), target)
    d, favourable = (train["region"] == "south").to_numpy(), (train[target] == "yes").to_numpy()
    assert (facet["n_d"], facet["n_a"]) == (int(d.sum()), int((~d).sum()))
    assert facet["pre_training"]["CI"] == pytest.approx((np.sum(~d) - np.sum(d)) / len(d), rel=1e-12)
    assert facet["pre_training"]["DPL"] == pytest.approx(favourable[~d].mean() - favourable[d].mean(), rel=1e-12)
    features = [f["name"] for f in metadata["features"]]
    flagged = pipeline.predict(test[features]) == "yes"
    d_test = (test["region"] == "south").to_numpy()
    disparate_impact = flagged[d_test].mean() / flagged[~d_test].mean()
    assert facet["post_training"]["DI"] == pytest.approx(disparate_impact, rel=1e-12) == check["value"]
    assert facet["post_training"]["DPPL"] == pytest.approx(flagged[~d_test].mean() - flagged[d_test].mean(), rel=1e-12)
    assert disparate_impact < 0.8 and facet["pre_training"]["DPL"] > 0.2  # the injected bias, flagged
    _settle(stack)


def test_unbiased_data_passes_and_the_package_carries_the_reports_and_the_card(own_stack, sample, tmp_path):
    stack, target = own_stack, own_stack.env["TARGET_COLUMN"]
    stack.client("s3").upload_file(str(sample(tmp_path / "fair.csv", 3000, seed=12, target=target)),
                                   stack.output("DataBucketName"), "incoming/fair.csv")
    stack.wait_for("a model serving", stack.live_config, timeout=420)
    [passed] = _decisions(stack, "gate_passed")
    assert "fairness gate: within range: DI=" in passed["reason"]
    low, high = GATE["DI"]
    assert low <= passed["details"]["fairness"][0]["value"] <= high

    _, metadata = _model_files(stack, passed["job"])
    sm, s3 = stack.client("sagemaker"), stack.client("s3")
    [summary] = sm.list_model_packages(ModelPackageGroupName=stack.output("ModelPackageGroupName"))[
        "ModelPackageSummaryList"]
    package = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
    for name, section in (("bias", "Bias"), ("explainability", "Explainability")):
        uri = package["ModelMetrics"][section]["Report"]["S3Uri"]
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == metadata[name]
    assert metadata["explainability"]["global"]  # SHAP importances per input column
    card = json.loads(package["ModelCard"]["ModelCardContent"])
    assert package["ModelCard"]["ModelCardStatus"] == "PendingReview"
    assert card["intended_uses"]["intended_uses"] == FACETS["intended_use"]
    assert card["model_overview"]["model_artifact"] == [package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]]
    groups = {g["name"] for g in card["evaluation_details"][0]["metric_groups"]}
    assert any(g.startswith("bias post-training") for g in groups)
    _settle(stack)
