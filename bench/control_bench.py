"""control: runs the control-plane engineer's bench/control_plane.py (handler import + one event; asset size).

That script owns the measuring (cold processes against a moto server on loopback); this module runs it as a
child process with --json and turns its figures into rows of the common results table.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench import common

BENCH = "control"
SCRIPT = common.ROOT / "bench" / "control_plane.py"


def run(*, smoke: bool, workdir: Path) -> list[common.Figure]:
    if not SCRIPT.exists():
        why = "bench/control_plane.py does not exist yet"
        return [common.not_measured(BENCH, "trigger handler import + one event", why, "≤ 150 ms"),
                common.not_measured(BENCH, "lambda asset size", why, "≤ 200 KB")]
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [common.PY, str(SCRIPT), "--json"] + (["--smoke"] if smoke else [])
    done = subprocess.run(cmd, cwd=common.ROOT, env=common.child_env(), capture_output=True, text=True, timeout=900)
    (workdir / "control_plane.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"bench/control_plane.py exited {done.returncode}: {done.stderr[-1500:]}")
    f = json.loads(done.stdout.strip().splitlines()[-1])
    runs = f["runs"]
    return [
        common.Figure(BENCH, f"trigger handler import + one event (median of {runs} cold process{'es' if runs > 1 else ''})",
                      f["import_plus_event_ms_median"], "ms", target=f"≤ {f['target_ms']:.0f} ms",
                      holds=bool(f["meets_time_target"]),
                      note=f"import {f['cold_import_ms_median']} ms + event {f['first_event_ms_median']} ms; "
                           f"max {f['import_plus_event_ms_max']} ms; interpreter start-up "
                           f"{f['interpreter_and_process_ms_median']} ms not counted; moto server on loopback"),
        common.Figure(BENCH, "lambda asset size (zip of lambda/)", f["asset_kb"], "KB", target=f"≤ {f['target_kb']:.0f} KB",
                      holds=bool(f["meets_size_target"])),
    ]
