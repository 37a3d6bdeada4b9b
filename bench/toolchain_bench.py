"""toolchain: how long `cdk synth` and `make test` take here (absolute numbers; there is no baseline)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from bench import common

BENCH = "toolchain"


def run(*, smoke: bool, workdir: Path) -> list[common.Figure]:
    workdir.mkdir(parents=True, exist_ok=True)
    figures = []
    cdk = common.ROOT / "node_modules" / ".bin" / "cdk"
    if not (common.ROOT / "app.py").exists() or not (common.ROOT / "cdk.json").exists():
        figures.append(common.not_measured(BENCH, "cdk synth", "app.py / cdk.json do not exist yet"))
    else:
        out = Path(tempfile.mkdtemp(prefix="bench-cdk-out-"))
        if cdk.exists() and not smoke:  # smoke: one synthesis (python app.py) is enough to prove it runs
            m = common.run_measured([str(cdk), "synth", "--quiet", "-o", str(out), "-c", "stage=dev"],
                                    env=common.child_env(), cwd=common.ROOT, log=workdir / "cdk-synth.log", timeout=900)
            figures.append(common.Figure(BENCH, "cdk synth (CLI, stage dev)", m.wall_s if m.returncode == 0 else None, "s",
                                         note="" if m.returncode == 0 else f"failed (exit {m.returncode}): {m.output[-300:]}"))
        m = common.run_measured([common.PY, "app.py"], env=common.child_env(CDK_OUTDIR=str(out / "py")),
                                cwd=common.ROOT, log=workdir / "python-app.log", timeout=900)
        figures.append(common.Figure(BENCH, "python app.py (synthesis without the CLI)", m.wall_s if m.returncode == 0 else None,
                                     "s", note="" if m.returncode == 0 else f"failed (exit {m.returncode}): {m.output[-300:]}"))
    if smoke:
        figures.append(common.Figure(BENCH, "make test", None, "s", note="skipped in smoke mode (it runs this smoke itself)"))
    else:
        m = common.run_measured(["make", "test"], env=common.child_env(), cwd=common.ROOT,
                                log=workdir / "make-test.log", timeout=3600)
        tail = [ln for ln in m.output.splitlines() if ln.strip()][-1:] or [""]
        figures.append(common.Figure(BENCH, "make test (once)", m.wall_s, "s",
                                     note=f"exit {m.returncode}; {tail[0][-200:]}"))
    return figures
