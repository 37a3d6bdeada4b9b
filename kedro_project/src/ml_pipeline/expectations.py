"""Great Expectations suite built from reference data, and its results turned into readable failures."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from ml_pipeline.schema import categorical_values

NUMERIC_TYPES = [
    "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float32", "Float64",
]
TABLE = "(table)"
ERROR = "error"  # the file cannot be used as it is: it always fails
SHIFT = "shift"  # usable data that differs from the reference: reported, fails only for a strict column
log = logging.getLogger(__name__)


def severity(expectation_type: str, column: str | None, target: str | None) -> str:
    """`error` or `shift` for a failed expectation (CONTRACTS.md, validation report).

    Errors make a file unusable: it cannot be parsed, columns are missing or extra, a numeric column holds
    non-numbers, the target is missing or null, there are no rows. Shift is data a retrain needs: values outside
    the reference range, categories or target classes the reference never saw, more nulls in a feature. Decided
    from the expectation's type (not stored in the suite), so suites of models trained before this rule apply it too.
    """
    if expectation_type in ("expect_column_values_to_be_between", "expect_column_values_to_be_in_set"):
        return SHIFT
    if expectation_type == "expect_column_values_to_not_be_null":
        return ERROR if column == target else SHIFT
    return ERROR


def _expectation(kind: str, **kwargs: Any) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


def build_suite(frame: pd.DataFrame, features: list[dict], target: str, task: str, classes: list | None,
                settings: dict, name: str = "reference") -> dict:
    """Expectations from reference data: schema, row count, types, nulls, ranges (with margin), category sets.

    `settings`: mostly (row tolerance), null_tolerance (extra null fraction allowed), range_margin (fraction of
    the observed range added on each side), max_set_size (larger category sets are not checked).
    """
    mostly = float(settings.get("mostly", 0.99))
    null_tolerance = float(settings.get("null_tolerance", 0.02))
    margin = float(settings.get("range_margin", 0.25))
    max_set = int(settings.get("max_set_size", 200))
    expectations = [
        _expectation("expect_table_columns_to_match_set", column_set=[f["name"] for f in features] + [target],
                     exact_match=True),
        _expectation("expect_table_row_count_to_be_between", min_value=1),
        _expectation("expect_column_to_exist", column=target),
        _expectation("expect_column_values_to_not_be_null", column=target, mostly=mostly),
    ]
    if task == "classification" and classes is not None and len(classes) <= max_set:
        expectations.append(_expectation("expect_column_values_to_be_in_set", column=target,
                                         value_set=[str(c) for c in classes], mostly=mostly))
    for feature in features:
        name = feature["name"]
        series = frame[name]
        null_fraction = float(series.isna().mean()) if len(series) else 0.0
        allowed_nulls = min(1.0, null_fraction * 1.5 + null_tolerance)
        if allowed_nulls < 1.0:
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=name,
                                             mostly=round(1.0 - allowed_nulls, 6)))
        if feature["kind"] == "numeric":
            expectations.append(_expectation("expect_column_values_to_be_in_type_list", column=name,
                                             type_list=NUMERIC_TYPES))
            values = pd.to_numeric(series, errors="coerce").dropna()
            if len(values):
                low, high = float(values.min()), float(values.max())
                pad = (high - low) * margin if high > low else max(abs(low) * margin, 1.0)
                # A column never negative in the reference stays non-negative (counts, amounts, ages).
                lower = max(0.0, low - pad) if low >= 0 else low - pad
                expectations.append(_expectation("expect_column_values_to_be_between", column=name,
                                                 min_value=lower, max_value=high + pad, mostly=mostly))
        else:
            categories = sorted({str(v) for v in series.dropna().unique()})
            if 0 < len(categories) <= max_set:
                expectations.append(_expectation("expect_column_values_to_be_in_set", column=name,
                                                 value_set=categories, mostly=mostly))
    return {"name": name_of_suite(name), "expectations": expectations, "meta": {"built_from_rows": int(len(frame))}}


def name_of_suite(name: str) -> str:
    return f"{name}-suite"


def without_target(suite: dict, target: str) -> dict:
    """The suite for scoring requests (monitoring): no target, no exact column set."""
    kept = [e for e in suite["expectations"]
            if e["kwargs"].get("column") != target and e["type"] != "expect_table_columns_to_match_set"]
    return {**suite, "expectations": kept}


def describe_expected(expectation: dict) -> str:
    """What an expectation wanted, for a human."""
    kind, kw = expectation["type"], expectation["kwargs"]
    mostly = kw.get("mostly")
    tolerance = f" (for at least {mostly:.1%} of rows)" if mostly is not None and mostly < 1 else ""
    if kind == "expect_column_values_to_be_between":
        return f"{_num(kw.get('min_value'))} <= value <= {_num(kw.get('max_value'))}{tolerance}"
    if kind == "expect_column_values_to_be_in_set":
        shown = ", ".join(map(str, kw["value_set"][:20])) + (", ..." if len(kw["value_set"]) > 20 else "")
        return f"value in {{{shown}}}{tolerance}"
    if kind == "expect_column_values_to_not_be_null":
        return f"not null{tolerance}"
    if kind == "expect_column_values_to_be_in_type_list":
        return "a numeric column"
    if kind == "expect_table_columns_to_match_set":
        return f"exactly the columns {', '.join(kw['column_set'])}"
    if kind == "expect_table_row_count_to_be_between":
        return f"at least {kw.get('min_value')} row(s)"
    if kind == "expect_column_to_exist":
        return f"column {kw['column']!r} present"
    return str(kw)


def _num(value: Any) -> str:
    return "-inf" if value is None else f"{value:.6g}"


def prepare_for_validation(frame: pd.DataFrame, features: list[dict], target: str | None = None,
                           task: str | None = None) -> pd.DataFrame:
    """Categoricals (and class labels) as str, as the model sees them; numerics untouched so a wrong type shows."""
    prepared = frame.copy()
    if target is not None and task == "classification" and target in prepared.columns:
        prepared[target] = label_strings(prepared[target])
    for feature in features:
        if feature["kind"] == "categorical" and feature["name"] in prepared.columns:
            prepared[feature["name"]] = categorical_values(prepared[feature["name"]])
    return prepared


def label_strings(series: pd.Series) -> np.ndarray:
    """Class labels as text; integral numbers without a decimal point (1.0 -> "1", as in metadata classes)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=float)
        present = ~np.isnan(values)
        if np.all(np.mod(values[present], 1) == 0):
            out = np.full(len(series), np.nan, dtype=object)
            out[present] = [str(int(v)) for v in values[present]]
            return out
    return categorical_values(series)


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def run_suite(frame: pd.DataFrame, suite: dict, target: str | None) -> list[dict]:
    """Run the suite with Great Expectations; return one readable failure per failed expectation."""
    gx, context = _context()
    source = context.data_sources.add_pandas("incoming")
    batch = source.add_dataframe_asset("data").add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame})
    expectations = [e for e in suite["expectations"] if _applies(e, frame)]
    missing_columns = [e for e in suite["expectations"] if not _applies(e, frame)]
    ge_suite = gx.ExpectationSuite(name=suite.get("name", "suite"), expectations=[
        {"type": e["type"], "kwargs": e["kwargs"], "meta": e.get("meta", {})} for e in expectations])
    result = batch.validate(ge_suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20})
    failures = []
    mistyped = {r.expectation_config.kwargs.get("column") for r in result.results
                if not r.success and r.expectation_config.type == "expect_column_values_to_be_in_type_list"}
    for item in result.results:
        if item.success:
            continue
        config = {"type": item.expectation_config.type, "kwargs": dict(item.expectation_config.kwargs)}
        config["kwargs"].pop("batch_id", None)
        column = config["kwargs"].get("column")
        if column in mistyped and config["type"] != "expect_column_values_to_be_in_type_list":
            continue  # the type failure already explains this column
        failures.append(_failure(config, item.result or {}, item.exception_info or {}, frame, target))
    for expectation in missing_columns:
        if expectation["type"] == "expect_column_to_exist":
            failures.append({"column": expectation["kwargs"]["column"], "expectation": expectation["type"],
                             "expected": describe_expected(expectation), "found": sorted(map(str, frame.columns)),
                             "unexpected_count": None, "severity": ERROR})
    return failures


def _applies(expectation: dict, frame: pd.DataFrame) -> bool:
    column = expectation["kwargs"].get("column")
    if expectation["type"] == "expect_column_to_exist":
        return column in frame.columns
    return column is None or column in frame.columns


def _failure(config: dict, result: dict, exception_info: dict, frame: pd.DataFrame, target: str | None) -> dict:
    kind, column = config["type"], config["kwargs"].get("column")
    found: Any
    count = result.get("unexpected_count")
    if kind == "expect_column_values_to_be_in_type_list":
        values = frame[column]
        bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        found = [f"dtype {result.get('observed_value')}"] + [str(v) for v in pd.unique(bad)[:10]]
        count = int(len(bad))
    elif kind == "expect_table_columns_to_match_set":
        details = (result.get("details") or {}).get("mismatched") or {}
        found = {"missing": sorted(details.get("missing", [])), "unexpected": sorted(details.get("unexpected", []))}
    elif "observed_value" in result:
        found = [result["observed_value"]]
    elif "partial_unexpected_list" in result:
        found = _unique([_plain(v) for v in result["partial_unexpected_list"]])[:10]
    else:
        found = []
    if not result and exception_info:
        messages = [v.get("exception_message") for v in exception_info.values() if isinstance(v, dict)]
        found = [f"could not be checked: {m}" for m in messages if m][:1] or ["could not be checked"]
    return {"column": column or TABLE, "expectation": kind, "expected": describe_expected(config),
            "found": found, "unexpected_count": None if count is None else int(count),
            "severity": severity(kind, column, target)}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _unique(values: list) -> list:
    seen, out = set(), []
    for v in values:
        key = repr(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def violating_rows(frame: pd.DataFrame, expectations: list[dict], target: str | None = None) -> np.ndarray:
    """Mask of rows that break one of these row-level expectations: out of range, unknown category or class,
    non-numeric value in a numeric column, missing target.

    Missing feature values do not count (the model imputes them); computed with pandas.
    """
    bad = np.zeros(len(frame), dtype=bool)
    if frame.empty:
        return bad
    for expectation in expectations:
        kw = expectation["kwargs"]
        column = kw.get("column")
        if column is None or column not in frame.columns:
            continue
        values = frame[column]
        kind = expectation["type"]
        if kind == "expect_column_values_to_not_be_null":
            if column == target:
                bad |= values.isna().to_numpy()
        elif kind == "expect_column_values_to_be_between":
            numeric = pd.to_numeric(values, errors="coerce")
            outside = (numeric < kw["min_value"]) | (numeric > kw["max_value"])
            bad |= outside.fillna(False).to_numpy(dtype=bool)
        elif kind == "expect_column_values_to_be_in_set":
            allowed = [str(v) for v in kw["value_set"]]
            bad |= (values.notna() & ~values.isin(allowed)).to_numpy(dtype=bool)
        elif kind == "expect_column_values_to_be_in_type_list":
            bad |= (pd.to_numeric(values, errors="coerce").isna() & values.notna()).to_numpy(dtype=bool)
    return bad
