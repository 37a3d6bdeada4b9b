"""Runs the SageMaker Processing and Training jobs created in moto, as SageMaker would run them.

For each job: mark it InProgress, lay out ``/opt/ml`` (config files, input channels downloaded from the
local S3), run the container — the real image under Docker when ``MLOPS_IMAGE`` is set and an engine
answers, otherwise the same entrypoints as local processes with ``OPT_ML_ROOT`` — then upload the
outputs, read ``MetricDefinitions`` from the container's output into ``FinalMetricDataList``, set the
final status / FailureReason in moto, and emit the job's EventBridge state-change event.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import aws, events

log = logging.getLogger("local.jobs")

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTAINER_DIR = REPO_ROOT / "container"


@dataclass(frozen=True)
class ContainerRuntime:
    """How containers run here: ``docker`` with ``image``, or ``process`` (entrypoints from container/)."""

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
        return f"docker image {self.image}" if self.mode == "docker" else "local processes (container/ entrypoints)"


def entrypoint_command(name: str) -> list[str]:
    """A container entrypoint as a local command: container/<name>, else the venv's script, else PATH.

    ``LOCAL_ENTRYPOINT_DIR`` (tests) is looked at first.
    """
    override = os.environ.get("LOCAL_ENTRYPOINT_DIR")
    if override and (Path(override) / name).is_file():
        return [sys.executable, str(Path(override) / name)]
    candidate = CONTAINER_DIR / name
    if candidate.is_file():
        if os.access(candidate, os.X_OK):
            return [str(candidate)]
        return [sys.executable, str(candidate)]
    venv_script = Path(sys.executable).parent / name
    if venv_script.is_file() and os.access(venv_script, os.X_OK):
        return [str(venv_script)]
    found = shutil.which(name)
    if found:
        return [found]
    raise FileNotFoundError(f"entrypoint {name!r}: not in {CONTAINER_DIR}, {venv_script.parent} or on PATH")


def local_path(root: Path, container_path: str) -> Path:
    """Map an in-container ``/opt/ml/...`` path onto the job's OPT_ML_ROOT."""
    path = container_path.rstrip("/")
    if path.startswith("/opt/ml"):
        path = path[len("/opt/ml"):]
    return root / path.lstrip("/")


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def extract_metrics(definitions: list[dict[str, str]], text: str, when: datetime) -> list[dict[str, Any]]:
    """SageMaker's metric extraction: each regex's first group over the logs; the last value wins."""
    found: dict[str, float] = {}
    for definition in definitions or []:
        pattern = re.compile(definition["Regex"])
        for match in pattern.finditer(text):
            try:
                found[definition["Name"]] = float(match.group(1))
            except (IndexError, ValueError):
                continue
    return [{"MetricName": name, "Value": value, "Timestamp": when} for name, value in found.items()]


EmitEvent = Callable[[dict[str, Any]], None]


class JobRunner:
    def __init__(self, region: str, aws_url: str, workdir: Path, runtime: ContainerRuntime,
                 emit: EmitEvent, base_env: dict[str, str], keep_workdirs: bool = True):
        self.region = region
        self.aws_url = aws_url
        self.workdir = workdir
        self.runtime = runtime
        self.emit = emit
        self.base_env = base_env
        self.keep_workdirs = keep_workdirs
        self._threads: dict[str, threading.Thread] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._stopped: set[str] = set()
        self._lock = threading.Lock()
        self._s3 = aws.client("s3", aws_url, region)
        self._sm = aws.client("sagemaker", aws_url, region)

    # -- listener API (called from moto's request threads) ------------------------------------
    def training_job_created(self, name: str) -> None:
        self._spawn(name, self._run_training)

    def processing_job_created(self, name: str) -> None:
        self._spawn(name, self._run_processing)

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

    # -- shared pieces ------------------------------------------------------------------------
    def _download(self, uri: str, data_type: str, dest: Path) -> list[str]:
        bucket, prefix = split_s3(uri)
        dest.mkdir(parents=True, exist_ok=True)
        keys: list[str] = []
        if data_type == "ManifestFile":
            return self._download_manifest(bucket, prefix, dest)
        paginator = self._s3.get_paginator("list_objects_v2")
        # SageMaker keeps paths relative to the prefix's "directory" (an exact key lands as its basename).
        if not prefix or prefix.endswith("/"):
            base = prefix
        elif "/" in prefix:
            base = prefix.rsplit("/", 1)[0] + "/"
        else:
            base = ""
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):
                    continue
                rel = key[len(base):]
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self._s3.download_file(bucket, key, str(target))
                keys.append(key)
        if not keys:
            raise FileNotFoundError(f"no S3 objects found under {uri}")
        return keys

    def _download_manifest(self, bucket: str, key: str, dest: Path) -> list[str]:
        """SageMaker's ManifestFile: `[{"prefix": "s3://b/p/"}, "rel/key", ...]`; each object lands at its key
        relative to the prefix (its latest version, as SageMaker reads it)."""
        manifest = json.loads(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict) or "prefix" not in manifest[0]:
            raise ValueError(f"s3://{bucket}/{key} is not a manifest: its first entry must be {{\"prefix\": ...}}")
        source_bucket, prefix = split_s3(manifest[0]["prefix"])
        keys = []
        for relative in manifest[1:]:
            target = dest / str(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._s3.download_file(source_bucket, f"{prefix}{relative}", str(target))
            keys.append(f"{prefix}{relative}")
        if not keys:
            raise FileNotFoundError(f"the manifest s3://{bucket}/{key} lists no objects")
        return keys

    def _upload_dir(self, source: Path, uri: str, kms_key: str | None) -> int:
        bucket, prefix = split_s3(uri)
        count = 0
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None
        for path in sorted(source.rglob("*")):
            if path.is_file():
                key = f"{prefix.rstrip('/')}/{path.relative_to(source).as_posix()}" if prefix else path.relative_to(source).as_posix()
                self._s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
                count += 1
        return count

    def _run_container(self, name: str, root: Path, entrypoint: list[str], arguments: list[str],
                       environment: dict[str, str], network_isolation: bool, max_runtime: int,
                       log_path: Path) -> tuple[int, str, bool]:
        """Run to completion; returns (exit code, combined output, timed out)."""
        if self.runtime.mode == "docker":
            cmd = ["docker", "run", "--rm", "--name", f"mlops-local-{name}", "-v", f"{root}:/opt/ml"]
            if network_isolation:
                cmd += ["--network", "none"]
            for k, v in environment.items():
                cmd += ["-e", f"{k}={v}"]
            if entrypoint and entrypoint[0] != "train":
                cmd += ["--entrypoint", entrypoint[0]]
                cmd += [self.runtime.image or "", *entrypoint[1:], *arguments]
            else:
                cmd += [self.runtime.image or "", *entrypoint, *arguments]
            env = dict(self.base_env)
        else:
            cmd = [*entrypoint_command(entrypoint[0]), *entrypoint[1:], *arguments]
            env = {**self.base_env, **environment, "OPT_ML_ROOT": str(root)}
            # The container has no AWS API access in network isolation; keep the process honest too.
            for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                if network_isolation:
                    env.pop(k, None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(root))
            with self._lock:
                self._procs[name] = proc
            timed_out = False
            try:
                rc = proc.wait(timeout=max_runtime)
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.terminate()
                try:
                    rc = proc.wait(timeout=120)  # SageMaker's SIGTERM grace period
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait()
            finally:
                with self._lock:
                    self._procs.pop(name, None)
        return rc, log_path.read_text(errors="replace"), timed_out

    # -- training -----------------------------------------------------------------------------
    def _run_training(self, name: str) -> None:
        backend = aws.sagemaker_backend(self.region)
        job = backend.training_jobs[name]
        now = datetime.now(timezone.utc)
        job.training_start_time = now
        job.secondary_status = "Downloading"
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": job.creation_time, "EndTime": now,
             "StatusMessage": "Preparing the instances for training"},
        ]
        self._emit_training(name)
        root = self.workdir / name
        if root.exists():
            shutil.rmtree(root)
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (root / "model").mkdir()
        (root / "output" / "data").mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters or {}))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
        channels = {}
        failure = None
        try:
            for channel in job.input_data_config or []:
                source = channel["DataSource"]["S3DataSource"]
                self._download(source["S3Uri"], source.get("S3DataType", "S3Prefix"),
                               root / "input" / "data" / channel["ChannelName"])
                channels[channel["ChannelName"]] = {
                    "ContentType": channel.get("ContentType", ""), "TrainingInputMode": "File",
                    "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
                    "RecordWrapperType": channel.get("RecordWrapperType", "None"),
                }
        except Exception as exc:
            failure = f"ClientError: failed to download the input data: {exc}"
        (config / "inputdataconfig.json").write_text(json.dumps(channels))

        rc, output, timed_out = 0, "", False
        if failure is None and name not in self._stopped:
            job.secondary_status = "Training"
            image = job.algorithm_specification.get("TrainingImage", "")
            max_runtime = int((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
            rc, output, timed_out = self._run_container(
                name, root, ["train"], [], {}, bool(job.enable_network_isolation), max_runtime,
                self.workdir.parent / "logs" / "jobs" / f"{name}.log")
            log.info("training job %s (%s) exited %s", name, image, rc)
        end = datetime.now(timezone.utc)
        job.final_metric_data_list = extract_metrics(
            job.algorithm_specification.get("MetricDefinitions", []), output, end)
        output_path = job.output_data_config["S3OutputPath"].rstrip("/")
        kms = job.output_data_config.get("KmsKeyId")
        if failure is None and (name in self._stopped or timed_out or rc == 0):
            try:
                self._upload_model(root, f"{output_path}/{name}/output", kms)
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
        elif failure is not None:
            status, secondary = "Failed", "Failed"
        else:
            status, secondary = "Completed", "Completed"
        job.failure_reason = failure[:1024] if failure else None
        job.training_end_time = end
        job.last_modified_time = end
        job.secondary_status = secondary
        job.secondary_status_transitions.append(
            {"Status": secondary, "StartTime": end, "EndTime": end,
             "StatusMessage": failure or f"Training job {status.lower()}"})
        job.training_job_status = status
        self._emit_training(name)
        if not self.keep_workdirs:
            shutil.rmtree(root, ignore_errors=True)

    def _upload_model(self, root: Path, prefix_uri: str, kms_key: str | None) -> None:
        bucket, prefix = split_s3(prefix_uri)
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted((root / "model").iterdir()):
                tar.add(path, arcname=path.name)
        self._s3.upload_file(str(archive), bucket, f"{prefix}/model.tar.gz", ExtraArgs=extra)
        data = root / "output" / "data"
        if any(data.iterdir()):
            out = root / "output.tar.gz"
            with tarfile.open(out, "w:gz") as tar:
                for path in sorted(data.iterdir()):
                    tar.add(path, arcname=path.name)
            self._s3.upload_file(str(out), bucket, f"{prefix}/output.tar.gz", ExtraArgs=extra)

    def _emit_training(self, name: str) -> None:
        describe = self._sm.describe_training_job(TrainingJobName=name)
        self.emit(events.training_job_state_change(describe, aws.ACCOUNT, self.region))

    # -- processing ---------------------------------------------------------------------------
    def _run_processing(self, name: str) -> None:
        backend = aws.sagemaker_backend(self.region)
        job = backend.processing_jobs[name]
        now = datetime.now(timezone.utc)
        job.processing_start_time = now
        job.last_modified_time = now
        self._emit_processing(name)
        root = self.workdir / name
        if root.exists():
            shutil.rmtree(root)
        (root / "output").mkdir(parents=True)
        (root / "config").mkdir(parents=True)
        failure = None
        try:
            for item in job.processing_inputs or []:
                if "S3Input" not in item:
                    raise ValueError(f"input {item.get('InputName')}: only S3Input is supported locally")
                s3_input = item["S3Input"]
                self._download(s3_input["S3Uri"], s3_input.get("S3DataType", "S3Prefix"),
                               local_path(root, s3_input["LocalPath"]))
        except Exception as exc:
            failure = f"ClientError: failed to download the input data: {exc}"
        outputs = (job.processing_output_config or {}).get("Outputs", [])
        for item in outputs:
            if "S3Output" in item:
                local_path(root, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
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
                network_isolation = bool((job.network_config or {}).get("EnableNetworkIsolation"))
                max_runtime = int((job.stopping_condition or {}).get("MaxRuntimeInSeconds", 86400))
                rc, _output, timed_out = self._run_container(
                    name, root, entrypoint, list(spec.get("ContainerArguments") or []),
                    dict(getattr(job, "environment", None) or {}), network_isolation, max_runtime,
                    self.workdir.parent / "logs" / "jobs" / f"{name}.log")
        message_file = root / "output" / "message"
        message = message_file.read_text(errors="replace").strip() if message_file.exists() else ""
        if failure is None and rc == 0 and not timed_out and name not in self._stopped:
            try:
                kms = (job.processing_output_config or {}).get("KmsKeyId")
                for item in outputs:
                    if "S3Output" in item:
                        out = item["S3Output"]
                        self._upload_dir(local_path(root, out["LocalPath"]), out["S3Uri"], kms)
            except Exception as exc:
                failure = f"ClientError: failed to upload the outputs: {exc}"
        end = datetime.now(timezone.utc)
        if failure is None and name in self._stopped:
            status = "Stopped"
        elif failure is None and timed_out:
            status, failure = "Stopped", "MaxRuntimeInSeconds exceeded"
        elif failure is None and rc != 0:
            status = "Failed"
            failure = f"AlgorithmError: {message or 'see the job log'}"
        elif failure is not None:
            status = "Failed"
        else:
            status = "Completed"
        job.exit_message = message[:1024] if message else None
        job.failure_reason = failure[:1024] if failure else None
        job.processing_end_time = end
        job.last_modified_time = end
        job.processing_job_status = status
        self._emit_processing(name)
        if not self.keep_workdirs:
            shutil.rmtree(root, ignore_errors=True)

    def _emit_processing(self, name: str) -> None:
        describe = self._sm.describe_processing_job(ProcessingJobName=name)
        self.emit(events.processing_job_state_change(describe, aws.ACCOUNT, self.region))
