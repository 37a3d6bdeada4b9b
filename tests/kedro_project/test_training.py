from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from ml_pipeline.errors import ConfigError
from ml_pipeline.pipelines.data_processing import nodes as processing
from ml_pipeline.pipelines.training import nodes

from kedro_test_params import SPLIT, TRAINING


def test_one_pipeline_with_preprocessing_inside(fitted, processed):
    model, summary = fitted
    assert isinstance(model, Pipeline) and isinstance(model.steps[0][1], ColumnTransformer)
    raw_rows = processed["test"].drop(columns="churn")  # raw features, missing values included
    assert raw_rows.isna().any().any()
    proba = model.predict_proba(raw_rows)[:, 1]
    assert roc_auc_score(processed["test"]["churn"] == "yes", proba) > 0.65
    assert summary["train_rows"] == len(processed["train"]) and summary["tuning_iterations"] == 0


def test_unseen_categories_do_not_break_prediction(fitted, processed):
    model, _ = fitted
    rows = processed["test"].drop(columns="churn").iloc[:3].copy()
    rows["contract"] = "lifetime"
    assert len(model.predict(rows)) == 3


def test_randomised_search_with_k_fold_cv(processed):
    tuning = {**TRAINING, "tuning_iterations": 2, "cv_folds": 2}
    model, summary = nodes.train_model(processed["train"].iloc[:400], processed["schema"], tuning, 7)
    assert summary["cv_folds"] == 2 and summary["scoring"] == "roc_auc"
    assert set(summary["best_params"]) == {"learning_rate", "max_leaf_nodes"}
    assert 0.5 < summary["best_score"] <= 1.0
    assert model.steps[-1][1].max_leaf_nodes == summary["best_params"]["max_leaf_nodes"]


def test_regression_target(raw_frame):
    frame = raw_frame.drop(columns="churn").assign(spend=raw_frame["monthly_charges"].fillna(60) * 3 + 1.5)
    cleaned, _ = processing.clean_data(frame.drop(columns="monthly_charges"), "spend")
    schema = processing.infer_schema(cleaned, "spend", "auto")
    assert schema["task"] == "regression" and schema["classes"] is None
    train, _, _ = processing.split_data(processing.prepare_model_input(cleaned, schema), SPLIT, 1)
    model, _ = nodes.train_model(train, schema, TRAINING, 1)
    assert isinstance(model.steps[-1][1], HistGradientBoostingRegressor)
    assert np.isfinite(model.predict(train.drop(columns="spend").iloc[:5])).all()


def test_unknown_estimator_parameter_is_a_config_error(processed):
    with pytest.raises(ConfigError, match="unknown estimator parameters"):
        nodes.train_model(processed["train"], processed["schema"], {**TRAINING, "estimator": {"depth": 3}}, 1)


def test_the_fitted_trees_are_compiled_beside_the_model(fitted, processed, tmp_path):
    from ml_pipeline.serving.forest import CompiledForestDataset, platform_record

    compiled = nodes.compile_model(fitted[0])
    assert compiled.library and compiled.record["compiled"] is True
    assert compiled.record["link"] == "logistic" and compiled.record["platform"] == platform_record()
    assert compiled.record["trees"] == fitted[0].steps[-1][1].n_iter_
    dataset = CompiledForestDataset(str(tmp_path / "forest"))
    dataset.save(compiled)
    assert sorted(p.name for p in (tmp_path / "forest").iterdir()) == ["forest.json", "forest.so"]
    assert dataset.load().library == compiled.library


def test_a_model_that_cannot_be_compiled_still_trains(fitted, monkeypatch):
    from ml_pipeline.serving import forest

    monkeypatch.setattr(forest.shutil, "which", lambda name: None)
    compiled = nodes.compile_model(fitted[0])
    assert compiled.library is None and compiled.record["compiled"] is False
    assert compiled.record["reason"] == "RuntimeError: no C compiler (gcc, cc or clang) on PATH"


def test_the_training_pipeline_writes_the_compiled_trees():
    from ml_pipeline.pipelines.training import create_pipeline

    assert "compiled_model" in create_pipeline().outputs()


def test_the_compiler_works_while_the_evaluation_nodes_run(fitted, monkeypatch):
    """start_compiling returns at once (the compiler runs in a thread); finish_compiling waits for its result.
    Kedro runs compile_model first among the nodes that read the model, and saves its result after them."""
    import threading

    from ml_pipeline.pipelines import data_processing, evaluation, training
    from ml_pipeline.serving import forest

    release = threading.Event()
    real = forest.compile_forest
    monkeypatch.setattr(forest, "compile_forest", lambda *args: release.wait(60) and real(*args))
    build = nodes.start_compiling(fitted[0])
    assert not release.is_set()  # returned while the compiler is still held back
    release.set()
    assert nodes.finish_compiling(build).record["compiled"] is True

    order = [node.name for node in (data_processing.create_pipeline() + training.create_pipeline()
                                    + evaluation.create_pipeline()).nodes]
    overlapped = ("compute_importance", "evaluate_model", "explain_model")
    assert all(order.index("compile_model") < order.index(name) < order.index("save_compiled_model")
               for name in overlapped), order


def test_a_compiler_thread_that_dies_leaves_a_record_not_an_exception(fitted, monkeypatch):
    from ml_pipeline.serving import forest

    def dies(*args):
        raise MemoryError("out of memory")

    monkeypatch.setattr(forest, "compile_forest", dies)
    compiled = nodes.compile_model(fitted[0])
    assert compiled.library is None and compiled.record["compiled"] is False
    assert compiled.record["reason"] == "MemoryError: out of memory"


def test_the_training_input_keeps_nothing_of_the_train_split(processed):
    """prepare_training's output is what Kedro holds during the fit: the model's matrices, not the typed split."""
    tracemalloc.start()
    try:
        train = processed["train"].copy(deep=True)
        split_bytes = tracemalloc.get_traced_memory()[0]
        training_input = nodes.prepare_training(train, processed["schema"], TRAINING, 42)
        with_split = tracemalloc.get_traced_memory()[0]
        del train
        gc.collect()
        without_split = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert training_input.x is None and training_input.y is None and training_input.prepared is not None
    assert with_split - without_split >= 0.9 * split_bytes  # the split's memory went with its last reference
    model, summary = nodes.fit_model(training_input, processed["schema"], TRAINING, 42)
    reference, _ = nodes.train_model(processed["train"], processed["schema"], TRAINING, 42)
    rows = processed["test"].drop(columns="churn")
    np.testing.assert_array_equal(model.predict_proba(rows), reference.predict_proba(rows))
    assert summary["train_rows"] == len(processed["train"])


def test_tuning_fits_the_whole_pipeline_on_the_split(processed):
    tuning = {**TRAINING, "tuning_iterations": 2, "cv_folds": 2}
    training_input = nodes.prepare_training(processed["train"].iloc[:400], processed["schema"], tuning, 7)
    assert training_input.prepared is None and len(training_input.x) == 400 == training_input.rows
