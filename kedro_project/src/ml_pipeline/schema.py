"""Feature schema: which columns are features, of what kind, and whether the task is classification."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_pipeline.errors import ConfigError, DataError

TASKS = ("auto", "classification", "regression")
MAX_CLASSES_FOR_AUTO = 20


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def infer_task(target: pd.Series, task: str) -> str:
    """`task` if forced; else classification for non-numeric or few integral values, regression otherwise."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task != "auto":
        return task
    values = target.dropna()
    if not is_numeric(values):
        return "classification"
    integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
    return "classification" if integral and values.nunique() <= MAX_CLASSES_FOR_AUTO else "regression"


def infer_features(frame: pd.DataFrame, target: str) -> list[dict]:
    """One entry per feature column, in file order: name, kind (numeric|categorical), dtype."""
    features = []
    for name in frame.columns:
        if name == target:
            continue
        kind = "numeric" if is_numeric(frame[name]) else "categorical"
        dtype = "float64" if kind == "numeric" else "object"
        features.append({"name": name, "kind": kind, "dtype": dtype})
    if not features:
        raise DataError(f"no feature columns: the data only holds the target column {target!r}")
    return features


def class_labels(target: pd.Series) -> list:
    """Sorted distinct labels as plain Python values (ints stay ints, everything else becomes str)."""
    values = target.dropna()
    if is_numeric(values) and np.all(np.mod(values.to_numpy(dtype=float), 1) == 0):
        return sorted(int(v) for v in values.unique())
    return sorted(str(v) for v in values.unique())


def coerce_target(target: pd.Series, task: str, classes: list | None) -> pd.Series:
    """The target in the representation the model is trained on (int labels, str labels or float)."""
    if task == "regression":
        numeric = pd.to_numeric(target, errors="coerce")
        bad = target[numeric.isna() & target.notna()]
        if len(bad):
            raise DataError(f"regression target {target.name!r} has non-numeric values, e.g. {list(bad.unique()[:5])}")
        return numeric.astype("float64")
    if classes and isinstance(classes[0], int):
        return target.astype("int64")
    if isinstance(target.dtype, pd.CategoricalDtype):
        # One str object per class shared by every row, not one per row (a million rows: 8 MB, not 60).
        names = np.array([str(v) for v in target.cat.categories] + ["nan"], dtype=object)
        codes = target.cat.codes.to_numpy()
        return pd.Series(names[np.where(codes >= 0, codes, len(names) - 1)], index=target.index, name=target.name,
                         dtype=object)
    return target.astype(str).astype(object)


def coerce_features(frame: pd.DataFrame, features: list[dict], compact: bool = False) -> pd.DataFrame:
    """Features in the model's input representation: numeric → float64, categorical → object of str/NaN.

    Serving builds exactly this representation, so training and serving see identical inputs. `compact`:
    categorical → pandas `category` of the same str values (codes, not one object per cell), which the model's
    Pipeline transforms exactly as the object columns. A float64 column is shared with `frame`, not copied.
    """
    columns = {}
    for feature in features:
        name = feature["name"]
        series = frame[name]
        if feature["kind"] == "numeric" and series.dtype == np.float64:
            columns[name] = series  # nothing to coerce: the same data (copy-on-write), not a copy
        elif feature["kind"] == "numeric":
            numeric = pd.to_numeric(series, errors="coerce")
            bad = series[numeric.isna() & series.notna()]
            if len(bad):
                raise DataError(f"column {name!r} must be numeric but holds e.g. {[str(v) for v in bad.unique()[:5]]}")
            columns[name] = numeric.astype("float64")
        elif compact:
            columns[name] = pd.Series(categorical_codes(series), index=frame.index, copy=False)
        else:
            # dtype=object explicitly: pandas 3 would otherwise infer its `str` dtype.
            columns[name] = pd.Series(categorical_values(series), index=frame.index, dtype=object)
    # copy=False: the columns are new or (float64, compact categories) shared copy-on-write with `frame`.
    return pd.DataFrame(columns, index=frame.index, copy=False)


def categorical_codes(series: pd.Series) -> pd.Categorical:
    """`categorical_values` as a Categorical: the same str values and missing cells, each distinct value stored once
    (categories sorted, of dtype object like the values serving builds)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        values = series.array
        categories = values.categories
        if categories.dtype == object and pd.api.types.infer_dtype(categories, skipna=True) == "string":
            return values  # text categories already: shared, not copied
        labels = np.array([str(v) for v in categories], dtype=object)
        names = np.unique(labels)  # distinct categories may print alike (1 and "1"): they become one
        remap = np.searchsorted(names, labels).astype(np.int32)
        codes = np.full(len(values), -1, dtype=np.int32)
        present = values.codes >= 0
        codes[present] = remap[values.codes[present]]
        return pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype=object))
    codes, names = pd.factorize(categorical_values(series), sort=True)
    return pd.Categorical.from_codes(codes, categories=pd.Index(np.asarray(names, dtype=object), dtype=object))


def categorical_values(series: pd.Series) -> np.ndarray:
    """Object array of str with np.nan for missing (pandas' NA/None normalised to NaN)."""
    present = series.notna().to_numpy()
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        out = values.copy()  # already text: only the missing markers need normalising (fast on 1M rows)
        out[~present] = np.nan
        return out
    out = np.full(len(series), np.nan, dtype=object)
    out[present] = [str(v) for v in values[present]]
    return out
