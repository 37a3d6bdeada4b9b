"""EventBridge's default bus: the template's rules, their targets, and in-order delivery of every event.

Matching is moto's own EventBridge pattern matcher (``moto.events.models.EventPattern``); the rules are also
registered in moto's EventBridge (so ``aws events list-rules`` shows them). Delivery is done here: moto delivers
to a Lambda target through its own Lambda backend, which runs code only in Docker, while the functions here are
warm local processes (:mod:`local.destinations`). Input, InputPath and InputTransformer are applied as
EventBridge applies them. One dispatcher thread delivers events in the order they were emitted; every event and
the rules it matched are appended to ``logs/events.jsonl``; ``TriggeredRules`` is published per matched rule.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .destinations import Destinations
from .events import scheduled_event
from .work_queue import WorkQueue

log = logging.getLogger("local.bus")


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


PutMetrics = Callable[[str, list[dict[str, Any]]], None]


class EventBus:
    def __init__(self, destinations: Destinations, put_metrics: PutMetrics | None = None,
                 journal: Path | None = None):
        self.rules: list[Rule] = []
        self.destinations = destinations
        self._put_metrics = put_metrics
        self._journal = journal
        self._journal_lock = threading.Lock()
        self._dispatch = WorkQueue(self.put, "event-dispatch")

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    # -- asynchronous, in order ---------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Queue an AWS event (delivered in order by one dispatcher, like a bus)."""
        self._dispatch.put(event)

    @property
    def busy(self) -> bool:
        return self._dispatch.busy

    def stop(self) -> None:
        self._dispatch.stop()

    # -- synchronous --------------------------------------------------------------------------
    def put(self, event: dict[str, Any]) -> list[str]:
        """Deliver ``event`` now; returns the names of the rules it matched."""
        matched = [rule for rule in self.rules if rule.matches(event)]
        self._record({"event": event, "matched": [r.name for r in matched]})
        for rule in matched:
            self._deliver(rule, event)
        if matched and self._put_metrics is not None:
            self._put_metrics("AWS/Events", [
                {"MetricName": "TriggeredRules", "Value": 1.0, "Unit": "Count",
                 "Dimensions": [{"Name": "RuleName", "Value": rule.name}]} for rule in matched])
        return [r.name for r in matched]

    def fire_schedule(self, rule: Rule, account: str, region: str) -> None:
        """The rule's ``Scheduled Event`` to its targets (a schedule matches no pattern: it is the rule's own)."""
        event = scheduled_event(rule.arn, account, region)
        self._record({"event": event, "matched": [rule.name]})
        self._deliver(rule, event)

    def _deliver(self, rule: Rule, event: dict[str, Any]) -> None:
        for target in rule.targets:
            try:
                self.destinations.send(target.arn, target.payload(event), source=f"rule:{rule.name}")
            except Exception:
                log.exception("rule %s: delivery to %s failed", rule.name, target.arn)

    def _record(self, entry: dict[str, Any]) -> None:
        if self._journal is None:
            return
        with self._journal_lock, self._journal.open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
