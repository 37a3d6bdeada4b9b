"""The template's MLflow app as a local MLflow tracking server (``mlflow server``, the full package's UI included).

Runs, experiments and the model registry live in SQLite under the state directory (MLflow 3 refuses its old file
store), started afresh with the stack, as every other resource is (a run kept from an earlier stack would point at
artifacts in an S3 that is gone, and share training job names with the new one); artifacts go to the app's artifact
store in the local S3 (moto), proxied by the server (``--artifacts-destination``), so a ``track`` job needs no AWS
credentials to write them. On AWS, the
SageMaker MLflow app hands out ``s3://`` locations that the job's role writes directly (docs/local.md).
The server listens on loopback only.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .aws import free_port

log = logging.getLogger("local.tracking_server")


class TrackingServer:
    def __init__(self, state_dir: Path, aws_env: dict[str, str], log_path: Path, *, port: int = 0,
                 startup_timeout: float = 90.0):
        self.state_dir = state_dir
        self.aws_env = aws_env
        self.log_path = log_path
        self.port = port
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.app_arn: str | None = None

    def start(self, app_arn: str, artifact_store_uri: str) -> str:
        """Start the server for one app (its artifact store); returns its URL. It takes seconds to come up (a
        first start migrates the database): :meth:`wait_ready` waits, once the rest of the stack is provisioned."""
        if self.process is not None:
            raise RuntimeError(f"the local MLflow server already runs at {self.url}: one MLflow app per stack")
        port = self.port or free_port()
        database = self.state_dir / "mlflow" / "mlflow.db"
        shutil.rmtree(database.parent, ignore_errors=True)
        database.parent.mkdir(parents=True)
        mlflow = Path(sys.executable).parent / "mlflow"
        command = [str(mlflow) if mlflow.exists() else "mlflow", "server",
                   "--backend-store-uri", f"sqlite:///{database}",
                   "--artifacts-destination", artifact_store_uri.rstrip("/"),
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        env = {**self.aws_env, "MLFLOW_S3_ENDPOINT_URL": self.aws_env.get("AWS_ENDPOINT_URL", ""),
               "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1",
               # Server-side jobs (GenAI evaluation) start a job runner and seven queue consumers, ~2 GB: unused here.
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            # Its own process group: `mlflow server` runs uvicorn as a child, and stop() must end both.
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        self.app_arn = app_arn
        log.info("MLflow tracking server starting at %s (artifacts: %s)", self.url, artifact_store_uri)
        return self.url

    def wait_ready(self) -> None:
        if self.process is None:
            return
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the MLflow server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the MLflow server did not answer within {self.startup_timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process.wait()
        self.process = None
