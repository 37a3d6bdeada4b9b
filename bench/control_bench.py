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
    plural = "es" if runs > 1 else ""
    cold, restored = f["import_plus_event_ms_median"], f["snapstart_restored_event_ms_median"]
    return [
        common.Figure(BENCH, f"trigger cold start as deployed (SnapStart): first event after restore (median of {runs})",
                      restored, "ms", cold, "plain cold process: import + same event", common.ratio(restored, cold),
                      f"≤ {f['target_ms']:.0f} ms", bool(f["meets_time_target_snapstart"]),
                      f"init (imports, clients) in the snapshot, emulated by forking an initialised process; the "
                      f"microVM resume is AWS's and not included; CPU {f['snapstart_restored_event_cpu_ms_median']} ms; max "
                      f"{f['snapstart_restored_event_ms_max']} ms (the handler's own CPU in that run: "
                      f"{f['snapstart_restored_slowest_cpu_ms']} ms); moto server on loopback"),
        common.Figure(BENCH, f"trigger handler import + one event, no SnapStart (median of {runs} cold process{plural})",
                      cold, "ms", target=f"≤ {f['target_ms']:.0f} ms", holds=bool(f["meets_time_target"]),
                      note=f"import {f['cold_import_ms_median']} ms + event {f['first_event_ms_median']} ms; "
                           f"max {f['import_plus_event_ms_max']} ms; floor of any boto3 handler here: import botocore "
                           f"{f['floor_botocore_import_ms_median']} ms + its {len(f['floor_clients'])} clients "
                           f"{f['floor_clients_ms_median']} ms; interpreter start-up "
                           f"{f['interpreter_and_process_ms_median']} ms not counted"),
        common.Figure(BENCH, "lambda asset size (zip of lambda/)", f["asset_kb"], "KB", target=f"≤ {f['target_kb']:.0f} KB",
                      holds=bool(f["meets_size_target"])),
    ]
