"""How the image's processes use their allocators: serve keeps freed memory for the next request; train has Arrow
give back what reading the data freed, and every Kedro run gives back what its nodes freed before the next one.

mallopt and malloc_trim are glibc's: on another C library these functions do nothing and return False.
"""

from __future__ import annotations

import os

ARROW_POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"


def _glibc(function: str):
    import ctypes

    try:
        return getattr(ctypes.CDLL("libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """serve: let glibc keep freed request buffers for the next request instead of unmapping them.

    A 10k-row request allocates ≈ 16 MB. With glibc's defaults most of it is mmapped and returned per request,
    and mapping it again costs ≈ 4,000 page faults: 10-20 ms of a 50-70 ms request here (bench/findings.md).
    The cost is that a worker keeps up to the trim threshold of freed memory resident.
    """
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 * 1024 * 1024)) and bool(mallopt(m_trim_threshold, 64 * 1024 * 1024))


def release_arrow_memory() -> None:
    """train: Arrow allocates with glibc's allocator (its system pool), which gives large freed blocks back, instead
    of jemalloc, which keeps what reading the data freed: peak on the 1M-row bench file 806 → 777 MiB, wall time
    unchanged (docs/scale.md). Arrow reads the variable when pyarrow is first imported: call this before; a value
    already set wins.

    Not done: a fixed 128 KiB glibc mmap threshold gave back another ≈ 60 MiB at 1M rows (≈ 235 MiB at 10M, with
    this), at ≈ 6-8% more wall time (every large block faulted in again).
    """
    os.environ.setdefault(ARROW_POOL_VARIABLE, "system")


def give_back_freed_memory() -> bool:
    """glibc's malloc_trim(0): return the free pages of every arena to the system; True when some were.

    glibc returns a freed block to the system only when it was mmapped (above the mmap threshold, which glibc
    raises to 32 MiB as large blocks are freed) or sits at the top of the heap. A node's freed column copies and
    median buffers stay resident otherwise, under the next node's allocations: ≈ 110 MiB of the 1M-row bench
    file's reading and cleaning, ≈ 190 MiB (the train split among them) when the fit starts.
    """
    trim = _glibc("malloc_trim")
    return bool(trim(0)) if trim is not None else False
