"""Nodes of the data_processing pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_pipeline import drift, expectations, schema
from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.tabular import SOURCE_INDEX


def clean_data(raw: pd.DataFrame, target_column: str) -> tuple[pd.DataFrame, pd.Series]:
    """Drop rows without a target and fully empty rows; turn infinities into missing values.

    Also returns the file each kept row came from (aligned with the cleaned rows; missing when `raw` is not
    indexed by `source_file`): kept beside the data so it never becomes a feature.
    """
    if raw.empty:
        raise DataError("the training data has no rows")
    if target_column not in raw.columns:
        raise DataError(f"target column {target_column!r} not found; the columns are: {', '.join(map(str, raw.columns))}")
    # Column by column and without copying the frame: only a column that holds an infinity is rewritten.
    columns = {name: _without_infinities(raw[name]) for name in raw.columns}
    frame = pd.DataFrame(columns, index=raw.index, copy=False)
    keep = frame[target_column].notna().to_numpy().copy()
    any_feature = np.zeros(len(frame), dtype=bool)
    for name in frame.columns:
        if name != target_column:
            any_feature |= frame[name].notna().to_numpy()
    keep &= any_feature
    if not keep.any():
        raise DataError(f"no row has a value in the target column {target_column!r}")
    if raw.index.name == SOURCE_INDEX:
        sources = pd.Series(pd.Categorical(raw.index[keep]), name=SOURCE_INDEX)
    else:
        sources = pd.Series(pd.Categorical([None] * int(keep.sum()), categories=[]), name=SOURCE_INDEX)
    kept = frame if keep.all() else frame[keep]  # usually every row stays: no copy then
    return kept.reset_index(drop=True), sources


def _without_infinities(series: pd.Series) -> pd.Series:
    """±inf → NaN (the series itself when it has none)."""
    if series.dtype.kind == "f":
        infinite = np.isinf(series.to_numpy())
        return series.mask(infinite) if infinite.any() else series
    if series.dtype == object:
        return series.replace([np.inf, -np.inf], np.nan)
    if isinstance(series.dtype, pd.CategoricalDtype):
        infinite = [c for c in series.cat.categories if isinstance(c, float) and np.isinf(c)]
        return series.cat.remove_categories(infinite) if infinite else series
    return series


def infer_schema(cleaned: pd.DataFrame, target_column: str, task: str) -> dict:
    """Features (name, kind, dtype), the task (inferred unless forced) and, for classification, the classes."""
    resolved = schema.infer_task(cleaned[target_column], task)
    features = schema.infer_features(cleaned, target_column)
    classes = schema.class_labels(cleaned[target_column]) if resolved == "classification" else None
    if classes is not None and len(classes) < 2:
        raise DataError(f"target column {target_column!r} has a single class {classes}: nothing to learn")
    if resolved == "regression" and not schema.is_numeric(cleaned[target_column]):
        raise DataError(f"task is regression but target column {target_column!r} is not numeric")
    return {"target": target_column, "task": resolved, "features": features, "classes": classes}


def prepare_model_input(cleaned: pd.DataFrame, data_schema: dict) -> pd.DataFrame:
    """Features in the model's input representation (as serving builds them, categorical columns as `category` of
    the same str values) plus the coerced target."""
    frame = schema.coerce_features(cleaned, data_schema["features"], compact=True)
    target = data_schema["target"]
    frame[target] = schema.coerce_target(cleaned[target], data_schema["task"], data_schema["classes"]).to_numpy()
    return frame


def _split_positions(n: int, split: dict, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of train/test/validation: a seeded permutation cut by the configured fractions."""
    fractions = [float(split["train"]), float(split["test"]), float(split["validation"])]
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ConfigError(f"split fractions must be positive and sum to 1, got {fractions}")
    if n < 10:
        raise DataError(f"the training data has {n} usable rows; at least 10 are needed for a 70/20/10 split")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(n * fractions[0]))
    n_test = int(round(n * fractions[1]))
    return order[:n_train], order[n_train:n_train + n_test], order[n_train + n_test:]


def split_data(model_input: pd.DataFrame, split: dict, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Seeded shuffle, then train/test/validation by the configured fractions (70/20/10)."""
    positions = _split_positions(len(model_input), split, seed)
    return tuple(model_input.iloc[p].reset_index(drop=True) for p in positions)


def split_sources(row_sources: pd.Series, split: dict, seed: int) -> pd.Series:
    """The source file of each test-split row, in the test split's order (the same permutation as split_data)."""
    _, test, _ = _split_positions(len(row_sources), split, seed)
    return row_sources.iloc[test].reset_index(drop=True)


def build_reference_profile(model_input: pd.DataFrame, data_schema: dict, profile_settings: dict) -> dict:
    """Distribution of every feature in the training data: what drift is measured against."""
    return drift.build_profile(model_input, data_schema["features"], bins=int(profile_settings["bins"]),
                               quantiles=int(profile_settings["quantiles"]),
                               max_categories=int(profile_settings["max_categories"]))


def build_expectation_suite(cleaned: pd.DataFrame, data_schema: dict, expectation_settings: dict) -> dict:
    """The Great Expectations suite new data must satisfy (stored in the model's metadata)."""
    return expectations.build_suite(cleaned, data_schema["features"], data_schema["target"], data_schema["task"],
                                    data_schema["classes"], expectation_settings, name="production")
