"""Cores lent between serve workers: slots claimed per process, busy workers counted, dead workers' slots freed."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from ml_pipeline.serving import cores
from ml_pipeline.serving.cores import CoreShare

FORK = multiprocessing.get_context("fork")  # a worker is another process: POSIX record locks are per process


def _worker(path: str, commands, replies) -> None:
    """A stand-in serve worker: joins the share, then marks itself computing or idle on command."""
    share = CoreShare.join(path, cores=2, limit=2)
    replies.put(None if share is None else share.slot)
    computing = None
    while (command := commands.get()) != "exit":
        if command == "compute":
            computing = share.computing()
            computing.__enter__()
        elif command == "idle":
            computing.__exit__(None, None, None)
        elif command == "die":  # killed mid-request: its byte stays set
            os._exit(1)
        replies.put(command)


class Worker:
    def __init__(self, path: str) -> None:
        self.commands, self.replies = FORK.Queue(), FORK.Queue()
        self.process = FORK.Process(target=_worker, args=(path, self.commands, self.replies))
        self.process.start()
        self.slot = self.replies.get(timeout=30)

    def tell(self, command: str) -> None:
        self.commands.put(command)
        if command in ("die", "exit"):
            self.process.join(timeout=30)
            assert not self.process.is_alive()
        else:
            assert self.replies.get(timeout=30) == command


@pytest.fixture()
def share_file(tmp_path):
    return cores.create_file(str(tmp_path), 2)


def test_a_large_request_gets_the_cores_of_idle_workers_only(share_file):
    other = Worker(share_file)
    try:
        mine = CoreShare.join(share_file, cores=2, limit=2)
        assert {other.slot, mine.slot} == {0, 1}
        assert mine.threads() == 2
        other.tell("compute")
        assert mine.threads() == 1
        with mine.computing():  # its own work does not count against itself
            assert mine.threads() == 1
        other.tell("idle")
        assert mine.threads() == 2
    finally:
        other.tell("exit")


def test_a_dead_workers_slot_is_freed_and_reset_for_its_replacement(tmp_path):
    path = cores.create_file(str(tmp_path), 3)
    first, second = Worker(path), Worker(path)
    mine = CoreShare.join(path, cores=3, limit=3)
    assert sorted([first.slot, second.slot, mine.slot]) == [0, 1, 2]
    extra = Worker(path)
    assert extra.slot is None  # every slot taken: that worker gets no share and stays on one thread
    extra.tell("exit")
    first.tell("compute")
    first.tell("die")
    assert mine.threads() == 2  # until it is replaced, the dead worker still counts as busy
    replacement = Worker(path)
    try:
        assert replacement.slot == first.slot  # the kernel dropped the dead worker's lock
        assert mine.threads() == 3  # and the replacement cleared its byte
    finally:
        replacement.tell("exit")
        second.tell("exit")


def test_threads_are_capped_by_the_limit_and_never_below_one(tmp_path):
    path = cores.create_file(str(tmp_path), 3)
    a, b = Worker(path), Worker(path)
    try:
        wide = CoreShare.join(path, cores=4, limit=3)
        assert wide.threads() == 3  # 4 cores, capped at 3
        a.tell("compute")
        b.tell("compute")
        assert wide.threads() == 2  # 4 cores, 2 busy elsewhere
        narrow = CoreShare(wide._fd, wide._mapping, wide.slot, cores=2, limit=2)
        assert narrow.threads() == 1  # more busy workers than spare cores: still one
    finally:
        a.tell("idle")
        b.tell("idle")
        a.tell("exit")
        b.tell("exit")


@pytest.mark.parametrize("value, expected", [(None, 8), ("auto", 8), ("AUTO", 8), ("", 8), ("1", 1), ("3", 3)])
def test_batch_thread_setting(value, expected):
    environ = {} if value is None else {cores.LIMIT_VARIABLE: value}
    assert cores.thread_limit(environ, cores=8) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_batch_thread_setting_names_the_variable(value):
    with pytest.raises(ValueError, match=cores.LIMIT_VARIABLE):
        cores.thread_limit({cores.LIMIT_VARIABLE: value}, cores=8)


def test_no_share_without_the_file_or_when_switched_off(share_file):
    assert CoreShare.from_environment({}) is None
    assert CoreShare.from_environment({cores.FILE_VARIABLE: share_file, cores.LIMIT_VARIABLE: "1"}) is None
    assert CoreShare.from_environment({cores.FILE_VARIABLE: share_file}) is not None


def test_a_worker_stays_computing_until_its_last_overlapping_request_ends(share_file):
    # A worker computes on its event loop (small requests) and on its compute thread (large ones) at once.
    mine = CoreShare.join(share_file, cores=2, limit=2)

    def busy() -> bool:  # what the other workers read in the shared file
        with open(share_file, "rb") as handle:
            return handle.read()[mine.slot] == 1

    large, small = mine.computing(), mine.computing()
    large.__enter__()
    small.__enter__()
    small.__exit__(None, None, None)
    assert busy()  # the large request still computes
    large.__exit__(None, None, None)
    assert not busy()
