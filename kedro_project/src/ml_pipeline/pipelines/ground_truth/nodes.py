"""Nodes of the ground_truth pipeline (`join-labels`)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ml_pipeline import captures, metrics as metric_functions, tabular
from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.expectations import ERROR, TABLE
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.plots import page, table
from ml_pipeline.serving.parsing import NA_TOKENS, FeatureSchema

ID, ROW = captures.ID, captures.ROW
DEFAULT_GATE_METRIC = {"classification": "roc_auc", "regression": "r2"}
NO_MODEL = "join-labels needs the production model: the 'model' input holds no model.tar.gz"


def read_captures(captured_records: list[dict], production_model: dict | None) -> tuple[pd.DataFrame, dict]:
    """The captured rows (`inference_id`, `row`, the model's features in its order), parsed as `serve` parsed them."""
    if not production_model:
        raise DataError(NO_MODEL)
    return captures.captured_rows(captured_records, FeatureSchema.from_metadata(production_model))


def read_labels(labels_files: list[str], production_model: dict | None, settings: dict) -> tuple[pd.DataFrame, dict]:
    """The usable labels as (`inference_id`, `row`, target) in the model's label type, and what was wrong.

    A row without an inference id or a label, or with a `row` that is not a non-negative integer, is `invalid`;
    a file that cannot be read or lacks a needed column is a failure (the report says so; nothing is joined).
    """
    if not production_model:
        raise DataError(NO_MODEL)
    target = settings.get("target_column") or production_model["target"]
    read = {"labels": 0, "invalid": 0, "failures": []}
    empty = pd.DataFrame({ID: pd.Series(dtype=object), ROW: pd.Series(dtype="int64"), target: pd.Series(dtype=object)})
    try:  # as text: ids such as "00123" must not become numbers
        frame = tabular.read_tables([Path(p) for p in labels_files], text=True)
    except DataError as exc:
        read["failures"].append(_failure(TABLE, "file_is_parseable", "a CSV or Parquet file with a header row",
                                         [str(exc)], None))
        return empty, read
    read["labels"] = int(len(frame))
    for column in (ID, target):
        if column not in frame.columns:
            read["failures"].append(_failure(column, "expect_column_to_exist", f"column {column!r} present",
                                             sorted(map(str, frame.columns)), None))
    if read["failures"]:
        return empty, read
    ids = frame[ID].map(_identifier)
    rows = frame[ROW].map(_row) if ROW in frame.columns else pd.Series(0, index=frame.index, dtype=object)
    convert = _label_converter(production_model["task"], production_model.get("classes"))
    labels = frame[target].map(convert)
    valid = (ids.notna() & rows.notna() & labels.notna()).to_numpy()
    read["invalid"] = int((~valid).sum())
    usable = pd.DataFrame({ID: ids[valid].astype(object), ROW: rows[valid].astype("int64"),
                           target: _label_series(labels[valid], production_model)}).reset_index(drop=True)
    return usable, read


def join_labels(labels: pd.DataFrame, labels_read: dict, captured_rows: pd.DataFrame, capture_counts: dict,
                scoring_model: dict | None, settings: dict) -> tuple[pd.DataFrame, dict]:
    """Labels joined on (`inference_id`, `row`) with the captured features: labeled.csv and the production model's
    quality on those rows (every metric of the task, scored by the model itself)."""
    if scoring_model is None:
        raise DataError(NO_MODEL)
    metadata, pipeline = scoring_model["metadata"], scoring_model["pipeline"]
    task = metadata["task"]
    metric = gate_metric(settings.get("gate_metric"), task)
    target = settings.get("target_column") or metadata["target"]
    names = [f["name"] for f in metadata["features"]]
    duplicated = labels.duplicated([ID, ROW], keep="first").to_numpy()  # the first label of an id and row wins
    unique = labels[~duplicated]
    joined = unique.merge(captured_rows, on=[ID, ROW], how="inner", validate="one_to_one")
    failures = list(labels_read["failures"])
    if not failures and joined.empty:
        failures.append(_failure(ID, "labels_match_captures", "labels whose (inference_id, row) the endpoint captured",
                                 unique[ID].head(10).tolist(), int(len(unique))))
    scores: dict = {}
    if len(joined):
        with threadpool_limits(limits=1):  # a predict on a few thousand rows: a second thread only waits
            scores = metric_functions.compute_metrics(pipeline, joined[names], joined[target], task)
    value = scores.get(metric)
    report = {
        "kind": "ground_truth", "passed": not failures, "target": target,
        "labels": labels_read["labels"], "matched": int(len(joined)), "unmatched": int(len(unique) - len(joined)),
        "duplicates": int(duplicated.sum()), "invalid": labels_read["invalid"],
        "model_quality": {"metric": metric, "value": value if value is not None and math.isfinite(value) else None,
                          "rows": int(len(joined))},
        "metrics": scores,
        "records": capture_counts["records"], "records_unreadable": capture_counts["records_unreadable"],
        "duplicate_captures": capture_counts["duplicate_captures"], "captures": capture_counts["captures"],
        "model": {"training_job": (metadata.get("lineage") or {}).get("training_job"), "sha256": scoring_model["sha256"]},
        "failures": failures,
    }
    report["summary"] = _summary(report)
    return joined[[*names, target]].reset_index(drop=True), to_jsonable(report)


def gate_metric(configured: str | None, task: str) -> str:
    """The metric `model_quality` reports: GATE_METRIC, else the quality gate's default for the task."""
    metric = (configured or DEFAULT_GATE_METRIC[task]).strip()
    if metric not in metric_functions.metric_names(task):
        raise ConfigError(f"GATE_METRIC {metric!r} is not a metric of a {task} model; use one of "
                          f"{', '.join(metric_functions.metric_names(task))}")
    return metric


def render_ground_truth_report(report: dict) -> str:
    """report.html."""
    verdict = '<span class="pass">PASSED</span>' if report["passed"] else '<span class="fail">FAILED</span>'
    quality = report["model_quality"]
    parts = [f"<p>{verdict} — {html.escape(report['summary'])}</p>",
             table([{key: report[key] for key in ("labels", "matched", "unmatched", "duplicates", "invalid",
                                                  "records", "records_unreadable", "duplicate_captures")}]),
             "<h2>Production model on the labeled captures</h2>",
             table([{"model": report["model"]["training_job"], "sha256": report["model"]["sha256"],
                     "gate metric": quality["metric"], "value": quality["value"], "rows": quality["rows"],
                     **report["metrics"]}]),
             "<h2>Failures</h2>" + table(report["failures"], ["column", "expectation", "expected", "found",
                                                             "unexpected_count"]),
             "<h2>Capture files read</h2>" + table([{"file": f} for f in report["captures"]])]
    return page("Ground truth report", "".join(parts))


def _summary(report: dict) -> str:
    if not report["passed"]:
        shown = "; ".join(f"{f['column']}: expected {f['expected']}, found {', '.join(map(str, f['found'][:5]))}"
                          for f in report["failures"][:3])
        return f"rejected: {shown}"
    quality = report["model_quality"]
    value = "undefined (one class only)" if quality["value"] is None else f"{quality['value']:.3f}"
    return (f"{report['matched']} of {report['labels']} labels matched captured requests; the production model's "
            f"{quality['metric']} on them is {value} ({report['unmatched']} unmatched, {report['duplicates']} "
            f"duplicates, {report['invalid']} without an id or label).")


def _failure(column: str, expectation: str, expected: str, found: list, count: int | None) -> dict:
    return {"column": column, "expectation": expectation, "expected": expected, "found": found,
            "unexpected_count": count, "severity": ERROR}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and value.strip() in NA_TOKENS)


def _identifier(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)  # a Parquet column of numeric ids
    text = str(value).strip()
    return text or None


def _row(value) -> int | None:
    """0 when absent; None when not a non-negative integer."""
    if _missing(value):
        return 0
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def _label_converter(task: str, classes: list | None):
    integer_classes = bool(classes) and all(isinstance(c, int) for c in classes)

    def convert(value):
        if _missing(value):
            return None
        if task == "regression" or integer_classes:
            try:
                number = float(str(value).strip())
            except ValueError:
                return None
            if not math.isfinite(number):
                return None
            if task == "regression":
                return number
            return int(number) if number.is_integer() else None
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))  # 1.0 in a Parquet column is class "1", as training writes classes
        return str(value)

    return convert


def _label_series(labels: pd.Series, production_model: dict) -> pd.Series:
    """Labels in the dtype the model was trained on (float64, int64 or object of str)."""
    if production_model["task"] == "regression":
        return labels.astype("float64")
    classes = production_model.get("classes") or []
    if classes and all(isinstance(c, int) for c in classes):
        return labels.astype("int64")
    return labels.astype(object)
