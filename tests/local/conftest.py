"""Fixtures of the embedded stack's tests.

- ``stack``: one embedded stack per test session for the end-to-end tests, run as `python -m local up` in a
  subprocess (as `make up` runs it: its worker processes, jobs and serving fleets end with it).
- ``moto``: moto's server in this process with the stack's own SageMaker, S3 and SNS backends installed for one
  module (local.aws.install_backend), and taken out again at teardown, so that the lambdas' tests, which use
  moto's in-process mocks, see moto's own backends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from local import aws
from local.observed_backends import ObservedS3Backend, ObservedSNSBackend
from local.sagemaker_backend import LocalSageMakerBackend, LocalSageMakerResponse

REPO = Path(__file__).resolve().parents[2]


class RunningStack:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.state = json.loads((state_dir / "state.json").read_text())
        self.outputs = json.loads((state_dir / "outputs.json").read_text())
        self.aws_url = self.state["aws_url"]
        self.runtime_url = self.state["runtime_url"]
        self.ca = self.state["ca_bundle"]
        self.region = self.state["region"]
        self.env = self.state["functions"]["handlers.trigger.handler"]["environment"]

    def output(self, key):
        for values in self.outputs.values():
            if key in values:
                return values[key]
        raise KeyError(key)

    def client(self, service):
        session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                        region_name=self.region)
        return session.client(service, endpoint_url=self.aws_url, config=Config(retries={"max_attempts": 3}))

    def runtime(self):
        session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                        region_name=self.region)
        return session.client("sagemaker-runtime", endpoint_url=self.runtime_url, verify=self.ca,
                              config=Config(retries={"max_attempts": 1}, read_timeout=60))

    def control(self, method, path, body=None, timeout=300):
        ctx = ssl.create_default_context(cafile=self.ca)
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(f"{self.runtime_url}/_local/{path}", data=data, method=method,
                                     headers={"X-Local-Token": self.state["control_token"]})
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return json.loads(resp.read())

    def ledger(self):
        env = {**os.environ, "AWS_ENDPOINT_URL": self.aws_url, "AWS_ACCESS_KEY_ID": "local",
               "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": self.region,
               "LEDGER_TABLE": self.env["LEDGER_TABLE"], "PYTHONPATH": str(REPO / "lambda")}
        env.pop("AWS_PROFILE", None)
        out = subprocess.run([sys.executable, "-m", "mlops_control.status", "--json"], env=env,
                             capture_output=True, text=True, check=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_for(self, what, check, timeout=240.0, interval=0.5):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; logs: {self.state_dir / 'logs'}")

    def live_config(self):
        try:
            endpoint = self.client("sagemaker").describe_endpoint(EndpointName=self.output("EndpointName"))
        except Exception:
            return None
        return endpoint["EndpointConfigName"] if endpoint["EndpointStatus"] == "InService" else None


def generate(path: Path, rows: int, seed: int, target: str, drift: bool = False, concept_shift: bool = False) -> Path:
    cmd = [sys.executable, "-m", "ml_pipeline.sample_data", "--rows", str(rows), "--seed", str(seed),
           "--target", target, "--out", str(path)]
    if drift:
        cmd.append("--drift")
    if concept_shift:
        cmd.append("--concept-shift")
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def sample():
    """The project's sample-data generator (ml_pipeline.sample_data), as a function."""
    return generate


@contextlib.contextmanager
def running_stack(state_dir: Path, *context: str):
    """`python -m local up` (as `make up` runs it: its worker processes, jobs and serving fleets end with it) with
    `-c stage=dev` and `context`, until the block ends."""
    log = (state_dir / "up.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOCAL_HEALTH_TIMEOUT": "60",
           # Alarms are evaluated only on the test's explicit ticks, so each transition is observed.
           "LOCAL_ALARM_INTERVAL": "86400"}
    args = [arg for key_value in ("stage=dev", *context) for arg in ("-c", key_value)]
    proc = subprocess.Popen([sys.executable, "-m", "local", "--state-dir", str(state_dir), "-v", "up",
                             "--cdk-out", str(state_dir / "cdk.out"), *args],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while not (state_dir / "ready").exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the embedded stack did not start:\n{(state_dir / 'up.log').read_text()[-4000:]}")
        time.sleep(0.5)
    try:
        yield RunningStack(state_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="session")
def stack_starter():
    """`running_stack`, for a test module that needs an embedded stack of its own."""
    return running_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    # A strict column and a training window, so that the retraining tests can show both (test_e2e_retraining),
    # and no retrain cooldown: each test's alarm is its own request (the cooldown has its own tests in
    # tests/lambdas; here it would make a test depend on the alarms of the tests before it).
    with running_stack(tmp_path_factory.mktemp("embedded"), "strict_columns=region", "training_window_max_rows=3000",
                       "retrain_cooldown_seconds=0") as running:
        yield running


class MotoStack:
    """moto's server with the stack's backends; ``objects``/``messages`` record what the backends reported."""

    region = "us-east-1"

    def __init__(self):
        from moto.s3.models import s3_backends
        from moto.sagemaker.models import sagemaker_backends
        from moto.sns.models import sns_backends

        self.objects: list[tuple[str, str, str, str]] = []  # (event name, bucket, key, version)
        self.messages: list[tuple[str, str, str | None]] = []
        self.sagemaker = LocalSageMakerBackend(self.region, aws.ACCOUNT)
        self.s3 = ObservedS3Backend("aws", aws.ACCOUNT, on_object_created=lambda event, bucket, key: self.objects.append(
            (event, bucket.name, key.name, key.version_id)))
        self.sns = ObservedSNSBackend(self.region, aws.ACCOUNT, on_published=lambda *m: self.messages.append(m))
        self._undo = [aws.install_backend(sagemaker_backends, aws.ACCOUNT, self.region, self.sagemaker),
                      aws.install_backend(s3_backends, aws.ACCOUNT, "aws", self.s3),
                      aws.install_backend(sns_backends, aws.ACCOUNT, self.region, self.sns)]
        self.server = aws.AwsServer(responses={"sagemaker": LocalSageMakerResponse})
        self.server.start()
        self.url = self.server.url

    def client(self, service):
        return aws.client(service, self.url, self.region)

    def close(self):
        self.server.stop()
        for undo in reversed(self._undo):
            undo()


@pytest.fixture(scope="module")
def moto():
    stack = MotoStack()
    try:
        yield stack
    finally:
        stack.close()
