"""Lambda entry point `handlers.retrain.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime

flows.prepare("retrain")  # at init: its modules and clients are in a SnapStart snapshot, not in the first request


def handler(event, context):
    return runtime.run("retrain", event, flows.retrain, context=context)
