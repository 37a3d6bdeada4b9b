"""Lambda entry point `handlers.processing_done.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime

flows.prepare("processing_done")  # at init: its modules and clients are in a SnapStart snapshot, not in the first request


def handler(event, context):
    return runtime.run("processing_done", event, flows.processing_done, context=context)
