"""ml_pipeline/allocator.py, train's side: Arrow's system pool, chosen before pyarrow is imported (in a fresh
interpreter: Arrow reads its pool variable once), and freed heap memory given back. serve's side:
tests/container/test_serve.py."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(script: str, **env: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=True, env={**os.environ, **env}).stdout.split()


def test_train_makes_arrow_allocate_with_the_system_allocator_before_pyarrow_is_imported(tmp_path):
    # train fails at once here (no hyperparameters): what matters is what it set up before reading anything.
    script = """
from ml_pipeline.entrypoints import train
train([])
import pyarrow
print(pyarrow.default_memory_pool().backend_name)
"""
    assert _run(script, OPT_ML_ROOT=str(tmp_path)) == ["system"]
    assert _run(script, OPT_ML_ROOT=str(tmp_path), ARROW_DEFAULT_MEMORY_POOL="jemalloc") == ["jemalloc"]  # yours wins


def test_freed_heap_memory_goes_back_to_the_system():
    # In a fresh interpreter, so that the heap holds only what the script made.
    script = """
import numpy as np
from ml_pipeline.allocator import give_back_freed_memory

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 >> 20

big = np.ones(2 << 20)  # 16 MiB, mmapped; freeing it raises glibc's mmap threshold to 16 MiB
del big
blocks = [np.ones(1 << 17) for _ in range(300)]  # 300 x 1 MiB, now on the heap
pin = np.ones(1 << 17)  # above them: the top of the heap stays in use, as under a later node's data
held = rss_mib()
del blocks
freed = rss_mib()
print(held, freed, give_back_freed_memory(), rss_mib())
"""
    held, freed, gave, after = _run(script)
    assert int(freed) > int(held) - 30  # free() alone kept the pages
    assert gave == "True" and int(after) < int(freed) - 250
