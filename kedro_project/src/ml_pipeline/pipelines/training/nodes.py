"""Nodes of the training pipeline."""

from __future__ import annotations

import pandas as pd
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml_pipeline import model
from ml_pipeline.serving.forest import CompiledForest, ForestBuild

# Below this many training rows the fit runs on one OpenMP thread. Small fits gain little from a second
# thread and lose the most when the cores are shared: each boosting iteration opens parallel regions that
# wait for a descheduled thread (a 1000-row `train` took 15.5 s with default threads, 6.5 s with one, load ≈ 2).
# HistGradientBoosting's result does not depend on the thread count.
SINGLE_THREAD_FIT_ROWS = 50_000


def prepare_training(train_set: pd.DataFrame, data_schema: dict, training: dict, seed: int) -> model.TrainingInput:
    """ONE Pipeline (imputation, scaling, one-hot, gradient boosting) and its input from the train split: without
    tuning, the preprocessing fitted and the estimator's matrices built, so that Kedro releases the typed split
    before the fit (its largest memory after the matrices, ≈ 0.08 GiB per million input rows)."""
    features = [f["name"] for f in data_schema["features"]]
    pipeline = model.build_pipeline(data_schema["features"], data_schema["task"], dict(training.get("estimator") or {}),
                                    int(training["max_categories"]), seed)
    with _threads(len(train_set)):
        return model.prepare(pipeline, train_set[features], train_set[data_schema["target"]], training)


def fit_model(training_input: model.TrainingInput, data_schema: dict, training: dict, seed: int
              ) -> tuple[Pipeline, dict]:
    """Fit the Pipeline on its prepared input (or by randomised search with k-fold CV when tuning)."""
    with _threads(training_input.rows):
        fitted, summary = model.fit(training_input, data_schema["task"], training, seed)
    summary["train_rows"] = training_input.rows
    return fitted, summary


def train_model(train_set: pd.DataFrame, data_schema: dict, training: dict, seed: int) -> tuple[Pipeline, dict]:
    """prepare_training, then fit_model (the training pipeline's first two nodes), in one call."""
    return fit_model(prepare_training(train_set, data_schema, training, seed), data_schema, training, seed)


def _threads(rows: int) -> threadpool_limits:
    return threadpool_limits(limits=1 if rows <= SINGLE_THREAD_FIT_ROWS else None)


def start_compiling(fitted: Pipeline) -> ForestBuild:
    """Start compiling the fitted trees to a shared library for `serve`, built by this image, which also serves.

    The compiler runs in the background while the evaluation nodes run (they use one thread each); compiling is
    ≈ 2-3 s of a small training run's ≈ 8 s. Never fails the run: a model whose trees cannot be compiled is served
    by the estimator (forest.json says why).
    """
    return ForestBuild(fitted.steps[-1][1])


def finish_compiling(build: ForestBuild) -> CompiledForest:
    """The compiled trees, once the compiler is done."""
    return build.result()


def compile_model(fitted: Pipeline) -> CompiledForest:
    """start_compiling, then finish_compiling: the compiled trees of a fitted model, in one call."""
    return finish_compiling(start_compiling(fitted))
