"""Nodes of the evaluation pipeline."""

from __future__ import annotations

import html
import platform
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sklearn
from sklearn.inspection import permutation_importance
from sklearn.metrics import confusion_matrix, roc_curve
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from ml_pipeline import bias as bias_metrics
from ml_pipeline import comparison as champion_comparison
from ml_pipeline import explainability as shap_explanations
from ml_pipeline import metrics as metric_functions
from ml_pipeline import model_card as card
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.plots import page, png, pyplot, table

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


def compare_with_champion(model: Pipeline, champion_model: dict | None, test_set: pd.DataFrame,
                          test_sources: pd.Series, data_schema: dict, lineage: dict,
                          model_metrics: dict | None = None) -> dict:
    """Champion (production model, if any) and challenger on the same rows: the test split and its new rows."""
    with _one_thread():
        return champion_comparison.compare(model, champion_model, test_set, test_sources, data_schema, lineage,
                                           challenger_test_metrics=(model_metrics or {}).get("test"))


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


def select_bias_columns(train_set: pd.DataFrame, data_schema: dict, responsible_ml: dict | str | None
                        ) -> pd.DataFrame:
    """The train split's columns the pre-training bias metrics read (facets, group column, target), copied out of
    it: taken before training, so that Kedro releases the split itself before the fit. A configuration
    compute_bias would refuse stops the run here, before training."""
    config = bias_metrics.parse_config(responsible_ml)
    bias_metrics.check_columns(config, data_schema)
    if not config["facets"]:
        return train_set[[]].copy()
    columns = [facet["column"] for facet in config["facets"]] + [config.get("group_column"), data_schema["target"]]
    return train_set[list(dict.fromkeys(c for c in columns if c is not None))].copy(deep=True)


def compute_bias(model: Pipeline, train_set: pd.DataFrame, test_set: pd.DataFrame, data_schema: dict,
                 responsible_ml: dict | str | None) -> dict:
    """Clarify's pre-training bias metrics on the training split (or its columns select_bias_columns took) and
    post-training ones on the test split's predictions, per configured facet; fails on a facet or group column
    the data does not have."""
    config = bias_metrics.parse_config(responsible_ml)
    bias_metrics.check_columns(config, data_schema)
    features = [f["name"] for f in data_schema["features"]]
    predictions = np.asarray([])
    if config["facets"] and len(test_set):
        with _one_thread():
            predictions = model.predict(test_set[features])
    return to_jsonable(bias_metrics.bias_report(config, data_schema, train_set, test_set, predictions))


def explain_model(model: Pipeline, test_set: pd.DataFrame, data_schema: dict, evaluation: dict) -> dict:
    """SHAP values per input column on a seeded sample of the test split: global mean |SHAP|, a few local
    explanations."""
    with _one_thread():
        return to_jsonable(shap_explanations.explain(model, test_set, data_schema, evaluation))


def build_model_card(data_schema: dict, model_metrics: dict, training_summary: dict, lineage: dict, bias: dict,
                     explainability: dict, responsible_ml: dict | str | None, test_set: pd.DataFrame) -> dict:
    """Model card content (SageMaker Model Card layout) from what the run knows."""
    config = bias_metrics.parse_config(responsible_ml)
    return to_jsonable(card.build_model_card(data_schema, model_metrics, training_summary, lineage, bias,
                                             explainability, config, _runtime(), len(test_set)))


def describe_model_input(model_input: pd.DataFrame, data_schema: dict, evaluation: dict) -> dict:
    """What the report shows of the whole input: its size, summary statistics and a plotting sample. Taken as soon as
    the input exists, so that Kedro releases the input itself before training (≈ 0.1 GiB per million rows)."""
    limit, seed = int(evaluation["plot_max_rows"]), int(evaluation["seed"])
    sample = model_input.sample(n=limit, random_state=seed) if len(model_input) > limit else model_input.copy()
    return {"rows": int(len(model_input)), "summary": _summary_rows(model_input, data_schema), "plot_data": sample}


def build_evaluation_report(model: Pipeline, input_description: dict, test_set: pd.DataFrame, data_schema: dict,
                            model_metrics: dict, importance: list[dict], training_summary: dict,
                            evaluation: dict, comparison: dict | None = None, bias: dict | None = None,
                            explainability: dict | None = None, model_card: dict | None = None) -> str:
    """HTML report with embedded PNGs: champion vs challenger, statistics, histograms, top-2 scatter,
    confusion/ROC or residuals, importance, bias, SHAP explanations, the model card."""
    features = [f["name"] for f in data_schema["features"]]
    target, task = data_schema["target"], data_schema["task"]
    limit = int(evaluation["plot_max_rows"])
    seed = int(evaluation["seed"])
    plot_data = input_description["plot_data"]
    test_sample = test_set.sample(n=limit, random_state=seed) if len(test_set) > limit else test_set
    parts = [f"<p>Task <b>{task}</b>, target <b>{html.escape(target)}</b>, {input_description['rows']} rows "
             f"({training_summary.get('train_rows')} train / {len(test_set)} test). "
             f"Fit in {training_summary.get('fit_seconds')} s.</p>"]
    parts.append("<h2>Metrics</h2>" + table([{"split": s, **m} for s, m in model_metrics.items()]))
    if comparison is not None:
        parts.append("<h2>Champion vs challenger (same rows)</h2>" + _comparison(comparison, task, evaluation))
    if training_summary.get("best_params"):
        parts.append("<h2>Tuning</h2>" + table([{"scoring": training_summary["scoring"],
                                                 "best CV score": training_summary["best_score"],
                                                 "folds": training_summary["cv_folds"],
                                                 "iterations": training_summary["tuning_iterations"],
                                                 **training_summary["best_params"]}]))
    parts.append("<h2>Summary statistics</h2>" + table(input_description["summary"],
                                                       ["feature", "kind", "missing %", "mean", "std", "min", "max",
                                                        "top"]))
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
    if bias is not None:
        parts.append("<h2>Bias</h2>" + _bias(bias))
    if explainability is not None:
        parts.append("<h2>Explainability (SHAP)</h2>" + _explainability(explainability))
    if model_card is not None:
        parts.append("<h2>Model card</h2>" + card.render(model_card))
    return page(f"Model report: {target}", "".join(parts))


def _bias(bias: dict) -> str:
    outcome = (f"positive label {bias['positive_label']!r}" if bias.get("positive_label") is not None else
               f"positive outcome: value > {bias['label_threshold']}" if bias.get("label_threshold") is not None
               else "no positive outcome")
    if not bias.get("configured"):
        return f"<p>{html.escape(str(bias.get('reason') or 'no facets configured'))}.</p>"
    parts = [f"<p>SageMaker Clarify's metrics (docs/ml.md, Bias): pre-training on the training split's labels, "
             f"post-training on the test split's predictions; facet d = the sensitive rows, a = the rest; "
             f"{html.escape(outcome)}.</p>"]
    if bias.get("reason"):
        parts.append(f"<p>{html.escape(bias['reason'])}.</p>")
    for facet in bias["facets"]:
        parts.append(f"<h3>{html.escape(facet['label'])}</h3><p>training rows: d {facet['n_d']}, a {facet['n_a']}; "
                     f"test rows: d {facet.get('n_d_test')}, a {facet.get('n_a_test')}.</p>")
        rows = [{"metric": k, "phase": phase.replace("_", "-"), "value": v}
                for phase in ("pre_training", "post_training") for k, v in (facet.get(phase) or {}).items()]
        parts.append(table(rows, ["metric", "phase", "value"]))
        if facet.get("reason"):
            parts.append(f"<p>{html.escape(facet['reason'])}</p>")
    plotted = [f for f in bias["facets"] if f.get("pre_training") or f.get("post_training")]
    if plotted:
        parts.append(_bias_plot(plotted))
    return "".join(parts)


def _bias_plot(facets: list[dict]) -> str:
    """Differences (0 = parity) per facet and phase; DI, a ratio, is drawn as DI − 1."""
    figure, axes = pyplot().subplots(len(facets), 2, figsize=(10, 2.6 * len(facets)), squeeze=False)
    for row, facet in zip(axes, facets, strict=True):
        for ax, phase in zip(row, ("pre_training", "post_training"), strict=True):
            values = {k: v for k, v in (facet.get(phase) or {}).items() if v is not None}
            if "DI" in values:
                values["DI − 1"] = values.pop("DI") - 1
            names = list(values)
            ax.barh(names, [values[n] for n in names], color=["#c44e52" if values[n] < 0 else "#4c72b0"
                                                              for n in names])
            ax.axvline(0, color="grey", linewidth=0.8)
            ax.invert_yaxis()
            ax.tick_params(labelsize=7)
            ax.set_title(f"{facet['label']}: {phase.replace('_', '-')}", fontsize=9)
    figure.tight_layout()
    return png(figure)


def _explainability(explainability: dict) -> str:
    ranking = explainability.get("global") or []
    if not ranking:
        return f"<p>No test rows to explain ({html.escape(str(explainability.get('library')))}).</p>"
    base = explainability["base_value"]
    base_text = ", ".join(f"{v:.4g}" for v in base) if isinstance(base, list) else f"{base:.4g}"
    parts = [f"<p>{html.escape(str(explainability.get('method')))} ({html.escape(str(explainability.get('library')))}) "
             f"on {explainability.get('rows')} test rows. Explained output: "
             f"{html.escape(str(explainability.get('output')))}; base value {html.escape(base_text)}. "
             f"Largest |base value + Σ contributions − output| over the rows: "
             f"{explainability.get('additivity_max_error'):.2g}.</p>"]
    shown = ranking[:20][::-1]
    figure, ax = pyplot().subplots(figsize=(6, 0.3 * len(shown) + 1))
    ax.barh([r["column"] for r in shown], [r["mean_abs_shap"] for r in shown], color="#8172b2")
    ax.set_xlabel("mean |SHAP| (input column, one-hot columns summed)")
    parts.append(png(figure) + table(ranking, ["column", "mean_abs_shap"]))
    for i, item in enumerate(explainability.get("local") or []):
        contributions = sorted(item["contributions"].items(), key=lambda kv: abs(kv[1] or 0), reverse=True)
        rows = [{"column": name, "value": item["row"].get(name), "contribution": value}
                for name, value in contributions]
        label = f", class {item['class']}" if item.get("class") is not None else ""
        parts.append(f"<h3>Row {i + 1}: prediction {html.escape(str(item['prediction']))}{html.escape(label)}</h3>"
                     f"<p>base value {item['base_value']:.4g} + Σ contributions = raw output "
                     f"{item['raw_output']:.4g}</p>" + table(rows, ["column", "value", "contribution"]))
    return "".join(parts)


def _comparison(comparison: dict, task: str, evaluation: dict) -> str:
    """Side-by-side metrics of the production model and this one, and a bar chart of the gate-relevant metrics."""
    champion = comparison["champion"]
    new = comparison.get("new")
    if champion.get("scored"):
        head = (f"Production model (champion) {html.escape(str(champion.get('training_job') or '(job unknown)'))}, "
                f"sha256 {html.escape(str(champion.get('sha256'))[:12])}…, scored on this model's test split "
                f"({comparison['test']['rows']} rows) and on its {new['rows']} new rows.")
        if champion.get("ignored_columns"):
            head += f" Columns it never saw (not used by it): {html.escape(', '.join(champion['ignored_columns']))}."
    else:
        head = f"Production model not scored: {html.escape(str(champion.get('reason')))}."
    parts = [f"<p>{head}</p>"]
    if new is not None:
        files = new.get("files") or []
        shown = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
        parts.append(f"<p>New rows = test rows read from files the production model was not trained on: "
                     f"{html.escape(shown) or '(none)'}.</p>")
    rows = champion_comparison.comparison_rows(comparison, task)
    columns = ["metric", "test: challenger", "test: champion"] + (["new: challenger", "new: champion"] if new else [])
    parts.append(table(rows, columns))
    if champion.get("scored") and new["rows"] < comparison["test"]["rows"]:
        parts.append("<p>The production model was trained on the test rows that are not new (files both models "
                     "read): its test numbers are optimistic there. The new rows are the fair comparison.</p>")
    wanted = list((evaluation.get("comparison_metrics") or {}).get(task) or metric_functions.metric_names(task)[:1])
    if champion.get("scored"):
        parts.append(_comparison_plot(comparison, wanted))
    return "".join(parts)


def _comparison_plot(comparison: dict, wanted: list[str]) -> str:
    groups = [part for part in ("test", "new") if (comparison.get(part) or {}).get("rows")]
    figure, axes = pyplot().subplots(1, len(wanted), figsize=(3.6 * len(wanted), 3.2), squeeze=False)
    width = 0.38
    for ax, name in zip(axes[0], wanted, strict=True):
        positions = np.arange(len(groups))
        for offset, model, color in ((-width / 2, "champion", "#8c8c8c"), (width / 2, "challenger", "#4c72b0")):
            values = [(comparison[part].get(model) or {}).get(name) for part in groups]
            heights = [np.nan if v is None else v for v in values]
            bars = ax.bar(positions + offset, heights, width, label=model, color=color)
            for bar, value in zip(bars, values, strict=True):
                if value is not None and np.isfinite(value):
                    ax.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
        ax.set_xticks(positions, [f"{part} ({comparison[part]['rows']} rows)" for part in groups], fontsize=8)
        ax.set_title(name, fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.9))  # room for the legend above the bars
    return png(figure)


def _summary_rows(frame: pd.DataFrame, data_schema: dict) -> list[dict]:
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
    return rows


def _histograms(frame: pd.DataFrame, data_schema: dict) -> str:
    features = data_schema["features"]
    columns = 4
    rows = max(1, int(np.ceil(len(features) / columns)))
    figure, axes = pyplot().subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
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
    figure, ax = pyplot().subplots(figsize=(6, 4.5))
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
    figure, ax = pyplot().subplots(figsize=(4.5, 4))
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
    figure, ax = pyplot().subplots(figsize=(4.5, 4))
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
    figure, ax = pyplot().subplots(figsize=(6, 4))
    ax.scatter(predicted, y.to_numpy(dtype=float) - predicted, s=6, alpha=0.5)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    return png(figure)


def _importance(importance: list[dict]) -> str:
    shown = importance[:20][::-1]
    figure, ax = pyplot().subplots(figsize=(6, 0.3 * len(shown) + 1))
    ax.barh([r["feature"] for r in shown], [r["importance"] for r in shown], xerr=[r["std"] for r in shown],
            color="#c44e52")
    ax.set_xlabel(f"drop in {importance[0]['scoring'] if importance else 'score'} when shuffled")
    return png(figure) + table(importance, ["feature", "importance", "std"])


def _runtime() -> dict:
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "pandas": pd.__version__,
            "numpy": np.__version__}


def assemble_metadata(data_schema: dict, model_metrics: dict, reference_profile: dict, expectation_suite: dict,
                      importance: list[dict], training_summary: dict, lineage: dict,
                      comparison: dict | None = None, bias: dict | None = None, explainability: dict | None = None,
                      model_card: dict | None = None) -> dict:
    """metadata.json of the model directory (CONTRACTS.md)."""
    extra = {} if comparison is None else {"comparison": comparison}
    for name, value in (("bias", bias), ("explainability", explainability), ("model_card", model_card)):
        if value is not None:
            extra[name] = value
    return to_jsonable({
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
        "runtime": _runtime(),
        **extra,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    })
