"""``cdk synth`` with the pinned CLI: the templates the embedded stack runs come from the app itself."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from .aws import clean_environ
from .settings import REPO_ROOT

log = logging.getLogger("local.synth")


def synthesize(out_dir: Path, context: list[str], account: str, region: str, log_path: Path) -> None:
    """Synthesize into ``out_dir``; context passes through exactly as ``cdk deploy -c`` takes it."""
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        raise RuntimeError(f"{cdk} is missing: run `make install` (npm ci) first")
    cmd = [str(cdk), "synth", "--quiet", "-o", str(out_dir)]
    for item in context:
        cmd += ["-c", item]
    env = {**clean_environ(),
           "CDK_DEFAULT_ACCOUNT": account, "CDK_DEFAULT_REGION": region,
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1", "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
           "CDK_DISABLE_VERSION_CHECK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    started = time.time()
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    log_path.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        if not (out_dir / "manifest.json").exists() or os.environ.get("LOCAL_STRICT_SYNTH", "1") == "1":
            raise RuntimeError(f"cdk synth failed (exit {result.returncode}); see {log_path}:\n{tail}")
    log.info("synthesized in %.1f s", time.time() - started)
