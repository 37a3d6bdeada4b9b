"""Lambda entry point `handlers.retrain.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime


def handler(event, context):
    return runtime.run("retrain", event, flows.retrain)
