"""Validation and monitoring reports (CONTRACTS.md `report.json`) and their HTML rendering."""

from __future__ import annotations

import html

import pandas as pd

from ml_pipeline import drift, expectations, schema
from ml_pipeline.plots import page, table


def check_frame(frame: pd.DataFrame, suite: dict, features: list[dict], target: str | None, task: str | None,
                profile: dict | None) -> dict:
    """Run the suite, count rejected rows and measure drift; `passed` = no expectation failed."""
    prepared = expectations.prepare_for_validation(frame, features, target, task)
    failures = expectations.run_suite(prepared, suite, target)
    rejected = expectations.rejected_rows(prepared, suite, target)
    drift_result = {"score": 0.0, "method": "psi/ks", "features": {}}
    if profile is not None and len(frame):
        drift_frame = pd.DataFrame(index=frame.index)
        for feature in features:
            name = feature["name"]
            if name not in frame.columns:
                continue
            if feature["kind"] == "numeric":
                drift_frame[name] = pd.to_numeric(frame[name], errors="coerce")
            else:
                drift_frame[name] = schema.categorical_values(frame[name])
        drift_result = drift.drift_report(profile, drift_frame)
    return {"passed": not failures, "rows": int(len(frame)), "rows_rejected": rejected, "drift": drift_result,
            "failures": failures}


def unreadable_report(kind: str, reason: str, reference: str) -> dict:
    """The report for a file that could not even be parsed."""
    return {"kind": kind, "passed": False, "rows": 0, "rows_rejected": 0,
            "drift": {"score": 0.0, "method": "psi/ks", "features": {}},
            "failures": [{"column": expectations.TABLE, "expectation": "file_is_parseable",
                          "expected": "a CSV or Parquet file with a header row", "found": [reason],
                          "unexpected_count": None}],
            "reference": reference, "summary": f"rejected: {reason}"}


def summarise(report: dict) -> str:
    """One human sentence."""
    against = "the production model's reference" if report["reference"] == "production-model" else "itself (first run)"
    drift_text = f"drift score {report['drift']['score']:.3f}"
    if report["passed"]:
        return (f"{report['rows']} rows passed validation against {against}; {drift_text}; "
                f"{report['rows_rejected']} rows had tolerated problems.")
    shown = []
    for failure in report["failures"][:3]:
        found = failure["found"]
        found_text = ", ".join(map(str, found[:5])) if isinstance(found, list) else str(found)
        shown.append(f"{failure['column']}: expected {failure['expected']}, found {found_text}")
    more = f" (+{len(report['failures']) - 3} more)" if len(report["failures"]) > 3 else ""
    return f"rejected: {len(report['failures'])} expectation(s) failed: " + "; ".join(shown) + more


def render_html(report: dict) -> str:
    """report.html: verdict, failures (expected vs found), per-feature drift."""
    verdict = '<span class="pass">PASSED</span>' if report["passed"] else '<span class="fail">FAILED</span>'
    parts = [f"<p>{verdict} — {html.escape(report['summary'])}</p>",
             table([{"rows": report["rows"], "rows rejected": report["rows_rejected"],
                     "drift score": report["drift"]["score"], "reference": report["reference"]}])]
    parts.append("<h2>Failed expectations</h2>" + table(report["failures"],
                                                       ["column", "expectation", "expected", "found",
                                                        "unexpected_count"]))
    drift_rows = [{"feature": name, **values} for name, values in
                  sorted(report["drift"]["features"].items(), key=lambda kv: -(kv[1].get("psi") or 0))]
    parts.append("<h2>Drift per feature (PSI; KS for numerics)</h2>" +
                 table(drift_rows, ["feature", "method", "psi", "statistic", "p_value"]))
    for key in ("records", "records_unreadable"):
        if key in report:
            parts.append(f"<p>{key.replace('_', ' ')}: {report[key]}</p>")
    title = "Data validation report" if report["kind"] == "validation" else "Monitoring report"
    return page(title, "".join(parts))
