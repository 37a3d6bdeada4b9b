"""Nodes of the evaluation pipeline."""

from __future__ import annotations

import html
import platform
from datetime import UTC, datetime

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
from sklearn.inspection import permutation_importance
from sklearn.metrics import confusion_matrix, roc_curve
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml_pipeline import metrics as metric_functions
from ml_pipeline.plots import page, png, table

FORMAT_VERSION = 1


# Evaluation only predicts (permutation importance alone is ≈ 100 predict calls on ≤ 2000 rows). Predictions
# gain nothing from a second OpenMP thread and, on shared cores, each parallel region waits for a descheduled
# thread, so these nodes run on one; the numbers are the same either way.
def _one_thread():
    return threadpool_limits(limits=1)


def evaluate_model(model: Pipeline, test_set: pd.DataFrame, validation_set: pd.DataFrame, data_schema: dict) -> dict:
    """Metrics on the held-out test split (the gate's numbers) and on the validation split."""
    features = [f["name"] for f in data_schema["features"]]
    target, task = data_schema["target"], data_schema["task"]
    with _one_thread():
        return {
            split: metric_functions.compute_metrics(model, frame[features], frame[target], task)
            for split, frame in (("test", test_set), ("validation", validation_set))
        }


def compute_importance(model: Pipeline, validation_set: pd.DataFrame, data_schema: dict, evaluation: dict) -> list[dict]:
    """Permutation importance of each input column on (a sample of) the validation split, largest first."""
    features = [f["name"] for f in data_schema["features"]]
    sample = validation_set
    limit = int(evaluation["importance_max_rows"])
    if len(sample) > limit:
        sample = sample.sample(n=limit, random_state=int(evaluation["seed"]))
    if data_schema["task"] == "regression":
        scoring = "r2"
    else:
        scoring = "roc_auc" if len(data_schema["classes"]) == 2 and sample[data_schema["target"]].nunique() == 2 else "accuracy"
    with _one_thread():
        result = permutation_importance(model, sample[features], sample[data_schema["target"]], scoring=scoring,
                                        n_repeats=int(evaluation["importance_repeats"]),
                                        random_state=int(evaluation["seed"]), n_jobs=1)
    rows = [{"feature": name, "importance": float(mean), "std": float(std), "scoring": scoring}
            for name, mean, std in zip(features, result.importances_mean, result.importances_std, strict=True)]
    return sorted(rows, key=lambda r: r["importance"], reverse=True)


def build_evaluation_report(model: Pipeline, model_input: pd.DataFrame, test_set: pd.DataFrame, data_schema: dict,
                            model_metrics: dict, importance: list[dict], training_summary: dict,
                            evaluation: dict) -> str:
    """HTML report with embedded PNGs: statistics, histograms, top-2 scatter, confusion/ROC or residuals, importance."""
    features = [f["name"] for f in data_schema["features"]]
    target, task = data_schema["target"], data_schema["task"]
    limit = int(evaluation["plot_max_rows"])
    seed = int(evaluation["seed"])
    plot_data = model_input.sample(n=limit, random_state=seed) if len(model_input) > limit else model_input
    test_sample = test_set.sample(n=limit, random_state=seed) if len(test_set) > limit else test_set
    parts = [f"<p>Task <b>{task}</b>, target <b>{html.escape(target)}</b>, {len(model_input)} rows "
             f"({training_summary.get('train_rows')} train / {len(test_set)} test). "
             f"Fit in {training_summary.get('fit_seconds')} s.</p>"]
    parts.append("<h2>Metrics</h2>" + table([{"split": s, **m} for s, m in model_metrics.items()]))
    if training_summary.get("best_params"):
        parts.append("<h2>Tuning</h2>" + table([{"scoring": training_summary["scoring"],
                                                 "best CV score": training_summary["best_score"],
                                                 "folds": training_summary["cv_folds"],
                                                 "iterations": training_summary["tuning_iterations"],
                                                 **training_summary["best_params"]}]))
    parts.append("<h2>Summary statistics</h2>" + _summary_table(model_input, data_schema))
    parts.append("<h2>Distributions</h2>" + _histograms(plot_data, data_schema))
    if len(importance) >= 2:
        parts.append("<h2>Two most important features</h2>" + _scatter(plot_data, data_schema, importance[0]["feature"],
                                                                        importance[1]["feature"]))
    x_test, y_test = test_sample[features], test_sample[target]
    with _one_thread():
        if task == "classification":
            parts.append("<h2>Confusion matrix (test)</h2>" + _confusion(model, x_test, y_test))
            parts.append("<h2>ROC curve (test)</h2>" + _roc(model, x_test, y_test))
        else:
            parts.append("<h2>Residuals (test)</h2>" + _residuals(model, x_test, y_test))
    parts.append("<h2>Permutation importance (validation)</h2>" + _importance(importance))
    return page(f"Model report: {target}", "".join(parts))


def _summary_table(frame: pd.DataFrame, data_schema: dict) -> str:
    rows = []
    for feature in data_schema["features"]:
        series = frame[feature["name"]]
        row = {"feature": feature["name"], "kind": feature["kind"], "missing %": 100.0 * float(series.isna().mean())}
        if feature["kind"] == "numeric":
            row.update({"mean": float(series.mean()), "std": float(series.std()), "min": float(series.min()),
                        "max": float(series.max()), "top": ""})
        else:
            counts = series.value_counts()
            row.update({"mean": "", "std": "", "min": "", "max": "",
                        "top": f"{counts.index[0]} ({counts.iloc[0]})" if len(counts) else "",
                        })
            row["distinct"] = int(series.nunique())
        rows.append(row)
    return table(rows, ["feature", "kind", "missing %", "mean", "std", "min", "max", "top"])


def _histograms(frame: pd.DataFrame, data_schema: dict) -> str:
    features = data_schema["features"]
    columns = 4
    rows = max(1, int(np.ceil(len(features) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for ax, feature in zip(axes.ravel(), features, strict=False):
        series = frame[feature["name"]].dropna()
        if feature["kind"] == "numeric":
            ax.hist(series.to_numpy(dtype=float), bins=30, color="#4c72b0")
        else:
            counts = series.value_counts().iloc[:15]
            ax.bar(range(len(counts)), counts.to_numpy(), color="#55a868")
            ax.set_xticks(range(len(counts)), [str(c)[:12] for c in counts.index], rotation=45, ha="right", fontsize=7)
        ax.set_title(feature["name"], fontsize=9)
    for ax in axes.ravel()[len(features):]:
        ax.axis("off")
    figure.tight_layout()
    return png(figure)


def _axis_values(frame: pd.DataFrame, name: str, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, list | None]:
    if kind == "numeric":
        return frame[name].to_numpy(dtype=float), None
    codes, labels = pd.factorize(frame[name])
    return codes + rng.uniform(-0.3, 0.3, len(codes)), list(labels)


def _scatter(frame: pd.DataFrame, data_schema: dict, first: str, second: str) -> str:
    kinds = {f["name"]: f["kind"] for f in data_schema["features"]}
    rng = np.random.default_rng(0)
    x, x_labels = _axis_values(frame, first, kinds[first], rng)
    y, y_labels = _axis_values(frame, second, kinds[second], rng)
    target = frame[data_schema["target"]]
    figure, ax = plt.subplots(figsize=(6, 4.5))
    if data_schema["task"] == "classification":
        for label in data_schema["classes"]:
            mask = (target == label).to_numpy()
            ax.scatter(x[mask], y[mask], s=6, alpha=0.5, label=str(label))
        ax.legend(title=data_schema["target"], fontsize=8)
    else:
        points = ax.scatter(x, y, s=6, alpha=0.5, c=target.to_numpy(dtype=float), cmap="viridis")
        figure.colorbar(points, label=data_schema["target"])
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), [str(v)[:12] for v in x_labels], rotation=45, ha="right")
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), [str(v)[:12] for v in y_labels])
    ax.set_xlabel(first)
    ax.set_ylabel(second)
    return png(figure)


def _confusion(model: Pipeline, x: pd.DataFrame, y: pd.Series) -> str:
    labels = list(model.classes_)
    matrix = confusion_matrix(y, model.predict(x), labels=labels)
    figure, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="black")
    ax.set_xticks(range(len(labels)), [str(v) for v in labels])
    ax.set_yticks(range(len(labels)), [str(v) for v in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    return png(figure)


def _roc(model: Pipeline, x: pd.DataFrame, y: pd.Series) -> str:
    labels = list(model.classes_)
    proba = model.predict_proba(x)
    figure, ax = plt.subplots(figsize=(4.5, 4))
    curves = [(labels[1], proba[:, 1])] if len(labels) == 2 else [(c, proba[:, i]) for i, c in enumerate(labels)]
    for label, score in curves:
        positives = (y == label).to_numpy()
        if 0 < positives.sum() < len(positives):
            fpr, tpr, _ = roc_curve(positives, score)
            ax.plot(fpr, tpr, label=f"{label}")
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8)
    return png(figure)


def _residuals(model: Pipeline, x: pd.DataFrame, y: pd.Series) -> str:
    predicted = model.predict(x)
    figure, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(predicted, y.to_numpy(dtype=float) - predicted, s=6, alpha=0.5)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    return png(figure)


def _importance(importance: list[dict]) -> str:
    shown = importance[:20][::-1]
    figure, ax = plt.subplots(figsize=(6, 0.3 * len(shown) + 1))
    ax.barh([r["feature"] for r in shown], [r["importance"] for r in shown], xerr=[r["std"] for r in shown],
            color="#c44e52")
    ax.set_xlabel(f"drop in {importance[0]['scoring'] if importance else 'score'} when shuffled")
    return png(figure) + table(importance, ["feature", "importance", "std"])


def assemble_metadata(data_schema: dict, model_metrics: dict, reference_profile: dict, expectation_suite: dict,
                      importance: list[dict], training_summary: dict, lineage: dict) -> dict:
    """metadata.json of the model directory (CONTRACTS.md)."""
    return {
        "format_version": FORMAT_VERSION,
        "task": data_schema["task"],
        "target": data_schema["target"],
        "features": data_schema["features"],
        "classes": data_schema["classes"],
        "metrics": model_metrics,
        "feature_importance": importance,
        "training": training_summary,
        "reference_profile": reference_profile,
        "expectation_suite": expectation_suite,
        "lineage": lineage,
        "runtime": {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
                    "pandas": pd.__version__, "numpy": np.__version__},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
