"""handlers.endpoint_state: events for other endpoints, transitional states and malformed events."""
from __future__ import annotations

from ..helpers import P, endpoint_state_change


def _event(event):
    from handlers.endpoint_state import handler

    return handler(event, None)


def test_other_endpoints_are_ignored(aws):
    assert _event(endpoint_state_change("someone-else"))["status"] == "ignored"


def test_transitional_states_wait_whatever_the_event_says(aws):
    """The deployer trusts DescribeEndpoint, not the event: a late IN_SERVICE event during an update waits."""
    from moto.sagemaker.models import sagemaker_backends

    aws.sm.create_model(ModelName="m", PrimaryContainer={"Image": "i"}, ExecutionRoleArn="arn:aws:iam::123456789012:role/r")
    aws.sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    aws.sm.create_endpoint(EndpointName=f"{P}-endpoint", EndpointConfigName="c")
    endpoint = sagemaker_backends["123456789012"]["us-east-1"].endpoints[f"{P}-endpoint"]
    for status in ("Creating", "Updating", "SystemUpdating", "RollingBack"):
        endpoint.endpoint_status = status
        for reported in ("IN_SERVICE", status.upper()):
            assert _event(endpoint_state_change(f"{P}-endpoint", reported)) == {"status": "waiting", "endpoint_status": status}


def test_in_service_without_a_deploy_in_flight_changes_nothing(aws):
    assert _event(endpoint_state_change(f"{P}-endpoint"))["status"] == "nothing_in_flight"
    assert aws.decisions() == []


def test_malformed_event_is_recorded_and_announced(aws):
    assert _event({"detail-type": "SageMaker Endpoint State Change", "detail": {"EndpointName": "x"}})["status"] == "malformed"
    assert aws.decisions("malformed_event") and aws.notifications()
