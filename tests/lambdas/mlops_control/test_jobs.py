"""mlops_control.jobs: deterministic, valid names and the contract's request shapes."""
from __future__ import annotations

import re

import pytest

from ..helpers import ARTIFACTS, ENV, KMS, P


@pytest.fixture
def s():
    from mlops_control.settings import Settings

    return Settings.from_env(ENV)


def test_names_are_deterministic_distinct_and_valid(s):
    from mlops_control.jobs import job_name

    a = job_name(s, "val", "bucket", "incoming/a.csv", "v1")
    assert a == job_name(s, "val", "bucket", "incoming/a.csv", "v1")
    assert a != job_name(s, "val", "bucket", "incoming/a.csv", "v2")
    assert a != job_name(s, "val", "bucket", "incoming/a.csvv", "1")  # parts are separated, not concatenated
    for kind in ("val", "train", "mon"):
        name = job_name(s, kind, "x" * 2000)
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name) and name.startswith(f"{P}-{kind}-")


def test_model_and_config_names_follow_the_training_job(s):
    from mlops_control.jobs import config_name, model_name

    assert model_name(s, f"{P}-train-abc") == f"{P}-model-abc" and config_name(s, f"{P}-train-abc") == f"{P}-cfg-abc"
    with pytest.raises(ValueError):
        model_name(s, "other-train-abc")


def test_too_long_prefix_is_refused():
    from mlops_control.jobs import job_name
    from mlops_control.settings import Settings

    with pytest.raises(ValueError, match="not a valid SageMaker name"):
        job_name(Settings.from_env({**ENV, "NAME_PREFIX": "p" * 40}), "train", "x")


def test_validation_request_shape(s):
    from mlops_control.jobs import validation_request

    request = validation_request(s, f"{P}-val-abc", "s3://d/incoming/a.csv", f"s3://{ARTIFACTS}/models/j/output/model.tar.gz")
    assert request["AppSpecification"] == {"ImageUri": ENV["IMAGE_URI"], "ContainerEntrypoint": ["validate"]}
    assert request["Environment"] == {"TARGET_COLUMN": "churn", "TASK": "classification", "STRICT_COLUMNS": "",
                                      "ACCEPT_SHIFT": "0"}
    assert request["NetworkConfig"] == {"EnableNetworkIsolation": True}
    assert [i["InputName"] for i in request["ProcessingInputs"]] == ["data", "model"]
    assert request["ProcessingInputs"][1]["S3Input"]["LocalPath"] == "/opt/ml/processing/input/model"
    output = request["ProcessingOutputConfig"]
    assert output["KmsKeyId"] == KMS
    assert output["Outputs"][0]["S3Output"] == {"S3Uri": f"s3://{ARTIFACTS}/reports/validation/{P}-val-abc/",
                                                "LocalPath": "/opt/ml/processing/output/report", "S3UploadMode": "EndOfJob"}


def test_test_metrics_reads_only_test_entries():
    from mlops_control.jobs import test_metrics

    assert test_metrics([{"MetricName": "test:roc_auc", "Value": 0.8}, {"MetricName": "train:loss", "Value": 1.0},
                         {"MetricName": "test:rmse", "Value": 2}]) == {"roc_auc": 0.8, "rmse": 2.0}
    assert test_metrics(None) == {}


def test_training_request_carries_lineage_when_it_fits(s):
    import json

    from mlops_control.jobs import training_request
    from mlops_control.training import select_window

    def snapshot(count, version):
        return select_window([{"uri": f"s3://d/validated/{i:05}.csv", "key": f"validated/{i:05}.csv",
                               "version": version, "modified": float(i)} for i in range(count)], {}, 0, 0, 1e9)

    request = training_request(s, f"{P}-train-abc", snapshot(3, "v1"))
    assert {"uri": "s3://d/validated/00002.csv", "version": "v1"} in json.loads(request["HyperParameters"]["lineage_inputs"])
    assert request["Environment"] == {"IMAGE_URI": ENV["IMAGE_URI"]}
    assert "lineage_inputs" not in training_request(s, f"{P}-train-abc", snapshot(200, "v" * 30))["HyperParameters"]


