"""``python -m local {demo,up,down,status} [-c key=value ...]`` — the embedded stack's commands."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .demo import run_demo
from .settings import REPO_ROOT, Settings
from .stack import EmbeddedStack
from .statefiles import read_state, status_environment

log = logging.getLogger("local")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings(state_dir=Path(args.state_dir).resolve(), context=list(args.context or []))
    if args.cdk_out:
        settings.cdk_out = Path(args.cdk_out).resolve()
    if getattr(args, "no_synth", False):
        settings.synth = False
    return settings


def _usage(stack: EmbeddedStack) -> str:
    bucket = stack.output("DataBucketName")
    endpoint = stack.output("EndpointName")
    ca = stack.ca_bundle
    return f"""
The embedded stack is up ({stack.container_runtime.describe()}).
  AWS API (moto)   : {stack.aws_url}      outputs: {stack.state_dir / 'outputs.json'}
  Runtime (HTTPS)  : {stack.runtime_url}   CA bundle: {ca}
  MLflow (UI, API) : {stack.tracking.url or 'off (mlflow_tracking is false)'}

  Upload data      : aws --endpoint-url {stack.aws_url} s3 cp churn.csv s3://{bucket}/incoming/
  Call the model   : aws --endpoint-url {stack.runtime_url} --ca-bundle {ca} sagemaker-runtime invoke-endpoint \\
                       --endpoint-name {endpoint} --content-type text/csv --body fileb://rows.csv out.json
  Decision ledger  : make status
  (AWS CLI: export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION={stack.region})
Stop with Ctrl-C or `make down`.
"""


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings(args)
    running = read_state(settings.state_dir)
    if running:
        print(f"an embedded stack is already running (pid {running['pid']}); `make down` stops it", file=sys.stderr)
        return 1
    stack = EmbeddedStack(settings)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("synthesizing the CDK app and starting the embedded stack ...", flush=True)
        stack.start()
        print(_usage(stack), flush=True)
        (settings.state_dir / "ready").write_text(str(os.getpid()))
        while not stopping.wait(1.0):
            pass
        print("stopping ...", flush=True)
    finally:
        (settings.state_dir / "ready").unlink(missing_ok=True)
        stack.stop()
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    if state is None:
        print("no embedded stack is running")
        return 0
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            print(f"stopped the embedded stack (pid {pid})")
            return 0
        time.sleep(0.2)
    print(f"pid {pid} did not stop within 60 s", file=sys.stderr)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir).resolve()
    state = read_state(state_dir)
    if state is None:
        print("no embedded stack is running (start one with `make up`)")
        return 1
    print(f"embedded stack pid {state['pid']}: AWS API {state['aws_url']}, runtime {state['runtime_url']}"
          + (f", MLflow {state['mlflow_url']}" if state.get("mlflow_url") else ""))
    return subprocess.run([sys.executable, "-m", "mlops_control.status", *args.rest], env=status_environment(state)).returncode


def cmd_demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if read_state(settings.state_dir):
        print("an embedded stack is already running; `make down` first", file=sys.stderr)
        return 1
    return run_demo(settings, rows=args.rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("--state-dir", default=os.environ.get("LOCAL_STATE_DIR", str(REPO_ROOT / ".local")))
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("demo", "up"):
        p = sub.add_parser(name)
        p.add_argument("-c", "--context", action="append", metavar="KEY=VALUE", help="CDK context, as for cdk deploy")
        p.add_argument("--cdk-out", help="where to synthesize (default: cdk.out)")
        p.add_argument("--no-synth", action="store_true", help="use the existing cdk.out as is")
        if name == "demo":
            p.add_argument("--rows", type=int, default=1000, help="sample rows to upload")
    sub.add_parser("down")
    p = sub.add_parser("status")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="passed to mlops_control.status (--file, --limit, --json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    commands = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "demo": cmd_demo}
    try:
        return commands[args.command](args)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
