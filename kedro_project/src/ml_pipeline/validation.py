"""Validation and monitoring reports (CONTRACTS.md `report.json`) and their HTML rendering."""

from __future__ import annotations

import html
from collections.abc import Iterable

import pandas as pd

from ml_pipeline import drift, expectations, schema
from ml_pipeline.plots import page, table


def check_frame(frame: pd.DataFrame, suite: dict, features: list[dict], target: str | None, task: str | None,
                profile: dict | None, strict_columns: Iterable[str] = (), accept_shift: bool = False) -> dict:
    """Run the suite, sort its findings into failures and shifts, count rows and measure drift.

    Errors always fail. A shift fails only in a `strict_columns` column, and not even then with `accept_shift`
    (a person accepted the file). `passed` = no failure left.
    """
    prepared = expectations.prepare_for_validation(frame, features, target, task)
    findings = expectations.run_suite(prepared, suite, target)
    strict = set(strict_columns)
    for finding in findings:
        if finding["severity"] == expectations.SHIFT and finding["column"] in strict:
            finding["strict"] = True
    failing_shift = [f for f in findings if f.get("strict")] if not accept_shift else []
    failures = [f for f in findings if f["severity"] == expectations.ERROR] + failing_shift
    shifts = [f for f in findings if f["severity"] == expectations.SHIFT and f not in failing_shift]
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
    rejected, shifted = _row_counts(prepared, suite, target, failing_shift)
    return {"passed": not failures, "rows": int(len(frame)), "columns": int(frame.shape[1]),
            "rows_rejected": rejected, "rows_shifted": shifted,
            "drift": drift_result, "failures": failures, "shifts": shifts,
            "accepted_shift": bool(accept_shift and any(f.get("strict") for f in shifts)),
            "strict_columns": sorted(strict)}


def _row_counts(prepared: pd.DataFrame, suite: dict, target: str | None, failing_shift: list[dict]) -> tuple[int, int]:
    """Rows rejected (non-numeric value, missing target, or a strict shift that fails the file) and rows with shift.

    Rows without a target are dropped by training even when the file passes, so they always count as rejected;
    a shifted row in a passing file is trained on, so it only counts as shifted.
    """
    failing = {(f["expectation"], f["column"]) for f in failing_shift}
    rejecting, shifting = [], []
    for expectation in suite["expectations"]:
        column = expectation["kwargs"].get("column")
        if expectations.severity(expectation["type"], column, target) == expectations.ERROR:
            rejecting.append(expectation)
        else:
            shifting.append(expectation)
            if (expectation["type"], column) in failing:
                rejecting.append(expectation)
    return (int(expectations.violating_rows(prepared, rejecting, target).sum()),
            int(expectations.violating_rows(prepared, shifting, target).sum()))


def unreadable_report(kind: str, reason: str, reference: str) -> dict:
    """The report for a file that could not even be parsed."""
    return {"kind": kind, "passed": False, "rows": 0, "rows_rejected": 0, "rows_shifted": 0,
            "drift": {"score": 0.0, "method": "psi/ks", "features": {}},
            "failures": [{"column": expectations.TABLE, "expectation": "file_is_parseable",
                          "expected": "a CSV or Parquet file with a header row", "found": [reason],
                          "unexpected_count": None, "severity": expectations.ERROR}],
            "shifts": [], "accepted_shift": False, "reference": reference, "summary": f"rejected: {reason}"}


def summarise(report: dict) -> str:
    """One human sentence."""
    against = "the production model's reference" if report["reference"] == "production-model" else "itself (first run)"
    drift_text = f"drift score {report['drift']['score']:.3f}"
    shifts = report.get("shifts", [])
    if report["passed"]:
        sentence = f"{report['rows']} rows passed validation against {against}; {drift_text}"
        if shifts:
            accepted = " (strict columns accepted by a person)" if report.get("accepted_shift") else ""
            verdict = "reported and accepted as data" if report["kind"] == "validation" else "seen"
            sentence += f"; shift {verdict}{accepted} in {len(shifts)} check(s): " + _findings(shifts)
        if report["rows_rejected"]:
            sentence += f"; {report['rows_rejected']} rows without a usable target are dropped"
        return sentence + "."
    errors = [f for f in report["failures"] if f.get("severity", expectations.ERROR) == expectations.ERROR]
    strict = [f for f in report["failures"] if f not in errors]
    counts = [f"{len(errors)} error(s)"] if errors else []
    if strict:
        counts.append(f"{len(strict)} shift(s) in strict columns")
    return f"rejected: {' and '.join(counts)}: " + _findings(report["failures"])


def _findings(findings: list[dict]) -> str:
    shown = []
    for finding in findings[:3]:
        found = finding["found"]
        found_text = ", ".join(map(str, found[:5])) if isinstance(found, list) else str(found)
        shown.append(f"{finding['column']}: expected {finding['expected']}, found {found_text}")
    more = f" (+{len(findings) - 3} more)" if len(findings) > 3 else ""
    return "; ".join(shown) + more


FINDING_COLUMNS = ["column", "severity", "expectation", "expected", "found", "unexpected_count"]


def render_html(report: dict) -> str:
    """report.html: verdict, failures (expected vs found), accepted shift, per-feature drift."""
    verdict = '<span class="pass">PASSED</span>' if report["passed"] else '<span class="fail">FAILED</span>'
    parts = [f"<p>{verdict} — {html.escape(report['summary'])}</p>",
             table([{"rows": report["rows"], "rows rejected": report["rows_rejected"],
                     "rows with shift": report.get("rows_shifted", 0), "drift score": report["drift"]["score"],
                     "reference": report["reference"],
                     "strict columns": ", ".join(report.get("strict_columns", [])) or "(none)",
                     "strict shift accepted": "yes" if report.get("accepted_shift") else "no"}])]
    parts.append("<h2>Failed expectations</h2>" + table(report["failures"], FINDING_COLUMNS))
    parts.append("<h2>Shift (reported, accepted)</h2>"
                 "<p>New values, categories or classes and more missing values than the reference: the file is "
                 "accepted as data a retrain can learn from.</p>" + table(report.get("shifts", []), FINDING_COLUMNS))
    drift_rows = [{"feature": name, **values} for name, values in
                  sorted(report["drift"]["features"].items(), key=lambda kv: -(kv[1].get("psi") or 0))]
    parts.append("<h2>Drift per feature (PSI; KS for numerics)</h2>" +
                 table(drift_rows, ["feature", "method", "psi", "statistic", "p_value"]))
    for key in ("records", "records_unreadable"):
        if key in report:
            parts.append(f"<p>{key.replace('_', ' ')}: {report[key]}</p>")
    title = "Data validation report" if report["kind"] == "validation" else "Monitoring report"
    return page(title, "".join(parts))
