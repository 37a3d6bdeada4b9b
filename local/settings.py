"""The embedded stack's settings (command line and ``LOCAL_*`` environment variables; docs/local.md, "Options")."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Settings:
    state_dir: Path = field(default_factory=lambda: REPO_ROOT / ".local")
    cdk_out: Path = field(default_factory=lambda: REPO_ROOT / "cdk.out")
    context: list[str] = field(default_factory=list)  # "key=value" as given to -c
    region: str = field(default_factory=lambda: os.environ.get("LOCAL_REGION", "us-east-1"))
    aws_port: int = field(default_factory=lambda: int(os.environ.get("LOCAL_AWS_PORT", "0")))
    runtime_port: int = field(default_factory=lambda: int(os.environ.get("LOCAL_RUNTIME_PORT", "0")))
    mlflow_port: int = field(default_factory=lambda: int(os.environ.get("LOCAL_MLFLOW_PORT", "0")))
    image: str | None = field(default_factory=lambda: os.environ.get("MLOPS_IMAGE") or None)
    health_timeout: float = field(default_factory=lambda: float(os.environ.get("LOCAL_HEALTH_TIMEOUT", "120")))
    alarm_interval: float = field(default_factory=lambda: float(os.environ.get("LOCAL_ALARM_INTERVAL", "10")))
    synth: bool = True
