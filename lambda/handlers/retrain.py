"""Lambda entry point `handlers.retrain.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import clients, flows, runtime

clients.prewarm("dynamodb", "s3")  # at init: part of a SnapStart snapshot, not of the first request


def handler(event, context):
    return runtime.run("retrain", event, flows.retrain)
