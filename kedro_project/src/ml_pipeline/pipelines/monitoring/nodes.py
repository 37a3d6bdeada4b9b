"""Nodes of the monitoring pipeline."""

from __future__ import annotations

import pandas as pd

from ml_pipeline import captures, expectations, validation
from ml_pipeline.errors import DataError
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.serving.parsing import FeatureSchema


def captured_requests(records: list[dict], production_model: dict | None) -> tuple[pd.DataFrame, dict]:
    """Feature rows of the captured request bodies, parsed exactly as `serve` parsed them."""
    if not production_model:
        raise DataError("monitoring needs the production model: the 'model' input holds no model.tar.gz/metadata.json")
    feature_schema = FeatureSchema.from_metadata(production_model)
    frames, unreadable = [], 0
    for record in records:
        try:
            parsed = captures.parse_request(record, feature_schema)
        except captures.UNREADABLE:
            unreadable += 1
            continue
        frames.append(parsed.to_frame(feature_schema))
    names = list(feature_schema.names)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({n: [] for n in names})
    return frame, {"records": len(records), "records_unreadable": unreadable}


def monitor_requests(frame: pd.DataFrame, counts: dict, production_model: dict) -> dict:
    """report.json for the captured requests (kind `monitor`)."""
    target = production_model["target"]
    suite = expectations.without_target(production_model["expectation_suite"], target)
    if frame.empty:
        suite = {**suite, "expectations": []}
    report = {"kind": "monitor",
              **validation.check_frame(frame, suite, production_model["features"], None, None,
                                       production_model["reference_profile"]),
              "reference": "production-model", **counts}
    if frame.empty:
        report["summary"] = f"no scorable requests captured ({counts['records']} records read): nothing to compare"
    else:
        report["summary"] = validation.summarise(report).replace("passed validation", "scored")
    return to_jsonable(report)


def render_monitoring_report(report: dict) -> str:
    """report.html."""
    return validation.render_html(report)
