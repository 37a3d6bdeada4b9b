"""SNS messages to people and CloudWatch metrics from job reports."""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from . import clients
from .settings import Settings

log = logging.getLogger("mlops_control")


def publish(settings: Settings, subject: str, message: str, details: Mapping[str, Any] | None = None) -> None:
    """One SNS message: a human sentence first, the machine-readable details after it."""
    body = message if not details else f"{message}\n\n{json.dumps(details, indent=2, default=str, sort_keys=True)}"
    # SNS subjects: ASCII, no newlines, < 100 characters.
    clean = "".join(c if 32 <= ord(c) < 127 else "?" for c in f"[{settings.name_prefix}] {subject}")[:99]
    clients.get("sns").publish(TopicArn=settings.notify_topic_arn, Subject=clean, Message=body[:250_000])


def report_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """DataDrift (= drift.score) and RowsRejected from a validation/monitor report.json."""
    metrics: dict[str, float] = {}
    drift = report.get("drift")
    if isinstance(drift, Mapping) and isinstance(drift.get("score"), (int, float)) and not isinstance(drift.get("score"), bool):
        metrics["DataDrift"] = float(drift["score"])
    rejected = report.get("rows_rejected")
    if isinstance(rejected, (int, float)) and not isinstance(rejected, bool):
        metrics["RowsRejected"] = float(rejected)
    return metrics


def put_metrics(settings: Settings, metrics: Mapping[str, float], kind: str) -> None:
    if not metrics:
        return
    data = [{
        "MetricName": name, "Value": value, "Unit": "None" if name == "DataDrift" else "Count",
        "Dimensions": [{"Name": "Pipeline", "Value": settings.name_prefix}],
    } for name, value in metrics.items()]
    clients.get("cloudwatch").put_metric_data(Namespace=settings.metric_namespace, MetricData=data)
    log.info("published %s metrics %s", kind, dict(metrics))
