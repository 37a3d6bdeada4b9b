"""SageMaker endpoints on one machine: one ``serve`` (process or container) per endpoint config.

Create/update are blue/green: the new fleet starts beside the old one and takes traffic only once it
answers ``GET /ping``; a fleet that never becomes healthy within the bound is torn down and the endpoint
stays on its old config (SageMaker's automatic rollback), then the Endpoint State Change event is
emitted either way. With ``DeploymentConfig.AutoRollbackConfiguration`` the old fleet is kept through
a (compressed) bake period and the new one is rolled back if any of those alarms goes to ALARM.

The endpoint manager is also the runtime proxy's backend: it routes invocations, publishes the
``AWS/SageMaker`` endpoint metrics to CloudWatch and writes data capture to S3.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import subprocess
import tarfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import aws, events
from .jobs import ContainerRuntime, entrypoint_command, split_s3
from .runtime import Invocation, Route

log = logging.getLogger("local.endpoints")


@dataclass
class Fleet:
    """The serving process (or container) behind one endpoint config."""

    config_name: str
    variant_name: str
    port: int
    directory: Path
    capture: dict[str, Any] | None
    proc: subprocess.Popen[bytes] | None = None
    container: str | None = None
    log_path: Path | None = None

    def stop(self) -> None:
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


AlarmState = Callable[[str], str]
EmitEvent = Callable[[dict[str, Any]], None]


class EndpointManager:
    def __init__(self, region: str, aws_url: str, workdir: Path, runtime: ContainerRuntime, emit: EmitEvent,
                 base_env: dict[str, str], health_timeout: float = 120.0, max_bake_seconds: float = 5.0,
                 alarm_state: AlarmState | None = None, flush_interval: float = 2.0):
        self.region = region
        self.workdir = workdir
        self.runtime = runtime
        self.emit = emit
        self.base_env = base_env
        self.health_timeout = health_timeout
        self.max_bake_seconds = max_bake_seconds
        self.alarm_state = alarm_state
        self._sm = aws.client("sagemaker", aws_url, region)
        self._s3 = aws.client("s3", aws_url, region)
        self._cw = aws.client("cloudwatch", aws_url, region)
        self._live: dict[str, Fleet] = {}
        self._started: list[Fleet] = []  # every fleet ever started: stop() leaves no process behind
        self._lock = threading.RLock()
        self._endpoint_locks: dict[str, threading.Lock] = {}
        self._threads: list[threading.Thread] = []
        self._metrics: list[dict[str, Any]] = []
        self._capture: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._buffer_lock = threading.Lock()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_interval,), name="endpoint-flush",
                                         daemon=True)
        self._flusher.start()

    # -- SageMaker listener API ---------------------------------------------------------------
    def endpoint_created(self, name: str) -> None:
        self._spawn(name, lambda: self._deploy(name, None, is_create=True))

    def endpoint_updated(self, name: str, new_config: str, retain_deployment_config: bool,
                         deployment_config: dict[str, Any] | None) -> None:
        self._spawn(name, lambda: self._deploy(name, new_config, is_create=False,
                                               deployment_config=deployment_config))

    def endpoint_deleted(self, name: str) -> None:
        with self._lock:
            fleet = self._live.pop(name, None)
        if fleet is not None:
            fleet.stop()

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def live_configs(self) -> dict[str, str]:
        with self._lock:
            return {name: fleet.config_name for name, fleet in self._live.items()}

    def live_config(self, name: str) -> str | None:
        with self._lock:
            fleet = self._live.get(name)
            return fleet.config_name if fleet else None

    def _spawn(self, name: str, work: Callable[[], None]) -> None:
        lock = self._endpoint_locks.setdefault(name, threading.Lock())

        def run() -> None:
            time.sleep(0.05)  # let moto's Create/UpdateEndpoint response go out first
            with lock:
                try:
                    work()
                except Exception:
                    log.exception("endpoint %s: deployment crashed", name)

        thread = threading.Thread(target=run, name=f"endpoint-{name}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # -- deployment ---------------------------------------------------------------------------
    def _deploy(self, name: str, new_config: str | None, is_create: bool,
                deployment_config: dict[str, Any] | None = None) -> None:
        backend = aws.sagemaker_backend(self.region)
        endpoint = backend.endpoints.get(name)
        if endpoint is None:
            return
        config_name = new_config or endpoint.endpoint_config_name
        self._emit(name)  # CREATING / UPDATING
        with self._lock:
            previous = self._live.get(name)
        try:
            fleet = self._start_fleet(name, config_name)
            healthy, why = self._wait_healthy(fleet)
        except Exception as exc:
            fleet, healthy, why = None, False, f"{type(exc).__name__}: {exc}"
        if healthy and fleet is not None and not is_create:
            healthy, why = self._bake(name, fleet, previous, deployment_config)
        endpoint = backend.endpoints.get(name)
        if endpoint is None:  # deleted meanwhile
            if fleet is not None:
                fleet.stop()
            return
        now = datetime.now(timezone.utc)
        if healthy and fleet is not None:
            with self._lock:
                self._live[name] = fleet
            if previous is not None and previous is not fleet:
                previous.stop()  # blue/green: the old fleet goes only once the new one serves
            config = backend.endpoint_configs[config_name]
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = endpoint._process_production_variants(config.production_variants)
            endpoint.data_capture_config = aws.data_capture_summary(config.data_capture_config)
            endpoint.failure_reason = None
            endpoint.endpoint_status = "InService"
        else:
            if fleet is not None:
                fleet.stop()
            reason = f"The primary container for production variant {fleet.variant_name if fleet else 'AllTraffic'} did not pass the ping health check. {why}"
            endpoint.failure_reason = reason[:1024]
            # Create fails; a failed update rolls back and the endpoint keeps serving the old config.
            endpoint.endpoint_status = "Failed" if is_create else "InService"
            log.warning("endpoint %s: %s %s", name, "creation failed" if is_create else "update rolled back", why)
        endpoint.last_modified_time = now
        self._emit(name)

    def _emit(self, name: str) -> None:
        try:
            describe = self._sm.describe_endpoint(EndpointName=name)
        except Exception:
            log.exception("describe_endpoint %s failed", name)
            return
        self.emit(events.endpoint_state_change(describe, aws.ACCOUNT, self.region))

    def _start_fleet(self, endpoint_name: str, config_name: str) -> Fleet:
        backend = aws.sagemaker_backend(self.region)
        config = backend.endpoint_configs[config_name]
        variant = config.production_variants[0]
        model = backend._models[variant["ModelName"]]
        container = model.primary_container or (model.containers[0] if model.containers else {})
        directory = self.workdir / endpoint_name / f"{config_name}-{uuid.uuid4().hex[:6]}"
        model_dir = directory / "model"
        model_dir.mkdir(parents=True)
        model_data = container.get("ModelDataUrl")
        if model_data:
            bucket, key = split_s3(model_data)
            archive = directory / "model.tar.gz"
            self._s3.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(model_dir, filter="data")
        port = aws.free_port()
        log_path = directory.parent.parent.parent / "logs" / "endpoints" / f"{endpoint_name}-{config_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        capture = config.data_capture_config if (config.data_capture_config or {}).get("EnableCapture") else None
        fleet = Fleet(config_name, variant["VariantName"], port, directory, capture, log_path=log_path)
        with self._lock:
            self._started.append(fleet)
        env = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        with log_path.open("ab") as out:
            if self.runtime.mode == "docker":
                fleet.container = f"mlops-local-{endpoint_name}-{uuid.uuid4().hex[:6]}"
                cmd = ["docker", "run", "-d", "--rm", "--name", fleet.container,
                       "-p", f"127.0.0.1:{port}:8080", "-v", f"{model_dir}:/opt/ml/model:ro"]
                for k, v in env.items():
                    cmd += ["-e", f"{k}={v}"]
                cmd += [self.runtime.image or "", "serve"]
                subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)
                fleet.proc = subprocess.Popen(["docker", "logs", "-f", fleet.container], stdout=out,
                                              stderr=subprocess.STDOUT)
            else:
                # Loopback only: as a process, 0.0.0.0 would expose the model on every interface.
                proc_env = {**self.base_env, **env, "OPT_ML_ROOT": str(directory),
                            "SAGEMAKER_BIND_TO_PORT": str(port), "SERVE_HOST": "127.0.0.1"}
                for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                    proc_env.pop(k, None)  # network isolation: the model container gets no AWS access
                fleet.proc = subprocess.Popen([*entrypoint_command("serve")], stdout=out, stderr=subprocess.STDOUT,
                                              env=proc_env, cwd=str(directory))
        return fleet

    def _wait_healthy(self, fleet: Fleet) -> tuple[bool, str]:
        deadline = time.time() + self.health_timeout
        last = "no answer"
        while time.time() < deadline:
            if fleet.container is None and fleet.proc is not None and fleet.proc.poll() is not None:
                return False, f"the serving process exited with code {fleet.proc.returncode}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{fleet.port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        return True, ""
                    last = f"/ping answered {resp.status}"
            except Exception as exc:  # not up yet
                last = str(exc)
            time.sleep(0.2)
        return False, f"no 200 from /ping within {self.health_timeout:.0f} s ({last})"

    def _bake(self, name: str, fleet: Fleet, old: Fleet | None,
              deployment_config: dict[str, Any] | None) -> tuple[bool, str]:
        """Blue/green bake: route to the new fleet, watch the auto-rollback alarms, keep the old fleet ready."""
        alarms = [a["AlarmName"] for a in
                  ((deployment_config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
        policy = (deployment_config or {}).get("BlueGreenUpdatePolicy") or {}
        wait = float(policy.get("TerminationWaitInSeconds", 0))
        if not alarms or self.alarm_state is None:
            return True, ""
        with self._lock:
            self._live[name] = fleet
        deadline = time.time() + min(wait, self.max_bake_seconds)
        while True:
            tripped = [a for a in alarms if self.alarm_state(a) == "ALARM"]
            if tripped:
                with self._lock:
                    if old is not None:
                        self._live[name] = old
                return False, f"auto-rollback alarm(s) in ALARM during the bake period: {', '.join(tripped)}"
            if time.time() >= deadline:
                return True, ""
            time.sleep(0.5)

    # -- runtime backend ----------------------------------------------------------------------
    def route(self, endpoint_name: str) -> Route | None:
        with self._lock:
            fleet = self._live.get(endpoint_name)
        if fleet is None:
            return None
        return Route(endpoint_name, fleet.variant_name, "127.0.0.1", fleet.port)

    def observe(self, invocation: Invocation) -> None:
        dims = [{"Name": "EndpointName", "Value": invocation.endpoint_name},
                {"Name": "VariantName", "Value": invocation.variant_name}]
        ts = datetime.fromtimestamp(invocation.time, tz=timezone.utc)
        status = invocation.status
        is_4xx = 400 <= status < 500
        is_5xx = status >= 500 or status == 0
        datums = [
            {"MetricName": "Invocations", "Value": 1.0, "Unit": "None"},
            {"MetricName": "Invocation4XXErrors", "Value": 1.0 if is_4xx else 0.0, "Unit": "None"},
            {"MetricName": "Invocation5XXErrors", "Value": 1.0 if is_5xx else 0.0, "Unit": "None"},
            {"MetricName": "InvocationsPerInstance", "Value": 1.0, "Unit": "None"},
        ]
        if status:
            datums.append({"MetricName": "ModelLatency", "Value": invocation.model_latency_us, "Unit": "Microseconds"})
            datums.append({"MetricName": "OverheadLatency", "Value": invocation.overhead_latency_us,
                           "Unit": "Microseconds"})
        with self._buffer_lock:
            for d in datums:
                self._metrics.append({**d, "Dimensions": dims, "Timestamp": ts})
        if 200 <= status < 300:
            self._capture_record(invocation)

    def _capture_record(self, invocation: Invocation) -> None:
        with self._lock:
            fleet = self._live.get(invocation.endpoint_name)
        capture = fleet.capture if fleet else None
        if not capture:
            return
        if random.uniform(0, 100) >= float(capture.get("InitialSamplingPercentage", 100)):
            return
        modes = {o.get("CaptureMode") for o in capture.get("CaptureOptions", [])} or {"Input", "Output"}
        header = capture.get("CaptureContentTypeHeader") or {}
        csv_types = set(header.get("CsvContentTypes") or ["text/csv"])
        json_types = set(header.get("JsonContentTypes") or ["application/json"])

        def encode(body: bytes, content_type: str, mode: str) -> dict[str, Any]:
            base = content_type.split(";")[0].strip()
            if base in csv_types:
                data, encoding = body.decode("utf-8", "replace"), "CSV"
            elif base in json_types:
                data, encoding = body.decode("utf-8", "replace"), "JSON"
            else:
                data, encoding = base64.b64encode(body).decode(), "BASE64"
            return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}

        record: dict[str, Any] = {"captureData": {}}
        if "Input" in modes:
            record["captureData"]["endpointInput"] = encode(invocation.request_body, invocation.request_content_type, "INPUT")
        if "Output" in modes:
            record["captureData"]["endpointOutput"] = encode(invocation.response_body, invocation.response_content_type,
                                                             "OUTPUT")
        when = datetime.fromtimestamp(invocation.time, tz=timezone.utc)
        record["eventMetadata"] = {"eventId": invocation.event_id,
                                   "inferenceTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if invocation.inference_id:
            record["eventMetadata"]["inferenceId"] = invocation.inference_id
        record["eventVersion"] = "0"
        key = (capture["DestinationS3Uri"], invocation.endpoint_name, invocation.variant_name)
        with self._buffer_lock:
            self._capture.setdefault(key, []).append(record)

    def flush(self) -> None:
        with self._buffer_lock:
            metrics, self._metrics = self._metrics, []
            capture, self._capture = self._capture, {}
        for i in range(0, len(metrics), 500):
            try:
                self._cw.put_metric_data(Namespace="AWS/SageMaker", MetricData=metrics[i:i + 500])
            except Exception:
                log.exception("publishing endpoint metrics failed")
        for (destination, endpoint, variant), records in capture.items():
            now = datetime.now(timezone.utc)
            bucket, prefix = split_s3(destination.rstrip("/"))
            key = "/".join(p for p in (prefix, endpoint, variant, now.strftime("%Y/%m/%d/%H"),
                                       f"{now.strftime('%M-%S-%f')[:-3]}-{uuid.uuid4()}.jsonl") if p)
            body = "".join(json.dumps(r) + "\n" for r in records).encode()
            try:
                self._s3.put_object(Bucket=bucket, Key=key, Body=body)
            except Exception:
                log.exception("writing data capture to s3://%s/%s failed", bucket, key)

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self.flush()
        with self._lock:
            fleets = list(self._started)
            self._live.clear()
        for fleet in fleets:
            fleet.stop()

