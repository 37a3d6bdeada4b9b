"""Lambda entry point `handlers.endpoint_state.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import clients, flows, runtime

clients.prewarm("dynamodb", "sagemaker")  # at init: part of a SnapStart snapshot, not of the first request


def handler(event, context):
    return runtime.run("endpoint_state", event, flows.endpoint_state)
