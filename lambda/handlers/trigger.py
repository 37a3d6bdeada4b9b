"""Lambda entry point `handlers.trigger.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime


def handler(event, context):
    return runtime.run("trigger", event, flows.trigger)
