"""Small data and one fitted model shared by the Kedro node and pipeline tests."""

from __future__ import annotations

import os

# Before sklearn loads: one OpenMP thread (2 shared cores; threads fighting over them cost 10x here).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from ml_pipeline import sample_data  # noqa: E402
from ml_pipeline.pipelines.data_processing import nodes as processing  # noqa: E402
from ml_pipeline.pipelines.training import nodes as training  # noqa: E402

EXPECTATION_SETTINGS = {"mostly": 0.99, "null_tolerance": 0.02, "range_margin": 0.25, "max_set_size": 200}
PROFILE_SETTINGS = {"bins": 10, "quantiles": 201, "max_categories": 200}
TRAINING = {"tuning_iterations": 0, "cv_folds": 3, "max_categories": 32,
            "estimator": {"learning_rate": 0.1, "max_iter": 60, "max_leaf_nodes": 15, "min_samples_leaf": 20},
            "search_space": {"learning_rate": [0.05, 0.3, "log"], "max_leaf_nodes": [7, 31, "int"]}}
SPLIT = {"train": 0.7, "test": 0.2, "validation": 0.1}


@pytest.fixture(scope="session")
def raw_frame():
    return sample_data.generate(1200, seed=3)


@pytest.fixture(scope="session")
def processed(raw_frame):
    """The data_processing outputs, computed once by calling the nodes."""
    cleaned = processing.clean_data(raw_frame, "churn")
    schema = processing.infer_schema(cleaned, "churn", "auto")
    model_input = processing.prepare_model_input(cleaned, schema)
    train, test, validation = processing.split_data(model_input, SPLIT, 42)
    return {"cleaned": cleaned, "schema": schema, "model_input": model_input, "train": train, "test": test,
            "validation": validation,
            "profile": processing.build_reference_profile(model_input, schema, PROFILE_SETTINGS),
            "suite": processing.build_expectation_suite(cleaned, schema, EXPECTATION_SETTINGS)}


@pytest.fixture(scope="session")
def fitted(processed):
    model, summary = training.train_model(processed["train"], processed["schema"], TRAINING, 42)
    return model, summary


@pytest.fixture(scope="session")
def production_metadata(processed, fitted):
    """metadata.json content of the fitted model (what validation/monitoring read)."""
    from ml_pipeline.pipelines.evaluation import nodes as evaluation

    model, summary = fitted
    metrics = evaluation.evaluate_model(model, processed["test"], processed["validation"], processed["schema"])
    return evaluation.assemble_metadata(processed["schema"], metrics, processed["profile"], processed["suite"], [],
                                        summary, {"inputs": [], "training_job": None, "image": None,
                                                  "hyperparameters": {}})
