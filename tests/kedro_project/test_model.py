"""model.fit_lean against Pipeline.fit: the same fitted Pipeline (same parameters learnt, same predictions, bit for
bit), and the whole compact training path (compact reader, category columns, lean fit) against the plain one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ml_pipeline import metrics, model, sample_data, schema, tabular
from ml_pipeline.pipelines.data_processing import nodes as processing
from ml_pipeline.pipelines.training import nodes as training

from kedro_test_params import SPLIT, TRAINING

# Above HistGradientBoosting's 10,000 rows, where early stopping ("auto") holds out validation rows of its own.
ROWS = 16_000
FAST = {"max_iter": 25, "max_leaf_nodes": 15}


def frames(rows: int = ROWS, seed: int = 11, target: str = "churn", task: str = "auto"):
    raw = sample_data.generate(rows, seed=seed)
    cleaned, _ = processing.clean_data(raw, target)
    data_schema = processing.infer_schema(cleaned, target, task)
    names = [f["name"] for f in data_schema["features"]]
    plain_x = schema.coerce_features(cleaned, data_schema["features"])  # object columns: the old model input
    compact = processing.prepare_model_input(cleaned, data_schema)
    return data_schema, names, plain_x, compact[names], compact[target]


def fitted_state(estimator) -> dict:
    """Everything an estimator learnt, nested estimators included, as comparable values."""
    state = {}
    for key, value in vars(estimator).items():
        if key.startswith("_") and key not in ("_baseline_prediction", "_predictors", "_bin_mapper"):
            continue
        state[key] = value
    return state


def assert_same_fit(reference, lean, x) -> None:
    ref_pre, lean_pre = reference.steps[0][1], lean.steps[0][1]
    assert ref_pre.output_indices_ == lean_pre.output_indices_
    assert list(ref_pre.get_feature_names_out()) == list(lean_pre.get_feature_names_out())
    for (name, ref_part, columns), (lean_name, lean_part, lean_columns) in zip(
            ref_pre.transformers_, lean_pre.transformers_, strict=True):
        assert (name, list(columns)) == (lean_name, list(lean_columns))
        if hasattr(ref_part, "steps"):
            for (_, ref_step), (_, lean_step) in zip(ref_part.steps, lean_part.steps, strict=True):
                for key, value in vars(ref_step).items():
                    if key.endswith("_") and not key.startswith("_"):
                        other = vars(lean_step)[key]
                        if isinstance(value, list):
                            assert all(np.array_equal(a, b) for a, b in zip(value, other, strict=True)), key
                        else:
                            np.testing.assert_array_equal(np.asarray(other), np.asarray(value), err_msg=key)
    np.testing.assert_array_equal(lean_pre.transform(x), ref_pre.transform(x))
    ref_est, lean_est = reference.steps[-1][1], lean.steps[-1][1]
    assert ref_est.get_params() == lean_est.get_params()
    assert ref_est.n_iter_ == lean_est.n_iter_ and ref_est.do_early_stopping_ == lean_est.do_early_stopping_
    np.testing.assert_array_equal(lean_est.train_score_, ref_est.train_score_)
    np.testing.assert_array_equal(lean_est.validation_score_, ref_est.validation_score_)
    if hasattr(ref_est, "classes_"):
        np.testing.assert_array_equal(lean_est.classes_, ref_est.classes_)
        np.testing.assert_array_equal(lean.predict_proba(x), reference.predict_proba(x))
    np.testing.assert_array_equal(lean.predict(x), reference.predict(x))


@pytest.mark.parametrize("rows, estimator", [(ROWS, {}), (ROWS, {"early_stopping": True}),
                                             (ROWS, {"early_stopping": False}), (ROWS, {"validation_fraction": 0.25}),
                                             (3_000, {})])
def test_lean_fit_is_pipeline_fit_bit_for_bit(rows, estimator):
    data_schema, _, plain_x, compact_x, y = frames(rows)
    build = model.build_pipeline(data_schema["features"], "classification", {**FAST, **estimator}, 32, 42)
    assert model._early_stopping_rows(build, y) is not None  # the lean path, not its fallback
    reference = clone(build).fit(plain_x, y)  # what `train` did before: object columns, Pipeline.fit
    lean = model.fit_lean(clone(build), compact_x, y)
    stops = estimator.get("early_stopping", "auto") is True or (estimator.get("early_stopping", "auto") == "auto"
                                                                and rows > 10_000)
    assert lean.steps[-1][1].do_early_stopping_ is stops
    assert_same_fit(reference, lean, plain_x)


def test_lean_fit_of_a_multiclass_classifier_and_a_regressor():
    data_schema, names, plain_x, compact_x, _ = frames()
    raw = sample_data.generate(ROWS, seed=11)
    classes = pd.Series(np.digitize(raw["monthly_charges"], [45, 65, 85]).astype("int64"))
    amount = raw["monthly_charges"].astype("float64") * 1.5 + raw["tenure_months"].astype("float64")
    for task, y in (("classification", classes), ("regression", amount)):
        build = model.build_pipeline(data_schema["features"], task, FAST, 32, 7)
        assert model._early_stopping_rows(build, y) is not None
        assert_same_fit(clone(build).fit(plain_x, y), model.fit_lean(clone(build), compact_x, y), plain_x)


@pytest.mark.parametrize("rows, estimator", [(10_500, {}), (ROWS, {"class_weight": "balanced"})])
def test_settings_the_lean_path_does_not_reproduce_fall_back_to_pipeline_fit(rows, estimator):
    # 10,500 rows: "auto" stops early on the whole set, but would not on the 9,450 rows left beside X_val.
    data_schema, _, plain_x, compact_x, y = frames(rows)
    build = model.build_pipeline(data_schema["features"], "classification", {**FAST, **estimator}, 32, 42)
    assert model._early_stopping_rows(build, y) is None
    assert_same_fit(clone(build).fit(plain_x, y), model.fit_lean(clone(build), compact_x, y), plain_x)


def test_compact_training_path_gives_the_plain_paths_model_and_metrics(tmp_path):
    """Read → clean → schema → model input → split → train → test metrics, once as `train` did before (plain
    reader, object columns, Pipeline.fit) and once as it does now: identical metrics and predictions."""
    path = tmp_path / "train.csv"
    sample_data.generate(ROWS, seed=21).to_csv(path, index=False)
    settings = {**TRAINING, "estimator": {**TRAINING["estimator"], "max_iter": 30}}
    results = {}
    for compact in (False, True):
        cleaned, _ = processing.clean_data(tabular.read_path(path, sources=True, compact=compact), "churn")
        data_schema = processing.infer_schema(cleaned, "churn", "auto")
        if compact:
            model_input = processing.prepare_model_input(cleaned, data_schema)
        else:
            model_input = schema.coerce_features(cleaned, data_schema["features"])
            model_input["churn"] = schema.coerce_target(cleaned["churn"], "classification", data_schema["classes"])
        train, test, _ = processing.split_data(model_input, SPLIT, 42)
        if compact:
            fitted, _ = training.train_model(train, data_schema, settings, 42)
        else:
            fitted = model.build_pipeline(data_schema["features"], "classification", settings["estimator"],
                                          settings["max_categories"], 42).fit(
                train[[f["name"] for f in data_schema["features"]]], train["churn"])
        names = [f["name"] for f in data_schema["features"]]
        results[compact] = (data_schema, metrics.compute_metrics(fitted, test[names], test["churn"], "classification"),
                            fitted.predict_proba(schema.coerce_features(test, data_schema["features"])))
    (plain_schema, plain_metrics, plain_proba), (lean_schema, lean_metrics, lean_proba) = results[False], results[True]
    assert lean_schema == plain_schema
    assert lean_metrics == plain_metrics and plain_metrics["roc_auc"] > 0.7
    np.testing.assert_array_equal(lean_proba, plain_proba)
