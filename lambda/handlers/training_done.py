"""Lambda entry point `handlers.training_done.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime


def handler(event, context):
    return runtime.run("training_done", event, flows.training_done)
