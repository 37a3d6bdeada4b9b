"""loop: the embedded stack (local/): upload → new model serving, and `make demo` wall time on a clean copy.

`make demo` is run on a fresh copy of the working tree without .venv, node_modules, cdk.out or .local (what
a clean clone has, plus this tree's uncommitted work), so its wall time includes installing everything
(from the package caches this machine already has: a first-ever install is slower). The demo itself
prints "upload → new model serving: N s"; that line is the loop figure.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench import common

BENCH = "loop"
EXCLUDE = {".venv", "node_modules", "cdk.out", ".local", ".pytest_cache", "__pycache__", "out", ".git"}


def clean_copy(dest: Path) -> Path:
    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        skip = {n for n in names if n in EXCLUDE and not (n == "out" and here.name != "bench")}
        return skip | {n for n in names if n.endswith((".pyc", ".egg-info"))}

    shutil.copytree(common.ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def run(*, smoke: bool, workdir: Path) -> list[common.Figure]:
    if not (common.ROOT / "local" / "__main__.py").exists():
        why = "local/ (the embedded stack) has not landed"
        return [common.not_measured(BENCH, "upload → new model serving", why, "≤ 15 s"),
                common.not_measured(BENCH, "make demo on a clean copy", why, "≤ 5 min")]
    if smoke:
        # A demo takes minutes; the smoke only proves the command the benchmark drives is there.
        done = subprocess.run([common.PY, "-m", "local", "--help"], cwd=common.ROOT, env=common.child_env(),
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or "demo" not in done.stdout:
            raise RuntimeError(f"python -m local --help failed: {done.stderr[-800:]}")
        note = "skipped in smoke mode (a demo takes minutes); `python -m local --help` answers"
        return [common.Figure(BENCH, "upload → new model serving", None, "s", target="≤ 15 s", note=note),
                common.Figure(BENCH, "make demo on a clean copy", None, "s", target="≤ 5 min", note=note)]
    workdir.mkdir(parents=True, exist_ok=True)
    tree = clean_copy(Path(tempfile.mkdtemp(prefix="bench-clean-", dir=workdir)) / "repo")
    m = common.run_measured(["make", "demo"], env=common.child_env(), cwd=tree, log=workdir / "make-demo.log", timeout=1800)
    loop = re.search(r"upload → new model serving: ([0-9.]+) s", m.output)
    shutil.rmtree(tree.parent, ignore_errors=True)
    if m.returncode != 0:
        raise RuntimeError(f"make demo exited {m.returncode}; log {workdir / 'make-demo.log'}: {m.output[-1500:]}")
    upload = float(loop.group(1)) if loop else None
    return [
        common.Figure(BENCH, "upload → new model serving (make demo's sample data)", upload, "s", target="≤ 15 s",
                      holds=None if upload is None else upload <= 15,
                      note="" if loop else "the demo did not print its upload → serving line"),
        common.Figure(BENCH, "make demo on a clean copy (install + synth + loop + stop)", m.wall_s, "s", target="≤ 5 min",
                      holds=m.wall_s <= 300, note=f"peak memory {m.peak_rss_mib:.0f} MiB"),
    ]
