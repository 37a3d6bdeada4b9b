"""S3 → EventBridge: the ``Object Created`` event of every write to a bucket with EventBridge notifications on.

:class:`local.observed_backends.ObservedS3Backend` reports each write; this makes the event in AWS's shape
(:func:`local.events.s3_object_created`, with a sequencer that grows per write) and keeps the last event per key,
so that the ``events/redeliver`` control operation can deliver it again unchanged: S3 delivers events at least
once, and that is how the control plane's de-duplication is exercised.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from . import events

Emit = Callable[[dict[str, Any]], None]


class ObjectEvents:
    def __init__(self, emit: Emit, account: str, region: str):
        self.emit = emit
        self.account = account
        self.region = region
        self.buckets: set[str] = set()  # buckets whose NotificationConfiguration has EventBridge enabled
        self.last_event: dict[str, dict[str, Any]] = {}  # key -> the last event emitted for it
        self._sequencer = 0
        self._lock = threading.Lock()

    def enable(self, bucket: str) -> None:
        self.buckets.add(bucket)

    def object_created(self, event_name: str, bucket: Any, key: Any) -> None:
        """Listener of the S3 backend: ``event_name`` is S3's (``s3:ObjectCreated:Put``), bucket/key moto's."""
        if bucket.name not in self.buckets:
            return
        with self._lock:
            self._sequencer += 1
            sequencer = f"{int(time.time() * 1000):012X}{self._sequencer:06X}"
        event = events.s3_object_created(
            bucket=bucket.name, key=key.name, size=int(key.size), etag=key.etag, version_id=key.version_id,
            reason=events.S3_REASONS.get(event_name, "PutObject"), account=self.account, region=self.region,
            sequencer=sequencer)
        with self._lock:
            self.last_event[key.name] = event
        self.emit(event)

    def redeliver(self, key: str) -> int:
        """Deliver the last event for ``key`` again, unchanged; the number of events delivered (0 or 1)."""
        with self._lock:
            event = self.last_event.get(key)
        if event is None:
            return 0
        self.emit(event)
        return 1
