"""Lambda entry point `handlers.processing_done.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime


def handler(event, context):
    return runtime.run("processing_done", event, flows.processing_done)
