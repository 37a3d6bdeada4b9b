"""EventBridge schedules: rules with a ``ScheduleExpression`` fire their ``Scheduled Event`` on time.

moto stores a scheduled rule but never fires it. Here a ``rate(...)`` rule fires every interval; a ``cron(...)``
rule fires only through the ``schedules/fire`` control operation (listed in docs/local.md).
"""

from __future__ import annotations

import logging
import re
import threading
import time

from .bus import EventBus, Rule

log = logging.getLogger("local.schedules")

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")


def schedule_interval(expression: str) -> float | None:
    """Seconds between firings of a ``rate(...)`` expression; None for anything else (``cron(...)``)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2)
    return n * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


class Scheduler:
    def __init__(self, bus: EventBus, account: str, region: str):
        self.bus = bus
        self.account = account
        self.region = region
        self.rules: list[Rule] = []
        self._stop = threading.Event()

    def add(self, rule: Rule) -> None:
        self.rules.append(rule)

    def fire(self, rule_name: str | None = None) -> list[str]:
        """Fire the named rule (every rule when None) now; the names fired."""
        fired = []
        for rule in self.rules:
            if rule_name in (None, rule.name):
                self.bus.fire_schedule(rule, self.account, self.region)
                fired.append(rule.name)
        return fired

    def start(self) -> None:
        threading.Thread(target=self._loop, name="scheduler", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        next_fire: dict[str, float] = {}
        for rule in self.rules:
            interval = schedule_interval(rule.schedule or "")
            if interval is None:
                log.warning("schedule %s (%s) is not run locally (only rate() is)", rule.name, rule.schedule)
            else:
                next_fire[rule.name] = time.time() + interval
        while not self._stop.wait(1.0):
            for rule in self.rules:
                due = next_fire.get(rule.name)
                if due is not None and time.time() >= due:
                    self.fire(rule.name)
                    next_fire[rule.name] = due + (schedule_interval(rule.schedule or "") or 0)
