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

from kedro_test_params import EXPECTATION_SETTINGS, PROFILE_SETTINGS, SPLIT, TRAINING  # noqa: E402



@pytest.fixture(scope="session")
def raw_frame():
    return sample_data.generate(1200, seed=3)


@pytest.fixture(scope="session")
def processed(raw_frame):
    """The data_processing outputs, computed once by calling the nodes."""
    cleaned, _ = processing.clean_data(raw_frame, "churn")
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
