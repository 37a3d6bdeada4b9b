"""Parsing of every event shape the control plane receives. Pure: no AWS calls.

Each parser returns a small frozen dataclass or raises MalformedEvent with a readable reason, which the
handler records in the ledger (a malformed event is never dropped silently).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote, unquote_plus


class MalformedEvent(ValueError):
    """The event does not have the shape this handler accepts."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    # A key as it arrived (still encoded) when decoding changed it; EventBridge and S3 notifications do not
    # agree on encoding in every client, so the trigger falls back to it if the decoded key does not exist.
    raw_key: str | None = None
    event_time: str | None = None
    # S3's per-key event order (hex): of two events for one key, the greater sequencer is the later write.
    sequencer: str | None = None
    # Who wrote it, as the event says (EventBridge: account or service principal; notifications: principal id).
    requester: str | None = None

    @property
    def write_order(self) -> str | None:
        """The sequencer made comparable as text: S3 says to left-pad the shorter one with zeros."""
        return self.sequencer.upper().rjust(_SEQUENCER_WIDTH, "0") if self.sequencer else None

    @property
    def version_or_etag(self) -> str:
        return self.version_id or self.etag or "unversioned"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class JobStateChange:
    kind: str  # "processing" | "training"
    name: str
    status: str
    failure_reason: str | None


@dataclass(frozen=True)
class EndpointStateChange:
    name: str
    status: str  # normalised to the API's spelling: InService, Failed, Updating, ...
    config_name: str | None
    failure_reason: str | None


@dataclass(frozen=True)
class RetrainRequest:
    source: str  # "alarm" | "manual"
    alarm_name: str | None
    state: str | None
    reason: str
    force: bool = False
    # The same request delivered again has the same identity: the alarm's state change, or the manual payload.
    identity: str = ""


@dataclass(frozen=True)
class ScheduledTick:
    event_id: str
    time: str


@dataclass(frozen=True)
class CustomResourceRequest:
    request_type: str  # Create | Update | Delete
    physical_id: str | None
    properties: Mapping[str, Any]


def _require(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping or mapping[key] in (None, ""):
        raise MalformedEvent(f"missing {where}.{key}")
    return mapping[key]


def _int_or_none(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"object size is not an integer: {value!r}") from exc


_SEQUENCER_WIDTH = 64


def _sequencer(value: Any) -> str | None:
    """An ordering hint only: one that is not hex (or implausibly long) is dropped, never a reason to refuse."""
    text = str(value or "").strip()
    if not text or len(text) > _SEQUENCER_WIDTH or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return text


def _decoded(raw: str, *, plus_is_space: bool) -> tuple[str, str | None]:
    key = unquote_plus(raw) if plus_is_space else unquote(raw)
    return key, (raw if key != raw else None)


def parse_object_created(event: Any) -> list[ObjectCreated]:
    """EventBridge `Object Created` (source aws.s3) or an S3 notification (`Records[]`), keys URL-decoded."""
    if not isinstance(event, Mapping):
        raise MalformedEvent("event is not a JSON object")
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list) or not records:
            raise MalformedEvent("Records is empty")
        parsed = []
        for i, record in enumerate(records):
            name = str(record.get("eventName", "")) if isinstance(record, Mapping) else ""
            if not name.startswith("ObjectCreated"):
                raise MalformedEvent(f"Records[{i}].eventName is {name!r}, not ObjectCreated:*")
            s3 = _require(record, "s3", f"Records[{i}]")
            bucket = _require(_require(s3, "bucket", f"Records[{i}].s3"), "name", f"Records[{i}].s3.bucket")
            obj = _require(s3, "object", f"Records[{i}].s3")
            # S3 notifications encode keys as application/x-www-form-urlencoded: space arrives as '+'.
            key, raw = _decoded(str(_require(obj, "key", f"Records[{i}].s3.object")), plus_is_space=True)
            parsed.append(ObjectCreated(
                bucket=str(bucket), key=key, raw_key=raw, size=_int_or_none(obj.get("size")),
                etag=(obj.get("eTag") or obj.get("etag") or None), version_id=obj.get("versionId") or None,
                event_time=record.get("eventTime"), sequencer=_sequencer(obj.get("sequencer")),
                requester=str((record.get("userIdentity") or {}).get("principalId") or "") or None,
            ))
        return parsed
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        detail = _require(event, "detail", "event")
        bucket = _require(_require(detail, "bucket", "detail"), "name", "detail.bucket")
        obj = _require(detail, "object", "detail")
        key, raw = _decoded(str(_require(obj, "key", "detail.object")), plus_is_space=True)
        return [ObjectCreated(
            bucket=str(bucket), key=key, raw_key=raw, size=_int_or_none(obj.get("size")),
            etag=(obj.get("etag") or obj.get("eTag") or None), version_id=obj.get("version-id") or None,
            event_time=event.get("time"), sequencer=_sequencer(obj.get("sequencer")),
            requester=str(detail.get("requester") or "") or None,
        )]
    raise MalformedEvent(
        f"not an S3 Object Created event (source={event.get('source')!r}, detail-type={event.get('detail-type')!r})"
    )


_TERMINAL = {"Completed", "Failed", "Stopped"}


def parse_job_state_change(event: Any, kind: str) -> JobStateChange:
    """`SageMaker Processing Job State Change` / `SageMaker Training Job State Change`."""
    expected = {"processing": "SageMaker Processing Job State Change",
                "training": "SageMaker Training Job State Change"}[kind]
    if not isinstance(event, Mapping) or event.get("detail-type") != expected:
        got = event.get("detail-type") if isinstance(event, Mapping) else type(event).__name__
        raise MalformedEvent(f"expected detail-type {expected!r}, got {got!r}")
    detail = _require(event, "detail", "event")
    prefix = "ProcessingJob" if kind == "processing" else "TrainingJob"
    return JobStateChange(
        kind=kind,
        name=str(_require(detail, f"{prefix}Name", "detail")),
        status=str(_require(detail, f"{prefix}Status", "detail")),
        failure_reason=failure_text(detail),
    )


def failure_text(described: Mapping[str, Any]) -> str | None:
    """FailureReason may only say the container exited non-zero; a processing container's own reason
    (/opt/ml/output/message) arrives as ExitMessage. Both, when they differ."""
    parts = [str(described[k]).strip() for k in ("FailureReason", "ExitMessage") if described.get(k)]
    unique = [p for i, p in enumerate(parts) if p and p not in parts[:i]]
    return " — ".join(unique) or None


def is_terminal(status: str) -> bool:
    return status in _TERMINAL


_ENDPOINT_STATUS = {s.upper().replace("_", ""): s for s in (
    "OutOfService", "Creating", "Updating", "SystemUpdating", "RollingBack", "InService", "Deleting", "Failed",
    "UpdateRollbackFailed",
)}


def normalise_endpoint_status(status: str) -> str:
    """EventBridge spells endpoint states IN_SERVICE; DescribeEndpoint spells them InService."""
    return _ENDPOINT_STATUS.get(str(status).upper().replace("_", ""), str(status))


def parse_endpoint_state_change(event: Any) -> EndpointStateChange:
    if not isinstance(event, Mapping) or event.get("detail-type") != "SageMaker Endpoint State Change":
        got = event.get("detail-type") if isinstance(event, Mapping) else type(event).__name__
        raise MalformedEvent(f"expected detail-type 'SageMaker Endpoint State Change', got {got!r}")
    detail = _require(event, "detail", "event")
    return EndpointStateChange(
        name=str(_require(detail, "EndpointName", "detail")),
        status=normalise_endpoint_status(_require(detail, "EndpointStatus", "detail")),
        config_name=detail.get("EndpointConfigName") or None,
        failure_reason=detail.get("FailureReason") or None,
    )


def parse_retrain_request(event: Any) -> RetrainRequest:
    """CloudWatch alarm Lambda-action payload (source aws.cloudwatch, alarmData) or a manual invoke."""
    if not isinstance(event, Mapping):
        raise MalformedEvent("event is not a JSON object")
    if event.get("source") == "aws.cloudwatch":
        data = _require(event, "alarmData", "event")
        name = str(_require(data, "alarmName", "alarmData"))
        state = _require(data, "state", "alarmData")
        value = str(_require(state, "value", "alarmData.state"))
        return RetrainRequest(source="alarm", alarm_name=name, state=value,
                              reason=str(state.get("reason") or f"alarm {name} is {value}"),
                              identity=f"alarm:{name}:{state.get('timestamp') or event.get('time') or ''}")
    if "reason" in event:
        reason = event["reason"]
        if not isinstance(reason, str) or not reason.strip():
            raise MalformedEvent("manual retrain needs a non-empty string 'reason'")
        request_id = event.get("request_id")
        if request_id is not None and (not isinstance(request_id, str) or not request_id.strip()):
            raise MalformedEvent("'request_id' must be a non-empty string when given")
        # Lambda retries an asynchronous invocation with the same payload: the payload is the request.
        identity = request_id or hashlib.sha256(json.dumps(event, sort_keys=True, default=str).encode()).hexdigest()[:20]
        return RetrainRequest(source="manual", alarm_name=None, state=None, reason=reason.strip(),
                              force=bool(event.get("force", False)), identity=f"manual:{identity}")
    raise MalformedEvent("neither a CloudWatch alarm action payload (source aws.cloudwatch) nor {'reason': ...}")


def parse_scheduled_event(event: Any) -> ScheduledTick:
    if not isinstance(event, Mapping) or event.get("detail-type") != "Scheduled Event":
        got = event.get("detail-type") if isinstance(event, Mapping) else type(event).__name__
        raise MalformedEvent(f"expected detail-type 'Scheduled Event', got {got!r}")
    return ScheduledTick(event_id=str(_require(event, "id", "event")), time=str(_require(event, "time", "event")))


def parse_custom_resource(event: Any) -> CustomResourceRequest:
    if not isinstance(event, Mapping):
        raise MalformedEvent("event is not a JSON object")
    request_type = _require(event, "RequestType", "event")
    if request_type not in ("Create", "Update", "Delete"):
        raise MalformedEvent(f"RequestType {request_type!r} is not Create, Update or Delete")
    properties = event.get("ResourceProperties") or {}
    if not isinstance(properties, Mapping):
        raise MalformedEvent("ResourceProperties is not an object")
    return CustomResourceRequest(request_type=request_type, physical_id=event.get("PhysicalResourceId"),
                                 properties=properties)


def summarise(event: Any, limit: int = 1500) -> str:
    """A bounded, printable copy of an event for a ledger record."""
    try:
        text = json.dumps(event, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(event)
    return text if len(text) <= limit else text[:limit] + "...(truncated)"
