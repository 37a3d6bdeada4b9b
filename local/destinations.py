"""Where a delivery to an ARN goes, and Lambda's on-failure destination (the dead letters).

An EventBridge target, a CloudWatch alarm action and a Lambda on-failure destination all name an ARN:
a function runs here (an asynchronous invocation of the local function), an SNS topic or an SQS queue is
moto's. moto's own delivery to these (EventBridge targets, alarm actions) would go through moto's Lambda,
which runs code only in Docker, and moto never evaluates alarms: so the delivery is done here.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from .functions import FunctionError, FunctionRegistry, FunctionSpec

log = logging.getLogger("local.destinations")

Client = Callable[[str], Any]  # service name -> boto3 client for the local AWS API


class Destinations:
    def __init__(self, client: Client, dead_letter_log: Path, functions: FunctionRegistry | None = None):
        self.client = client
        self.functions = functions
        self.dead_letter_log = dead_letter_log
        self.queues: dict[str, str] = {}  # queue name -> url (the stack's queues)
        self._lock = threading.Lock()

    def add_queue(self, name: str, url: str) -> None:
        self.queues[name] = url

    def send(self, arn: str, payload: Any, source: str, subject: str | None = None) -> bool:
        """Deliver ``payload`` to ``arn``; False when the ARN is nothing this stack can deliver to."""
        if ":lambda:" in arn or ":function:" in arn:
            fn = self.functions.lookup(arn) if self.functions is not None else None
            if fn is None:
                log.warning("%s: %s is not a function of this stack", source, arn)
                return False
            fn.invoke_async(payload, source=source)
            return True
        message = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        if ":sns:" in arn:
            extra = {"Subject": subject[:100]} if subject else {}
            self.client("sns").publish(TopicArn=arn, Message=message, **extra)
            return True
        if ":sqs:" in arn:
            url = self.queues.get(arn.rsplit(":", 1)[-1])
            if url is None:
                log.warning("%s: %s is not a queue of this stack", source, arn)
                return False
            self.client("sqs").send_message(QueueUrl=url, MessageBody=message)
            return True
        log.info("%s: delivery to %s is not emulated", source, arn)
        return False

    def dead_letter(self, spec: FunctionSpec, event: Any, exc: FunctionError) -> None:
        """Lambda's on-failure destination: the invocation record, after the last retry, goes to the queue/topic."""
        record = {
            "version": "1.0", "timestamp": datetime.now(timezone.utc).isoformat(),
            "requestContext": {"requestId": secrets.token_hex(16), "functionArn": f"{spec.arn}:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": spec.max_retries + 1},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": exc.error,
        }
        with self._lock, self.dead_letter_log.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        if spec.failure_destination:
            try:
                self.send(spec.failure_destination, record, source=f"failure:{spec.name}")
            except Exception:
                log.exception("sending %s's failed event to %s failed", spec.name, spec.failure_destination)
