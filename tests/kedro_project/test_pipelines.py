"""Each registered pipeline, run by Kedro's runner on small data with the project's parameters."""

from __future__ import annotations

import json

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, find_pipelines
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from sklearn.pipeline import Pipeline

from ml_pipeline import paths, sample_data
from ml_pipeline.jsonutil import to_jsonable


@pytest.fixture(scope="module")
def pipelines():
    configure_project("ml_pipeline")
    return find_pipelines(raise_errors=True)


@pytest.fixture(scope="module")
def parameters():
    loader = OmegaConfigLoader(str(paths.project_path() / "conf"), base_env="base", default_run_env="local")
    params = loader["parameters"]
    params["training"]["estimator"]["max_iter"] = 40
    params["evaluation"].update({"importance_repeats": 2, "plot_max_rows": 500})
    return params


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can inspect intermediate results."""

    def _release(self) -> None:
        pass


def _catalog(parameters: dict, **datasets) -> DataCatalog:
    catalog = DataCatalog({name: KeptDataset(value) for name, value in datasets.items()})
    for key, value in parameters.items():
        catalog[f"params:{key}"] = value
    return catalog


def _run(pipeline, catalog: DataCatalog) -> DataCatalog:
    for name in pipeline.datasets():
        if name not in catalog and not name.startswith("params:"):
            catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)
    return catalog


def test_the_five_pipelines_are_registered(pipelines):
    assert {"data_validation", "data_processing", "training", "evaluation", "monitoring"} <= set(pipelines)


@pytest.fixture(scope="module")
def trained_catalog(pipelines, parameters):
    catalog = _catalog(parameters, raw_data=sample_data.generate(800, seed=41))
    return _run(pipelines["data_processing"] + pipelines["training"] + pipelines["evaluation"], catalog)


def test_data_processing_training_evaluation(trained_catalog):
    assert isinstance(trained_catalog.load("model"), Pipeline)
    metadata = json.loads(json.dumps(to_jsonable(trained_catalog.load("model_metadata")), allow_nan=False))
    assert metadata["task"] == "classification" and metadata["metrics"]["test"]["roc_auc"] > 0.6
    assert (len(trained_catalog.load("train_set")), len(trained_catalog.load("test_set")),
            len(trained_catalog.load("validation_set"))) == (560, 160, 80)
    assert trained_catalog.load("evaluation_report").startswith("<!doctype html>")


def test_data_validation_pipeline(pipelines, parameters, trained_catalog, tmp_path):
    path = tmp_path / "new.csv"
    sample_data.generate(300, seed=42).to_csv(path, index=False)
    catalog = _run(pipelines["data_validation"], _catalog(
        parameters, new_data_files=[str(path)], production_model=trained_catalog.load("model_metadata")))
    report = catalog.load("validation_report")
    assert report["passed"] is True and report["reference"] == "production-model"
    assert "PASSED" in catalog.load("validation_report_html")


def test_monitoring_pipeline(pipelines, parameters, trained_catalog):
    rows = sample_data.generate(40, seed=43).drop(columns="churn").fillna("")
    records = [{"captureData": {"endpointInput": {"observedContentType": "text/csv", "encoding": "CSV", "mode": "INPUT",
                                                  "data": ",".join(map(str, row))}}} for row in rows.itertuples(index=False)]
    catalog = _run(pipelines["monitoring"], _catalog(parameters, captured_records=records,
                                                     production_model=trained_catalog.load("model_metadata")))
    report = catalog.load("monitoring_report")
    assert report["kind"] == "monitor" and report["rows"] == 40 and report["records_unreadable"] == 0
    assert "Monitoring report" in catalog.load("monitoring_report_html")
