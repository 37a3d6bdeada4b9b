"""Ground truth: labels joined with hand-made data-capture files, the production model's quality on them, and the
export of captured requests for labeling."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
from kedro.framework.project import configure_project, find_pipelines
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from ml_pipeline import captures, sample_data, schema
from ml_pipeline.datasets import DataCaptureDataset
from ml_pipeline.errors import ConfigError
from ml_pipeline.pipelines.ground_truth import nodes

from pipeline_support import catalog_with, project_parameters, run

SETTINGS = {"target_column": None, "gate_metric": None}
# (inference id, row) → index into ROWS of the feature row the endpoint captured for it
CAPTURED = {("req-1", 0): 0, ("req-2", 0): 1, ("req-2", 1): 2, ("req-2", 2): 3, ("evt-3", 0): 4, ("evt-3", 1): 5,
            ("00123", 0): 6}
LABELS_CSV = """inference_id,churn,row,comment
req-1,yes,,no row column value: row 0
req-2,no,0,
req-2,yes,1,
req-2,no,2,
evt-3,yes,0,joined on the eventId: the caller gave no inference id
evt-3,no,1,
00123,yes,,an id that looks like a number stays text
req-2,no,1,a second label for req-2 row 1: the first one wins
nope,yes,0,never captured
req-2,yes,7,req-2 had 3 rows
req-1,,0,no label
"""
JOINED_LABELS = ["yes", "no", "yes", "no", "yes", "no", "yes"]  # the first labels of CAPTURED's keys, in file order


@pytest.fixture(scope="module")
def rows():
    return sample_data.generate(8, seed=51).drop(columns="churn")


def _csv(frame, header=False) -> str:
    return frame.to_csv(index=False, header=header)


def _record(body: str, content_type: str, event_id: str, inference_id: str | None = None, encoding: str = "CSV",
            output: str = "", output_type: str = "text/csv") -> dict:
    data = base64.b64encode(body.encode()).decode() if encoding == "BASE64" else body
    metadata = {"eventId": event_id, "inferenceTime": "2026-05-01T10:00:00Z"}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    return {"captureData": {
        "endpointInput": {"observedContentType": content_type, "mode": "INPUT", "data": data, "encoding": encoding},
        "endpointOutput": {"observedContentType": output_type, "mode": "OUTPUT", "data": output, "encoding": "CSV"}},
        "eventMetadata": metadata, "eventVersion": "0"}


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory, rows, production_metadata):
    """Two capture files in SageMaker's layout: CSV (BASE64 and plain, one row and three rows with a header) and
    JSON (records, lists) requests, one without an inference id, one id captured twice, one line that is not JSON."""
    order = [f["name"] for f in production_metadata["features"]]
    first = [
        _record(_csv(rows.iloc[[0]]), "text/csv", "e-1", "req-1", "BASE64", output="yes\n"),
        _record(_csv(rows.iloc[1:4], header=True), "text/csv", "e-2", "req-2", output="no\nyes\nno\n"),
    ]
    second = [
        _record(json.dumps({"instances": _records(rows.iloc[4:6])}), "application/json", "evt-3", encoding="JSON",
                output=json.dumps({"predictions": ["yes", "no"]}), output_type="application/json"),
        _record(json.dumps([[None if pd.isna(v) else v for v in rows.iloc[6][order]]]), "application/json", "e-4",
                "00123", "JSON", output="yes,0.2,0.8\n"),
        _record(_csv(rows.iloc[[7]]), "text/csv", "e-5", "req-1", output="no\n"),  # the id req-1 again
    ]
    root = tmp_path_factory.mktemp("capture")
    hour = root / "AllTraffic" / "2026" / "05" / "01" / "10"
    hour.mkdir(parents=True)
    (hour / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first))
    (hour / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in second) + "{not json\n")
    return root


@pytest.fixture(scope="module")
def joined(tmp_path_factory, capture_dir, production_metadata, fitted):
    labels = tmp_path_factory.mktemp("labels") / "labels.csv"
    labels.write_text(LABELS_CSV)
    records = DataCaptureDataset(str(capture_dir)).load()
    captured, counts = nodes.read_captures(records, production_metadata)
    usable, read = nodes.read_labels([str(labels)], production_metadata, SETTINGS)
    model = {"pipeline": fitted[0], "metadata": production_metadata, "sha256": "0" * 64}
    labeled, report = nodes.join_labels(usable, read, captured, counts, model, SETTINGS)
    return {"labeled": labeled, "report": report, "captured": captured}


def test_labels_join_captured_rows_by_inference_id_or_event_id_and_row(joined, rows, production_metadata):
    report = joined["report"]
    assert report["kind"] == "ground_truth" and report["passed"] is True and report["failures"] == []
    assert (report["labels"], report["matched"], report["unmatched"], report["duplicates"], report["invalid"]) == (
        11, 7, 2, 1, 1)
    assert report["records"] == 6 and report["records_unreadable"] == 1 and report["duplicate_captures"] == 1
    assert report["captures"] == ["AllTraffic/2026/05/01/10/a.jsonl", "AllTraffic/2026/05/01/10/b.jsonl"]
    features = [f["name"] for f in production_metadata["features"]]
    expected = schema.coerce_features(rows.iloc[list(CAPTURED.values())], production_metadata["features"])
    expected = expected.reset_index(drop=True).assign(churn=JOINED_LABELS)
    assert list(joined["labeled"].columns) == [*features, "churn"]
    pd.testing.assert_frame_equal(joined["labeled"], expected, check_dtype=False)


def test_model_quality_is_the_production_models_score_on_the_labeled_rows(joined, rows, production_metadata, fitted):
    x = schema.coerce_features(rows.iloc[list(CAPTURED.values())], production_metadata["features"])
    truth = np.array(JOINED_LABELS)
    model = fitted[0]
    expected_auc = roc_auc_score(truth == "yes", model.predict_proba(x)[:, 1])
    report = joined["report"]
    assert report["model_quality"] == {"metric": "roc_auc", "value": pytest.approx(expected_auc), "rows": 7}
    assert report["metrics"]["accuracy"] == pytest.approx(accuracy_score(truth, model.predict(x)))
    assert report["metrics"]["f1"] == pytest.approx(f1_score(truth, model.predict(x), pos_label="yes"))
    assert set(report["metrics"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert "7 of 11 labels matched" in report["summary"]


def test_the_gate_metric_chooses_model_quality():
    assert nodes.gate_metric("accuracy", "classification") == "accuracy"
    assert nodes.gate_metric(None, "regression") == "r2"
    with pytest.raises(ConfigError, match="GATE_METRIC 'r2' is not a metric of a classification model"):
        nodes.gate_metric("r2", "classification")


def _join(tmp_path, labels_content: bytes, name: str, capture_dir, production_metadata, fitted, settings=SETTINGS):
    path = tmp_path / name
    path.write_bytes(labels_content)
    captured, counts = nodes.read_captures(DataCaptureDataset(str(capture_dir)).load(), production_metadata)
    usable, read = nodes.read_labels([str(path)], production_metadata, settings)
    return nodes.join_labels(usable, read, captured, counts,
                             {"pipeline": fitted[0], "metadata": production_metadata, "sha256": "0" * 64}, settings)


@pytest.mark.parametrize("content, name, column, expectation", [
    (b"id,churn\nreq-1,yes\n", "no_id.csv", "inference_id", "expect_column_to_exist"),
    (b"inference_id,label\nreq-1,yes\n", "no_target.csv", "churn", "expect_column_to_exist"),
    (b"PAR1 this is not parquet", "labels.parquet", "(table)", "file_is_parseable"),
    (b"inference_id,churn\nnope,yes\nnever,no\n", "unmatched.csv", "inference_id", "labels_match_captures"),
])
def test_a_bad_labels_file_is_a_failed_report(tmp_path, capture_dir, production_metadata, fitted, content, name,
                                              column, expectation):
    labeled, report = _join(tmp_path, content, name, capture_dir, production_metadata, fitted)
    assert report["passed"] is False and labeled.empty
    assert [(f["column"], f["expectation"], f["severity"]) for f in report["failures"]] == [
        (column, expectation, "error")]
    assert report["model_quality"] == {"metric": "roc_auc", "value": None, "rows": 0}
    assert report["summary"].startswith("rejected: ")


def test_labels_in_parquet_with_a_configured_target_column(tmp_path, capture_dir, rows, production_metadata, fitted):
    frame = pd.DataFrame({"inference_id": ["req-2", "req-2"], "row": [0, 2], "truth": ["yes", "yes"]})
    frame.to_parquet(tmp_path / "labels.parquet", index=False)
    _, report = _join(tmp_path, (tmp_path / "labels.parquet").read_bytes(), "labels.parquet", capture_dir,
                      production_metadata, fitted, {"target_column": "truth", "gate_metric": "accuracy"})
    assert report["passed"] is True and report["matched"] == 2 and report["target"] == "truth"
    x = schema.coerce_features(rows.iloc[[1, 3]], production_metadata["features"])  # req-2's rows 0 and 2
    expected = accuracy_score(["yes", "yes"], fitted[0].predict(x))
    assert report["model_quality"] == {"metric": "accuracy", "value": pytest.approx(expected), "rows": 2}
    assert report["metrics"]["roc_auc"] is None  # one class only: ROC-AUC is undefined (null in report.json)


def test_the_ground_truth_pipeline_runs_on_its_catalog(tmp_path, capture_dir, production_metadata, fitted):
    configure_project("ml_pipeline")
    pipeline = find_pipelines(raise_errors=True)["ground_truth"]
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS_CSV)
    catalog = run(pipeline, catalog_with(
        project_parameters(), labels_files=[str(labels)], captured_records=DataCaptureDataset(str(capture_dir)).load(),
        production_model=production_metadata,
        scoring_model={"pipeline": fitted[0], "metadata": production_metadata, "sha256": "0" * 64}))
    assert catalog.load("ground_truth_report")["matched"] == 7 and len(catalog.load("labeled_data")) == 7
    html = catalog.load("ground_truth_report_html")
    assert "Ground truth report" in html and "PASSED" in html and "AllTraffic/2026/05/01/10/b.jsonl" in html


# ---------------------------------------------------------------------------------------------------------
# python -m ml_pipeline.captures
# ---------------------------------------------------------------------------------------------------------
def test_export_for_labeling_with_the_models_columns(capture_dir, rows, production_metadata):
    exported, counts = captures.export_rows(captures.read_capture_files(capture_dir), production_metadata)
    features = [f["name"] for f in production_metadata["features"]]
    assert list(exported.columns) == ["inference_id", "row", *features, "prediction"]
    assert counts == {"records": 6, "records_unreadable": 1, "rows": 8}
    assert list(zip(exported["inference_id"], exported["row"], exported["prediction"], strict=True)) == [
        ("req-1", 0, "yes"), ("req-2", 0, "no"), ("req-2", 1, "yes"), ("req-2", 2, "no"),
        ("evt-3", 0, "yes"), ("evt-3", 1, "no"), ("00123", 0, "yes"), ("req-1", 0, "no")]
    expected = schema.coerce_features(rows, production_metadata["features"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(exported[features], expected, check_dtype=False)


def test_export_without_the_model_names_columns_from_the_requests(capture_dir, rows):
    exported, _ = captures.export_rows(captures.read_capture_files(capture_dir))
    by_id = {key: frame for key, frame in exported.groupby("inference_id", sort=False)}
    # req-2 sent a header (3 predictions for 4 lines): its columns are named; evt-3 sent records: named by keys.
    assert by_id["req-2"]["contract"].tolist() == rows["contract"].iloc[1:4].tolist()
    assert by_id["evt-3"]["contract"].tolist() == rows["contract"].iloc[4:6].tolist()
    # req-1 sent one header-less CSV line: its values are kept by position.
    assert by_id["req-1"]["column_8"].tolist()[0] == rows["contract"].iloc[0]


def test_the_export_command_writes_a_csv(tmp_path, capture_dir, production_metadata):
    model = tmp_path / "metadata.json"
    model.write_text(json.dumps(production_metadata, default=float))
    out = tmp_path / "out" / "to_label.csv"
    assert captures.main([str(capture_dir), "--model", str(model), "--out", str(out)]) == 0
    written = pd.read_csv(out, dtype={"inference_id": str})
    assert written["inference_id"].tolist() == ["req-1", "req-2", "req-2", "req-2", "evt-3", "evt-3", "00123", "req-1"]
    assert written.columns[0:2].tolist() == ["inference_id", "row"] and written.columns[-1] == "prediction"
