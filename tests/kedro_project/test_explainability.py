"""SHAP explanations of the served pipeline (ml_pipeline/explainability.py): additivity on probe rows for binary and
multiclass classification and regression, one-hot columns summed back to their input column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, softmax

from ml_pipeline import explainability
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.pipelines.data_processing import nodes as processing
from ml_pipeline.pipelines.evaluation import nodes
from ml_pipeline.pipelines.training import nodes as training

from kedro_test_params import SPLIT, TRAINING

SETTINGS = {"shap_max_rows": 60, "local_rows": 3, "seed": 1}


def _fit(frame: pd.DataFrame, target: str, task: str = "auto"):
    cleaned, _ = processing.clean_data(frame, target)
    schema = processing.infer_schema(cleaned, target, task)
    train, test, _ = processing.split_data(processing.prepare_model_input(cleaned, schema), SPLIT, 42)
    model, _ = training.train_model(train, schema, TRAINING, 42)
    return model, schema, test


@pytest.fixture(scope="module")
def multiclass(raw_frame):
    return _fit(raw_frame.dropna(subset=["contract"]), "contract")


@pytest.fixture(scope="module")
def regression(raw_frame):
    return _fit(raw_frame, "monthly_charges", "regression")


def _probe(schema: dict, test: pd.DataFrame) -> pd.DataFrame:
    return test[[f["name"] for f in schema["features"]]].iloc[:25]


def test_binary_additivity_on_probe_rows(fitted, processed):
    model, schema = fitted[0], processed["schema"]
    rows = _probe(schema, processed["test"])
    assert rows.isna().any().any()  # missing values go through the imputers as in serving
    contributions, base = explainability.shap_by_column(model, rows, list(rows.columns))
    assert contributions.shape == (25, len(rows.columns)) and np.ndim(base) == 0
    log_odds = base + contributions.sum(axis=1)
    np.testing.assert_allclose(log_odds, model.decision_function(rows), atol=1e-9)
    np.testing.assert_allclose(expit(log_odds), model.predict_proba(rows)[:, 1], atol=1e-9)


def test_multiclass_additivity_on_probe_rows(multiclass):
    model, schema, test = multiclass
    rows = _probe(schema, test)
    contributions, base = explainability.shap_by_column(model, rows, list(rows.columns))
    classes = len(model.classes_)
    assert classes == 3 and contributions.shape == (25, len(rows.columns), classes) and base.shape == (classes,)
    margins = base + contributions.sum(axis=1)
    np.testing.assert_allclose(margins, model.decision_function(rows), atol=1e-9)
    np.testing.assert_allclose(softmax(margins, axis=1), model.predict_proba(rows), atol=1e-9)


def test_regression_additivity_on_probe_rows(regression):
    model, schema, test = regression
    rows = _probe(schema, test)
    contributions, base = explainability.shap_by_column(model, rows, list(rows.columns))
    np.testing.assert_allclose(base + contributions.sum(axis=1), model.predict(rows), atol=1e-8)


def test_one_hot_columns_are_summed_back_to_their_input_column(fitted, processed):
    model, schema = fitted[0], processed["schema"]
    features = [f["name"] for f in schema["features"]]
    groups = dict(explainability.column_groups(model, features))
    onehot = model.named_steps["preprocess"].named_transformers_["categorical"].named_steps["onehot"]
    categorical = [f["name"] for f in schema["features"] if f["kind"] == "categorical"]
    for name, categories in zip(categorical, onehot.categories_, strict=True):
        assert len(groups[name]) == len(categories), name  # ≤ 32 categories: one output column each
    assert all(len(groups[f["name"]]) == 1 for f in schema["features"] if f["kind"] == "numeric")
    assert sorted(i for idx in groups.values() for i in idx) == list(range(model.named_steps["model"].n_features_in_))


def test_pooled_infrequent_categories_still_map_back(processed):
    tight = {**TRAINING, "max_categories": 2}  # every categorical column: one frequent category + "infrequent"
    model, _ = training.train_model(processed["train"], processed["schema"], tight, 42)
    rows = _probe(processed["schema"], processed["test"])
    groups = dict(explainability.column_groups(model, list(rows.columns)))
    assert len(groups["contract"]) == 2
    contributions, base = explainability.shap_by_column(model, rows, list(rows.columns))
    np.testing.assert_allclose(base + contributions.sum(axis=1), model.decision_function(rows), atol=1e-9)


def test_explanations_for_metadata(fitted, processed):
    model, schema = fitted[0], processed["schema"]
    result = nodes.explain_model(model, processed["test"], schema, SETTINGS)
    assert json.loads(json.dumps(result, allow_nan=False)) == result == to_jsonable(result)
    assert result["library"].startswith("shap 0.") and result["rows"] == 60 and result["additivity_max_error"] < 1e-9
    ranking = [r["column"] for r in result["global"]]
    assert sorted(ranking) == sorted(f["name"] for f in schema["features"])
    assert [r["mean_abs_shap"] for r in result["global"]] == sorted((r["mean_abs_shap"] for r in result["global"]),
                                                                   reverse=True)
    # region and plan carry no signal in the generator; contract and tenure do
    assert min(ranking.index("contract"), ranking.index("tenure_months")) < ranking.index("region")
    assert len(result["local"]) == 3 and "log-odds" in result["output"]
    for item in result["local"]:
        assert item["base_value"] + sum(item["contributions"].values()) == pytest.approx(item["raw_output"], abs=1e-9)
        assert item["prediction"] in ("yes", "no") and set(item["row"]) == set(item["contributions"])


def test_multiclass_local_explanations_explain_the_predicted_class(multiclass):
    model, schema, test = multiclass
    result = nodes.explain_model(model, test, schema, SETTINGS)
    assert result["classes"] == [str(c) for c in model.classes_] and len(result["base_value"]) == 3
    for item in result["local"]:
        assert item["class"] == item["prediction"]
        k = result["classes"].index(item["class"])
        assert item["base_value"] == pytest.approx(result["base_value"][k])
        assert item["base_value"] + sum(item["contributions"].values()) == pytest.approx(item["raw_output"], abs=1e-9)


def test_no_test_rows_gives_an_empty_explanation(fitted, processed):
    result = nodes.explain_model(fitted[0], processed["test"].iloc[:0], processed["schema"], SETTINGS)
    assert (result["rows"], result["global"], result["local"], result["base_value"]) == (0, [], [], None)
    html = nodes._explainability(result)
    assert html.startswith("<p>No test rows to explain (shap 0.")
