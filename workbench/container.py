"""The production image's `train`, run by the SageMaker Python SDK v3's ModelTrainer in local-container mode.

ModelTrainer starts the image with docker compose (`docker compose` v2, else `docker-compose`) and lays out
/opt/ml as SageMaker does: hyperparameters.json, the channels under /opt/ml/input/data/<channel>, the model
directory collected into model.tar.gz. A bring-your-own image gets no command from the SDK's local mode (compose
would start the image's CMD, `serve`): `SourceCode(command="train")` is the SDK's own way to name one, and the same
ModelTrainer definition runs as a SageMaker training job with `training_mode=Mode.SAGEMAKER_TRAINING_JOB`.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class ContainerError(Exception):
    """The local training job could not start or failed; the message carries the image's own failure reason."""


@dataclass(frozen=True)
class LocalRun:
    job: str
    image: str
    model_dir: Path  # the extracted model directory (metadata.json, model.joblib, report/)
    archive: Path  # model.tar.gz as ModelTrainer collected it


def job_name(prefix: str = "experiment") -> str:
    """A SageMaker-valid, sortable, unique-enough name: the MLflow run key of the run."""
    name = f"{prefix[:30].rstrip('-')}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S-%f}"
    if not JOB_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid training job name")
    return name


def compose_available() -> str | None:
    """Why local-container mode cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (bash scripts/docker_engine.sh installs an engine)"
    try:
        if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0:
            return None
    except subprocess.TimeoutExpired:
        return "'docker compose version' did not answer within 30 s"
    if shutil.which("docker-compose") is None:
        return ("neither 'docker compose' nor 'docker-compose' is installed (Debian/Ubuntu: apt-get install "
                "docker-compose), which the SageMaker SDK's local mode runs")
    return None


def train_locally(image: str, channels: dict[str, Path], hyperparameters: dict[str, str], root: Path,
                  name: str) -> LocalRun:
    """Run `train` in `image` on the local channel directories; the model directory it wrote, extracted."""
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, InputData, SourceCode
    from sagemaker.train.model_trainer import Mode

    problem = compose_available()
    if problem:
        raise ContainerError(problem)
    root.mkdir(parents=True, exist_ok=True)
    trainer = ModelTrainer(
        training_image=image, training_mode=Mode.LOCAL_CONTAINER, base_job_name=name,
        compute=Compute(instance_type="local_cpu", instance_count=1),
        source_code=SourceCode(command="train"), hyperparameters=dict(hyperparameters),
        local_container_root=str(root.resolve()))
    # The SDK logs the container's output at INFO; a data scientist wants to see the metrics scroll by.
    logging.getLogger("sagemaker").setLevel(logging.INFO)
    try:
        trainer.train(input_data_config=[InputData(channel_name=channel, data_source=str(path.resolve()))
                                         for channel, path in channels.items()], wait=True, logs=True)
    except RuntimeError as exc:
        failure = root / "artifacts" / "output" / "failure"
        reason = failure.read_text(errors="replace").strip() if failure.is_file() else str(exc)
        raise ContainerError(f"the image's train failed: {reason}") from None
    archive = root / "compressed_artifacts" / "model.tar.gz"
    if not archive.is_file():
        raise ContainerError(f"ModelTrainer reported success but wrote no {archive}")
    model_dir = root / "model-extracted"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    return LocalRun(job=name, image=image, model_dir=model_dir, archive=archive)
