"""A model's bias and explainability reports and its model card, as the Model Package carries them.

The image computes them (metadata.json: `bias`, `explainability`, `model_card`; docs/ml.md); the package points at
the reports in S3 (ModelMetrics.Bias / ModelMetrics.Explainability, as Clarify's reports are attached) and embeds the
card (ModelCard, in the simplified schema of a model package's card)."""

from __future__ import annotations

import json
from typing import Any

REPORTS = ("bias", "explainability")
CARD_STATUS = "PendingReview"  # written by a machine: a person reviews it before calling it Approved
CARD_CONTENT_LIMIT = 100_000  # ModelPackageModelCard.ModelCardContent
# A model package's card has no model_package_details, and its model_overview only these two properties.
PACKAGE_CARD_SECTIONS = ("model_overview", "intended_uses", "business_details", "training_details",
                         "evaluation_details", "additional_information")
OVERVIEW_MOVED = ("model_description", "algorithm_type", "problem_type")
CUSTOM_DETAIL_LIMIT = 1024


def reports(metadata: dict | None) -> dict[str, dict]:
    """The reports the model has: explainability always (when the image computed it), bias when facets were
    configured (an unconfigured bias section is a statement about the config, not a report)."""
    found = {}
    for name in REPORTS:
        report = (metadata or {}).get(name)
        if isinstance(report, dict) and (name != "bias" or report.get("configured")):
            found[name] = report
    return found


def model_metrics(report_uris: dict[str, str]) -> dict[str, Any]:
    """ModelMetrics entries for the reports written to S3."""
    source = {name: {"ContentType": "application/json", "S3Uri": uri} for name, uri in report_uris.items()}
    metrics: dict[str, Any] = {}
    if "bias" in source:
        metrics["Bias"] = {"Report": source["bias"]}
    if "explainability" in source:
        metrics["Explainability"] = {"Report": source["explainability"]}
    return metrics


def package_model_card(card: dict | None, model_data_url: str) -> dict | None:
    """The image's card (SageMaker model card layout) in a model package's schema: model_overview reduced to its
    creator and the artifact, the rest of the overview kept among the custom details. None when there is none or
    it cannot fit."""
    if not isinstance(card, dict) or not card:
        return None
    content = {k: v for k, v in card.items() if k in PACKAGE_CARD_SECTIONS}
    overview = card.get("model_overview") or {}
    content["model_overview"] = {"model_artifact": [model_data_url]}
    if overview.get("model_creator"):
        content["model_overview"]["model_creator"] = overview["model_creator"]
    moved = {k: str(overview[k])[:CUSTOM_DETAIL_LIMIT] for k in OVERVIEW_MOVED if overview.get(k)}
    if moved:
        info = dict(content.get("additional_information") or {})
        info["custom_details"] = {**moved, **(info.get("custom_details") or {})}
        content["additional_information"] = info
    text = json.dumps(content, separators=(",", ":"), allow_nan=False)
    if len(text) > CARD_CONTENT_LIMIT:
        return None
    return {"ModelCardContent": text, "ModelCardStatus": CARD_STATUS}
