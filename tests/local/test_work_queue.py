"""One thread, in order, busy until done (local.work_queue): the bus's dispatcher and a function's event queue."""

import threading
import time

from local.work_queue import WorkQueue


def test_items_are_handled_in_order_and_a_failure_does_not_stop_the_queue():
    seen, release = [], threading.Event()

    def handle(item):
        release.wait(5)
        if item == 2:
            raise ValueError("boom")
        seen.append(item)

    work = WorkQueue(handle, "test-queue")
    for item in range(5):
        work.put(item)
    assert work.busy
    release.set()
    deadline = time.time() + 5
    while work.busy and time.time() < deadline:
        time.sleep(0.01)
    assert not work.busy and seen == [0, 1, 3, 4]
    work.stop()
