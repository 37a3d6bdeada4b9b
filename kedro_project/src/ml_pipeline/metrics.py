"""Model metrics on a held-out split (higher is better except rmse/mae)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")


def compute_metrics(model, x: pd.DataFrame, y: pd.Series, task: str) -> dict[str, float]:
    """accuracy/precision/recall/F1/ROC-AUC (binary: positive = second class; multiclass: weighted) or RMSE/MAE/R²."""
    if len(y) == 0:
        return {}
    if task == "regression":
        predicted = model.predict(x)
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
            "mae": float(skm.mean_absolute_error(y, predicted)),
            "r2": float(skm.r2_score(y, predicted)) if len(y) > 1 else float("nan"),
        }
    classes = list(model.classes_)
    proba = model.predict_proba(x)
    predicted = model.predict(x)
    binary = len(classes) == 2
    averaging = {"average": "binary", "pos_label": classes[1]} if binary else {"average": "weighted"}
    result = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0, **averaging)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0, **averaging)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0, **averaging)),
    }
    present = set(pd.unique(y))
    if len(present) < 2:
        result["roc_auc"] = float("nan")
    elif binary:
        result["roc_auc"] = float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
    elif present == set(classes):
        result["roc_auc"] = float(skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted", labels=classes))
    else:
        result["roc_auc"] = float("nan")
    return result
