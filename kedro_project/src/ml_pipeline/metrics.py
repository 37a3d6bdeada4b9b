"""Model metrics on a held-out split (higher is better except rmse/mae)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")


def metric_names(task: str) -> tuple[str, ...]:
    """Every metric of the task, in the order the logs print them."""
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def compute_metrics(model, x: pd.DataFrame, y: pd.Series, task: str, classes: list | None = None) -> dict[str, float]:
    """accuracy/precision/recall/F1/ROC-AUC (binary: positive = second class; multiclass: weighted) or RMSE/MAE/R².

    `classes`: the label set the metrics are defined over, when it is not the model's own — a production model
    scored on a newer model's rows is measured over the newer model's classes, so both get the same averaging
    (a class it never learnt has probability 0; labels outside the set make the averages weighted).
    """
    if len(y) == 0:
        return {}
    if task == "regression":
        from sklearn import metrics as skm  # at first use: `track` and `join-labels` start without scikit-learn

        predicted = model.predict(x)
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
            "mae": float(skm.mean_absolute_error(y, predicted)),
            "r2": float(skm.r2_score(y, predicted)) if len(y) > 1 else float("nan"),
        }
    model_classes = list(model.classes_)
    proba = model.predict_proba(x)
    predicted = _labels(model, proba, x)
    if classes is None or list(classes) == model_classes:
        return _classification(y, predicted, proba, model_classes)
    return _classification(y, predicted, _aligned(proba, model_classes, list(classes)), list(classes), aligned=True)


def _labels(model, proba: np.ndarray, x: pd.DataFrame):
    """The model's predicted labels. HistGradientBoosting's `predict` is `classes_[argmax(predict_proba)]`: taken
    from the probabilities already computed, it costs no second pass over the trees (half of scoring 200k rows)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    if isinstance(estimator, HistGradientBoostingClassifier):
        return model.classes_[np.argmax(proba, axis=1)]
    return model.predict(x)


def _classification(y: pd.Series, predicted, proba: np.ndarray, classes: list, aligned: bool = False) -> dict:
    from sklearn import metrics as skm

    present = set(pd.unique(y))
    # Binary averaging needs every label in the two classes; a label the model never learnt (ground truth, a
    # newer model's class) makes the averages weighted instead of failing.
    binary = len(classes) == 2 and (present | set(pd.unique(predicted))) <= set(classes)
    averaging = {"average": "binary", "pos_label": classes[1]} if binary else {"average": "weighted"}
    result = {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0, **averaging)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0, **averaging)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0, **averaging)),
    }
    if len(present) < 2:
        result["roc_auc"] = float("nan")
    elif len(classes) == 2:
        result["roc_auc"] = float(skm.roc_auc_score(y == classes[1], proba[:, 1]))
    elif present == set(classes):
        if aligned:  # rows need not sum to 1 here: one-vs-rest by hand, weighted by prevalence, as sklearn does
            truth = np.asarray(y)
            scores = [skm.roc_auc_score(truth == c, proba[:, i]) for i, c in enumerate(classes)]
            weights = [float(np.mean(truth == c)) for c in classes]
            result["roc_auc"] = float(np.average(scores, weights=weights))
        else:
            result["roc_auc"] = float(skm.roc_auc_score(y, proba, multi_class="ovr", average="weighted",
                                                        labels=classes))
    else:
        result["roc_auc"] = float("nan")
    return result


def _aligned(proba: np.ndarray, model_classes: list, classes: list) -> np.ndarray:
    """Probability columns in `classes` order; 0 for a class the model does not know."""
    out = np.zeros((proba.shape[0], len(classes)), dtype=np.float64)
    position = {c: i for i, c in enumerate(classes)}
    for j, c in enumerate(model_classes):
        if c in position:
            out[:, position[c]] = proba[:, j]
    return out
