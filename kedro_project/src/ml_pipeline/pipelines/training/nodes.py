"""Nodes of the training pipeline."""

from __future__ import annotations

import pandas as pd
from sklearn.pipeline import Pipeline

from ml_pipeline import model


def train_model(train_set: pd.DataFrame, data_schema: dict, training: dict, seed: int) -> tuple[Pipeline, dict]:
    """Fit ONE Pipeline (imputation, scaling, one-hot, gradient boosting) on the train split."""
    features = [f["name"] for f in data_schema["features"]]
    pipeline = model.build_pipeline(data_schema["features"], data_schema["task"], dict(training.get("estimator") or {}),
                                    int(training["max_categories"]), seed)
    fitted, summary = model.fit(pipeline, train_set[features], train_set[data_schema["target"]],
                                data_schema["task"], training, seed)
    summary["train_rows"] = int(len(train_set))
    return fitted, summary
