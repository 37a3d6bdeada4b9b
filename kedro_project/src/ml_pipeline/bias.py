"""Bias metrics with SageMaker Clarify's names and definitions (Clarify is closed to new customers, so the image
computes them): pre-training on the observed labels of the training split, post-training on the model's predictions
for the test split. Formulas: docs/ml.md, "Bias". Facet d is the sensitive one, a the rest.

Outcomes are binary: a label (or prediction) is positive when it equals `positive_label` (classification) or exceeds
`label_threshold` (regression). Ratios follow Clarify's `divide`: 0/0 = 0, x/0 = infinite; a difference of two
infinite ratios is 0. Infinite values are written as null and named in the facet's `reason`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from ml_pipeline.errors import ConfigError

PRE_TRAINING = ("CI", "DPL", "KL", "JS", "LP", "TVD", "KS", "CDDL")
POST_TRAINING = ("DPPL", "DI", "DCAcc", "DCR", "RD", "SD", "DAR", "DRR", "AD", "TE", "CDDPL")
CONFIG_KEYS = ("facets", "positive_label", "label_threshold", "group_column", "intended_use")
EMPTY_CONFIG: dict[str, Any] = {"facets": [], "positive_label": None, "label_threshold": None, "group_column": None,
                                "intended_use": None}


# ---------------------------------------------------------------------------------------------------------
# configuration (the `responsible_ml` hyperparameter / parameter)
# ---------------------------------------------------------------------------------------------------------
def parse_config(value: Any) -> dict:
    """The `responsible_ml` setting (JSON text or a dict; absent/"" = nothing configured), normalised; ConfigError
    with the reason when its shape is wrong. Columns are checked against the data later (`check_columns`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return dict(EMPTY_CONFIG, facets=[])
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"responsible_ml is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"responsible_ml must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"responsible_ml: unknown keys {unknown}; allowed: {', '.join(CONFIG_KEYS)}")
    facets = value.get("facets") or []
    if not isinstance(facets, list):
        raise ConfigError("responsible_ml.facets must be a list")
    config = {
        "facets": [_facet(item, i) for i, item in enumerate(facets)],
        "positive_label": None if value.get("positive_label") is None else _scalar_text(value["positive_label"],
                                                                                        "positive_label"),
        "label_threshold": None if value.get("label_threshold") is None else _number(value["label_threshold"],
                                                                                     "label_threshold"),
        "group_column": _optional_text(value.get("group_column"), "group_column"),
        "intended_use": _optional_text(value.get("intended_use"), "intended_use"),
    }
    if config["positive_label"] is not None and config["label_threshold"] is not None:
        raise ConfigError("responsible_ml: set positive_label (classification) or label_threshold (regression), "
                          "not both")
    return config


def _facet(item: Any, index: int) -> dict:
    where = f"responsible_ml.facets[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} must be an object with 'column' and 'values' or 'threshold'")
    unknown = sorted(set(item) - {"column", "values", "threshold"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: column, values, threshold")
    column = item.get("column")
    if not isinstance(column, str) or not column.strip():
        raise ConfigError(f"{where}.column must be a non-empty column name")
    if ("values" in item) == ("threshold" in item):
        raise ConfigError(f"{where} ({column}): give exactly one of 'values' (sensitive values) or 'threshold' "
                          f"(numeric: value > threshold is the sensitive facet)")
    if "threshold" in item:
        return {"column": column, "threshold": _number(item["threshold"], f"{where}.threshold")}
    values = item["values"]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.values must be a non-empty list")
    for v in values:
        if isinstance(v, (dict, list)) or v is None:
            raise ConfigError(f"{where}.values: {v!r} is not a single value")
    return {"column": column, "values": list(values)}


def _number(value: Any, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"responsible_ml: {where} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ConfigError(f"responsible_ml: {where} must be a finite number, got {value!r}")
    return number


def _scalar_text(value: Any, where: str) -> str:
    if isinstance(value, (dict, list)):
        raise ConfigError(f"responsible_ml: {where} must be a single value, got {value!r}")
    return _label_text(value)


def _optional_text(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"responsible_ml: {where} must be text, got {value!r}")
    return value


def _label_text(value: Any) -> str:
    """Labels compared as text: 1, 1.0 and "1" name the same class (JSON and CSV disagree on types)."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def check_columns(config: dict, data_schema: dict) -> None:
    """ConfigError naming the column when a facet or the group column is not a feature of the data, a threshold
    facet is not numeric, or the positive label is not a class."""
    kinds = {f["name"]: f["kind"] for f in data_schema["features"]}
    known = ", ".join(kinds)
    for facet in config["facets"]:
        column = facet["column"]
        if column == data_schema["target"]:
            raise ConfigError(f"responsible_ml: facet column {column!r} is the target; a facet is an input column")
        if column not in kinds:
            raise ConfigError(f"responsible_ml: facet column {column!r} is not in the data; the columns are: {known}")
        if "threshold" in facet and kinds[column] != "numeric":
            raise ConfigError(f"responsible_ml: facet {column!r} has a threshold but the column is not numeric; "
                              f"give 'values' instead")
    group = config.get("group_column")
    if group is not None and group not in kinds:
        raise ConfigError(f"responsible_ml: group_column {group!r} is not in the data; the columns are: {known}")
    if data_schema["task"] == "classification" and config.get("positive_label") is not None:
        classes = [_label_text(c) for c in data_schema["classes"]]
        if config["positive_label"] not in classes:
            raise ConfigError(f"responsible_ml: positive_label {config['positive_label']!r} is not a class of "
                              f"{data_schema['target']!r}; the classes are: {', '.join(classes)}")
    if data_schema["task"] == "classification" and config.get("label_threshold") is not None:
        raise ConfigError("responsible_ml: label_threshold is for regression; a classification names positive_label")
    if data_schema["task"] == "regression" and config.get("positive_label") is not None:
        raise ConfigError("responsible_ml: positive_label is for classification; a regression sets label_threshold")


def positive_outcome(config: dict, data_schema: dict) -> tuple[dict | None, str | None]:
    """{"positive_label": ...} or {"label_threshold": ...}, or None and why label-based metrics are skipped."""
    if data_schema["task"] == "regression":
        if config.get("label_threshold") is None:
            return None, "regression without label_threshold: no positive outcome, label-based metrics skipped"
        return {"label_threshold": float(config["label_threshold"])}, None
    if config.get("positive_label") is not None:
        return {"positive_label": config["positive_label"]}, None
    classes = [_label_text(c) for c in data_schema["classes"]]
    if len(classes) == 2:
        return {"positive_label": sorted(classes)[1]}, None
    return None, (f"{len(classes)} classes and no positive_label: post-training metrics and DPL/CDDL skipped "
                  f"(the label distributions compare every class)")


def _texts(values: pd.Series | np.ndarray) -> np.ndarray:
    """`_label_text` of each value (None when missing), converting each distinct value once: millions of rows."""
    series = pd.Series(np.asarray(values, dtype=object))
    mapping = {value: _label_text(value) for value in pd.unique(series.dropna())}
    return series.map(mapping).astype(object).where(series.notna(), None).to_numpy(dtype=object, copy=True)


def is_positive(values: pd.Series | np.ndarray, outcome: dict) -> np.ndarray:
    """Boolean outcome per row (labels or predictions)."""
    if "label_threshold" in outcome:
        numbers = pd.to_numeric(pd.Series(np.asarray(values)), errors="coerce").to_numpy(dtype=float)
        return numbers > outcome["label_threshold"]
    return _texts(values) == outcome["positive_label"]


def facet_mask(frame: pd.DataFrame, facet: dict) -> np.ndarray:
    """True for the rows of the sensitive facet d. A missing value is never in d."""
    column = frame[facet["column"]]
    if "threshold" in facet:
        return (pd.to_numeric(column, errors="coerce") > facet["threshold"]).fillna(False).to_numpy(dtype=bool)
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric and all(_is_number(v) for v in facet["values"]):
        return column.isin([float(v) for v in facet["values"]]).fillna(False).to_numpy(dtype=bool)
    return pd.Series(_texts(column)).isin({_label_text(v) for v in facet["values"]}).to_numpy(dtype=bool)


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def facet_label(facet: dict) -> str:
    if "threshold" in facet:
        return f"{facet['column']} > {facet['threshold']:g}"
    return f"{facet['column']} in {{{', '.join(map(str, facet['values']))}}}"


# ---------------------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------------------
def _divide(a: float, b: float) -> float:
    """Clarify's ratio: 0/0 = 0, x/0 = ±infinity."""
    if b == 0:
        return 0.0 if a == 0 else math.copysign(math.inf, a)
    return a / b


def _difference(x: float, y: float) -> float:
    """x − y; Clarify takes the difference of two infinite ratios as 0."""
    if math.isinf(x) and math.isinf(y) and x == y:
        return 0.0
    return x - y


def _aligned_distributions(values_a: np.ndarray, values_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P_a and P_d over the outcomes both facets have (Clarify's aligned non-zero pdfs), so KL stays finite."""
    counts_a = pd.Series(values_a).value_counts(normalize=True)
    counts_d = pd.Series(values_d).value_counts(normalize=True)
    common = sorted(set(counts_a.index) & set(counts_d.index), key=str)
    return (np.array([counts_a[k] for k in common], dtype=float), np.array([counts_d[k] for k in common], dtype=float))


def _cdd(d: np.ndarray, positive: np.ndarray, groups: np.ndarray) -> float:
    """Conditional demographic disparity: Σ_i n_i·DD_i / n, DD_i = n_d⁽⁰⁾/n⁽⁰⁾ − n_d⁽¹⁾/n⁽¹⁾ in group i (a share
    whose denominator is 0 counts as 0, as in Clarify)."""
    if not positive.any() or positive.all():
        return math.nan
    counts = pd.DataFrame({"group": groups, "n": 1, "accepted": positive, "accepted_d": positive & d,
                           "rejected": ~positive, "rejected_d": ~positive & d}).groupby("group", sort=False).sum()
    share_accepted = (counts["accepted_d"] / counts["accepted"].where(counts["accepted"] > 0)).fillna(0.0)
    share_rejected = (counts["rejected_d"] / counts["rejected"].where(counts["rejected"] > 0)).fillna(0.0)
    return float((counts["n"] * (share_rejected - share_accepted)).sum() / len(groups))


def pre_training_metrics(d: np.ndarray, labels: np.ndarray, positive: np.ndarray | None,
                         groups: np.ndarray | None) -> dict[str, float]:
    """CI, DPL, KL, JS, LP, TVD, KS, CDDL on observed labels. `positive` None (multiclass without a positive label):
    the distribution metrics compare the classes, DPL/CDDL are NaN. `groups` None: CDDL is NaN."""
    n_d, n_a = int(d.sum()), int((~d).sum())
    result = {"CI": (n_a - n_d) / (n_a + n_d)}
    outcome = positive if positive is not None else _texts(labels)
    result["DPL"] = (positive[~d].mean() - positive[d].mean()) if positive is not None else math.nan
    p_a, p_d = _aligned_distributions(outcome[~d], outcome[d])
    if len(p_a):
        mixture = (p_a + p_d) / 2
        result.update({
            "KL": float(np.sum(p_a * np.log(p_a / p_d))),
            "JS": float(0.5 * (np.sum(p_a * np.log(p_a / mixture)) + np.sum(p_d * np.log(p_d / mixture)))),
            "LP": float(np.linalg.norm(p_a - p_d, 2)),
            "TVD": float(0.5 * np.linalg.norm(p_a - p_d, 1)),
            "KS": float(np.linalg.norm(p_a - p_d, np.inf)),
        })
    else:
        result.update(dict.fromkeys(("KL", "JS", "LP", "TVD", "KS"), math.nan))
    result["CDDL"] = _cdd(d, positive, groups) if positive is not None and groups is not None else math.nan
    return {name: float(result[name]) for name in PRE_TRAINING}


def post_training_metrics(d: np.ndarray, positive: np.ndarray, predicted: np.ndarray,
                          groups: np.ndarray | None) -> dict[str, float]:
    """DPPL, DI, DCAcc, DCR, RD, SD, DAR, DRR, AD, TE, CDDPL from observed and predicted outcomes."""
    counts = {}
    for name, rows in (("a", ~d), ("d", d)):
        y, yhat = positive[rows], predicted[rows]
        counts[name] = {"n": int(rows.sum()), "n1": int(y.sum()), "n0": int((~y).sum()),
                        "n1hat": int(yhat.sum()), "n0hat": int((~yhat).sum()),
                        "TP": int((y & yhat).sum()), "FP": int((~y & yhat).sum()),
                        "FN": int((y & ~yhat).sum()), "TN": int((~y & ~yhat).sum())}
    a, dd = counts["a"], counts["d"]

    def rate(c: dict, top: str, bottom: str | tuple) -> float:
        below = sum(c[k] for k in bottom) if isinstance(bottom, tuple) else c[bottom]
        return _divide(c[top], below)

    q_a, q_d = rate(a, "n1hat", "n"), rate(dd, "n1hat", "n")
    result = {
        "DPPL": q_a - q_d,
        "DI": _divide(q_d, q_a),
        "DCAcc": _difference(rate(a, "n1", "n1hat"), rate(dd, "n1", "n1hat")),
        "DCR": _difference(rate(dd, "n0", "n0hat"), rate(a, "n0", "n0hat")),
        "RD": _difference(rate(a, "TP", ("TP", "FN")), rate(dd, "TP", ("TP", "FN"))),
        "SD": _difference(rate(dd, "TN", ("TN", "FP")), rate(a, "TN", ("TN", "FP"))),
        "DAR": _difference(rate(a, "TP", "n1hat"), rate(dd, "TP", "n1hat")),
        "DRR": _difference(rate(dd, "TN", "n0hat"), rate(a, "TN", "n0hat")),
        "AD": _difference(_divide(a["TP"] + a["TN"], a["n"]), _divide(dd["TP"] + dd["TN"], dd["n"])),
        "TE": _difference(rate(dd, "FN", "FP"), rate(a, "FN", "FP")),
        "CDDPL": _cdd(d, predicted, groups) if groups is not None else math.nan,
    }
    return {name: float(result[name]) for name in POST_TRAINING}


def _groups(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None:
        return None
    texts = _texts(frame[column])
    return np.where(pd.isna(texts), "__missing__", texts).astype(object)


def _undefined(values: dict[str, float], why: dict[str, str]) -> list[str]:
    notes = []
    for name, value in values.items():
        if not math.isfinite(value):
            notes.append(f"{name}: {why.get(name, 'undefined (a ratio divides by zero)')}")
    return notes


def bias_report(config: dict, data_schema: dict, train_set: pd.DataFrame, test_set: pd.DataFrame,
                test_predictions: np.ndarray) -> dict:
    """metadata.json's `bias`: per facet, pre-training metrics on the training split and post-training metrics on
    the test split's predictions (CONTRACTS.md)."""
    target = data_schema["target"]
    outcome, reason = positive_outcome(config, data_schema)
    report: dict[str, Any] = {"configured": bool(config["facets"]), "facets": [],
                              "group_column": config.get("group_column"), **(outcome or {}), "reason": None}
    if not config["facets"]:
        report["reason"] = "no facets configured (responsible_ml.facets)"
        return report
    for facet in config["facets"]:
        report["facets"].append(_facet_report(facet, config, data_schema, outcome, train_set, test_set,
                                              test_predictions, target))
    report["reason"] = reason
    return report


def _facet_report(facet: dict, config: dict, data_schema: dict, outcome: dict | None, train_set: pd.DataFrame,
                  test_set: pd.DataFrame, test_predictions: np.ndarray, target: str) -> dict:
    d_train, d_test = facet_mask(train_set, facet), facet_mask(test_set, facet)
    where = {"threshold": facet["threshold"]} if "threshold" in facet else {"values": facet["values"]}
    entry: dict[str, Any] = {"column": facet["column"], **where,
                             "label": facet_label(facet), "n_d": int(d_train.sum()), "n_a": int((~d_train).sum()),
                             "n_d_test": int(d_test.sum()), "n_a_test": int((~d_test).sum()),
                             "pre_training": {}, "post_training": {}, "reason": None}
    notes = []
    why = {"CDDL": "no group_column configured", "CDDPL": "no group_column configured"}
    if config.get("group_column") is not None:
        why.update(CDDL="the training labels have one outcome only", CDDPL="the predictions have one outcome only")
    if entry["n_d"] == 0 or entry["n_a"] == 0:
        notes.append(f"the training split has {entry['n_d']} rows in facet d and {entry['n_a']} in a: "
                     f"pre-training metrics need both")
    elif data_schema["task"] == "regression" and outcome is None:
        entry["pre_training"] = {"CI": (entry["n_a"] - entry["n_d"]) / (entry["n_a"] + entry["n_d"])}
    else:
        positive = is_positive(train_set[target], outcome) if outcome else None
        if positive is None:
            why.update(DPL="no positive_label", CDDL="no positive_label")
        values = pre_training_metrics(d_train, train_set[target].to_numpy(dtype=object), positive,
                                      _groups(train_set, config.get("group_column")))
        why.update({k: "the facets share no outcome" for k in ("KL", "JS", "LP", "TVD", "KS")})
        entry["pre_training"] = values
        notes += _undefined(values, why)
    if outcome is not None and (entry["n_d_test"] == 0 or entry["n_a_test"] == 0):
        notes.append(f"the test split has {entry['n_d_test']} rows in facet d and {entry['n_a_test']} in a: "
                     f"post-training metrics need both")
    elif outcome is not None:
        values = post_training_metrics(d_test, is_positive(test_set[target], outcome),
                                       is_positive(test_predictions, outcome),
                                       _groups(test_set, config.get("group_column")))
        entry["post_training"] = values
        notes += _undefined(values, why)
    entry["reason"] = "; ".join(notes) or None
    return entry
