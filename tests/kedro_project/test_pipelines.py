"""Each registered pipeline, run by Kedro's runner on small data with the project's parameters."""

from __future__ import annotations

import json

import pytest
from kedro.framework.project import configure_project, find_pipelines
from sklearn.pipeline import Pipeline

from ml_pipeline import sample_data
from ml_pipeline.jsonutil import to_jsonable

from pipeline_support import catalog_with, project_parameters, run


@pytest.fixture(scope="module")
def pipelines():
    configure_project("ml_pipeline")
    return find_pipelines(raise_errors=True)


@pytest.fixture(scope="module")
def parameters():
    return project_parameters()


def test_the_six_pipelines_are_registered(pipelines):
    assert {"data_validation", "data_processing", "training", "evaluation", "monitoring", "ground_truth"} <= set(pipelines)


@pytest.fixture(scope="module")
def trained_catalog(pipelines, parameters):
    catalog = catalog_with(parameters, raw_data=sample_data.generate(800, seed=41), champion_model=None)
    return run(pipelines["data_processing"] + pipelines["training"] + pipelines["evaluation"], catalog)


def test_data_processing_training_evaluation(trained_catalog):
    assert isinstance(trained_catalog.load("model"), Pipeline)
    metadata = json.loads(json.dumps(to_jsonable(trained_catalog.load("model_metadata")), allow_nan=False))
    assert metadata["task"] == "classification" and metadata["metrics"]["test"]["roc_auc"] > 0.6
    assert (len(trained_catalog.load("train_set")), len(trained_catalog.load("test_set")),
            len(trained_catalog.load("validation_set"))) == (560, 160, 80)
    assert trained_catalog.load("evaluation_report").startswith("<!doctype html>")
    # no production model: the comparison holds the challenger's test metrics and says why there is no champion
    assert metadata["comparison"] == {"champion": {"scored": False, "reason": "no production model"},
                                      "test": {"rows": 160, "challenger": metadata["metrics"]["test"]}}


def test_data_validation_pipeline(pipelines, parameters, trained_catalog, tmp_path):
    path = tmp_path / "new.csv"
    sample_data.generate(300, seed=42).to_csv(path, index=False)
    catalog = run(pipelines["data_validation"], catalog_with(
        parameters, new_data_files=[str(path)], production_model=trained_catalog.load("model_metadata")))
    report = catalog.load("validation_report")
    assert report["passed"] is True and report["reference"] == "production-model"
    assert "PASSED" in catalog.load("validation_report_html")


def test_monitoring_pipeline(pipelines, parameters, trained_catalog):
    rows = sample_data.generate(40, seed=43).drop(columns="churn").fillna("")
    records = [{"captureData": {"endpointInput": {"observedContentType": "text/csv", "encoding": "CSV", "mode": "INPUT",
                                                  "data": ",".join(map(str, row))}}} for row in rows.itertuples(index=False)]
    catalog = run(pipelines["monitoring"], catalog_with(parameters, captured_records=records,
                                                     production_model=trained_catalog.load("model_metadata")))
    report = catalog.load("monitoring_report")
    assert report["kind"] == "monitor" and report["rows"] == 40 and report["records_unreadable"] == 0
    assert "Monitoring report" in catalog.load("monitoring_report_html")


def test_the_whole_input_is_released_before_training():
    """Kedro releases an in-memory dataset after its last consumer: no node from training on may read
    model_input, or the whole input stays in memory beside its splits at training's peak."""
    from ml_pipeline.pipelines import data_processing, evaluation, training

    run = data_processing.create_pipeline() + training.create_pipeline() + evaluation.create_pipeline()
    names = [node.name for node in run.nodes]
    readers = [node.name for node in run.nodes if "model_input" in node.inputs]
    assert readers and all(names.index(reader) < names.index("train_model") for reader in readers), readers


def test_the_train_split_is_released_before_the_fit():
    """The fit's input is the model's matrices (prepare_training): no node from the fit on may read the typed
    train split, or it stays in memory beside the matrices at training's peak."""
    from ml_pipeline.pipelines import data_processing, evaluation, training

    run = data_processing.create_pipeline() + training.create_pipeline() + evaluation.create_pipeline()
    names = [node.name for node in run.nodes]
    readers = [node.name for node in run.nodes if "train_set" in node.inputs]
    assert {"prepare_training", "select_bias_columns"} <= set(readers)
    assert all(names.index(reader) < names.index("train_model") for reader in readers), readers
