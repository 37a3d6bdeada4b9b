"""The embedded stack: synthesizes the CDK app and runs what its templates describe on one machine.

Wiring only. Everything created is read from ``cdk.out`` (:mod:`local.cfn`, :mod:`local.provision`); the parts:
moto with the stack's own SageMaker/S3/SNS backends (:mod:`local.aws`, :mod:`local.sagemaker_backend`,
:mod:`local.observed_backends`), Lambda functions (:mod:`local.functions`), deliveries and dead letters
(:mod:`local.destinations`), the event bus (:mod:`local.bus`, :mod:`local.object_events`), schedules, alarms,
jobs, endpoints and their traffic, the HTTPS invoke server and its control operations (:mod:`local.control`),
the MLflow app as a local MLflow server (:mod:`local.tracking_server`).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

from . import cfn
from .alarm_evaluator import AlarmEvaluator
from .aws import ACCOUNT, AwsServer, clean_environ, client, client_environment, install_backend, put_metrics
from .bus import EventBus
from .containers import ContainerRuntime
from .control import ControlApi, wait_idle
from .destinations import Destinations
from .endpoint_traffic import EndpointTraffic
from .endpoints import EndpointManager
from .functions import FunctionRegistry
from .invoke_server import InvokeServer
from .jobs import JobRunner
from .object_events import ObjectEvents
from .observed_backends import ObservedS3Backend, ObservedSNSBackend
from .provision import Context, Provisioner
from .resources_compute import CREATORS as COMPUTE_CREATORS
from .resources_data import CREATORS as DATA_CREATORS
from .sagemaker_backend import LocalSageMakerBackend, LocalSageMakerResponse
from .schedules import Scheduler
from .settings import Settings
from .statefiles import SnsLog, remove_state, write_outputs, write_state
from .synth import synthesize
from .tls import ensure_certificates
from .tracking_server import TrackingServer

log = logging.getLogger("local.stack")


class EmbeddedStack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.state_dir = settings.state_dir
        self.region = settings.region
        self.account = ACCOUNT
        self.token = secrets.token_urlsafe(24)
        self.resolver = cfn.Resolver(self.account, self.region)
        self.outputs: dict[str, dict[str, Any]] = {}
        self.not_emulated: list[str] = []
        self._undo: list[Callable[[], None]] = []  # backends to take out of moto's registries, servers to stop
        self.aws_server: AwsServer | None = None
        self.invoke_server: InvokeServer | None = None
        self.functions: FunctionRegistry | None = None
        self.started_at = 0.0

    @property
    def aws_url(self) -> str:
        assert self.aws_server is not None
        return self.aws_server.url

    @property
    def runtime_url(self) -> str:
        assert self.invoke_server is not None
        return f"https://localhost:{self.invoke_server.port}"

    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def client(self, service: str) -> Any:
        return client(service, self.aws_url, self.region)

    def output(self, key: str) -> Any:
        for outputs in self.outputs.values():
            if key in outputs:
                return outputs[key]
        raise KeyError(key)

    def busy(self) -> dict[str, bool]:
        return {"events": self.bus.busy, "functions": bool(self.functions and self.functions.busy),
                "jobs": self.jobs.busy, "endpoints": self.endpoints.busy}

    def wait_idle(self, timeout: float = 300.0, settle: float = 0.5) -> bool:
        return wait_idle(self.busy, timeout, settle)

    def start(self) -> None:
        self.started_at = time.time()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        logs = self.state_dir / "logs"
        for sub in ("logs", "jobs", "endpoints"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.settings.synth:
            synthesize(self.settings.cdk_out, self.settings.context, self.account, self.region, logs / "synth.log")
        stacks = cfn.load_assembly(self.settings.cdk_out)
        self._start_moto(SnsLog(logs / "sns.log"))
        base_env = {**clean_environ(), **client_environment(self.aws_url, self.region)}
        self.container_runtime = ContainerRuntime.detect(self.settings.image)

        self.destinations = Destinations(self.client, logs / "dead-letters.jsonl")
        self.functions = FunctionRegistry(base_env, logs / "lambda", self.destinations.dead_letter)
        self.destinations.functions = self.functions
        self.bus = EventBus(self.destinations, lambda ns, data: put_metrics(self.client("cloudwatch"), ns, data),
                            journal=logs / "events.jsonl")
        self.objects = ObjectEvents(self.bus.emit, self.account, self.region)
        self.s3.on_object_created = self.objects.object_created
        self.alarms = AlarmEvaluator(self.destinations, self.account, self.region, self.settings.alarm_interval)
        self.scheduler = Scheduler(self.bus, self.account, self.region)
        self.jobs = JobRunner(self.sagemaker, self.aws_url, self.state_dir / "jobs", self.container_runtime,
                              self.bus.emit, base_env)
        self.endpoints = EndpointManager(self.sagemaker, self.aws_url, self.state_dir / "endpoints",
                                         self.container_runtime, self.bus.emit, base_env,
                                         health_timeout=self.settings.health_timeout, alarm_state=self.alarms.state)
        self.traffic = EndpointTraffic(self.endpoints.fleet, self.aws_url, self.region)
        self.sagemaker.job_work, self.sagemaker.endpoints_work = self.jobs, self.endpoints

        control = ControlApi(self.alarms, self.scheduler, self.objects, self.functions, self.busy,
                             self.endpoints.live_configs, self.not_emulated)
        self.invoke_server = InvokeServer(self.traffic, ensure_certificates(self.state_dir / "tls").server_context(),
                                          port=self.settings.runtime_port, account=self.account, region=self.region,
                                          control=control.handle, control_token=self.token)
        self.invoke_server.start()

        self.tracking = TrackingServer(self.state_dir, client_environment(self.aws_url, self.region),
                                       logs / "mlflow.log", port=self.settings.mlflow_port)
        self._undo.append(self.tracking.stop)

        def start_tracking(app_arn: str, artifact_store_uri: str) -> str:
            url = self.tracking.start(app_arn, artifact_store_uri)
            self.jobs.tracking_servers[app_arn] = url
            return url

        provisioner = Provisioner(
            Context(self.resolver, self.client, self.functions, self.bus, self.scheduler, self.alarms,
                    self.destinations, self.objects, self.not_emulated, tracking=start_tracking),
            {**DATA_CREATORS, **COMPUTE_CREATORS})
        for stack in stacks:
            self.resolver.add_stack(stack)
            provisioner.provision(stack)
            self.outputs[stack.name] = self.resolver.publish_outputs(stack)
        self.tracking.wait_ready()
        self._write_files()
        self.alarms.start()
        self.scheduler.start()

    def _start_moto(self, sns_log: SnsLog) -> None:
        """moto's server with this stack's SageMaker, S3 and SNS backends in its registries (undone at stop)."""
        from moto.s3.models import s3_backends
        from moto.sagemaker.models import sagemaker_backends
        from moto.sns.models import sns_backends

        self.sagemaker = LocalSageMakerBackend(self.region, self.account)
        self.s3 = ObservedS3Backend("aws", self.account)  # S3's backend is per partition
        sns = ObservedSNSBackend(self.region, self.account, on_published=sns_log)
        self._undo += [install_backend(sagemaker_backends, self.account, self.region, self.sagemaker),
                       install_backend(s3_backends, self.account, "aws", self.s3),
                       install_backend(sns_backends, self.account, self.region, sns)]
        self.aws_server = AwsServer(port=self.settings.aws_port, responses={"sagemaker": LocalSageMakerResponse})
        self.aws_server.start()
        self._undo.append(self.aws_server.stop)

    def _write_files(self) -> None:
        assert self.functions is not None
        environment = next((f.spec.environment for f in self.functions.by_name.values()
                            if "DATA_BUCKET" in f.spec.environment), {})
        write_outputs(self.state_dir / "outputs.json", self.outputs,
                      {"AwsEndpointUrl": self.aws_url, "RuntimeEndpointUrl": self.runtime_url,
                       "RuntimeCaBundle": str(self.ca_bundle), "Region": self.region,
                       **({"MlflowTrackingUri": self.tracking.url} if self.tracking.url else {})}, environment)
        write_state(self.state_dir / "state.json", {
            "pid": os.getpid(), "aws_url": self.aws_url, "runtime_url": self.runtime_url,
            "mlflow_url": self.tracking.url,
            "control_token": self.token, "ca_bundle": str(self.ca_bundle), "region": self.region,
            "container_runtime": self.container_runtime.describe(), "started_at": self.started_at,
            "functions": {f.spec.handler: {"name": f.spec.name, "environment": f.spec.environment}
                          for f in self.functions.by_name.values()},
        })

    def stop(self) -> None:
        for part in ("alarms", "scheduler", "bus", "traffic", "endpoints"):
            if hasattr(self, part):
                getattr(self, part).stop()
        if hasattr(self, "jobs"):
            self.jobs.stop_all()
        if self.functions is not None:
            self.functions.stop()
        if self.invoke_server is not None:
            self.invoke_server.stop()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        remove_state(self.state_dir)
