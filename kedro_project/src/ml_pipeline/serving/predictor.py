"""The trained Pipeline, compiled for serving.

The fitted preprocessing (median imputation + standard scaling; constant imputation + one-hot encoding) is
replayed with numpy on the parsed columns, then the trees compiled at training time (serving/forest.py: Treelite +
TL2cgen) predict. This skips building a pandas DataFrame and running the ColumnTransformer per request (milliseconds
for one row) and gives the same numbers: numeric steps repeat sklearn's float64 operations in sklearn's order, the
one-hot tables are produced by the fitted encoder itself, and the compiled trees are kept only if they reproduce the
estimator on probe rows. Without them (missing, stale, another platform) the estimator predicts; pipelines of any
other shape fall back to `pipeline.predict` on a DataFrame. `tests/container/test_predictor.py` checks every path
gives identical predictions.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from ml_pipeline.serving.parsing import Columns, FeatureSchema

log = logging.getLogger(__name__)
_UNSEEN_PROBE = "\x00unseen-category\x00"
THREADED_MIN_ROWS = 2048  # below this a second thread gains about a millisecond


def load_model_files(model_dir: str | Path):
    """(the fitted Pipeline, metadata.json) of a model directory: what serve loads, and what its fallback predicts with.

    Unpickles model.joblib: a caller that has a pin checks the directory's digest first (serving/integrity.py).
    """
    directory = Path(model_dir)
    metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    pipeline = joblib.load(directory / "model.joblib")
    return pipeline, metadata


@dataclass
class Prediction:
    labels: list
    probabilities: np.ndarray | None  # rows × classes, classification only
    classes: list | None


class _NumericBlock:
    def __init__(self, columns: list[str], imputer, scaler, schema: FeatureSchema) -> None:
        self.columns = columns
        self.fill = np.asarray(imputer.statistics_, dtype=np.float64)
        self.mean = None if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = None if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)
        # One row in Python floats: the same IEEE operations in the same order. Subtracting 0 and dividing by 1
        # (no centring, no scaling) change no bits. Unset when a statistic is not finite: rows may then be
        # missing after imputation, which only the array path passes on as missing.
        positions = [schema.names.index(name) for name in columns]
        fill = self.fill.tolist()
        mean = [0.0] * len(columns) if self.mean is None else self.mean.tolist()
        scale = [1.0] * len(columns) if self.scale is None else self.scale.tolist()
        finite = all(map(math.isfinite, fill + mean + scale))
        self.row_plan = list(zip(positions, fill, mean, scale, strict=True)) if finite else None

    def transform(self, parsed: Columns) -> np.ndarray:
        block = np.empty((parsed.rows, len(self.columns)), dtype=np.float64)
        for j, name in enumerate(self.columns):
            block[:, j] = parsed.numeric[name]
        missing = np.isnan(block)
        if missing.any():
            block[missing] = np.take(self.fill, np.nonzero(missing)[1])
        if self.mean is not None:
            block -= self.mean
        if self.scale is not None:
            block /= self.scale
        return block

    def extend_row(self, row: list, features: array) -> None:
        for position, fill, mean, scale in self.row_plan:
            value = row[position]
            if value != value:  # NaN: missing
                value = fill
            features.append((value - mean) / scale)


class _CategoricalBlock:
    """One-hot output = baseline row + Σ per-column deltas; each delta table comes from the fitted encoder."""

    def __init__(self, columns: list[str], transformer, schema: FeatureSchema) -> None:
        import pandas as pd

        self.columns = columns
        encoder = transformer.steps[-1][1]
        baseline_values = {name: str(cats[0]) for name, cats in zip(columns, encoder.categories_, strict=True)}
        baseline = transformer.transform(pd.DataFrame({n: np.array([v], dtype=object) for n, v in baseline_values.items()}))
        self.baseline = np.asarray(baseline, dtype=np.float64)[0]
        # One table of every column's delta rows; a column's rows start at its offset: its categories, then
        # missing, then unseen. Deltas are -1, 0 or 1, so their sum is exact in any order.
        self.lookups: list[dict] = []
        self.missing_index: list[int] = []
        self.unseen_index: list[int] = []
        deltas = []
        for name, categories in zip(columns, encoder.categories_, strict=True):
            values = [str(c) for c in categories]
            probe_values = np.array([*values, np.nan, _UNSEEN_PROBE], dtype=object)
            probe = pd.DataFrame({n: np.full(len(probe_values), baseline_values[n], dtype=object) for n in columns})
            probe[name] = probe_values
            encoded = np.asarray(transformer.transform(probe), dtype=np.float64)
            offset = sum(len(d) for d in deltas)
            deltas.append(encoded - self.baseline)
            self.lookups.append({v: offset + i for i, v in enumerate(values)})
            self.missing_index.append(offset + len(values))
            self.unseen_index.append(offset + len(values) + 1)
        self.deltas = np.vstack(deltas)
        # One row: the baseline plus each column's delta row, kept as its non-zero entries. Deltas are -1, 0 or 1
        # and the baseline 0 or 1, so the sums are exact in Python floats too.
        self.row_baseline = array("d", self.baseline.tolist())
        self.row_plan = []
        for j, name in enumerate(columns):
            lookup = {value: self._nonzero(index) for value, index in self.lookups[j].items()}
            self.row_plan.append((schema.names.index(name), lookup, self._nonzero(self.missing_index[j]),
                                  self._nonzero(self.unseen_index[j])))

    def _nonzero(self, index: int) -> tuple[tuple[int, float], ...]:
        """Delta row `index` as (output column, delta) pairs."""
        return tuple((k, float(d)) for k, d in enumerate(self.deltas[index]) if d != 0)

    def transform(self, parsed: Columns) -> np.ndarray:
        index = np.empty((parsed.rows, len(self.columns)), dtype=np.intp)
        for j, name in enumerate(self.columns):
            lookup, missing, unseen = self.lookups[j], self.missing_index[j], self.unseen_index[j]
            index[:, j] = [missing if v is None else lookup.get(v, unseen) for v in parsed.categorical[name]]
        if parsed.rows <= 64:  # one gather for a few rows; column by column keeps a large batch's memory small
            return self.baseline + self.deltas[index].sum(axis=1)
        block = np.tile(self.baseline, (parsed.rows, 1))
        for j in range(len(self.columns)):
            block += self.deltas[index[:, j]]
        return block

    def extend_row(self, row: list, features: array) -> None:
        start = len(features)
        features.extend(self.row_baseline)
        for position, lookup, missing, unseen in self.row_plan:
            value = row[position]
            for k, delta in missing if value is None else lookup.get(value, unseen):
                features[start + k] += delta


class CompiledModel:
    """Predicts from parsed columns; `compiled`: the numpy preprocessing is in use, `forest`: the compiled trees."""

    def __init__(self, pipeline, metadata: dict, model_dir: str | Path | None = None) -> None:
        self.pipeline = pipeline
        self.metadata = metadata
        self.schema = FeatureSchema.from_metadata(metadata)
        self.task = metadata["task"]
        self.estimator = pipeline.steps[-1][1]
        self.classes = ([c.item() if isinstance(c, np.generic) else c for c in self.estimator.classes_]
                        if self.task == "classification" else None)
        self.blocks = self._compile(pipeline)
        self.compiled = self.blocks is not None
        if not self.compiled:
            log.warning("pipeline shape not recognised: serving through pipeline.predict (slower, same results)")
        self.forest = None
        self.forest_reason = "no model directory given" if model_dir is None else ""
        if model_dir is not None and self.compiled:
            self.forest = self._load_forest(Path(model_dir))
        self.single_row = False
        self.single_row_reason = "no compiled trees"
        if self.forest is not None:
            self.single_row, self.single_row_reason = self._check_single_row()

    @classmethod
    def load(cls, model_dir: str | Path) -> CompiledModel:
        return cls(*load_model_files(model_dir), model_dir)

    @property
    def fast_path(self) -> str:
        if not self.compiled:
            return "none (pipeline.predict)"
        if self.forest is None:
            return f"numpy preprocessing + the estimator's predict (compiled trees not used: {self.forest_reason})"
        if not self.single_row:
            return f"numpy preprocessing + compiled trees (single-row path not used: {self.single_row_reason})"
        return "numpy preprocessing + compiled trees, one row in Python floats straight to the trees"

    def _compile(self, pipeline):
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        if len(pipeline.steps) != 2 or not isinstance(pipeline.steps[0][1], ColumnTransformer):
            return None
        blocks = []
        for name, transformer, columns in pipeline.steps[0][1].transformers_:
            if transformer == "drop" or len(columns) == 0:
                continue
            columns = list(columns)
            steps = transformer.steps if isinstance(transformer, Pipeline) else []
            shape = [type(step) for _, step in steps]
            if shape == [SimpleImputer, StandardScaler] and steps[0][1].strategy != "constant" \
                    and not steps[0][1].add_indicator and all(c in self.schema.numeric_names for c in columns):
                blocks.append(_NumericBlock(columns, steps[0][1], steps[1][1], self.schema))
            elif shape == [SimpleImputer, OneHotEncoder] and steps[1][1].drop is None \
                    and not steps[0][1].add_indicator and all(c in self.schema.categorical_names for c in columns):
                blocks.append(_CategoricalBlock(columns, transformer, self.schema))
            else:
                return None
        return blocks

    def _load_forest(self, model_dir: Path):
        """The compiled trees of the model directory, kept only if they reproduce the estimator on probe rows."""
        from ml_pipeline.serving.forest import Forest

        method = "predict_proba" if self.task == "classification" else "predict"
        try:
            forest, self.forest_reason = Forest.load(model_dir, self.estimator)
            if forest is None:
                log.warning("compiled trees not used (%s): predicting with the estimator", self.forest_reason)
                return None
            probe = self._probe_features()
            same = np.array_equal(getattr(forest, method)(probe), getattr(self.estimator, method)(probe))
        except Exception as exc:  # noqa: BLE001 — a library that fails to load or run: the estimator serves
            self.forest_reason = f"{type(exc).__name__}: {exc}"
            log.warning("compiled trees not used (%s): predicting with the estimator", self.forest_reason)
            return None
        if not same:
            self.forest_reason = "they differ from the estimator on probe rows"
            log.warning("compiled trees differ from the estimator on probe rows: predicting with the estimator")
            return None
        return forest

    def _check_single_row(self) -> tuple[bool, str]:
        """(whether one-row requests take `_predict_row`, why not): it must answer every probe row as the array
        path does, labels and probabilities alike."""
        if any(block.row_plan is None for block in self.blocks):
            return False, "a numeric column's imputation or scaling statistic is not finite"
        probe = self._probe_columns()
        try:
            whole = self._predict_arrays(probe, probabilities=True)
            features = self.features(probe)
            columns = [(probe.numeric[name] if is_numeric else probe.categorical[name]).tolist()
                       for name, is_numeric in zip(self.schema.names, self.schema.numeric_flags, strict=True)]
            for i, row in enumerate(map(list, zip(*columns, strict=True))):  # Python values, as a request has them
                if self._row_features(row).tobytes() != features[i].tobytes():
                    log.warning("the single-row path's features differ on probe row %d: not used", i)
                    return False, f"its features differ from the array path's on probe row {i}"
                with_probabilities = self._predict_row(row, probabilities=True)
                label_only = self._predict_row(row, probabilities=False)
                if with_probabilities is None or label_only is None:
                    continue  # a value the trees read as missing: such rows take the array path
                expected = whole.labels[i]
                if (with_probabilities.labels != [expected] or label_only.labels != [expected]
                        or (whole.probabilities is not None and not np.array_equal(
                            with_probabilities.probabilities[0], whole.probabilities[i]))):
                    log.warning("the single-row path differs from the array path on probe row %d: not used", i)
                    return False, f"it differs from the array path on probe row {i}"
        except Exception as exc:  # noqa: BLE001 — the array path still serves every request
            log.warning("single-row path not used (%s: %s)", type(exc).__name__, exc)
            return False, f"{type(exc).__name__}: {exc}"
        return True, ""

    def _probe_features(self) -> np.ndarray:
        features = self.features(self._probe_columns())
        # A few values whose low 32 bits are all ones: TL2cgen would read them as missing (serving/forest.py).
        odd = features[:8].copy()
        present = ~np.isnan(odd)
        odd.view(np.uint64)[present] |= np.uint64(0xFFFFFFFF)
        return np.vstack([features, odd])

    def _probe_columns(self) -> Columns:
        """Rows spread over the reference quantiles, categories and missing values."""
        rng = np.random.default_rng(0)
        profile = self.metadata.get("reference_profile", {}).get("features", {})
        n = 256
        numeric, categorical = {}, {}
        for name, kind in zip(self.schema.names, self.schema.kinds, strict=True):
            entry = profile.get(name, {})
            if kind == "numeric":
                quantiles = entry.get("quantiles") or [0.0, 1.0]
                values = rng.choice(np.asarray(quantiles, dtype=float), n)
                values[rng.random(n) < 0.1] = np.nan
                numeric[name] = values
            else:
                categories = list(entry.get("frequencies", {})) or ["a"]
                values = np.array(rng.choice(categories + [None, "unseen"], n), dtype=object)
                categorical[name] = values
        return Columns(n, numeric, categorical)

    def features(self, parsed: Columns) -> np.ndarray:
        parts = [block.transform(parsed) for block in self.blocks]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    def frame(self, parsed: Columns):
        """The parsed rows as the DataFrame the Pipeline was trained on (fallback path)."""
        return parsed.to_frame(self.schema)

    def predict(self, parsed: Columns, probabilities: bool = False,
                threads: Callable[[], int] | None = None) -> Prediction:
        """`threads`, if given, says how many threads a large batch may use at that moment (serving/cores.py)."""
        if parsed.row is not None and self.single_row:
            prediction = self._predict_row(parsed.row, probabilities)
            if prediction is not None:
                return prediction
        return self._predict_arrays(parsed, probabilities, threads)

    def _predict_row(self, row: list, probabilities: bool) -> Prediction | None:
        """One row (Columns.row) through the blocks in Python floats and one call into the compiled trees: numpy's
        per-call overhead was most of a one-row request. None when the trees cannot take the row (forest.row_raw)."""
        features = self._row_features(row)
        if self.task != "classification":
            raw = self.forest.row_raw(features)
            return None if raw is None else Prediction([raw[0]], None, None)
        if probabilities:
            proba = self.forest.row_proba(features)
            if proba is None:
                return None
            return Prediction([self.classes[int(np.argmax(proba))]], proba.reshape(1, -1), self.classes)
        index = self.forest.row_label(features)
        return None if index is None else Prediction([self.classes[index]], None, self.classes)

    def _row_features(self, row: list) -> array:
        """The row's features as the doubles the compiled trees read (array: no copy on the way to C)."""
        features = array("d")
        for block in self.blocks:
            block.extend_row(row, features)
        return features

    def _predict_arrays(self, parsed: Columns, probabilities: bool = False,
                        threads: Callable[[], int] | None = None) -> Prediction:
        if self.compiled:
            x = self.features(parsed)
            model = self.forest if self.forest is not None else self.estimator
        else:
            x = self.frame(parsed)
            model = self.pipeline
        options = {"threads": threads} if model is self.forest and threads is not None \
            and parsed.rows >= THREADED_MIN_ROWS else {}
        if self.task == "classification":
            proba = model.predict_proba(x, **options)
            encoded = np.argmax(proba, axis=1)  # sklearn's own rule: first maximum wins
            labels = [self.classes[i] for i in encoded]
            return Prediction(labels, proba if probabilities else None, self.classes)
        return Prediction(model.predict(x, **options).tolist(), None, None)
