"""The trained Pipeline, compiled for serving.

The fitted preprocessing (median imputation + standard scaling; constant imputation + one-hot encoding) is
replayed with numpy on the parsed columns, then the fitted estimator predicts. This skips building a
pandas DataFrame and running the ColumnTransformer per request (milliseconds for one row) and gives the same
numbers: numeric steps repeat sklearn's float64 operations in sklearn's order, and the one-hot tables are
produced by the fitted encoder itself. Pipelines of any other shape fall back to `pipeline.predict` on a
DataFrame. `tests/container/test_predictor.py` checks both paths give identical predictions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np

from ml_pipeline.serving.parsing import Columns, FeatureSchema

log = logging.getLogger(__name__)
_UNSEEN_PROBE = "\x00unseen-category\x00"
FOREST_MAX_ROWS = 32  # above this, sklearn's compiled (and threaded) tree walk is faster
THREADED_MIN_ROWS = 1024  # below this a second OpenMP thread gains about a millisecond


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
    def __init__(self, columns: list[str], imputer, scaler) -> None:
        self.columns = columns
        self.fill = np.asarray(imputer.statistics_, dtype=np.float64)
        self.mean = None if scaler.mean_ is None else np.asarray(scaler.mean_, dtype=np.float64)
        self.scale = None if scaler.scale_ is None else np.asarray(scaler.scale_, dtype=np.float64)

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


class _CategoricalBlock:
    """One-hot output = baseline row + Σ per-column deltas; each delta table comes from the fitted encoder."""

    def __init__(self, columns: list[str], transformer) -> None:
        import pandas as pd

        self.columns = columns
        encoder = transformer.steps[-1][1]
        baseline_values = {name: str(cats[0]) for name, cats in zip(columns, encoder.categories_, strict=True)}
        baseline = transformer.transform(pd.DataFrame({n: np.array([v], dtype=object) for n, v in baseline_values.items()}))
        self.baseline = np.asarray(baseline, dtype=np.float64)[0]
        self.lookups: list[dict] = []
        self.deltas: list[np.ndarray] = []
        self.missing_index: list[int] = []
        self.unseen_index: list[int] = []
        for name, categories in zip(columns, encoder.categories_, strict=True):
            values = [str(c) for c in categories]
            probe_values = np.array([*values, np.nan, _UNSEEN_PROBE], dtype=object)
            probe = pd.DataFrame({n: np.full(len(probe_values), baseline_values[n], dtype=object) for n in columns})
            probe[name] = probe_values
            encoded = np.asarray(transformer.transform(probe), dtype=np.float64)
            self.deltas.append(encoded - self.baseline)
            self.lookups.append({v: i for i, v in enumerate(values)})
            self.missing_index.append(len(values))
            self.unseen_index.append(len(values) + 1)

    def transform(self, parsed: Columns) -> np.ndarray:
        block = np.tile(self.baseline, (parsed.rows, 1))
        for j, name in enumerate(self.columns):
            lookup, missing, unseen = self.lookups[j], self.missing_index[j], self.unseen_index[j]
            values = parsed.categorical[name]
            index = [missing if v is None else lookup.get(v, unseen) for v in values]
            block += self.deltas[j][index]
        return block


class CompiledModel:
    """Predicts from parsed columns; `compiled` tells whether the numpy fast path is in use."""

    def __init__(self, pipeline, metadata: dict) -> None:
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
        self.forest = self._compile_forest() if self.compiled else None
        self.walk = self._compile_walk() if self.compiled else None

    @classmethod
    def load(cls, model_dir: str | Path) -> CompiledModel:
        return cls(*load_model_files(model_dir))

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
                blocks.append(_NumericBlock(columns, steps[0][1], steps[1][1]))
            elif shape == [SimpleImputer, OneHotEncoder] and steps[1][1].drop is None \
                    and not steps[0][1].add_indicator and all(c in self.schema.categorical_names for c in columns):
                blocks.append(_CategoricalBlock(columns, transformer))
            else:
                return None
        return blocks

    def _compile_forest(self):
        """Trees as numpy arrays for small batches."""
        from ml_pipeline.serving.forest import Forest

        return self._verified("numpy trees", Forest, lambda forest, method: [getattr(forest, method)])

    def _compile_walk(self):
        """The tree-by-tree walk for large batches, checked on one thread and on two."""
        from ml_pipeline.serving.forest import TreeWalk

        return self._verified("tree walk", TreeWalk, lambda walk, method: [
            lambda x, n=n: getattr(walk, method)(x, lambda: n) for n in (1, 2)])

    def _verified(self, what: str, build, calls):
        """`build(estimator)`, kept only if each of `calls(it, method)` reproduces the estimator on probe rows."""
        method = "predict_proba" if self.task == "classification" else "predict"
        try:
            candidate = build(self.estimator)
            probe = self._probe_features()
            expected = getattr(self.estimator, method)(probe)
            same = all(np.array_equal(call(probe), expected) for call in calls(candidate, method))
        except Exception as exc:  # any other estimator: the estimator's own predict is used
            log.info("%s not compiled (%s): using the estimator's predict", what, exc)
            return None
        if not same:
            log.warning("%s differ from the estimator on probe rows: using the estimator's predict", what)
            return None
        return candidate

    def _probe_features(self) -> np.ndarray:
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
        return self.features(Columns(n, numeric, categorical))

    def features(self, parsed: Columns) -> np.ndarray:
        parts = [block.transform(parsed) for block in self.blocks]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    def frame(self, parsed: Columns):
        """The parsed rows as the DataFrame the Pipeline was trained on (fallback path)."""
        return parsed.to_frame(self.schema)

    def predict(self, parsed: Columns, probabilities: bool = False,
                threads: Callable[[], int] | None = None) -> Prediction:
        """`threads`, if given, says how many OpenMP threads a large batch may use at that moment."""
        if self.compiled:
            x = self.features(parsed)
            model = self.forest if self.forest is not None and parsed.rows <= FOREST_MAX_ROWS else self.estimator
        else:
            x = self.frame(parsed)
            model = self.pipeline
        if threads is not None and self.walk is not None and model is self.estimator \
                and parsed.rows >= THREADED_MIN_ROWS:
            model = _WithThreads(self.walk, threads)
        if self.task == "classification":
            proba = model.predict_proba(x)
            encoded = np.argmax(proba, axis=1)  # sklearn's own rule: first maximum wins
            labels = [self.classes[i] for i in encoded]
            return Prediction(labels, proba if probabilities else None, self.classes)
        return Prediction(model.predict(x).tolist(), None, None)


class _WithThreads:
    """The tree walk with this request's thread budget, shaped like an estimator for `_predict`."""

    def __init__(self, walk, threads: Callable[[], int]) -> None:
        self.walk, self.threads = walk, threads

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.walk.predict_proba(x, self.threads)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.walk.predict(x, self.threads)
