"""The model: ONE scikit-learn Pipeline (imputation, scaling, one-hot inside) + gradient boosting."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import loguniform, randint
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, RandomizedSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

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


def fit(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series, task: str, tuning: dict, seed: int) -> tuple[Pipeline, dict]:
    """Fit directly, or by randomised search with k-fold CV when tuning_iterations > 0."""
    iterations = int(tuning.get("tuning_iterations", 0))
    started = time.perf_counter()
    summary: dict[str, Any] = {"tuning_iterations": iterations}
    if iterations <= 0:
        pipeline.fit(x, y)
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


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
