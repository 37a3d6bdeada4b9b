"""Contract tests: `train`, `validate` and `monitor` run as processes on a temporary OPT_ML_ROOT."""

from __future__ import annotations

import base64
import json
import re

import joblib
import pytest
from sklearn.pipeline import Pipeline

from entrypoint_support import TARGET, model_tarball, processing_layout, run, training_layout
from ml_pipeline import sample_data

HYPERPARAMETERS = {"target_column": TARGET, "task": "auto", "tuning_iterations": "0", "cv_folds": "3", "seed": "7",
                   "max_iter": "60"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = root / "churn.csv"
    sample_data.generate(900, seed=7).to_csv(data, index=False)
    opt_ml = training_layout(root, {"churn.csv": data}, HYPERPARAMETERS)
    result = run("train", opt_ml, TRAINING_JOB_NAME="mlops-dev-train-abc", IMAGE_URI="example/image:1")
    failure = opt_ml / "output" / "failure"
    assert result.returncode == 0, (failure.read_text() if failure.exists() else "") + result.stderr[-3000:]
    return {"opt_ml": opt_ml, "model": opt_ml / "model", "result": result}


def test_train_writes_a_loadable_model_directory(trained):
    model_dir = trained["model"]
    model = joblib.load(model_dir / "model.joblib")
    assert isinstance(model, Pipeline)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["target"] == TARGET and metadata["task"] == "classification" and metadata["classes"] == ["no", "yes"]
    features = [f["name"] for f in metadata["features"]]
    import pandas as pd

    rows = pd.read_csv(trained["opt_ml"] / "input" / "data" / "train" / "churn.csv").drop(columns=TARGET).head(5)
    assert set(model.predict(rows[features])) <= {"no", "yes"}
    assert (model_dir / "report" / "index.html").read_text().count("data:image/png;base64,") >= 5
    lineage = metadata["lineage"]
    assert lineage["training_job"] == "mlops-dev-train-abc" and lineage["image"] == "example/image:1"
    assert lineage["hyperparameters"]["seed"] == "7" and lineage["files"][0]["file"] == "churn.csv"
    assert len(lineage["files"][0]["sha256"]) == 64
    assert metadata["training"]["train_rows"] == 630
    assert not (trained["opt_ml"] / "output" / "failure").exists()


def test_train_prints_metrics_for_sagemaker_metric_definitions(trained):
    output = trained["result"].stdout
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        values = re.findall(rf"test:{name}=([-+0-9.eE]+)", output)  # the CONTRACTS.md regex
        assert len(values) == 1, name
        assert 0.0 <= float(values[0]) <= 1.0
    assert float(re.search(r"test:roc_auc=([-+0-9.eE]+)", output).group(1)) > 0.6
    assert "test:rmse" not in output


def test_hyperparameters_override_target_and_task(tmp_path):
    frame = sample_data.generate(300, seed=8).rename(columns={"churn": "left"})
    frame["left"] = (frame["left"] == "yes").astype(int)
    data = tmp_path / "d.parquet"
    frame.to_parquet(data, index=False)
    opt_ml = training_layout(tmp_path, {"d.parquet": data},
                             {"target_column": "left", "task": "regression", "max_iter": "20", "sagemaker_region": "x"})
    result = run("train", opt_ml)
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = json.loads((opt_ml / "model" / "metadata.json").read_text())
    assert metadata["target"] == "left" and metadata["task"] == "regression" and metadata["classes"] is None
    assert re.search(r"^test:rmse=[-+0-9.eE]+$", result.stdout, re.M)
    assert re.search(r"^test:r2=[-+0-9.eE]+$", result.stdout, re.M)


@pytest.mark.parametrize("case, files, hyperparameters, reason", [
    ("missing target", {"data.csv": b"a,b\n1,2\n3,4\n"}, HYPERPARAMETERS, r"target column 'churn' not found; the columns are: a, b"),
    ("empty channel", {}, HYPERPARAMETERS, r"no CSV or Parquet file"),
    ("empty file", {"data.csv": b""}, HYPERPARAMETERS, r"data.csv is empty"),
    ("header only", {"data.csv": b"customer_age,churn\n"}, HYPERPARAMETERS, r"no rows"),
    ("wrong type", {"data.csv": b"x,churn\n1,yes\n2,no\n"}, {**HYPERPARAMETERS, "task": "regression"},
     r"task is regression but target column 'churn' is not numeric"),
    ("unparsable", {"data.parquet": b"this is not parquet"}, HYPERPARAMETERS, r"data.parquet could not be parsed as Parquet"),
    ("bad hyperparameter", {"data.csv": b"x,churn\n1,yes\n"}, {**HYPERPARAMETERS, "cv_folds": "many"},
     r"hyperparameter cv_folds='many' is not a number"),
    ("unknown hyperparameter", {"data.csv": b"x,churn\n1,yes\n"}, {**HYPERPARAMETERS, "depth": "3"},
     r"unknown hyperparameter 'depth'"),
])
def test_train_rejects_bad_input_with_a_readable_reason(tmp_path, case, files, hyperparameters, reason):
    opt_ml = training_layout(tmp_path, files, hyperparameters)
    result = run("train", opt_ml)
    assert result.returncode != 0, case
    failure = (opt_ml / "output" / "failure").read_text()
    assert re.search(reason, failure), (case, failure)
    assert failure.startswith("training failed: ") and "Traceback" not in failure
    assert not (opt_ml / "model" / "model.joblib").exists()


def _validate(tmp_path, data_name: str, data: bytes, model_tar=None, **env):
    inputs = {"data": {data_name: data}}
    if model_tar is not None:
        inputs["model"] = {"model.tar.gz": model_tar}
    opt_ml = processing_layout(tmp_path, inputs)
    result = run("validate", opt_ml, TARGET_COLUMN=TARGET, TASK="auto", **env)
    return opt_ml, result


@pytest.fixture(scope="module")
def production_tarball(trained, tmp_path_factory):
    return model_tarball(trained["model"], tmp_path_factory.mktemp("artifacts") / "model.tar.gz")


def test_validate_first_run_against_itself(tmp_path):
    opt_ml, result = _validate(tmp_path, "new.csv", sample_data.generate(200, seed=9).to_csv(index=False).encode())
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((opt_ml / "processing" / "output" / "report" / "report.json").read_text())
    assert report["passed"] is True and report["reference"] == "self" and report["rows"] == 200
    assert (opt_ml / "processing" / "output" / "report" / "report.html").stat().st_size > 0


def test_validate_against_the_production_model(tmp_path, production_tarball):
    frame = sample_data.generate(300, seed=10)
    frame.loc[::5, "contract"] = "lifetime"
    opt_ml, result = _validate(tmp_path, "bad.csv", frame.to_csv(index=False).encode(), production_tarball)
    assert result.returncode == 0, result.stderr[-3000:]  # bad data is a report, not an error
    report = json.loads((opt_ml / "processing" / "output" / "report" / "report.json").read_text())
    assert report["passed"] is False and report["reference"] == "production-model"
    failure = next(f for f in report["failures"] if f["column"] == "contract")
    assert failure["found"] == ["lifetime"] and failure["unexpected_count"] == 60
    assert "FAILED" in result.stdout
    assert not (opt_ml / "output" / "message").exists()


def test_validate_error_writes_the_processing_message_and_exits_non_zero(tmp_path):
    opt_ml = processing_layout(tmp_path, {"data": {}})
    result = run("validate", opt_ml, TARGET_COLUMN=TARGET)
    assert result.returncode != 0
    message = (opt_ml / "output" / "message").read_text()
    assert message.startswith("validation failed: no CSV or Parquet file in") and "Traceback" not in message


def _capture_line(row_csv: str) -> bytes:
    record = {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                                "data": base64.b64encode(row_csv.encode()).decode(),
                                                "encoding": "BASE64"},
                              "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                                 "data": "no", "encoding": "CSV"}},
              "eventMetadata": {"eventId": "e", "inferenceTime": "2026-01-01T00:00:00Z"}, "eventVersion": "0"}
    return json.dumps(record).encode() + b"\n"


def test_monitor_reports_drift_of_captured_requests(tmp_path, production_tarball):
    rows = sample_data.generate(200, seed=11, drift=True).drop(columns=TARGET)
    lines = rows.to_csv(index=False, header=False).splitlines()
    capture = b"".join(_capture_line(line) for line in lines)
    opt_ml = processing_layout(tmp_path, {"capture": {}, "model": {"model.tar.gz": production_tarball}})
    nested = opt_ml / "processing" / "input" / "capture" / "AllTraffic" / "2026" / "01" / "01" / "00"
    nested.mkdir(parents=True)
    (nested / "part-1.jsonl").write_bytes(capture)
    result = run("monitor", opt_ml)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((opt_ml / "processing" / "output" / "report" / "report.json").read_text())
    assert report["kind"] == "monitor" and report["rows"] == 200 and report["records"] == 200
    assert report["drift"]["score"] > 0.3
    assert re.search(r"^drift_score=[0-9.]+$", result.stdout, re.M)


def test_monitor_without_a_model_is_an_error(tmp_path):
    opt_ml = processing_layout(tmp_path, {"capture": {"c.jsonl": b""}})
    result = run("monitor", opt_ml)
    assert result.returncode != 0
    assert "monitoring needs the production model" in (opt_ml / "output" / "message").read_text()
