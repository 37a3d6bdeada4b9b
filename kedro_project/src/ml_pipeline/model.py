"""The model: ONE scikit-learn Pipeline (imputation, scaling, one-hot inside) + gradient boosting."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import loguniform, randint
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml_pipeline.allocator import give_back_freed_memory
from ml_pipeline.errors import ConfigError

MISSING_CATEGORY = "__missing__"
ESTIMATOR_PARAMS = (
    "learning_rate", "max_iter", "max_leaf_nodes", "max_depth", "min_samples_leaf",
    "l2_regularization", "max_features", "max_bins", "early_stopping", "n_iter_no_change",
    "validation_fraction", "class_weight",
)


def build_pipeline(features: list[dict], task: str, estimator_params: dict, max_categories: int, seed: int) -> Pipeline:
    """Preprocessing + estimator as one Pipeline, so serving applies exactly what training fitted."""
    unknown = sorted(set(estimator_params) - set(ESTIMATOR_PARAMS))
    if unknown:
        raise ConfigError(f"unknown estimator parameters {unknown}; allowed: {', '.join(ESTIMATOR_PARAMS)}")
    numeric = [f["name"] for f in features if f["kind"] == "numeric"]
    categorical = [f["name"] for f in features if f["kind"] == "categorical"]
    transformers = []
    if numeric:
        transformers.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]), numeric))
    if categorical:
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY, keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=max_categories,
                                     sparse_output=False, dtype=np.float64)),
        ]), categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    params = {k: v for k, v in estimator_params.items() if v is not None}
    if task == "classification":
        estimator: Any = HistGradientBoostingClassifier(random_state=seed, **params)
    else:
        estimator = HistGradientBoostingRegressor(random_state=seed, **params)
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def search_space(space: dict) -> dict:
    """Randomised-search distributions from parameters: {name: [low, high, "log"|"int"]}."""
    distributions = {}
    for name, (low, high, scale) in space.items():
        if scale == "log":
            distributions[f"model__{name}"] = loguniform(float(low), float(high))
        elif scale == "int":
            distributions[f"model__{name}"] = randint(int(low), int(high) + 1)
        else:
            raise ConfigError(f"search space {name}: scale must be 'log' or 'int', got {scale!r}")
    return distributions


def scoring_for(task: str, n_classes: int) -> str:
    if task == "regression":
        return "neg_root_mean_squared_error"
    return "roc_auc" if n_classes == 2 else "f1_weighted"


@dataclass(frozen=True)
class EstimatorInput:
    """The estimator's input as `Pipeline.fit` would hand it over: the float64 matrix of the rows the trees are
    fitted on, and the early-stopping rows' own matrix (None without early stopping)."""

    x: np.ndarray
    y: pd.Series
    x_val: np.ndarray | None = None
    y_val: pd.Series | None = None


@dataclass(frozen=True)
class TrainingInput:
    """A Pipeline and what it is fitted on: the estimator's input (its preprocessing then already fitted), or the
    frame itself when the whole Pipeline is fitted (tuning, or a shape `prepare_lean` does not reproduce)."""

    pipeline: Pipeline
    rows: int
    prepared: EstimatorInput | None = None
    x: pd.DataFrame | None = None
    y: pd.Series | None = None
    seconds: float = 0.0


def prepare(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, tuning: dict) -> TrainingInput:
    """The training input: without tuning, the estimator's matrices built from `x` (nothing of `x` is kept)."""
    started = time.perf_counter()
    prepared = None if int(tuning.get("tuning_iterations", 0)) > 0 else prepare_lean(pipeline, x, y)
    if prepared is None:
        return TrainingInput(pipeline, len(y), x=x, y=y, seconds=time.perf_counter() - started)
    return TrainingInput(pipeline, len(y), prepared, seconds=time.perf_counter() - started)


def fit(training_input: TrainingInput, task: str, tuning: dict, seed: int) -> tuple[Pipeline, dict]:
    """Fit directly, or by randomised search with k-fold CV when tuning_iterations > 0."""
    iterations = int(tuning.get("tuning_iterations", 0))
    started = time.perf_counter() - training_input.seconds
    summary: dict[str, Any] = {"tuning_iterations": iterations}
    pipeline, x, y = training_input.pipeline, training_input.x, training_input.y
    if iterations <= 0:
        if training_input.prepared is None:
            pipeline.fit(x, y)
        else:
            fit_prepared(pipeline, training_input.prepared)
        summary["fit_seconds"] = round(time.perf_counter() - started, 3)
        return pipeline, summary
    folds = int(tuning.get("cv_folds", 3))
    if folds < 2:
        raise ConfigError(f"cv_folds must be >= 2 when tuning, got {folds}")
    n_classes = int(y.nunique())
    splitter = (StratifiedKFold if task == "classification" else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    search = RandomizedSearchCV(
        pipeline, search_space(tuning["search_space"]), n_iter=iterations, cv=splitter,
        scoring=scoring_for(task, n_classes), random_state=seed, refit=True, n_jobs=1, error_score="raise",
    )
    search.fit(x, y)
    summary.update({
        "cv_folds": folds,
        "scoring": search.scoring,
        "best_score": float(search.best_score_),
        "best_params": {k.removeprefix("model__"): _plain(v) for k, v in search.best_params_.items()},
        "fit_seconds": round(time.perf_counter() - started, 3),
    })
    return search.best_estimator_, summary


# Rows transformed at a time when the model's input matrix is filled: the transient copies of one chunk stay small.
TRANSFORM_CHUNK_ROWS = 16_384


def fit_lean(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series) -> Pipeline:
    """`pipeline.fit(x, y)` to the same fitted Pipeline, without its copies of the data (`prepare_lean`)."""
    prepared = prepare_lean(pipeline, x, y)
    return pipeline.fit(x, y) if prepared is None else fit_prepared(pipeline, prepared)


def prepare_lean(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series) -> EstimatorInput | None:
    """Fit the pipeline's preprocessing as `pipeline.fit(x, y)` does and build the estimator's input from `x`.

    `pipeline.fit` transforms all of `x` at once (the ColumnTransformer's parts and their concatenation: ≈ 4× the
    float64 matrix), then the estimator's early stopping copies the matrix again to hold out its validation rows.
    Here each part of the ColumnTransformer is fitted on its own columns, the matrix is filled chunk by chunk, and
    the hold-out rows are the very rows the estimator would draw (same seed, same stratified split), filled into
    their own matrix to be passed as `X_val`: the same model, bit for bit (tests/kedro_project/test_model.py).
    None for pipelines of another shape, or estimator settings this path does not reproduce: `pipeline.fit` them.
    """
    rows = _early_stopping_rows(pipeline, y)
    if rows is None:
        return None
    preprocess = pipeline.steps[0][1]
    _fit_column_transformer(preprocess, x)
    # The medians' sorted copies (≈ 0.09 GiB at 1M rows) are freed but stay resident under the matrix filled next.
    give_back_freed_memory()
    train, held_out = rows
    if held_out is None:
        return EstimatorInput(_transformed(preprocess, x, train), y.iloc[train])
    return EstimatorInput(_transformed(preprocess, x, train), y.iloc[train],
                          _transformed(preprocess, x, held_out), y.iloc[held_out])


def fit_prepared(pipeline: Pipeline, prepared: EstimatorInput) -> Pipeline:
    """Fit the estimator of a pipeline whose preprocessing `prepare_lean` fitted."""
    estimator = pipeline.steps[-1][1]
    if prepared.x_val is None:
        estimator.fit(prepared.x, prepared.y)
    else:
        estimator.fit(prepared.x, prepared.y, X_val=prepared.x_val, y_val=prepared.y_val)
    return pipeline


def _early_stopping_rows(pipeline: Pipeline, y: pd.Series) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(rows the trees are fitted on, the estimator's early-stopping rows or None), as the estimator's `fit` would
    split them; None when this path would not give the same model (then `pipeline.fit` fits)."""
    if len(pipeline.steps) != 2 or not isinstance(pipeline.steps[0][1], ColumnTransformer):
        return None
    estimator = pipeline.steps[-1][1]
    if not isinstance(estimator, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
        return None
    seed = estimator.random_state
    if not isinstance(seed, int | np.integer) or estimator.warm_start or estimator.get_params().get("class_weight") \
            is not None or estimator.validation_fraction is None:
        return None
    n = len(y)
    stopping = n > 10_000 if estimator.early_stopping == "auto" else bool(estimator.early_stopping)
    everything = np.arange(n)
    if not stopping:
        return everything, None
    # HistGradientBoosting's fit: its first draw from RandomState(random_state) seeds the train/validation split,
    # stratified by the class for a classifier.
    split_seed = np.random.RandomState(seed).randint(np.iinfo(np.uint32).max, dtype="u8")
    stratify = y.to_numpy() if isinstance(estimator, HistGradientBoostingClassifier) else None
    train, held_out = train_test_split(everything, test_size=estimator.validation_fraction, stratify=stratify,
                                       random_state=split_seed)
    if estimator.early_stopping == "auto" and len(train) <= 10_000:
        return None  # given X_val, "auto" decides on the fitted rows alone: it would not stop early
    return train, held_out


def _fit_column_transformer(preprocess: ColumnTransformer, x: pd.DataFrame) -> None:
    """Fit `preprocess` as its `fit(x)` does, each part on its own columns, without transforming x.

    The structure (input columns, names, remainder) comes from fitting on the first rows; the parts fitted on every
    row then replace the ones fitted there, and the output slices are recounted from their output widths.
    """
    preprocess.fit(x.iloc[:min(len(x), 64)])
    fitted = []
    for name, transformer, columns in preprocess.transformers_:
        if transformer in ("drop", "passthrough") or len(columns) == 0:
            fitted.append((name, transformer, columns))
            continue
        part = _fit_part(clone(dict((n, t) for n, t, _ in preprocess.transformers)[name]), x[list(columns)])
        fitted.append((name, part, columns))
    preprocess.transformers_ = fitted
    start, indices = 0, {}
    for name, transformer, columns in fitted:
        if transformer == "drop" or len(columns) == 0:
            continue
        width = len(columns) if transformer == "passthrough" else len(transformer.get_feature_names_out())
        indices[name] = slice(start, start + width)
        start += width
    preprocess.output_indices_ = {**{k: slice(0, 0) for k in preprocess.output_indices_}, **indices}


# Columns whose medians the imputer computes at a time (numpy's masked median holds ≈ 4 sorted copies of its input).
MEDIAN_COLUMNS = 2


def _fit_part(part, x: pd.DataFrame):
    """`part.fit(x)`; a Pipeline led by a median SimpleImputer gets its medians column group by column group.

    A median is an order statistic, the same whichever columns are computed beside it; the imputer's other fitted
    attributes come from a fit on every column. The later steps are fitted on the imputed matrix as Pipeline.fit
    fits them (a scaler's sums depend on that matrix's layout, so they see the very same one).
    """
    steps = getattr(part, "steps", None)
    imputer = steps[0][1] if steps else None
    if not isinstance(imputer, SimpleImputer) or imputer.strategy != "median" or imputer.add_indicator \
            or len(x.columns) <= MEDIAN_COLUMNS:
        return part.fit(x)
    medians = [clone(imputer).fit(x.iloc[:, i:i + MEDIAN_COLUMNS]).statistics_
               for i in range(0, len(x.columns), MEDIAN_COLUMNS)]
    imputer.fit(x.iloc[:1])
    imputer.statistics_ = np.concatenate(medians)
    transformed = imputer.transform(x)
    for _, step in steps[1:-1]:
        transformed = step.fit_transform(transformed)
    steps[-1][1].fit(transformed)
    return part


def _transformed(preprocess: ColumnTransformer, x: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """preprocess.transform(x.iloc[rows]) filled chunk by chunk into one float64 array (the estimator's dtype)."""
    width = max((s.stop for s in preprocess.output_indices_.values()), default=0)
    out = np.empty((len(rows), width), dtype=np.float64)
    for start in range(0, len(rows), TRANSFORM_CHUNK_ROWS):
        chunk = rows[start:start + TRANSFORM_CHUNK_ROWS]
        out[start:start + len(chunk)] = preprocess.transform(x.iloc[chunk])
    return out


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
