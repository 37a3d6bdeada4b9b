"""The SageMaker /opt/ml layout, rooted at OPT_ML_ROOT when set (tests, the local stack)."""

from __future__ import annotations

import os
from pathlib import Path


def opt_ml_root() -> Path:
    """The /opt/ml root: OPT_ML_ROOT if set, else /opt/ml."""
    return Path(os.environ.get("OPT_ML_ROOT") or "/opt/ml")


def project_path() -> Path:
    """The Kedro project directory (holds conf/): KEDRO_PROJECT_PATH, else the source checkout."""
    explicit = os.environ.get("KEDRO_PROJECT_PATH")
    if explicit:
        return Path(explicit)
    # src/ml_pipeline/paths.py -> kedro_project/
    return Path(__file__).resolve().parents[2]


def model_dir() -> Path:
    return opt_ml_root() / "model"


def hyperparameters_file() -> Path:
    return opt_ml_root() / "input" / "config" / "hyperparameters.json"


def training_channel(name: str = "train") -> Path:
    return opt_ml_root() / "input" / "data" / name


def training_failure_file() -> Path:
    return opt_ml_root() / "output" / "failure"


def processing_message_file() -> Path:
    # SageMaker copies the first 1 KB of this file into DescribeProcessingJob.ExitMessage.
    return opt_ml_root() / "output" / "message"
