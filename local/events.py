"""AWS event shapes and the event bus that routes them through the template's rules.

Matching uses moto's own EventBridge pattern matcher (``moto.events.models.EventPattern``); the
rules, patterns, targets and their input transformations come from the synthesized templates.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote_plus

log = logging.getLogger("local.events")


def _iso(ts: datetime | None = None) -> str:
    return (ts or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(detail_type: str, source: str, account: str, region: str, resources: list[str],
              detail: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": _iso(),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


def s3_object_created(bucket: str, key: str, size: int, etag: str, version_id: str | None,
                      reason: str, account: str, region: str, sequencer: str) -> dict[str, Any]:
    """S3 → EventBridge ``Object Created``. The key is URL-encoded as in S3's event notifications."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size, "etag": etag.strip('"')}
    if version_id and version_id != "null":
        obj["version-id"] = version_id
    obj["sequencer"] = sequencer
    return _envelope("Object Created", "aws.s3", account, region, [f"arn:aws:s3:::{bucket}"], {
        "version": "0",
        "bucket": {"name": bucket},
        "object": obj,
        "request-id": uuid.uuid4().hex[:16].upper(),
        "requester": account,
        "source-ip-address": "127.0.0.1",
        "reason": reason,
    })


S3_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


def _millis(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: _millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_millis(v) for v in value]
    return value


def _detail_from_describe(describe: dict[str, Any]) -> dict[str, Any]:
    detail = {k: v for k, v in describe.items() if k != "ResponseMetadata"}
    tags = detail.pop("Tags", None) or []
    detail = _millis(detail)
    detail["Tags"] = {t["Key"]: t["Value"] for t in tags} if isinstance(tags, list) else dict(tags)
    return detail


def training_job_state_change(describe: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """``SageMaker Training Job State Change``: the detail is DescribeTrainingJob with epoch-millis times."""
    return _envelope("SageMaker Training Job State Change", "aws.sagemaker", account, region,
                     [describe["TrainingJobArn"]], _detail_from_describe(describe))


def processing_job_state_change(describe: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    return _envelope("SageMaker Processing Job State Change", "aws.sagemaker", account, region,
                     [describe["ProcessingJobArn"]], _detail_from_describe(describe))


ENDPOINT_EVENT_STATUS = {
    "Creating": "CREATING", "Updating": "UPDATING", "InService": "IN_SERVICE", "Failed": "FAILED",
    "Deleting": "DELETING", "RollingBack": "ROLLING_BACK", "OutOfService": "OUT_OF_SERVICE",
    "SystemUpdating": "SYSTEM_UPDATING",
}


def endpoint_state_change(describe: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """``SageMaker Endpoint State Change``: EndpointStatus in the event's upper-case form (IN_SERVICE)."""
    detail = _detail_from_describe(describe)
    detail["EndpointStatus"] = ENDPOINT_EVENT_STATUS.get(detail.get("EndpointStatus", ""), detail.get("EndpointStatus"))
    return _envelope("SageMaker Endpoint State Change", "aws.sagemaker", account, region,
                     [describe["EndpointArn"]], detail)


def scheduled_event(rule_arn: str, account: str, region: str) -> dict[str, Any]:
    return _envelope("Scheduled Event", "aws.events", account, region, [rule_arn], {})


# ------------------------------------------------------------------------------------------------
@dataclass
class Target:
    arn: str
    target_id: str
    input: str | None = None
    input_path: str | None = None
    input_transformer: dict[str, Any] | None = None
    max_event_age: int | None = None
    max_retries: int | None = None
    dead_letter_arn: str | None = None

    def payload(self, event: dict[str, Any]) -> Any:
        if self.input is not None:
            return json.loads(self.input)
        if self.input_path:
            return _json_path(event, self.input_path)
        if self.input_transformer:
            return _transform(event, self.input_transformer)
        return event


@dataclass
class Rule:
    name: str
    arn: str
    pattern: dict[str, Any] | None
    schedule: str | None
    targets: list[Target] = field(default_factory=list)
    enabled: bool = True
    bus: str = "default"

    def matches(self, event: dict[str, Any]) -> bool:
        if self.pattern is None or not self.enabled:
            return False
        from moto.events.models import EventPattern

        return EventPattern.load(json.dumps(self.pattern)).matches_event(event)


def _json_path(event: Any, path: str) -> Any:
    if path in ("$", ""):
        return event
    node = event
    for part in path.lstrip("$.").split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _transform(event: dict[str, Any], transformer: dict[str, Any]) -> Any:
    paths = transformer.get("InputPathsMap", {})
    values = {name: _json_path(event, path) for name, path in paths.items()}
    template = transformer["InputTemplate"]

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return value if isinstance(value, str) else json.dumps(value)

    rendered = re.sub(r"<([A-Za-z0-9_.-]+)>", replace, template)
    try:
        return json.loads(rendered)
    except ValueError:
        return rendered


Deliver = Callable[[Target, Any, dict[str, Any], Rule], None]


class EventBus:
    """Routes events to the targets of every matching rule; each target delivery is asynchronous."""

    def __init__(self, deliver: Deliver, journal: Path | None = None):
        self.rules: list[Rule] = []
        self._deliver = deliver
        self._journal = journal
        self._lock = threading.Lock()

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    def put(self, event: dict[str, Any]) -> list[str]:
        """Deliver ``event``; returns the names of the rules it matched."""
        matched = [rule for rule in self.rules if rule.matches(event)]
        self._record({"event": event, "matched": [r.name for r in matched]})
        for rule in matched:
            for target in rule.targets:
                self._deliver(target, target.payload(event), event, rule)
        return [r.name for r in matched]

    def fire_schedule(self, rule: Rule, account: str, region: str) -> None:
        event = scheduled_event(rule.arn, account, region)
        self._record({"event": event, "matched": [rule.name]})
        for target in rule.targets:
            self._deliver(target, target.payload(event), event, rule)

    def _record(self, entry: dict[str, Any]) -> None:
        if self._journal is None:
            return
        with self._lock, self._journal.open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
