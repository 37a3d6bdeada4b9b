"""The JSON shapes of the AWS events the embedded stack emits (EventBridge envelopes, as AWS sends them).

Pure functions; :mod:`local.bus` routes the events, :mod:`local.object_events`, :mod:`local.jobs` and
:mod:`local.endpoints` make them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus


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
