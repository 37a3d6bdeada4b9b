"""Endpoints (local.endpoints) and their traffic (local.endpoint_traffic) against moto, with the stub `serve`.

Pins blue/green, the rollback of a fleet that never gets healthy, the auto-rollback alarm during the bake, the
Endpoint State Change events, and the metrics and data capture of an invocation.
"""

import io
import json
import os
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from local import aws
from local.containers import ContainerRuntime
from local.endpoint_traffic import EndpointTraffic, Invocation
from local.endpoints import EndpointManager

STUBS = Path(__file__).resolve().parent / "stub_entrypoints"
ROLE = "arn:aws:iam::123456789012:role/r"
BLUE_GREEN = {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                                        "TerminationWaitInSeconds": 600},
              "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "rollback-alarm"}]}}


@pytest.fixture(scope="module")
def ep(moto, tmp_path_factory):
    os.environ["LOCAL_ENTRYPOINT_DIR"] = str(STUBS)
    emitted, alarm_states = [], {"rollback-alarm": "OK"}
    base_env = {"PATH": "/usr/bin:/bin", **aws.client_environment(moto.url, moto.region)}
    manager = EndpointManager(moto.sagemaker, moto.url, tmp_path_factory.mktemp("ep") / "endpoints",
                              ContainerRuntime("process"), emitted.append, base_env, health_timeout=4,
                              max_bake_seconds=1, alarm_state=lambda name: alarm_states.get(name, "INSUFFICIENT_DATA"))
    traffic = EndpointTraffic(manager.fleet, moto.url, moto.region, flush_interval=3600)
    moto.sagemaker.endpoints_work = manager
    sm, s3 = moto.client("sagemaker"), moto.client("s3")
    s3.create_bucket(Bucket="art")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"model"))
    s3.put_object(Bucket="art", Key="m/model.tar.gz", Body=archive.getvalue())
    for model, env in (("m-ok", {}), ("m-broken", {"STUB_BROKEN": "1"})):
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={
            "Image": "img", "ModelDataUrl": "s3://art/m/model.tar.gz", "Environment": env})
    for config, model in (("c1", "m-ok"), ("c2", "m-ok"), ("c3", "m-broken"), ("c4", "m-ok")):
        sm.create_endpoint_config(
            EndpointConfigName=config, ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": model,
                                                            "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            DataCaptureConfig={"EnableCapture": True, "InitialSamplingPercentage": 100,
                               "DestinationS3Uri": "s3://art/datacapture",
                               "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]})

    def wait():
        deadline = time.time() + 30
        while manager.busy and time.time() < deadline:
            time.sleep(0.1)

    out = {}
    try:
        sm.create_endpoint(EndpointName="ep", EndpointConfigName="c1")
        wait()
        out["created"] = [sm.describe_endpoint(EndpointName="ep")["EndpointStatus"], manager.live_config("ep")]
        first = manager.fleet("ep")
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c2", DeploymentConfig=BLUE_GREEN)
        wait()
        d = sm.describe_endpoint(EndpointName="ep")
        out["updated"] = [d["EndpointStatus"], d["EndpointConfigName"], manager.fleet("ep").port != first.port]
        out["old_fleet_stopped"] = first.proc.poll() is not None
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c3")
        wait()
        d = sm.describe_endpoint(EndpointName="ep")
        out["rolled_back"] = [d["EndpointStatus"], d["EndpointConfigName"], d.get("FailureReason", ""),
                              manager.live_config("ep")]
        live_before = manager.fleet("ep")
        alarm_states["rollback-alarm"] = "ALARM"
        sm.update_endpoint(EndpointName="ep", EndpointConfigName="c4", DeploymentConfig=BLUE_GREEN)
        wait()
        d = sm.describe_endpoint(EndpointName="ep")
        baked = [f for f in manager._started if f.config_name == "c4"][0]
        out["alarm_rollback"] = [d["EndpointStatus"], d["EndpointConfigName"], d.get("FailureReason", ""),
                                 manager.fleet("ep") is live_before, baked.proc.poll() is not None]
        out["events"] = [(e["detail"]["EndpointStatus"], e["detail"]["EndpointConfigName"]) for e in emitted]
        route = traffic.route("ep")
        request = urllib.request.Request(f"http://127.0.0.1:{route.port}/invocations", data=b"1,2\n",
                                         headers={"Content-Type": "text/csv"})
        body = urllib.request.urlopen(request, timeout=5).read()
        traffic.observe(Invocation("ep", route.variant_name, b"1,2\n", "text/csv", "text/csv", 200, body, "text/csv",
                                   1500.0, 20.0, inference_id="req-1"))
        traffic.flush()
        key = [o["Key"] for o in s3.list_objects_v2(Bucket="art", Prefix="datacapture/")["Contents"]][0]
        out["capture_key"] = key
        out["capture"] = json.loads(s3.get_object(Bucket="art", Key=key)["Body"].read().decode().splitlines()[0])
        out["metrics"] = sorted({m.name for m in aws.cloudwatch_backend(moto.region).metric_data
                                 if m.namespace == "AWS/SageMaker"})
        yield out
    finally:
        traffic.stop()
        manager.stop()
        del os.environ["LOCAL_ENTRYPOINT_DIR"]
    assert all(f.proc.poll() is not None for f in manager._started), "a serving process outlived stop()"


def test_blue_green_update_and_rollback_of_a_fleet_that_never_gets_healthy(ep):
    assert ep["created"] == ["InService", "c1"]
    assert ep["updated"] == ["InService", "c2", True]
    status, config, reason, live = ep["rolled_back"]
    assert (status, config, live) == ("InService", "c2", "c2")
    assert "ping health check" in reason
    assert ep["old_fleet_stopped"]
    assert ep["events"][:8] == [("CREATING", "c1"), ("IN_SERVICE", "c1"), ("UPDATING", "c1"), ("IN_SERVICE", "c2"),
                                ("UPDATING", "c2"), ("IN_SERVICE", "c2"), ("UPDATING", "c2"), ("IN_SERVICE", "c2")]


def test_an_auto_rollback_alarm_during_the_bake_rolls_the_update_back(ep):
    status, config, reason, old_fleet_serves, new_fleet_stopped = ep["alarm_rollback"]
    assert (status, config) == ("InService", "c2")
    assert "rollback-alarm" in reason
    assert old_fleet_serves and new_fleet_stopped


def test_data_capture_and_endpoint_metrics(ep):
    assert ep["capture_key"].startswith("datacapture/ep/AllTraffic/") and ep["capture_key"].endswith(".jsonl")
    capture = ep["capture"]["captureData"]
    assert capture["endpointInput"] == {"observedContentType": "text/csv", "mode": "INPUT", "data": "1,2\n",
                                        "encoding": "CSV"}
    assert capture["endpointOutput"]["mode"] == "OUTPUT" and capture["endpointOutput"]["data"] == "model|1,2\n"
    assert ep["capture"]["eventVersion"] == "0" and ep["capture"]["eventMetadata"]["inferenceId"] == "req-1"
    assert {"Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency"} <= set(ep["metrics"])


def test_an_unknown_endpoint_has_no_route(ep, moto):
    traffic = EndpointTraffic(lambda name: None, moto.url, moto.region, flush_interval=3600)
    try:
        assert traffic.route("nope") is None
    finally:
        traffic.stop()
