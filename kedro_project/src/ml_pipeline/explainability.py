"""SHAP values of the served pipeline per input column: exact TreeSHAP (shap's TreeExplainer, path-dependent) on the
HistGradientBoosting estimator, applied to the fitted preprocessing's output; the columns a one-hot encoder made
from one input column are summed back to it (SHAP values are additive, so the sum is that column's attribution).

Explained output: the raw score the trees add up — log-odds of the positive class (binary), the raw margin of each
class (multiclass; a local explanation shows the predicted class), the predicted value (regression). For every row
base value + Σ contributions = that raw output (checked here and in the tests).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

METHOD = ("TreeSHAP (path-dependent, exact) on the HistGradientBoosting estimator; one-hot columns summed per input "
          "column")


def column_groups(model: Pipeline, features: list[str]) -> list[tuple[str, list[int]]]:
    """(input column, indices of the preprocessing's output columns made from it), in `features` order."""
    preprocess = model.named_steps["preprocess"]
    owners: dict[str, list[int]] = {name: [] for name in features}
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        positions = range(preprocess.output_indices_[name].start, preprocess.output_indices_[name].stop)
        widths = _widths(transformer, list(columns))
        if sum(widths) != len(positions):
            raise ValueError(f"cannot map the {name!r} transformer's {len(positions)} output columns back to "
                             f"{list(columns)}")
        start = positions.start
        for column, width in zip(columns, widths, strict=True):
            owners[column].extend(range(start, start + width))
            start += width
    return [(name, owners[name]) for name in features]


def _widths(transformer, columns: list[str]) -> list[int]:
    """Output columns per input column: one, or a one-hot encoder's categories (infrequent ones pooled)."""
    last = transformer.steps[-1][1] if isinstance(transformer, Pipeline) else transformer
    if not isinstance(last, OneHotEncoder):
        return [1] * len(columns)
    infrequent = getattr(last, "infrequent_categories_", [None] * len(columns))
    widths = []
    for i, categories in enumerate(last.categories_):
        width = len(categories)
        if infrequent[i] is not None:
            width = width - len(infrequent[i]) + 1
        if last.drop_idx_ is not None and last.drop_idx_[i] is not None:
            width -= 1
        widths.append(width)
    return widths


def raw_output(model: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    """What the trees add up: decision_function (classification) or predict (regression); (n,) or (n, K)."""
    estimator = model.named_steps["model"]
    transformed = model.named_steps["preprocess"].transform(frame)
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(transformed), dtype=float)
    return np.asarray(estimator.predict(transformed), dtype=float)


class Explainer:
    """One fitted pipeline's TreeSHAP explainer and column map, made once: training explains a sample with it, and
    `serve` keeps one per worker for requests that ask for explanations."""

    def __init__(self, model: Pipeline, features: list[str]) -> None:
        self.model, self.features = model, list(features)
        self.tree = _shap().TreeExplainer(model.named_steps["model"])
        self.groups = column_groups(model, self.features)
        self.base = np.asarray(self.tree.expected_value, dtype=float).reshape(-1)

    def by_column(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(contributions (n, columns) or (n, columns, K), base value () or (K,)) for the rows of `frame`."""
        transformed = self.model.named_steps["preprocess"].transform(frame[self.features])
        values = np.asarray(self.tree.shap_values(transformed, check_additivity=False), dtype=float)
        summed = np.stack([values[:, idx].sum(axis=1) for _, idx in self.groups], axis=1)
        return summed, (self.base[0] if self.base.size == 1 and summed.ndim == 2 else self.base)


def shap_by_column(model: Pipeline, frame: pd.DataFrame, features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(contributions (n, columns) or (n, columns, K), base value () or (K,)) for the rows of `frame`."""
    return Explainer(model, features).by_column(frame)


def explain(model: Pipeline, test_set: pd.DataFrame, data_schema: dict, settings: dict) -> dict:
    """metadata.json's `explainability`: global mean |SHAP| per input column on ≤ `shap_max_rows` test rows, and
    local explanations of the first `local_rows` of them."""
    shap = _shap()
    features = [f["name"] for f in data_schema["features"]]
    limit = int(settings["shap_max_rows"])
    sample = test_set.sample(n=limit, random_state=int(settings["seed"])) if len(test_set) > limit else test_set
    classes = [str(c) for c in getattr(model, "classes_", [])]
    result = {"method": METHOD, "library": f"shap {shap.__version__}", "output": _output(data_schema, classes),
              "base_value": None, "classes": classes if len(classes) > 2 else None, "rows": int(len(sample)),
              "additivity_max_error": None, "global": [], "local": []}
    if sample.empty:
        return result
    contributions, base = shap_by_column(model, sample, features)
    raw = raw_output(model, sample[features])
    multiclass = contributions.ndim == 3
    magnitude = np.abs(contributions).mean(axis=(0, 2) if multiclass else 0)
    predictions = model.predict(sample[features])
    local = []
    for i in range(min(int(settings["local_rows"]), len(sample))):
        item = {"row": {name: _plain(sample[name].iloc[i]) for name in features}, "prediction": predictions[i]}
        k = classes.index(str(predictions[i])) if multiclass else None
        row_base, row_raw = (base[k], raw[i, k]) if multiclass else (base, raw[i])
        row_contributions = contributions[i, :, k] if multiclass else contributions[i]
        item.update({**({"class": classes[k]} if multiclass else {}), "base_value": float(row_base),
                     "raw_output": float(row_raw),
                     "contributions": dict(zip(features, row_contributions.tolist(), strict=True))})
        local.append(item)
    result.update({
        "base_value": base.tolist() if multiclass else float(base),
        "additivity_max_error": float(np.max(np.abs(np.asarray(base) + contributions.sum(axis=1) - raw))),
        "global": sorted(({"column": name, "mean_abs_shap": float(value)}
                          for name, value in zip(features, magnitude, strict=True)),
                         key=lambda r: r["mean_abs_shap"], reverse=True),
        "local": local,
    })
    return result


def _output(data_schema: dict, classes: list[str]) -> str:
    if data_schema["task"] == "regression":
        return "value: the predicted value"
    if len(classes) > 2:
        return "raw margin per class (softmax gives the probabilities); a local explanation shows the predicted class"
    return f"raw log-odds of class {classes[1]!r} (the logistic function gives its probability)"


def _shap():
    """shap, imported on first use: ≈ 0.75 s and 100 MB (numba) that only an explaining training job pays."""
    import warnings

    with warnings.catch_warnings():
        # its colour maps call matplotlib setters that matplotlib 3.11 deprecates; nothing we can act on
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import shap
    return shap


def _plain(value):
    return None if pd.isna(value) else value
