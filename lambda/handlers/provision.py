"""Lambda entry point `handlers.provision.handler`: on_event of a CDK custom_resources.Provider.

Returns {"PhysicalResourceId", "Data"} or raises (a malformed request too); the Provider framework turns
either into the answer CloudFormation waits for."""
from mlops_control import flows, runtime

flows.prepare("provision")  # at init: its modules and clients are in a SnapStart snapshot, not in the first request


def handler(event, context):
    return runtime.run("provision", event, flows.provision, context=context, raise_malformed=True)
