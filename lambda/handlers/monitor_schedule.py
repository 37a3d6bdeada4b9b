"""Lambda entry point `handlers.monitor_schedule.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime

flows.prepare("monitor_schedule")  # at init: its modules and clients are in a SnapStart snapshot, not in the first request


def handler(event, context):
    return runtime.run("monitor_schedule", event, flows.monitor_schedule, context=context)
