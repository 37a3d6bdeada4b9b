"""Lambda entry point `handlers.endpoint_state.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime


def handler(event, context):
    return runtime.run("endpoint_state", event, flows.endpoint_state)
