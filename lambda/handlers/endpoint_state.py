"""Lambda entry point `handlers.endpoint_state.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime

flows.prepare("endpoint_state")  # at init: its modules and clients are in a SnapStart snapshot, not in the first request


def handler(event, context):
    return runtime.run("endpoint_state", event, flows.endpoint_state, context=context)
