"""Cores the other serve workers leave idle, lent to a large request.

Each worker predicts on one OpenMP thread: with one worker per core, more threads per request only fight over
cores the other workers are using (two concurrent 10k-row predicts on two threads each took 131-155 ms against
43-55 ms on one; bench/findings.md). But a batch client, or SageMaker Batch Transform with one request at a
time, keeps only one worker busy, and one thread then leaves the other cores idle. So `serve` creates a small
file that every worker maps, one byte per worker: a worker sets its byte while it computes, and a large request
asks before each tree how many other workers are computing, and uses the cores they leave.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
import threading

FILE_VARIABLE = "SERVE_CORES_FILE"  # set by `serve` for its workers
LIMIT_VARIABLE = "SERVE_BATCH_THREADS"  # "auto" (default): every idle core; a number caps the threads; 1 = off


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_limit(environ: dict[str, str], cores: int) -> int:
    """SERVE_BATCH_THREADS as a number of threads (ValueError names the variable)."""
    value = environ.get(LIMIT_VARIABLE, "auto").strip().lower()
    if value in ("", "auto"):
        return cores
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{LIMIT_VARIABLE} must be 'auto' or a whole number ≥ 1, got {value!r}")
    return int(value)


def create_file(directory: str, slots: int) -> str:
    """The shared file with `slots` idle slots; the caller removes it when the server stops."""
    fd, path = tempfile.mkstemp(prefix="serve-cores-", dir=directory)
    try:
        os.write(fd, bytes(slots))
    finally:
        os.close(fd)
    return path


class CoreShare:
    """This worker's slot in the shared file: `computing()` marks it busy, `threads()` reads the others."""

    def __init__(self, fd: int, mapping: mmap.mmap, slot: int, cores: int, limit: int) -> None:
        self._fd = fd  # kept open: closing any descriptor of the file would drop this process's slot lock
        self._mapping = mapping
        self.slot = slot
        self.cores = cores
        self.limit = limit
        # The event loop and the compute thread may both compute: the slot stays set until the last one ends.
        self._computing = 0
        self._lock = threading.Lock()
        self._marker = _Computing(self)

    @classmethod
    def join(cls, path: str, cores: int, limit: int) -> CoreShare | None:
        """Claim a free slot (a byte-range lock the kernel drops when the worker dies); None if all are taken."""
        fd = os.open(path, os.O_RDWR)
        size = os.fstat(fd).st_size
        for slot in range(size):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
            except OSError:
                continue
            mapping = mmap.mmap(fd, size)
            mapping[slot] = 0  # a replaced worker may have died mid-request
            return cls(fd, mapping, slot, cores, limit)
        os.close(fd)
        return None

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> CoreShare | None:
        """The share `serve` set up for this worker, or None (run some other way, or SERVE_BATCH_THREADS=1)."""
        path = environ.get(FILE_VARIABLE)
        cores = available_cores()
        limit = thread_limit(environ, cores)
        if not path or limit == 1:
            return None
        return cls.join(path, cores, limit)

    def computing(self) -> _Computing:
        """`with share.computing():` marks this worker busy for the block."""
        return self._marker

    def _begin(self) -> None:
        with self._lock:
            self._computing += 1
            self._mapping[self.slot] = 1

    def _end(self) -> None:
        with self._lock:
            self._computing -= 1
            if not self._computing:
                self._mapping[self.slot] = 0

    def threads(self) -> int:
        """Threads this worker may use now: the cores no other worker is computing on, at least one."""
        states = self._mapping[:]  # bytes: iterating the mmap itself would yield 1-byte bytes, all truthy
        others = sum(1 for slot, busy in enumerate(states) if busy and slot != self.slot)
        return max(1, min(self.limit, self.cores - others))


class _Computing:
    """The context manager of `CoreShare.computing`, made once: a generator-based one cost ≈ 1 µs a request."""

    __slots__ = ("_share",)

    def __init__(self, share: CoreShare) -> None:
        self._share = share

    def __enter__(self) -> None:
        self._share._begin()

    def __exit__(self, *exc) -> None:
        self._share._end()
