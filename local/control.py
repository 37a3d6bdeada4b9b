"""The control operations (``/_local/...`` on the runtime server, loopback only, with the control token).

Tests and demos use them to compress time honestly: one alarm tick now, a schedule now, S3's at-least-once
redelivery, a synchronous invocation (the stand-in for ``aws lambda invoke``), waiting until nothing is in
flight, and the stack's state. Every operation and its JSON are listed in docs/local.md ("Options").
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from .alarm_evaluator import AlarmEvaluator
from .functions import FunctionError, FunctionRegistry
from .object_events import ObjectEvents
from .schedules import Scheduler

Busy = Callable[[], dict[str, bool]]


def wait_idle(busy: Busy, timeout: float = 300.0, settle: float = 0.5) -> bool:
    """True once nothing is in flight and it stays so for ``settle`` s; False after ``timeout`` s."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        if any(busy().values()):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since >= settle:
            return True
        time.sleep(0.1)
    return False


@dataclass
class ControlApi:
    alarms: AlarmEvaluator
    scheduler: Scheduler
    objects: ObjectEvents
    functions: FunctionRegistry
    busy: Busy
    live_endpoints: Callable[[], dict[str, str]]
    not_emulated: list[str]

    def __post_init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]] = {
            ("POST", "/_local/alarms/evaluate"): self.evaluate_alarms,
            ("POST", "/_local/schedules/fire"): self.fire_schedule,
            ("POST", "/_local/events/redeliver"): self.redeliver,
            ("POST", "/_local/functions/invoke"): self.invoke,
            ("POST", "/_local/idle"): self.idle,
            ("GET", "/_local/state"): self.state,
        }

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """(HTTP status, JSON-able result) for one control request."""
        operation = self.routes.get((method, path))
        if operation is None:
            return 404, {"error": f"no control operation {method} {path}"}
        return operation(json.loads(body) if body else {})

    def evaluate_alarms(self, args: dict[str, Any]) -> tuple[int, Any]:
        at = args.get("at")
        return 200, {"alarms": self.alarms.evaluate(datetime.fromisoformat(at) if at else None)}

    def fire_schedule(self, args: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"fired": self.scheduler.fire(args.get("rule"))}

    def redeliver(self, args: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"redelivered": self.objects.redeliver(str(args.get("key", "")))}

    def invoke(self, args: dict[str, Any]) -> tuple[int, Any]:
        # `aws lambda invoke` (a manual retrain) is not routed to these functions: this is its stand-in.
        name = str(args.get("function", ""))
        fn = self.functions.lookup(name if ":function:" in name else name.split(":")[0])
        if fn is None:
            return 404, {"error": f"no function {args.get('function')!r}"}
        try:
            return 200, {"result": fn.invoke(args.get("payload") or {}, source="manual")}
        except FunctionError as exc:
            return 200, {"error": exc.error}

    def idle(self, args: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"idle": wait_idle(self.busy, float(args.get("timeout", 120))), "busy": self.busy()}

    def state(self, args: dict[str, Any]) -> tuple[int, Any]:
        return 200, {
            "busy": self.busy(),
            "alarms": self.alarms.current(),
            "unsupported_alarms": self.alarms.unsupported,
            "endpoints": self.live_endpoints(),
            "invocations": {f.spec.handler: f.invocations for f in self.functions.by_name.values()},
            "not_emulated": self.not_emulated,
        }
