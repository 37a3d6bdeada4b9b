from __future__ import annotations

import json
import re

import pytest

from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.pipelines.evaluation import nodes
from pipeline_support import responsible_outputs

EVALUATION = {"importance_max_rows": 200, "importance_repeats": 2, "plot_max_rows": 500, "seed": 1,
              "shap_max_rows": 50, "local_rows": 2}
RESPONSIBLE_ML = {"facets": [{"column": "region", "values": ["north"]}, {"column": "customer_age", "threshold": 40}],
                  "group_column": "plan", "intended_use": "Rank customers for retention calls."}
LINEAGE = {"inputs": [{"uri": "s3://data/validated/churn.csv", "version": "v1"}], "training_job": "job-1",
           "image": None, "hyperparameters": {}, "files": [{"file": "churn.csv", "bytes": 1, "sha256": "ab"}]}


@pytest.fixture(scope="module")
def responsible(fitted, processed):
    """bias, explainability and model card of the fitted model, as the pipeline computes them."""
    return responsible_outputs(fitted, processed, RESPONSIBLE_ML, LINEAGE, EVALUATION)


def test_metrics_on_test_and_validation(fitted, processed):
    metrics = nodes.evaluate_model(fitted[0], processed["test"], processed["validation"], processed["schema"])
    assert set(metrics) == {"test", "validation"}
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())


def test_metrics_take_labels_from_the_probabilities_exactly_as_predict_gives_them(fitted, processed):
    """Scoring predicts once: the labels come from predict_proba's argmax, which must be `predict` row for row, and
    the metrics must equal scikit-learn's on `predict`'s labels."""
    from sklearn import metrics as skm

    from ml_pipeline import metrics as metric_functions

    model, schema, test = fitted[0], processed["schema"], processed["test"]
    features = [f["name"] for f in schema["features"]]
    proba = model.predict_proba(test[features])
    labels = metric_functions._labels(model, proba, test[features])
    assert list(labels) == list(model.predict(test[features]))
    computed = metric_functions.compute_metrics(model, test[features], test["churn"], "classification")
    assert computed["accuracy"] == skm.accuracy_score(test["churn"], model.predict(test[features]))
    assert computed["f1"] == skm.f1_score(test["churn"], model.predict(test[features]), pos_label=model.classes_[1])


def test_the_comparison_reuses_the_evaluations_test_metrics(fitted, processed):
    metrics = nodes.evaluate_model(fitted[0], processed["test"], processed["validation"], processed["schema"])
    sources = processed["test"].index.to_series().map(lambda _: "churn.csv")
    reused = nodes.compare_with_champion(fitted[0], None, processed["test"], sources, processed["schema"], LINEAGE,
                                         metrics)
    computed = nodes.compare_with_champion(fitted[0], None, processed["test"], sources, processed["schema"], LINEAGE)
    assert reused["test"]["challenger"] == computed["test"]["challenger"] == metrics["test"]


def test_permutation_importance_ranks_real_signal_above_noise(fitted, processed):
    importance = nodes.compute_importance(fitted[0], processed["validation"], processed["schema"], EVALUATION)
    ranking = [row["feature"] for row in importance]
    assert len(ranking) == len(processed["schema"]["features"])
    # region and plan carry no signal in the generator; contract and tenure do.
    assert min(ranking.index("contract"), ranking.index("tenure_months")) < ranking.index("region")


def test_report_has_every_section_with_embedded_pngs(fitted, processed, responsible):
    model, summary = fitted
    importance = nodes.compute_importance(model, processed["validation"], processed["schema"], EVALUATION)
    described = nodes.describe_model_input(processed["model_input"], processed["schema"], EVALUATION)
    html = nodes.build_evaluation_report(model, described, processed["test"], processed["schema"],
                                         responsible["metrics"], importance, summary, EVALUATION, None,
                                         responsible["bias"], responsible["explainability"], responsible["model_card"])
    for section in ("Metrics", "Summary statistics", "Distributions", "Two most important features",
                    "Confusion matrix", "ROC curve", "Permutation importance", "<h2>Bias</h2>",
                    "<h3>region in {north}</h3>", "<h3>customer_age &gt; 40</h3>", "Explainability (SHAP)",
                    "Row 1: prediction", "<h2>Model card</h2>", RESPONSIBLE_ML["intended_use"]):
        assert section in html, section
    # the five before, a bias plot and the mean |SHAP| bar chart
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', html)) >= 7


def test_report_without_facets_says_so(fitted, processed, responsible):
    model, summary = fitted
    unconfigured = nodes.compute_bias(model, processed["train"], processed["test"], processed["schema"], None)
    described = nodes.describe_model_input(processed["model_input"], processed["schema"], EVALUATION)
    html = nodes.build_evaluation_report(model, described, processed["test"], processed["schema"],
                                         responsible["metrics"], [], summary, EVALUATION, None, unconfigured,
                                         responsible["explainability"], responsible["model_card"])
    assert "<h2>Bias</h2><p>no facets configured (responsible_ml.facets).</p>" in html


def test_metadata_carries_bias_explainability_and_the_model_card(fitted, processed, responsible):
    model, summary = fitted
    metadata = nodes.assemble_metadata(processed["schema"], responsible["metrics"], processed["profile"],
                                       processed["suite"], [], summary, LINEAGE, None, responsible["bias"],
                                       responsible["explainability"], responsible["model_card"])
    text = json.dumps(metadata, allow_nan=False)
    document = json.loads(text)
    bias, explanations = document["bias"], document["explainability"]
    assert bias["configured"] is True and bias["positive_label"] == "yes" and bias["group_column"] == "plan"
    assert [f["label"] for f in bias["facets"]] == ["region in {north}", "customer_age > 40"]
    for facet in bias["facets"]:
        assert set(facet) >= {"column", "label", "pre_training", "post_training", "n_d", "n_a", "reason"}
        assert all(isinstance(v, float) for v in {**facet["pre_training"], **facet["post_training"]}.values())
    assert explanations["global"][0]["mean_abs_shap"] >= explanations["global"][-1]["mean_abs_shap"]
    assert len(explanations["local"]) == 2 and explanations["library"].startswith("shap ")
    assert set(document["model_card"]) == {"model_overview", "intended_uses", "training_details",
                                           "evaluation_details", "additional_information"}
    # the control plane writes each of the three to S3 and passes them on: they stay small
    assert all(len(json.dumps(document[key])) < 20_000 for key in ("bias", "explainability", "model_card"))


def test_metadata_follows_the_contract(production_metadata):
    document = json.loads(json.dumps(to_jsonable(production_metadata), allow_nan=False))
    for key in ("format_version", "task", "target", "features", "classes", "metrics", "reference_profile",
                "expectation_suite", "lineage", "created_at"):
        assert key in document, key
    assert document["format_version"] == 1 and document["target"] == "churn"
    assert {"name": "contract", "kind": "categorical", "dtype": "object"} in document["features"]
    assert set(document["lineage"]) >= {"inputs", "training_job", "image", "hyperparameters"}


def test_the_evaluation_pipeline_reads_responsible_ml_from_its_parameters(fitted, processed):
    """Kedro's runner with the project's parameters and `responsible_ml` as the train entrypoint passes it."""
    from kedro.framework.project import configure_project, find_pipelines

    from pipeline_support import catalog_with, project_parameters, run

    configure_project("ml_pipeline")
    evaluation = find_pipelines(raise_errors=True)["evaluation"]
    parameters = {**project_parameters(), "responsible_ml": RESPONSIBLE_ML, "lineage": LINEAGE}
    parameters["evaluation"].update(shap_max_rows=50, importance_max_rows=100)
    model, summary = fitted
    catalog = run(evaluation, catalog_with(
        parameters, model=model, train_set=processed["train"], test_set=processed["test"],
        validation_set=processed["validation"], model_input=processed["model_input"], data_schema=processed["schema"],
        training_summary=summary, reference_profile=processed["profile"], expectation_suite=processed["suite"],
        champion_model=None, test_sources=processed["test"]["churn"].rename("source").iloc[:0]))
    metadata = json.loads(json.dumps(catalog.load("model_metadata"), allow_nan=False))
    assert [f["label"] for f in metadata["bias"]["facets"]] == ["region in {north}", "customer_age > 40"]
    assert metadata["model_card"]["intended_uses"]["intended_uses"] == RESPONSIBLE_ML["intended_use"]
    assert metadata["explainability"]["rows"] == 50 and "<h2>Bias</h2>" in catalog.load("evaluation_report")
