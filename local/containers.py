"""How the image's commands run here: the real image under Docker, or the same commands as local processes.

``MLOPS_IMAGE`` set and a Docker engine that has it → ``docker run`` with ``/opt/ml`` mounted, as SageMaker runs
the image. Otherwise each command runs as a process of this machine: the image's console scripts (``train``,
``serve``, ``validate``, ``monitor``, ``join-labels``, ``track``, declared in kedro_project/pyproject.toml) from this
virtualenv, with ``OPT_ML_ROOT`` standing for ``/opt/ml``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("local.containers")

# What a network-isolated container cannot have: AWS credentials and the AWS API.
AWS_ACCESS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class ContainerRuntime:
    """How containers run here: ``docker`` with ``image``, or ``process`` (the image's console scripts)."""

    mode: str
    image: str | None = None

    @classmethod
    def detect(cls, image: str | None = None) -> "ContainerRuntime":
        image = image if image is not None else os.environ.get("MLOPS_IMAGE") or None
        if image and shutil.which("docker"):
            try:
                ok = subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=20).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return cls("docker", image)
            log.warning("MLOPS_IMAGE=%s is set but no Docker engine has it; running entrypoints as processes", image)
        return cls("process")

    def describe(self) -> str:
        return f"docker image {self.image}" if self.mode == "docker" else "local processes (the image's console scripts)"


def entrypoint_command(name: str) -> list[str]:
    """An image command as a local command: this virtualenv's console script, else one on PATH.

    ``LOCAL_ENTRYPOINT_DIR`` (tests: stub entrypoints, Python files) is looked at first.
    """
    override = os.environ.get("LOCAL_ENTRYPOINT_DIR")
    if override and (Path(override) / name).is_file():
        return [sys.executable, str(Path(override) / name)]
    venv_script = Path(sys.executable).parent / name
    if venv_script.is_file() and os.access(venv_script, os.X_OK):
        return [str(venv_script)]
    found = shutil.which(name)
    if found:
        return [found]
    raise FileNotFoundError(f"entrypoint {name!r}: not in {venv_script.parent} or on PATH "
                            "(install kedro_project: `make install`)")


def run_to_completion(runtime: ContainerRuntime, name: str, root: Path, command: list[str],
                      environment: dict[str, str], base_env: dict[str, str], network_isolation: bool,
                      max_runtime: int, log_path: Path,
                      on_start: Callable[[subprocess.Popen[bytes]], None] = lambda proc: None) -> tuple[int, bool]:
    """Run one job's container with ``root`` as its ``/opt/ml``; returns (exit code, timed out).

    ``command[0]`` is the image command (``train``, or a Processing job's ``ContainerEntrypoint``). At
    ``max_runtime`` the container gets SIGTERM and SageMaker's 120 s grace before SIGKILL.
    """
    if runtime.mode == "docker":
        cmd = ["docker", "run", "--rm", "--name", f"mlops-local-{name}", "-v", f"{root}:/opt/ml"]
        # Isolated: no network. Otherwise the host's: what the job reaches (the local MLflow server) listens on
        # loopback, as SageMaker's network lets a job reach AWS endpoints.
        cmd += ["--network", "none" if network_isolation else "host"]
        for k, v in environment.items():
            cmd += ["-e", f"{k}={v}"]
        if command[0] == "train":  # SageMaker runs a training image with the argument `train`
            cmd += [runtime.image or "", *command]
        else:  # a Processing job's ContainerEntrypoint replaces the image's entrypoint
            cmd += ["--entrypoint", command[0], runtime.image or "", *command[1:]]
        env = dict(base_env)
    else:
        cmd = [*entrypoint_command(command[0]), *command[1:]]
        env = {**base_env, **environment, "OPT_ML_ROOT": str(root)}
        if network_isolation:  # the container has no AWS API access; keep the process honest too
            for k in AWS_ACCESS:
                env.pop(k, None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(root))
        on_start(proc)
        try:
            return proc.wait(timeout=max_runtime), False
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                return proc.wait(timeout=120), True
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait(), True
