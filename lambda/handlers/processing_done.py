"""Lambda entry point `handlers.processing_done.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import clients, flows, runtime

clients.prewarm("dynamodb", "s3")  # at init: part of a SnapStart snapshot, not of the first request


def handler(event, context):
    return runtime.run("processing_done", event, flows.processing_done)
