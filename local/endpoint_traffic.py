"""An endpoint's traffic as SageMaker accounts for it: where it goes, its metrics, its data capture.

The invoke server (:mod:`local.invoke_server`) asks where an endpoint's requests go (:meth:`EndpointTraffic.route`:
the live fleet of :mod:`local.endpoints`) and reports each invocation (:meth:`EndpointTraffic.observe`). Metrics
(``AWS/SageMaker``: ``Invocations``, ``Invocation4XXErrors``, ``Invocation5XXErrors``, ``InvocationsPerInstance``,
``ModelLatency``, ``OverheadLatency``) go to CloudWatch and sampled requests/responses to the endpoint config's
capture prefix as SageMaker's data-capture JSON Lines, both flushed every ``flush_interval`` seconds.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from .aws import client, put_metrics
from .channels import split_s3

log = logging.getLogger("local.endpoint_traffic")


@dataclass(frozen=True)
class Route:
    endpoint_name: str
    variant_name: str
    host: str
    port: int


@dataclass
class Invocation:
    endpoint_name: str
    variant_name: str
    request_body: bytes
    request_content_type: str
    accept: str
    status: int  # the container's HTTP status (0 = not reached)
    response_body: bytes
    response_content_type: str
    model_latency_us: float
    overhead_latency_us: float
    inference_id: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: float = field(default_factory=time.time)


class InvokeBackend(Protocol):
    def route(self, endpoint_name: str) -> Route | None: ...

    def observe(self, invocation: Invocation) -> None: ...


class LiveFleet(Protocol):
    variant_name: str
    port: int
    capture: dict[str, Any] | None


class EndpointTraffic:
    def __init__(self, fleet: Callable[[str], LiveFleet | None], aws_url: str, region: str,
                 flush_interval: float = 2.0):
        self.fleet = fleet  # endpoint name -> the fleet serving it now (EndpointManager.fleet)
        self._s3 = client("s3", aws_url, region)
        self._cw = client("cloudwatch", aws_url, region)
        self._metrics: list[dict[str, Any]] = []
        self._capture: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_interval,), name="endpoint-flush",
                                         daemon=True)
        self._flusher.start()

    def route(self, endpoint_name: str) -> Route | None:
        fleet = self.fleet(endpoint_name)
        return Route(endpoint_name, fleet.variant_name, "127.0.0.1", fleet.port) if fleet else None

    def observe(self, invocation: Invocation) -> None:
        dims = [{"Name": "EndpointName", "Value": invocation.endpoint_name},
                {"Name": "VariantName", "Value": invocation.variant_name}]
        ts = datetime.fromtimestamp(invocation.time, tz=timezone.utc)
        status = invocation.status
        datums = [
            {"MetricName": "Invocations", "Value": 1.0, "Unit": "None"},
            {"MetricName": "Invocation4XXErrors", "Value": 1.0 if 400 <= status < 500 else 0.0, "Unit": "None"},
            {"MetricName": "Invocation5XXErrors", "Value": 1.0 if status >= 500 or status == 0 else 0.0, "Unit": "None"},
            {"MetricName": "InvocationsPerInstance", "Value": 1.0, "Unit": "None"},
        ]
        if status:
            datums.append({"MetricName": "ModelLatency", "Value": invocation.model_latency_us, "Unit": "Microseconds"})
            datums.append({"MetricName": "OverheadLatency", "Value": invocation.overhead_latency_us,
                           "Unit": "Microseconds"})
        with self._lock:
            self._metrics.extend({**d, "Dimensions": dims, "Timestamp": ts} for d in datums)
        if 200 <= status < 300:
            self._capture_record(invocation)

    def _capture_record(self, invocation: Invocation) -> None:
        fleet = self.fleet(invocation.endpoint_name)
        capture = fleet.capture if fleet else None
        if not capture or random.uniform(0, 100) >= float(capture.get("InitialSamplingPercentage", 100)):
            return
        modes = {o.get("CaptureMode") for o in capture.get("CaptureOptions", [])} or {"Input", "Output"}
        header = capture.get("CaptureContentTypeHeader") or {}
        csv_types = set(header.get("CsvContentTypes") or ["text/csv"])
        json_types = set(header.get("JsonContentTypes") or ["application/json"])

        def encode(body: bytes, content_type: str, mode: str) -> dict[str, Any]:
            base = content_type.split(";")[0].strip()
            if base in csv_types:
                data, encoding = body.decode("utf-8", "replace"), "CSV"
            elif base in json_types:
                data, encoding = body.decode("utf-8", "replace"), "JSON"
            else:
                data, encoding = base64.b64encode(body).decode(), "BASE64"
            return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}

        record: dict[str, Any] = {"captureData": {}}
        if "Input" in modes:
            record["captureData"]["endpointInput"] = encode(invocation.request_body, invocation.request_content_type,
                                                            "INPUT")
        if "Output" in modes:
            record["captureData"]["endpointOutput"] = encode(invocation.response_body,
                                                             invocation.response_content_type, "OUTPUT")
        when = datetime.fromtimestamp(invocation.time, tz=timezone.utc)
        record["eventMetadata"] = {"eventId": invocation.event_id, "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if invocation.inference_id:
            record["eventMetadata"]["inferenceId"] = invocation.inference_id
        record["eventVersion"] = "0"
        key = (capture["DestinationS3Uri"], invocation.endpoint_name, invocation.variant_name)
        with self._lock:
            self._capture.setdefault(key, []).append(record)

    def flush(self) -> None:
        with self._lock:
            metrics, self._metrics = self._metrics, []
            capture, self._capture = self._capture, {}
        if metrics:
            put_metrics(self._cw, "AWS/SageMaker", metrics)
        for (destination, endpoint, variant), records in capture.items():
            now = datetime.now(timezone.utc)
            bucket, prefix = split_s3(destination.rstrip("/"))
            key = "/".join(p for p in (prefix, endpoint, variant, now.strftime("%Y/%m/%d/%H"),
                                       f"{now.strftime('%M-%S-%f')[:-3]}-{uuid.uuid4()}.jsonl") if p)
            try:
                self._s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode())
            except Exception:
                log.exception("writing data capture to s3://%s/%s failed", bucket, key)

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self.flush()
