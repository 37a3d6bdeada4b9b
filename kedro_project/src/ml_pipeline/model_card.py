"""The model card, filled from what the run knows, in the SageMaker Model Card content layout (model_overview,
intended_uses, training_details, evaluation_details, additional_information; field names and length limits as in
the SageMaker model card JSON schema). The control plane attaches it to the Model Package; the report renders it."""

from __future__ import annotations

import hashlib
import html
import json
from ml_pipeline.plots import table

SCHEMA_VERSION = "0.1"  # the SageMaker model card JSON schema this layout follows
LIMITATIONS = (
    "Trained on the validated files of one training window: it reflects their population, period and labelling. "
    "Inputs outside the ranges or categories seen in training (reported as shift by validation) are extrapolated; "
    "drift is measured by monitoring, and a retrain follows new labels. Missing values are imputed (median, or a "
    "'__missing__' category). Metrics are estimates on a 20 % test split of the same window; bias metrics cover only "
    "the configured facets, and SHAP values explain the model's raw score, not causes in the world."
)


def data_fingerprint(lineage: dict) -> str | None:
    """The control plane's fingerprint of the window when it gave one, else sha256 over the files' (name, sha256)."""
    if lineage.get("fingerprint"):
        return str(lineage["fingerprint"])
    files = lineage.get("files") or []
    if not files:
        return None
    listing = json.dumps(sorted((f["file"], f["sha256"]) for f in files), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _datasets(lineage: dict) -> list[str]:
    out = []
    for item in lineage.get("inputs") or []:
        uri = str(item.get("uri", ""))
        out.append(f"{uri} (version {item['version']})" if item.get("version") else uri)
    if not out:
        out = [f"{f['file']} (sha256 {f['sha256']})" for f in lineage.get("files") or []]
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problem_type(data_schema: dict) -> str:
    if data_schema["task"] == "regression":
        return "Regression"
    return "Binary Classification" if len(data_schema["classes"]) == 2 else "Multiclass Classification"


def _number_metrics(values: dict) -> list[dict]:
    return [{"name": name, "type": "number", "value": float(value)} for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def _bias_summary(bias: dict) -> str:
    if not bias.get("configured"):
        return "No facets were configured (responsible_ml.facets), so no bias metrics were computed."
    parts = []
    for facet in bias["facets"]:
        pre, post = facet.get("pre_training") or {}, facet.get("post_training") or {}
        numbers = ", ".join(f"{k} {v:.3f}" for k, v in (("CI", pre.get("CI")), ("DPL", pre.get("DPL")),
                                                       ("DPPL", post.get("DPPL")), ("DI", post.get("DI")))
                            if v is not None)
        parts.append(f"{facet['label']} (d: {facet['n_d']} training rows, a: {facet['n_a']}): {numbers or 'no values'}")
    reason = f" Skipped: {bias['reason']}." if bias.get("reason") else ""
    return "Bias metrics (SageMaker Clarify definitions): " + "; ".join(parts) + "." + reason


def _explainability_summary(explainability: dict) -> str:
    top = ", ".join(f"{r['column']} ({r['mean_abs_shap']:.3g})" for r in explainability.get("global", [])[:5])
    return (f"{explainability.get('method')}, {explainability.get('library')}, on {explainability.get('rows')} test "
            f"rows; output: {explainability.get('output')}. Largest mean |SHAP|: {top or 'none'}.")


def build_model_card(data_schema: dict, model_metrics: dict, training_summary: dict, lineage: dict, bias: dict,
                     explainability: dict, config: dict, runtime: dict, test_rows: int) -> dict:
    """The card's content (a dict in the SageMaker Model Card layout)."""
    task, target = data_schema["task"], data_schema["target"]
    algorithm = "HistGradientBoostingClassifier" if task == "classification" else "HistGradientBoostingRegressor"
    features = [f["name"] for f in data_schema["features"]]
    job = lineage.get("training_job")
    fingerprint = data_fingerprint(lineage)
    intended = config.get("intended_use") or "Not stated (set responsible_ml.intended_use in the stage config)."
    hyperparameters = [{"name": _clip(str(k), 255), "value": _clip(str(v), 255)}
                       for k, v in sorted((lineage.get("hyperparameters") or {}).items())]
    training_metrics = [{"name": f"validation:{m['name']}", "value": m["value"]}
                        for m in _number_metrics(model_metrics.get("validation") or {})]
    metric_groups = [{"name": "model quality (test split)",
                      "metric_data": _number_metrics(model_metrics.get("test") or {})}]
    for facet in bias.get("facets") or []:
        for phase in ("pre_training", "post_training"):
            data = _number_metrics(facet.get(phase) or {})
            if data:
                metric_groups.append({"name": _clip(f"bias {phase.replace('_', '-')}: {facet['label']}", 63),
                                      "metric_data": data})
    ranking = explainability.get("global") or []
    if ranking:
        metric_groups.append({"name": "mean |SHAP| per input column (test sample)", "metric_data": [
            {"name": _clip(r["column"], 255), "type": "number", "value": float(r["mean_abs_shap"])} for r in ranking]})
    custom = {"target": target, "features": ", ".join(features), "schema_version": SCHEMA_VERSION,
              "training_job": str(job or ""), "data_fingerprint": fingerprint or "",
              "explainability": _explainability_summary(explainability),
              "runtime": ", ".join(f"{k} {v}" for k, v in runtime.items())}
    return {
        "model_overview": {
            "model_description": _clip(f"Predicts {target!r} ({_problem_type(data_schema).lower()}) from "
                                       f"{len(features)} input columns: {', '.join(features)}.", 1024),
            "model_creator": _clip(f"training job {job}" if job else "ml_pipeline training (Kedro)", 1024),
            "algorithm_type": f"scikit-learn Pipeline: imputation, scaling, one-hot encoding, {algorithm}",
            "problem_type": _problem_type(data_schema),
        },
        "intended_uses": {
            "purpose_of_model": _clip(f"Predict {target} for rows with the training data's columns.", 2048),
            "intended_uses": _clip(intended, 2048),
            "factors_affecting_model_efficiency": _clip(
                "Drift of the input distributions or of the relation to the target since the training window; "
                "categories or ranges not seen in training; more missing values than in training.", 2048),
            "risk_rating": "Unknown",
            "explanations_for_risk_rating": "No risk rating is configured; the card records what the run measured.",
        },
        "training_details": {
            "objective_function": {
                "function": {"function": "Minimize", "facet": "Loss",
                             "condition": "log loss" if task == "classification" else "squared error"},
                "notes": "gradient boosting minimises the loss of its raw score on the training split"},
            "training_observations": _clip(
                f"{training_summary.get('train_rows')} training rows; fit in {training_summary.get('fit_seconds')} s; "
                f"tuning iterations {training_summary.get('tuning_iterations', 0)}; data fingerprint {fingerprint}.",
                1024),
            "training_job_details": {
                "training_datasets": _datasets(lineage),
                "training_environment": {"container_image": [lineage["image"]] if lineage.get("image") else []},
                "training_metrics": training_metrics,
                "hyper_parameters": hyperparameters,
            },
        },
        "evaluation_details": [{
            "name": "test split",
            "evaluation_observation": _clip(f"Held-out 20 % test split of the training window. "
                                            f"{_bias_summary(bias)}", 2096),
            "datasets": _datasets(lineage)[:10],
            "metadata": {"rows": str(test_rows),
                         "data_fingerprint": fingerprint or ""},
            "metric_groups": metric_groups,
        }],
        "additional_information": {
            "ethical_considerations": _clip(_bias_summary(bias), 2048),
            "caveats_and_recommendations": _clip(LIMITATIONS, 2048),
            "custom_details": {k: _clip(v, 1024) for k, v in custom.items()},
        },
    }


def render(card: dict) -> str:
    """The card as HTML for the report."""
    overview, uses = card["model_overview"], card["intended_uses"]
    training, info = card["training_details"], card["additional_information"]
    jobs = training["training_job_details"]
    rows = [{"field": "description", "value": overview["model_description"]},
            {"field": "algorithm", "value": overview["algorithm_type"]},
            {"field": "problem type", "value": overview["problem_type"]},
            {"field": "creator", "value": overview["model_creator"]},
            {"field": "purpose", "value": uses["purpose_of_model"]},
            {"field": "intended uses", "value": uses["intended_uses"]},
            {"field": "factors affecting efficiency", "value": uses["factors_affecting_model_efficiency"]},
            {"field": "risk rating", "value": uses["risk_rating"]},
            {"field": "training", "value": training["training_observations"]},
            {"field": "training data", "value": "; ".join(jobs["training_datasets"]) or "(not recorded)"},
            {"field": "image", "value": ", ".join(jobs["training_environment"]["container_image"]) or "(local run)"},
            {"field": "bias", "value": info["ethical_considerations"]},
            {"field": "explainability", "value": info["custom_details"].get("explainability", "")},
            {"field": "limitations", "value": info["caveats_and_recommendations"]}]
    metrics = [{"group": group["name"], "metric": m["name"], "value": m["value"]}
               for group in card["evaluation_details"][0]["metric_groups"] for m in group["metric_data"]
               if m.get("type") == "number"]
    return (table(rows, ["field", "value"]) + "<h3>Evaluation (test split)</h3>" + table(metrics)
            + f"<p>Model card content in the SageMaker Model Card layout: <code>{html.escape('model_card')}</code> "
              f"in metadata.json.</p>")
