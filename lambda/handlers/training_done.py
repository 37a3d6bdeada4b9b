"""Lambda entry point `handlers.training_done.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import clients, flows, runtime

clients.prewarm("dynamodb", "sagemaker")  # at init: part of a SnapStart snapshot, not of the first request


def handler(event, context):
    return runtime.run("training_done", event, flows.training_done)
