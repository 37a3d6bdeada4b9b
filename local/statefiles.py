"""The files under ``.local/`` that other processes read: ``state.json``, ``outputs.json``, ``logs/sns.log``.

``state.json`` (mode 0600: it holds the control token) tells ``make down``/``make status`` and the tests where the
running stack is; ``outputs.json`` has the shape of ``cdk deploy --outputs-file`` plus the local URLs.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .aws import clean_environ, client_environment
from .settings import REPO_ROOT


def write_state(path: Path, state: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=2)


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The running stack's state, or None when none runs (no file, or one left by a stack that is gone)."""
    path = state_dir / "state.json"
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state


def remove_state(state_dir: Path) -> None:
    """Remove ``state.json`` if this process wrote it."""
    path = state_dir / "state.json"
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def status_environment(state: dict[str, Any]) -> dict[str, str]:
    """Environment for ``python -m mlops_control.status`` against the running stack (the trigger's variables)."""
    env = {**clean_environ(), **client_environment(state["aws_url"], state["region"])}
    functions = state.get("functions", {})
    trigger = functions.get("handlers.trigger.handler") or next(iter(functions.values()), {})
    env.update(trigger.get("environment", {}))
    env["PYTHONPATH"] = str(REPO_ROOT / "lambda")
    return env


def write_outputs(path: Path, outputs: dict[str, dict[str, Any]], local: dict[str, Any],
                  environment: dict[str, str]) -> None:
    """outputs.json in ``cdk deploy --outputs-file`` shape: every stack's block gets ``local`` (the URLs).

    Older templates may lack an output the docs promise: it is then taken from a function's ``environment``.
    """
    derived = {"DataBucketName": environment.get("DATA_BUCKET"), "ArtifactsBucketName": environment.get("ARTIFACTS_BUCKET"),
               "EndpointName": environment.get("ENDPOINT_NAME"), "LedgerTableName": environment.get("LEDGER_TABLE"),
               "NotificationTopicArn": environment.get("NOTIFY_TOPIC_ARN")}
    for block in outputs.values():
        block.update(local)
    first = next(iter(outputs.values()), None)
    for key, value in derived.items():
        if value and first is not None and not any(key in block for block in outputs.values()):
            first[key] = value
    path.write_text(json.dumps(outputs, indent=2) + "\n")


class SnsLog:
    """Every message published to a topic, one JSON line each (SNS e-mail is not delivered here)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, topic_arn: str, message: str, subject: str | None) -> None:
        entry = {"time": datetime.now(timezone.utc).isoformat(), "topic": topic_arn, "subject": subject,
                 "message": message}
        with self._lock, self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")
