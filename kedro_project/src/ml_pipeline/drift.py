"""Reference profile of the training data and drift of new data against it (PSI and KS per feature)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MISSING = "__missing__"
UNSEEN = "__unseen__"
EPSILON = 1e-4


def build_profile(frame: pd.DataFrame, features: list[dict], bins: int = 10, quantiles: int = 201,
                  max_categories: int = 200) -> dict:
    """Per feature: null fraction and the distribution (decile bins + quantiles, or category frequencies)."""
    profile: dict = {"rows": int(len(frame)), "features": {}}
    for feature in features:
        name, series = feature["name"], frame[feature["name"]]
        null_fraction = float(series.isna().mean()) if len(series) else 0.0
        entry: dict = {"kind": feature["kind"], "null_fraction": null_fraction}
        if feature["kind"] == "numeric":
            values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype=float)
            if len(values):
                inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
                edges = inner.tolist()
                counts = _bin_counts(values, edges)
                entry.update({
                    "min": float(values.min()), "max": float(values.max()),
                    "mean": float(values.mean()), "std": float(values.std()),
                    "edges": edges,
                    "bin_fractions": (counts / len(series)).tolist(),
                    "quantiles": np.quantile(values, np.linspace(0, 1, quantiles)).tolist(),
                })
            else:
                entry.update({"edges": [], "bin_fractions": [0.0], "quantiles": []})
        else:
            counts = series.dropna().astype(str).value_counts()
            top = counts.iloc[:max_categories]
            entry["frequencies"] = {str(k): float(v) / max(len(series), 1) for k, v in top.items()}
            entry["other_fraction"] = float(counts.iloc[max_categories:].sum()) / max(len(series), 1)
        profile["features"][name] = entry
    return profile


def _bin_counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    # bins: (-inf, e0], (e0, e1], ..., (e_last, inf)
    index = np.searchsorted(np.asarray(edges, dtype=float), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(float)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index; both arrays are fractions over the same bins (floored at 1e-4)."""
    e = np.maximum(np.asarray(expected, dtype=float), EPSILON)
    a = np.maximum(np.asarray(actual, dtype=float), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_drift(entry: dict, series: pd.Series) -> dict:
    """PSI over the reference bins (+ a missing bin) and, for numerics, the KS test against reference quantiles."""
    n = len(series)
    null_fraction = float(series.isna().mean()) if n else 0.0
    if entry["kind"] == "numeric":
        values = pd.to_numeric(series, errors="coerce").dropna().to_numpy(dtype=float)
        actual = _bin_counts(values, entry["edges"]) / max(n, 1)
        expected = np.asarray(entry["bin_fractions"], dtype=float)
        result = {"method": "ks", "psi": psi(np.append(expected, entry["null_fraction"]), np.append(actual, null_fraction))}
        if len(values) and entry.get("quantiles"):
            from scipy import stats  # ≈ 0.5 s to import: paid by the jobs that measure drift, when they do

            ks = stats.ks_2samp(np.asarray(entry["quantiles"]), values)
            result.update({"statistic": float(ks.statistic), "p_value": float(ks.pvalue)})
        else:
            result.update({"statistic": None, "p_value": None})
        return result
    frequencies = entry["frequencies"]
    counts = series.dropna().astype(str).value_counts()
    known = [counts.get(k, 0) / max(n, 1) for k in frequencies]
    unseen = float(counts[~counts.index.isin(list(frequencies))].sum()) / max(n, 1)
    expected = [*frequencies.values(), entry.get("other_fraction", 0.0), entry["null_fraction"]]
    actual = [*known, unseen, null_fraction]
    return {"method": "psi", "psi": psi(np.asarray(expected), np.asarray(actual))}


def drift_report(profile: dict, frame: pd.DataFrame) -> dict:
    """Per-feature drift and the overall score = mean PSI over the features present in both."""
    features = {}
    for name, entry in profile["features"].items():
        if name in frame.columns:
            features[name] = feature_drift(entry, frame[name])
    scores = [f["psi"] for f in features.values() if f["psi"] is not None and math.isfinite(f["psi"])]
    score = float(np.mean(scores)) if scores and len(frame) else 0.0
    return {"score": round(score, 6), "method": "psi/ks", "features": features}
