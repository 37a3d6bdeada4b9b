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


def announce(settings: Settings, ledger: Any, subject: str, message: str,
             details: Mapping[str, Any] | None = None) -> None:
    """Tell people about a decision. Under a claim, the message joins the decision's commit (the claim's outbox)
    and is sent after it, by this delivery or the next; otherwise it is sent now, and a failure is recorded."""
    if not ledger.notice(subject, message, details):
        publish_or_record(settings, ledger, subject, message, details)


def publish_or_record(settings: Settings, ledger: Any, subject: str, message: str,
                      details: Mapping[str, Any] | None = None) -> bool:
    try:
        publish(settings, subject, message, details)
        return True
    except Exception as exc:  # noqa: BLE001 - the decision is in the ledger already; say the message is lost
        log.exception("could not publish %r", subject)
        try:
            ledger.record("event#notify", "notification_failed", f"SNS {subject!r}: {type(exc).__name__}: {exc}",
                          ttl_days=90)
        except Exception:  # noqa: BLE001 - the ledger is failing too; the log keeps the fact
            log.exception("could not record the lost notification")
        return False


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
