"""Work handled in order, one item at a time, by one daemon thread: the bus's dispatcher, a function's event queue."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

log = logging.getLogger("local.work_queue")

_STOP = object()


class WorkQueue:
    """``handle(item)`` for each item put, in order; ``busy`` while an item is queued or in hand."""

    def __init__(self, handle: Callable[[Any], None], name: str):
        self._handle = handle
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def put(self, item: Any) -> None:
        with self._lock:
            self._pending += 1
        self._queue.put(item)

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._pending > 0

    def stop(self) -> None:
        """The thread ends after the items already queued."""
        self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._handle(item)
            except Exception:
                log.exception("%s failed", threading.current_thread().name)
            finally:
                with self._lock:
                    self._pending -= 1
