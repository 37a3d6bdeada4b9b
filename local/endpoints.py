"""SageMaker endpoints on one machine: one ``serve`` (process or container) per endpoint config.

Create/update are blue/green: the new fleet starts beside the old one and takes traffic only once it
answers ``GET /ping``; a fleet that never becomes healthy within the bound is torn down and the endpoint
stays on its old config (SageMaker's automatic rollback), then the Endpoint State Change event is
emitted either way. With ``DeploymentConfig.AutoRollbackConfiguration`` the old fleet is kept through
a (compressed) bake period and the new one is rolled back if any of those alarms goes to ALARM.
Traffic to the live fleet (metrics, data capture) is :mod:`local.endpoint_traffic`'s.
"""

from __future__ import annotations

import logging
import subprocess
import tarfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import events
from .aws import ACCOUNT, client, free_port
from .channels import split_s3
from .containers import AWS_ACCESS, ContainerRuntime, entrypoint_command

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
    def __init__(self, backend: Any, aws_url: str, workdir: Path, runtime: ContainerRuntime, emit: EmitEvent,
                 base_env: dict[str, str], health_timeout: float = 120.0, max_bake_seconds: float = 5.0,
                 alarm_state: AlarmState | None = None):
        self.backend = backend  # the stack's SageMaker backend (local.sagemaker_backend)
        self.region = backend.region_name
        self.workdir = workdir
        self.runtime = runtime
        self.emit = emit
        self.base_env = base_env
        self.health_timeout = health_timeout
        self.max_bake_seconds = max_bake_seconds
        self.alarm_state = alarm_state
        self._sm = client("sagemaker", aws_url, self.region)
        self._s3 = client("s3", aws_url, self.region)
        self._live: dict[str, Fleet] = {}
        self._started: list[Fleet] = []  # every fleet ever started: stop() leaves no process behind
        self._lock = threading.RLock()
        self._endpoint_locks: dict[str, threading.Lock] = {}
        self._threads: list[threading.Thread] = []

    # -- what the SageMaker backend hands over ------------------------------------------------
    def endpoint_created(self, name: str) -> None:
        self._spawn(name, lambda: self._deploy(name, None, is_create=True))

    def endpoint_updated(self, name: str, new_config: str, deployment_config: dict[str, Any] | None) -> None:
        self._spawn(name, lambda: self._deploy(name, new_config, is_create=False, deployment_config=deployment_config))

    def endpoint_deleted(self, name: str) -> None:
        with self._lock:
            fleet = self._live.pop(name, None)
        if fleet is not None:
            fleet.stop()

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def fleet(self, name: str) -> Fleet | None:
        """The fleet serving endpoint ``name`` now."""
        with self._lock:
            return self._live.get(name)

    def live_configs(self) -> dict[str, str]:
        with self._lock:
            return {name: fleet.config_name for name, fleet in self._live.items()}

    def live_config(self, name: str) -> str | None:
        fleet = self.fleet(name)
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
        endpoint = self.backend.endpoints.get(name)
        if endpoint is None:
            return
        config_name = new_config or endpoint.endpoint_config_name
        self._emit(name)  # CREATING / UPDATING
        previous = self.fleet(name)
        try:
            fleet: Fleet | None = self._start_fleet(name, config_name)
            healthy, why = self._wait_healthy(fleet)  # type: ignore[arg-type]
        except Exception as exc:
            fleet, healthy, why = None, False, f"{type(exc).__name__}: {exc}"
        if healthy and fleet is not None and not is_create:
            healthy, why = self._bake(name, fleet, previous, deployment_config)
        if name not in self.backend.endpoints:  # deleted meanwhile
            if fleet is not None:
                fleet.stop()
            return
        if healthy and fleet is not None:
            with self._lock:
                self._live[name] = fleet
            if previous is not None and previous is not fleet:
                previous.stop()  # blue/green: the old fleet goes only once the new one serves
            self.backend.endpoint_serves(name, config_name)
        else:
            if fleet is not None:
                fleet.stop()
            variant = fleet.variant_name if fleet else "AllTraffic"
            self.backend.endpoint_not_deployed(
                name, f"The primary container for production variant {variant} did not pass the ping health check. {why}",
                is_create)
            log.warning("endpoint %s: %s %s", name, "creation failed" if is_create else "update rolled back", why)
        self._emit(name)

    def _emit(self, name: str) -> None:
        try:
            describe = self._sm.describe_endpoint(EndpointName=name)
        except Exception:
            log.exception("describe_endpoint %s failed", name)
            return
        self.emit(events.endpoint_state_change(describe, ACCOUNT, self.region))

    def _start_fleet(self, endpoint_name: str, config_name: str) -> Fleet:
        config = self.backend.describe_endpoint_config(config_name)
        variant = config["ProductionVariants"][0]
        model = self.backend.describe_model(variant["ModelName"])
        container = model.primary_container or (model.containers[0] if model.containers else {})
        directory = self.workdir / endpoint_name / f"{config_name}-{uuid.uuid4().hex[:6]}"
        model_dir = directory / "model"
        model_dir.mkdir(parents=True)
        if container.get("ModelDataUrl"):
            bucket, key = split_s3(container["ModelDataUrl"])
            archive = directory / "model.tar.gz"
            self._s3.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(model_dir, filter="data")
        port = free_port()
        log_path = self.workdir.parent / "logs" / "endpoints" / f"{endpoint_name}-{config_name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        capture = config.get("DataCaptureConfig") if (config.get("DataCaptureConfig") or {}).get("EnableCapture") else None
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
                subprocess.run([*cmd, self.runtime.image or "", "serve"], check=True, stdout=out, stderr=subprocess.STDOUT)
                fleet.proc = subprocess.Popen(["docker", "logs", "-f", fleet.container], stdout=out,
                                              stderr=subprocess.STDOUT)
            else:
                # Loopback only: as a process, 0.0.0.0 would expose the model on every interface.
                proc_env = {**self.base_env, **env, "OPT_ML_ROOT": str(directory),
                            "SAGEMAKER_BIND_TO_PORT": str(port), "SERVE_HOST": "127.0.0.1"}
                for k in AWS_ACCESS:
                    proc_env.pop(k, None)  # network isolation: the model container gets no AWS access
                fleet.proc = subprocess.Popen(entrypoint_command("serve"), stdout=out, stderr=subprocess.STDOUT,
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
        wait = float(((deployment_config or {}).get("BlueGreenUpdatePolicy") or {}).get("TerminationWaitInSeconds", 0))
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

    def stop(self) -> None:
        with self._lock:
            fleets = list(self._started)
            self._live.clear()
        for fleet in fleets:
            fleet.stop()
