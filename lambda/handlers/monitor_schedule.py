"""Lambda entry point `handlers.monitor_schedule.handler` (event shape: docs/CONTRACTS.md)."""
from mlops_control import flows, runtime


def handler(event, context):
    return runtime.run("monitor_schedule", event, flows.monitor_schedule)
