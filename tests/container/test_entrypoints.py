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


def test_train_compiles_the_trees_that_serve_loads(trained):
    from ml_pipeline.serving.forest import DIRECTORY, LIBRARY, RECORD, platform_record
    from ml_pipeline.serving.predictor import CompiledModel

    record = json.loads((trained["model"] / DIRECTORY / RECORD).read_text())
    assert record["compiled"] is True and record["platform"] == platform_record()
    assert (trained["model"] / DIRECTORY / LIBRARY).stat().st_size > 0
    model = CompiledModel.load(trained["model"])
    assert model.forest is not None, model.forest_reason


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


def _report(opt_ml):
    return json.loads((opt_ml / "processing" / "output" / "report" / "report.json").read_text())


def test_validate_reports_shift_and_passes_by_default(tmp_path, production_tarball):
    frame = sample_data.generate(300, seed=10)
    frame.loc[::5, "contract"] = "lifetime"
    opt_ml, result = _validate(tmp_path, "shifted.csv", frame.to_csv(index=False).encode(), production_tarball)
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(opt_ml)
    assert report["passed"] is True and report["reference"] == "production-model" and report["failures"] == []
    shift = next(f for f in report["shifts"] if f["column"] == "contract")
    assert shift["found"] == ["lifetime"] and shift["unexpected_count"] == 60 and shift["severity"] == "shift"
    assert "passed" in result.stdout and "Shift (reported, accepted)" in (
        opt_ml / "processing" / "output" / "report" / "report.html").read_text()


@pytest.mark.parametrize("env, passed, accepted", [
    ({"STRICT_COLUMNS": "region, contract,"}, False, False),
    ({"STRICT_COLUMNS": "contract", "ACCEPT_SHIFT": "1"}, True, True),
    ({"STRICT_COLUMNS": "", "ACCEPT_SHIFT": "0"}, True, False),
])
def test_validate_strict_columns_and_acceptance_from_the_environment(tmp_path, production_tarball, env, passed,
                                                                     accepted):
    frame = sample_data.generate(300, seed=10)
    frame.loc[::5, "contract"] = "lifetime"
    opt_ml, result = _validate(tmp_path, "shifted.csv", frame.to_csv(index=False).encode(), production_tarball, **env)
    assert result.returncode == 0, result.stderr[-3000:]  # bad data is a report, not an error
    report = _report(opt_ml)
    assert report["passed"] is passed and report["accepted_shift"] is accepted
    if not passed:
        assert [(f["column"], f["severity"]) for f in report["failures"]] == [("contract", "shift")]
        assert "FAILED" in result.stdout and report["rows_rejected"] == 60
    assert not (opt_ml / "output" / "message").exists()


def test_validate_fails_a_file_with_a_column_missing(tmp_path, production_tarball):
    frame = sample_data.generate(300, seed=10).drop(columns="region")
    opt_ml, result = _validate(tmp_path, "missing.csv", frame.to_csv(index=False).encode(), production_tarball,
                               ACCEPT_SHIFT="1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(opt_ml)
    assert report["passed"] is False
    assert [(f["expectation"], f["severity"], f["found"]) for f in report["failures"]] == [
        ("expect_table_columns_to_match_set", "error", {"missing": ["region"], "unexpected": []})]


def test_validate_refuses_an_unreadable_accept_shift(tmp_path):
    opt_ml, result = _validate(tmp_path, "new.csv", b"a,churn\n1,yes\n", ACCEPT_SHIFT="perhaps")
    assert result.returncode != 0
    assert (opt_ml / "output" / "message").read_text().startswith("validation failed: ACCEPT_SHIFT must be 0 or 1")


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


# ---------------------------------------------------------------------------------------------------------
# train with a champion channel (the production model), files at their ManifestFile relative keys
# ---------------------------------------------------------------------------------------------------------
def _champion_layout(root, trained, pin: str | None):
    """v2's channels: the first model's file again (under another key) plus a new file, and v1 as champion."""
    hyperparameters = dict(HYPERPARAMETERS)
    if pin is not None:
        hyperparameters["champion_sha256"] = pin
    new = root / "new.csv"
    sample_data.generate(600, seed=12, drift=True).to_csv(new, index=False)
    opt_ml = training_layout(root, {}, hyperparameters)
    train = opt_ml / "input" / "data" / "train"
    (train / "2026" / "05").mkdir(parents=True)
    (train / "2026" / "05" / "churn.csv").write_bytes((trained["opt_ml"] / "input" / "data" / "train" / "churn.csv").read_bytes())
    (train / "uploads").mkdir()
    (train / "uploads" / "new.csv").write_bytes(new.read_bytes())
    champion = opt_ml / "input" / "data" / "champion"
    champion.mkdir()
    model_tarball(trained["model"], champion / "model.tar.gz")
    return opt_ml


def test_train_scores_the_champion_on_the_same_rows(tmp_path, trained):
    from ml_pipeline.serving.integrity import model_digest

    pin = model_digest(trained["model"])
    opt_ml = _champion_layout(tmp_path, trained, pin)
    result = run("train", opt_ml, TRAINING_JOB_NAME="mlops-dev-train-v2")
    failure = opt_ml / "output" / "failure"
    assert result.returncode == 0, (failure.read_text() if failure.exists() else "") + result.stderr[-3000:]
    metadata = json.loads((opt_ml / "model" / "metadata.json").read_text())
    comparison = metadata["comparison"]
    assert comparison["champion"] == {"scored": True, "reason": None, "training_job": "mlops-dev-train-abc",
                                      "sha256": pin, "created_at": comparison["champion"]["created_at"]}
    assert [f["file"] for f in metadata["lineage"]["files"]] == ["2026/05/churn.csv", "uploads/new.csv"]
    assert comparison["new"]["files"] == ["uploads/new.csv"]  # churn.csv has the sha256 v1 was trained on
    assert comparison["test"]["rows"] == 300  # 20 % of 900 + 600 rows
    assert 0 < comparison["new"]["rows"] < 300
    assert re.search(rf"^comparison:new_rows={comparison['new']['rows']}$", result.stdout, re.M)
    assert comparison["test"]["challenger"] == pytest.approx(metadata["metrics"]["test"])
    for part in ("test", "new"):
        assert set(comparison[part]["champion"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert "Champion vs challenger (same rows)" in (opt_ml / "model" / "report" / "index.html").read_text()
    # the extra lines never look like a metric SageMaker would read
    assert len(re.findall(r"test:roc_auc=([-+0-9.eE]+)", result.stdout)) == 1


@pytest.mark.parametrize("pin, reason", [
    ("0" * 64, r"training failed: model directory digest [0-9a-f]{64} of model.tar.gz does not match hyperparameter "
               r"champion_sha256 0{64}: refusing to load it"),
    (None, r"training failed: .*holds a model but hyperparameter champion_sha256 is not set"),
])
def test_train_refuses_a_champion_that_is_not_the_pinned_one(tmp_path, trained, pin, reason):
    opt_ml = _champion_layout(tmp_path, trained, pin)
    result = run("train", opt_ml)
    assert result.returncode != 0
    failure = (opt_ml / "output" / "failure").read_text()
    assert re.match(reason, failure), failure
    assert not (opt_ml / "model" / "model.joblib").exists()


# ---------------------------------------------------------------------------------------------------------
# join-labels
# ---------------------------------------------------------------------------------------------------------
def _capture(event_id: str, rows_csv: str, inference_id: str | None = None) -> bytes:
    metadata = {"eventId": event_id, "inferenceTime": "2026-05-01T10:00:00Z"}
    if inference_id:
        metadata["inferenceId"] = inference_id
    record = {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                                "data": base64.b64encode(rows_csv.encode()).decode(),
                                                "encoding": "BASE64"},
                              "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                                 "data": "no\n", "encoding": "CSV"}},
              "eventMetadata": metadata, "eventVersion": "0"}
    return json.dumps(record).encode() + b"\n"


def _ground_truth_layout(root, production_tarball, labels: bytes, labels_name: str = "labels.csv"):
    """40 captured requests of 2 rows each (every other one with the caller's inference id) and their labels."""
    rows = sample_data.generate(80, seed=13)
    lines = rows.drop(columns=TARGET).to_csv(index=False, header=False).splitlines()
    capture = b"".join(_capture(f"evt-{i}", "\n".join(lines[2 * i:2 * i + 2]) + "\n",
                                f"inf-{i}" if i % 2 else None) for i in range(40))
    opt_ml = processing_layout(root, {"labels": {labels_name: labels}, "capture": {},
                                      "model": {"model.tar.gz": production_tarball}})
    hour = opt_ml / "processing" / "input" / "capture" / "AllTraffic" / "2026" / "05" / "01" / "10"
    hour.mkdir(parents=True)
    (hour / "capture.jsonl").write_bytes(capture)
    return opt_ml, rows


def _labels_for(rows) -> bytes:
    ids = [f"inf-{i // 2}" if (i // 2) % 2 else f"evt-{i // 2}" for i in range(len(rows))]
    labels = rows[[TARGET]].assign(inference_id=ids, row=[i % 2 for i in range(len(rows))])
    return labels.to_csv(index=False).encode()


def test_join_labels_as_a_processing_job(tmp_path, trained, production_tarball):
    from sklearn.metrics import roc_auc_score

    from ml_pipeline import schema
    from ml_pipeline.serving.integrity import model_digest

    opt_ml, rows = _ground_truth_layout(tmp_path, production_tarball, _labels_for(sample_data.generate(80, seed=13)))
    result = run("join-labels", opt_ml, TARGET_COLUMN=TARGET, TASK="auto", GATE_METRIC="roc_auc",
                 MODEL_SHA256=model_digest(trained["model"]))
    message = opt_ml / "output" / "message"
    assert result.returncode == 0, (message.read_text() if message.exists() else "") + result.stderr[-3000:]
    report = _report(opt_ml)
    assert (report["kind"], report["passed"], report["labels"], report["matched"], report["unmatched"]) == (
        "ground_truth", True, 80, 80, 0)
    metadata = json.loads((trained["model"] / "metadata.json").read_text())
    model = joblib.load(trained["model"] / "model.joblib")
    x = schema.coerce_features(rows, metadata["features"])
    expected = roc_auc_score(rows[TARGET] == "yes", model.predict_proba(x)[:, 1])
    assert report["model_quality"] == {"metric": "roc_auc", "value": pytest.approx(expected), "rows": 80}
    assert re.search(r"^model_quality:roc_auc=[0-9.]+$", result.stdout, re.M)
    assert report["captures"] == ["AllTraffic/2026/05/01/10/capture.jsonl"]
    labeled = opt_ml / "processing" / "output" / "joined" / "labeled.csv"
    import pandas as pd

    joined = pd.read_csv(labeled)
    assert list(joined.columns) == [*(f["name"] for f in metadata["features"]), TARGET] and len(joined) == 80
    assert (opt_ml / "processing" / "output" / "report" / "report.html").read_text().count("Ground truth report") >= 1
    # the joined rows are new training data: they pass validation against the model they were scored by
    again, checked = _validate(tmp_path / "again", "labeled.csv", labeled.read_bytes(), production_tarball)
    assert checked.returncode == 0 and _report(again)["passed"] is True


def test_join_labels_refuses_a_model_that_is_not_the_pinned_one(tmp_path, production_tarball):
    opt_ml, _ = _ground_truth_layout(tmp_path, production_tarball, _labels_for(sample_data.generate(80, seed=13)))
    result = run("join-labels", opt_ml, TARGET_COLUMN=TARGET, MODEL_SHA256="f" * 64)
    assert result.returncode != 0
    message = (opt_ml / "output" / "message").read_text()
    assert re.match(r"ground truth failed: model directory digest [0-9a-f]{64} of model.tar.gz does not match "
                    r"MODEL_SHA256 f{64}", message), message


def test_join_labels_reports_a_bad_labels_file_and_exits_zero(tmp_path, production_tarball):
    opt_ml, _ = _ground_truth_layout(tmp_path, production_tarball, b"id,churn\nx,yes\n")
    result = run("join-labels", opt_ml, TARGET_COLUMN=TARGET)
    assert result.returncode == 0, result.stderr[-3000:]
    report = _report(opt_ml)
    assert report["passed"] is False and report["failures"][0]["column"] == "inference_id"
    assert "FAILED" in result.stdout and not (opt_ml / "output" / "message").exists()
