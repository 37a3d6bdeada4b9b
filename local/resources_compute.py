"""Creators of the resources that run or route work: Lambda functions, rules, schedules, alarms, custom resources.

These configure the stack's own parts (moto stores a function, rule or alarm but runs none of them): a Python
function becomes a warm worker (:mod:`local.functions`), a rule joins the bus (:mod:`local.bus`) or the
scheduler, an alarm the evaluator, and a custom resource is sent its CloudFormation ``Create`` request.
``CREATORS`` is this module's part of the provisioning registry
(:mod:`local.provision`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from . import cfn
from .bus import Rule, Target
from .functions import FunctionError, FunctionSpec
from .provision import CUSTOM, Context, Creator, Resource, register
from .settings import REPO_ROOT

log = logging.getLogger("local.resources")

PYTHON_RUNTIME = re.compile(r"^python3(\.\d+)?$")


def lambda_function(ctx: Context, res: Resource) -> None:
    props, name = res.props, str(res.name)
    arn = ctx.resolver.arn("lambda", f"function:{name}")
    register(ctx, res, name, Arn=arn)
    runtime = str(props.get("Runtime", ""))
    if not PYTHON_RUNTIME.match(runtime):
        # CDK's own framework functions (Node.js) are not run; their custom resources are handled below.
        ctx.not_emulated.append(res.label(f"Lambda {runtime} {props.get('Handler')}"))
        ctx.framework_functions[arn] = props
        return
    asset = (res.definition.get("Metadata") or {}).get("aws:asset:path")
    code_dir = (res.stack.path.parent / asset) if asset else REPO_ROOT / "lambda"
    if not code_dir.is_dir():
        code_dir = REPO_ROOT / "lambda"
    ctx.functions.add(FunctionSpec(
        name=name, arn=arn, handler=props["Handler"], code_dir=code_dir,
        environment={k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()},
        timeout=int(props.get("Timeout", 3)), memory=int(props.get("MemorySize", 128)), runtime=runtime,
        failure_destination=(props.get("DeadLetterConfig") or {}).get("TargetArn"),
        logical_id=res.logical_id, stack=res.stack.name))


def lambda_version_or_alias(ctx: Context, res: Resource) -> None:
    # Every qualifier runs the one local copy of the function (there is no older code to run); only the ARNs
    # that event sources and alarms invoke need to exist.
    fn = ctx.functions.lookup(res.props["FunctionName"])
    if fn is None:
        raise cfn.UnresolvedReference(f"{res.props['FunctionName']} is not a function of this stack")
    if res.type == "AWS::Lambda::Version":
        register(ctx, res, f"{fn.spec.arn}:1", Version="1", FunctionArn=fn.spec.arn)
    else:
        alias_arn = f"{fn.spec.arn}:{res.props['Name']}"
        register(ctx, res, alias_arn, AliasArn=alias_arn)


def event_invoke_config(ctx: Context, res: Resource) -> None:
    fn = ctx.functions.lookup(res.props["FunctionName"])
    if fn is not None:
        fn.spec.max_retries = int(res.props.get("MaximumRetryAttempts", 2))
        fn.spec.max_event_age = int(res.props.get("MaximumEventAgeInSeconds", 21600))
        on_failure = ((res.props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        fn.spec.failure_destination = on_failure or fn.spec.failure_destination
    register(ctx, res, res.name)


def events_rule(ctx: Context, res: Resource) -> None:
    props, name = res.props, str(res.name)
    arn = ctx.resolver.arn("events", f"rule/{name}")
    register(ctx, res, name, Arn=arn)
    targets = []
    for t in props.get("Targets", []) or []:
        retry = t.get("RetryPolicy") or {}
        targets.append(Target(
            arn=t["Arn"], target_id=t["Id"], input=t.get("Input"), input_path=t.get("InputPath"),
            input_transformer=t.get("InputTransformer"), max_event_age=retry.get("MaximumEventAgeInSeconds"),
            max_retries=retry.get("MaximumRetryAttempts"), dead_letter_arn=(t.get("DeadLetterConfig") or {}).get("Arn")))
    rule = Rule(name=name, arn=arn, pattern=props.get("EventPattern"), schedule=props.get("ScheduleExpression"),
                targets=targets, enabled=props.get("State", "ENABLED") == "ENABLED",
                bus=props.get("EventBusName", "default"))
    # Also registered in moto's EventBridge so `aws events list-rules` shows what runs.
    kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
    if rule.pattern is not None:
        kwargs["EventPattern"] = json.dumps(rule.pattern)
    if rule.schedule:
        kwargs["ScheduleExpression"] = rule.schedule
    try:
        ctx.client("events").put_rule(**kwargs)
        if targets:
            ctx.client("events").put_targets(Rule=name, Targets=[{"Id": t.target_id, "Arn": t.arn} for t in targets])
    except Exception as exc:  # moto validation differences must not stop the stack
        log.warning("moto EventBridge rejected rule %s: %s", name, exc)
    if rule.pattern is not None:
        ctx.bus.add_rule(rule)
    if rule.schedule and rule.enabled:
        ctx.scheduler.add(rule)


def alarm(ctx: Context, res: Resource) -> None:
    name = str(res.name)
    props = {**res.props, "AlarmName": name}
    arn = ctx.resolver.arn("cloudwatch", f"alarm:{name}")
    register(ctx, res, name, Arn=arn)
    api_props = {k: v for k, v in props.items() if k != "Tags"}
    if "Dimensions" in api_props:
        api_props["Dimensions"] = [{"Name": d["Name"], "Value": str(d["Value"])} for d in api_props["Dimensions"]]
    ctx.client("cloudwatch").put_metric_alarm(**api_props)
    ctx.alarms.add(name, arn, props)


def custom_resource(ctx: Context, res: Resource) -> None:
    """CloudFormation's ``Create`` request to the resource's function (CDK's Provider framework skipped)."""
    token = res.props.get("ServiceToken", "")
    target = ctx.functions.lookup(token)
    if target is None and token in ctx.framework_functions:
        env = (ctx.framework_functions[token].get("Environment") or {}).get("Variables") or {}
        user = env.get("USER_ON_EVENT_FUNCTION_ARN")
        target = ctx.functions.lookup(user) if user else None
    if target is None:  # e.g. Custom::S3AutoDeleteObjects (Node.js, acts only on stack delete)
        ctx.not_emulated.append(res.label())
        register(ctx, res, f"{res.logical_id}-local")
        return
    request = {
        "RequestType": "Create", "ServiceToken": token, "ResponseURL": "",
        "StackId": ctx.resolver.arn("cloudformation", f"stack/{res.stack.name}/local"),
        "RequestId": secrets.token_hex(16), "LogicalResourceId": res.logical_id, "ResourceType": res.type,
        "ResourceProperties": dict(res.props),
    }
    try:
        result = target.invoke(request, source="cloudformation") or {}
    except FunctionError as exc:
        raise RuntimeError(f"custom resource {res.stack.name}/{res.logical_id} failed to create: {exc}") from exc
    register(ctx, res, result.get("PhysicalResourceId") or request["RequestId"], **(result.get("Data") or {}))


def mlflow_app(ctx: Context, res: Resource) -> None:
    """SageMaker's MLflow app as the local MLflow server. Its ARN stays an ARN (policies name it); the job runner
    gives a `track` job whose tracking URI is that ARN the server's URL instead."""
    arn = ctx.resolver.arn("sagemaker", f"mlflow-app/app-{cfn.cfn_physical_name(res.stack.name, res.logical_id)[-12:].lower()}")
    if ctx.tracking is None:
        ctx.not_emulated.append(res.label("no local MLflow server"))
    else:
        ctx.tracking(arn, str(res.props["ArtifactStoreUri"]))
    register(ctx, res, arn, Arn=arn, MlflowAppId=arn.rsplit("/", 1)[1])


CREATORS: dict[str, Creator] = {
    "AWS::Lambda::Function": lambda_function,
    "AWS::Lambda::Version": lambda_version_or_alias,
    "AWS::Lambda::Alias": lambda_version_or_alias,
    "AWS::Lambda::EventInvokeConfig": event_invoke_config,
    "AWS::Events::Rule": events_rule,
    "AWS::CloudWatch::Alarm": alarm,
    "AWS::SageMaker::MlflowApp": mlflow_app,
    CUSTOM: custom_resource,
}
