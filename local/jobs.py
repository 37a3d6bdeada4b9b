"""Runs the SageMaker Processing and Training jobs created in moto, as SageMaker would run them.

For each job: lay out ``/opt/ml`` (config files, input channels downloaded from the local S3:
:mod:`local.channels`), run the container (:mod:`local.containers`), upload the outputs, read
``MetricDefinitions`` from the container's output into ``FinalMetricDataList``, set the final status /
``FailureReason`` / ``ExitMessage`` on the job in the stack's SageMaker backend, and emit the job's EventBridge
state-change event (``InProgress`` at start, then the final status).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import channels, events
from .aws import ACCOUNT, client
from .containers import ContainerRuntime, run_to_completion

log = logging.getLogger("local.jobs")

EmitEvent = Callable[[dict[str, Any]], None]


def extract_metrics(definitions: list[dict[str, str]], text: str, when: datetime) -> list[dict[str, Any]]:
    """SageMaker's metric extraction: each regex's first group over the logs; the last value wins."""
    found: dict[str, float] = {}
    for definition in definitions or []:
        for match in re.compile(definition["Regex"]).finditer(text):
            try:
                found[definition["Name"]] = float(match.group(1))
            except (IndexError, ValueError):
                continue
    return [{"MetricName": name, "Value": value, "Timestamp": when} for name, value in found.items()]


class JobRunner:
    def __init__(self, backend: Any, aws_url: str, workdir: Path, runtime: ContainerRuntime,
                 emit: EmitEvent, base_env: dict[str, str], keep_workdirs: bool = True):
        self.backend = backend  # the stack's SageMaker backend (local.sagemaker_backend)
        self.region = backend.region_name
        self.workdir = workdir
        self.runtime = runtime
        self.emit = emit
        self.base_env = base_env
        self.keep_workdirs = keep_workdirs
        self._threads: dict[str, threading.Thread] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped: set[str] = set()
        self._lock = threading.Lock()
        self._s3 = client("s3", aws_url, self.region)
        self._sm = client("sagemaker", aws_url, self.region)
        # MLflow app ARN → the local server's URL: on AWS the sagemaker-mlflow plugin finds the app from its ARN.
        self.tracking_servers: dict[str, str] = {}

    # -- what the SageMaker backend hands over (called from moto's request threads) -------------
    def job_created(self, kind: str, name: str) -> None:
        self._spawn(name, self._run_training if kind == "training" else self._run_processing)

    def stop_requested(self, name: str) -> None:
        with self._lock:
            self._stopped.add(name)
            proc = self._procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.terminate()

    def stop_all(self) -> None:
        """Stop every running job (the stack is shutting down)."""
        with self._lock:
            names = list(self._procs)
        for name in names:
            self.stop_requested(name)

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads.values())

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.busy:
                return True
            time.sleep(0.1)
        return False

    def _spawn(self, name: str, target: Callable[[str], None]) -> None:
        # Started after moto's CreateXxx response returns: a worker must not race the job's creation.
        def run() -> None:
            time.sleep(0.05)
            try:
                target(name)
            except Exception:
                log.exception("job %s crashed in the runner", name)

        thread = threading.Thread(target=run, name=f"job-{name}", daemon=True)
        with self._lock:
            self._threads[name] = thread
        thread.start()

    def _run(self, name: str, root: Path, command: list[str], environment: dict[str, str],
             network_isolation: bool, max_runtime: int) -> tuple[int, str, bool]:
        def started(proc: subprocess.Popen[bytes]) -> None:
            with self._lock:
                self._procs[name] = proc

        log_path = self.workdir.parent / "logs" / "jobs" / f"{name}.log"
        if environment.get("MLFLOW_TRACKING_URI") in self.tracking_servers:
            environment = {**environment, "MLFLOW_TRACKING_URI": self.tracking_servers[environment["MLFLOW_TRACKING_URI"]]}
        try:
            rc, timed_out = run_to_completion(self.runtime, name, root, command, environment, self.base_env,
                                              network_isolation, max_runtime, log_path, on_start=started)
        finally:
            with self._lock:
                self._procs.pop(name, None)
        return rc, log_path.read_text(errors="replace"), timed_out

    @staticmethod
    def _fresh(root: Path) -> Path:
        if root.exists():
            shutil.rmtree(root)
        return root

    # -- training -----------------------------------------------------------------------------
    def _run_training(self, name: str) -> None:
        job = self.backend.training_jobs[name]
        now = datetime.now(timezone.utc)
        job.training_start_time = now
        job.secondary_status = "Downloading"
        job.secondary_status_transitions = [{"Status": "Starting", "StartTime": job.creation_time, "EndTime": now,
                                             "StatusMessage": "Preparing the instances for training"}]
        self._emit_training(name)
        root = self._fresh(self.workdir / name)
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (root / "model").mkdir()
        (root / "output" / "data").mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters or {}))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
        described, failure = {}, None
        try:
            for channel in job.input_data_config or []:
                source = channel["DataSource"]["S3DataSource"]
                channels.download(self._s3, source["S3Uri"], source.get("S3DataType", "S3Prefix"),
                                  root / "input" / "data" / channel["ChannelName"])
                described[channel["ChannelName"]] = {
                    "ContentType": channel.get("ContentType", ""), "TrainingInputMode": "File",
                    "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                    "RecordWrapperType": channel.get("RecordWrapperType", "None")}
        except Exception as exc:
            failure = f"ClientError: failed to download the input data: {exc}"
        (config / "inputdataconfig.json").write_text(json.dumps(described))

        rc, output, timed_out = 0, "", False
        if failure is None and name not in self._stopped:
            job.secondary_status = "Training"
            max_runtime = int((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
            rc, output, timed_out = self._run(name, root, ["train"], {}, bool(job.enable_network_isolation), max_runtime)
            log.info("training job %s (%s) exited %s", name, job.algorithm_specification.get("TrainingImage"), rc)
        end = datetime.now(timezone.utc)
        job.final_metric_data_list = extract_metrics(job.algorithm_specification.get("MetricDefinitions", []), output, end)
        output_path = job.output_data_config["S3OutputPath"].rstrip("/")
        if failure is None and (name in self._stopped or timed_out or rc == 0):
            try:
                channels.upload_model(self._s3, root, f"{output_path}/{name}/output", job.output_data_config.get("KmsKeyId"))
                job.model_artifacts = {"S3ModelArtifacts": f"{output_path}/{name}/output/model.tar.gz"}
            except Exception as exc:
                failure = f"ClientError: failed to upload the model artifacts: {exc}"
        if failure is None and name in self._stopped:
            status, secondary = "Stopped", "Stopped"
        elif failure is None and timed_out:
            status, secondary = "Stopped", "MaxRuntimeExceeded"
        elif failure is None and rc != 0:
            reason_file = root / "output" / "failure"
            reason = reason_file.read_text(errors="replace").strip() if reason_file.exists() else ""
            failure = f"AlgorithmError: {reason or 'see the job log'}, exit code: {rc}"
            status, secondary = "Failed", "Failed"
        else:
            status, secondary = ("Failed", "Failed") if failure is not None else ("Completed", "Completed")
        job.failure_reason = failure[:1024] if failure else None
        job.training_end_time = job.last_modified_time = end
        job.secondary_status = secondary
        job.secondary_status_transitions.append({"Status": secondary, "StartTime": end, "EndTime": end,
                                                 "StatusMessage": failure or f"Training job {status.lower()}"})
        job.training_job_status = status
        self._emit_training(name)
        if not self.keep_workdirs:
            shutil.rmtree(root, ignore_errors=True)

    def _emit_training(self, name: str) -> None:
        describe = self._sm.describe_training_job(TrainingJobName=name)
        self.emit(events.training_job_state_change(describe, ACCOUNT, self.region))

    # -- processing ---------------------------------------------------------------------------
    def _run_processing(self, name: str) -> None:
        job = self.backend.processing_jobs[name]
        job.processing_start_time = job.last_modified_time = datetime.now(timezone.utc)
        self._emit_processing(name)
        root = self._fresh(self.workdir / name)
        (root / "output").mkdir(parents=True)
        (root / "config").mkdir(parents=True)
        failure = None
        try:
            for item in job.processing_inputs or []:
                if "S3Input" not in item:
                    raise ValueError(f"input {item.get('InputName')}: only S3Input is supported locally")
                s3_input = item["S3Input"]
                channels.download(self._s3, s3_input["S3Uri"], s3_input.get("S3DataType", "S3Prefix"),
                                  channels.local_path(root, s3_input["LocalPath"]))
        except Exception as exc:
            failure = f"ClientError: failed to download the input data: {exc}"
        outputs = [item["S3Output"] for item in (job.processing_output_config or {}).get("Outputs", [])
                   if "S3Output" in item]
        for out in outputs:
            channels.local_path(root, out["LocalPath"]).mkdir(parents=True, exist_ok=True)
        (root / "config" / "processingjobconfig.json").write_text(json.dumps(
            {"ProcessingJobName": name, "ProcessingInputs": job.processing_inputs,
             "ProcessingOutputConfig": job.processing_output_config}, default=str))

        rc, timed_out = 0, False
        spec = job.app_specification or {}
        if failure is None and name not in self._stopped:
            entrypoint = list(spec.get("ContainerEntrypoint") or [])
            if not entrypoint:
                failure = "ClientError: ContainerEntrypoint is required by the embedded stack"
            else:
                rc, _output, timed_out = self._run(
                    name, root, entrypoint + list(spec.get("ContainerArguments") or []),
                    dict(getattr(job, "environment", None) or {}),
                    bool((job.network_config or {}).get("EnableNetworkIsolation")),
                    int((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400)))
        message_file = root / "output" / "message"
        message = message_file.read_text(errors="replace").strip() if message_file.exists() else ""
        if failure is None and rc == 0 and not timed_out and name not in self._stopped:
            try:
                kms = (job.processing_output_config or {}).get("KmsKeyId")
                for out in outputs:
                    channels.upload_dir(self._s3, channels.local_path(root, out["LocalPath"]), out["S3Uri"], kms)
            except Exception as exc:
                failure = f"ClientError: failed to upload the outputs: {exc}"
        if failure is None and name in self._stopped:
            status = "Stopped"
        elif failure is None and timed_out:
            status, failure = "Stopped", "MaxRuntimeInSeconds exceeded"
        elif failure is None and rc != 0:
            status, failure = "Failed", f"AlgorithmError: {message or 'see the job log'}"
        else:
            status = "Failed" if failure is not None else "Completed"
        job.exit_message = message[:1024] if message else None
        job.failure_reason = failure[:1024] if failure else None
        job.processing_end_time = job.last_modified_time = datetime.now(timezone.utc)
        job.processing_job_status = status
        self._emit_processing(name)
        if not self.keep_workdirs:
            shutil.rmtree(root, ignore_errors=True)

    def _emit_processing(self, name: str) -> None:
        describe = self._sm.describe_processing_job(ProcessingJobName=name)
        self.emit(events.processing_job_state_change(describe, ACCOUNT, self.region))
