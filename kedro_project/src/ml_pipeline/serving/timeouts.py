"""How long `serve` waits for a client: the rest of a request's header, and its body.

A client that stops sending mid-request must not hold a connection (and its buffers) forever. uvicorn only
times out idle keep-alive connections, so the header wait is enforced by `protocol.HeaderTimeoutProtocol` and
the body wait by the app (408).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping

HEADER_VARIABLE = "SERVE_HEADER_TIMEOUT_SECONDS"
BODY_VARIABLE = "SERVE_BODY_TIMEOUT_SECONDS"
DEFAULT_SECONDS = 60.0  # SageMaker gives an invocation 60 s; a request still arriving after that is abandoned


def seconds(environ: Mapping[str, str], name: str, default: float = DEFAULT_SECONDS) -> float:
    """A positive number of seconds from `environ[name]`, `default` when unset (ValueError names the variable)."""
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return number


class Deadlines:
    """Tasks waiting for something (a request body) with a deadline; one periodic check cancels the late ones.

    `asyncio.timeout()` per request arms and cancels a timer every time (≈ 4 µs under uvloop), though nearly every
    body has arrived whole before the app asks for it. Here a request costs a dict entry; the check runs only
    while some task is waiting, every quarter of the timeout (at most every second), so a late task is cancelled
    within that much of its deadline.
    """

    def __init__(self) -> None:
        self._waiting: dict[asyncio.Task, float] = {}
        self._late: set[asyncio.Task] = set()
        self._check: asyncio.TimerHandle | None = None
        self._check_loop: asyncio.AbstractEventLoop | None = None
        self._interval = math.inf

    def watch(self, task: asyncio.Task, seconds: float) -> None:
        loop = task.get_loop()
        self._waiting[task] = loop.time() + seconds
        interval = min(1.0, seconds / 4)
        if self._check is None or self._check_loop is not loop or interval < self._interval:
            if self._check is not None:
                self._check.cancel()
            self._schedule(loop, interval)

    def _schedule(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._check = loop.call_later(interval, self._cancel_late, loop, interval)
        self._check_loop, self._interval = loop, interval

    def forget(self, task: asyncio.Task) -> None:
        self._waiting.pop(task, None)

    def expired(self, task: asyncio.Task) -> bool:
        """True if `task` was cancelled for being late (the cancellation is then taken back)."""
        if task not in self._late:
            return False
        self._late.discard(task)
        task.uncancel()
        return True

    def _cancel_late(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        now = loop.time()
        for task, deadline in list(self._waiting.items()):
            if task.done() or task.get_loop().is_closed():
                del self._waiting[task]
            elif task.get_loop() is loop and deadline <= now:
                del self._waiting[task]
                self._late.add(task)
                task.cancel()
        if self._waiting:
            self._schedule(loop, interval)
        else:
            self._check, self._check_loop, self._interval = None, None, math.inf
