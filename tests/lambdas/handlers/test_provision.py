"""handlers.provision: the stack's custom resource ensures the latest approved model serves, and deletes
what the pipeline made on stack delete."""
from __future__ import annotations

import pytest

from ..helpers import P, endpoint_state_change, job_state_change

ENDPOINT = f"{P}-endpoint"


def _cfn(request_type, physical_id=None):
    from handlers.provision import handler

    event = {"RequestType": request_type, "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
             "ResponseURL": "https://cloudformation-custom-resource-response.example/x", "StackId": "arn:stack",
             "RequestId": "req-1", "LogicalResourceId": "Endpoint", "ResourceType": "Custom::ModelEndpoint",
             "ResourceProperties": {"ServiceToken": "arn:...", "ImageUri": "image"}}
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    return handler(event, None)


def _trained_and_served(aws):
    from handlers.endpoint_state import handler as endpoint_state
    from handlers.training_done import handler as training_done
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    s = settings.load()
    aws.upload("validated/first.csv")
    job = request_training(s, Ledger(s.ledger_table), "file:first", "first").job
    aws.training_metrics[job] = {"roc_auc": 0.8}
    training_done(job_state_change("training", job, "Completed"), None)
    endpoint_state(endpoint_state_change(ENDPOINT), None)
    return job


def test_create_without_any_approved_model_is_a_no_op(aws, sm):
    assert _cfn("Create") == {"PhysicalResourceId": ENDPOINT, "Data": {"Status": "no_model", "EndpointName": ENDPOINT}}
    assert aws.sm.list_endpoints()["Endpoints"] == [] and aws.decisions("provision_noop")


def test_update_when_the_latest_model_already_serves_changes_nothing(aws, sm):
    _trained_and_served(aws)
    assert _cfn("Update", ENDPOINT)["Data"]["Status"] == "up_to_date"
    assert sm.updates == []


def test_create_after_the_endpoint_was_deleted_serves_the_latest_approved_model(aws, sm):
    job = _trained_and_served(aws)
    assert _cfn("Delete", ENDPOINT)["Data"]["Status"] == "deleted"
    assert aws.sm.list_endpoints()["Endpoints"] == []
    assert aws.sm.list_endpoint_configs()["EndpointConfigs"] == [] and aws.sm.list_models()["Models"] == []
    assert aws.decisions("endpoint_deleted")
    result = _cfn("Create")
    assert result["Data"]["Status"] == "deploy_requested"
    suffix = job[len(f"{P}-train-"):]
    assert aws.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{P}-cfg-{suffix}"


def test_rolled_back_model_is_never_provisioned_again(aws, sm):
    from handlers.endpoint_state import handler as endpoint_state
    from handlers.training_done import handler as training_done
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import finish_training, request_training

    first = _trained_and_served(aws)
    s = settings.load()
    ledger = Ledger(s.ledger_table)
    finish_training(s, ledger, first)
    aws.upload("validated/second.csv")
    second = request_training(s, ledger, "file:second", "second").job
    aws.training_metrics[second] = {"roc_auc": 0.9}
    training_done(job_state_change("training", second, "Completed"), None)
    sm.settle(ENDPOINT, rolled_back=True)
    assert endpoint_state(endpoint_state_change(ENDPOINT), None)["status"] == "rolled_back"
    assert _cfn("Update", ENDPOINT)["Data"]["Status"] == "up_to_date"  # the first (still approved) model serves
    assert len(sm.updates) == 1


def test_delete_of_a_resource_that_never_became_ours_deletes_nothing(aws, sm):
    _trained_and_served(aws)
    assert _cfn("Delete", "req-1-failed-create")["Data"]["Status"] == "not ours"
    assert aws.sm.list_endpoints()["Endpoints"]


def test_malformed_request_raises_so_cloudformation_gets_failed(aws, sm):
    from handlers.provision import handler
    from mlops_control.events import MalformedEvent

    with pytest.raises(MalformedEvent):
        handler({"RequestType": "Explode"}, None)
    assert aws.decisions("malformed_event")


def test_errors_raise_so_the_provider_reports_failed(aws, sm):
    from botocore.exceptions import ClientError

    def denied(**_):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "ListModelPackages")

    sm.list_model_packages = denied
    with pytest.raises(ClientError):
        _cfn("Create")
    assert "AccessDeniedException" in aws.decisions("error")[0]["reason"]
