"""ml_pipeline/allocator.py, train's side: Arrow's system pool, chosen before pyarrow is imported (in a fresh
interpreter: Arrow reads its pool variable once). serve's side: tests/container/test_serve.py."""

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
