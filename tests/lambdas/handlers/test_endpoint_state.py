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


def _deny_next(client, operation):
    """The next `operation` through `client` fails (AccessDenied: a retry will not fix it)."""
    from botocore.exceptions import ClientError

    state = {"armed": True}

    def deny(model=None, **_):
        if state["armed"] and model is not None and model.name == operation:
            state["armed"] = False
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, operation)

    client.meta.events.register("before-call", deny)
    return state


def test_a_failed_follow_through_never_holds_the_deployment_slot(aws, sm):
    """Issue 12 item 5: autoscaling fails after a deploy is verified. The verdict is committed at once (deployed,
    production, slot freed); the follow-through is recorded, retried on the next event, and a newer model is
    not deferred behind a slot that nobody will free."""
    import pytest
    from mlops_control import clients

    from .test_training_done import _done, _train

    first = _train(aws, "file:first", {"roc_auc": 0.80})
    assert _done(first)["status"] == "deploy_requested"
    _deny_next(clients.get("application-autoscaling"), "RegisterScalableTarget")
    with pytest.raises(Exception, match="not authorized"):
        _event(endpoint_state_change(f"{P}-endpoint"))
    assert [d["decision"] for d in aws.decisions() if d["decision"] in ("deployed", "error")] == ["deployed", "error"]
    assert aws.state("production")["training_job"] == first
    assert aws.state("production")["after_deploy"] == "pending"
    assert not (aws.state("endpoint") or {}).get("inflight_config")
    second = _train(aws, "file:second", {"roc_auc": 0.85})
    assert _done(second)["status"] == "deploy_requested"  # not deferred
    # The next endpoint event (here: the update settling) finishes the first model's follow-through first.
    sm.settle(f"{P}-endpoint")
    result = _event(endpoint_state_change(f"{P}-endpoint"))
    assert result["status"] == "deployed" and aws.state("production")["training_job"] == second
    assert aws.state("production")["after_deploy"] == "done" and len(aws.decisions("deployed")) == 2


def test_a_redelivered_verification_after_a_crash_finds_the_work_done(aws, sm):
    """The claim is completed with the verdict in one commit: a second delivery is a duplicate, not Busy."""
    from .test_training_done import _done, _train

    job = _train(aws, "file:first", {"roc_auc": 0.80})
    _done(job)
    assert _event(endpoint_state_change(f"{P}-endpoint"))["status"] == "deployed"
    assert _event(endpoint_state_change(f"{P}-endpoint"))["status"] == "nothing_in_flight"
    assert len(aws.decisions("deployed")) == 1
