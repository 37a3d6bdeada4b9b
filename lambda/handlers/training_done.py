"""Lambda entry point `handlers.training_done.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime

flows.prepare("training_done")  # at init: its modules and clients are in a SnapStart snapshot, not in the first request


def handler(event, context):
    return runtime.run("training_done", event, flows.training_done, context=context)
