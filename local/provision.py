"""Provisioning: each template resource created as CloudFormation would, through a registry by resource type.

A :class:`Provisioner` is given a registry that maps a CloudFormation resource type to the function that
creates it (in moto through the AWS API, or in the stack's own parts: functions, rules, schedules, alarms);
:mod:`local.resources_data` and :mod:`local.resources_compute` hold them, each in its ``CREATORS``, and
:mod:`local.stack` merges the two. Adding an emulated resource type = one function there plus one entry in its
module's ``CREATORS``. Resources are created in dependency order (:func:`creation_order`, over Ref, Fn::GetAtt,
Fn::Sub and DependsOn), skipped when their ``Condition`` is false; a type without a creator, or a resource that
refers to one, is listed as not emulated (``GET /_local/state``) and gets a placeholder, so that what refers to it
still resolves.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from . import cfn
from .alarm_evaluator import AlarmEvaluator
from .bus import EventBus
from .destinations import Destinations
from .functions import FunctionRegistry
from .object_events import ObjectEvents
from .schedules import Scheduler

log = logging.getLogger("local.provision")

# Not emulated, knowingly (docs/local.md): no log line for these, only the not-emulated list.
NOT_EMULATED_PREFIXES = ("AWS::ApiGateway::", "AWS::CDK::Metadata", "AWS::Logs::", "AWS::Lambda::Permission",
                         "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")
CUSTOM = "Custom::*"  # registry key of every custom resource (Custom::X and AWS::CloudFormation::CustomResource)


@dataclass
class Context:
    """What a creator may use: the resolver, moto's API, and the stack's parts that resources configure."""

    resolver: cfn.Resolver
    client: Callable[[str], Any]
    functions: FunctionRegistry
    bus: EventBus
    scheduler: Scheduler
    alarms: AlarmEvaluator
    destinations: Destinations
    objects: ObjectEvents
    not_emulated: list[str] = field(default_factory=list)
    # Starts the local MLflow server for an MLflow app (its ARN, its artifact store); returns the server's URL.
    tracking: Callable[[str, str], str] | None = None
    framework_functions: dict[str, dict[str, Any]] = field(default_factory=dict)  # arn -> props (Node.js, not run)

    @property
    def region(self) -> str:
        return self.resolver.region


@dataclass
class Resource:
    """One template resource being created: its definition, resolved properties and physical name."""

    stack: cfn.StackTemplate
    logical_id: str
    definition: dict[str, Any]
    props: dict[str, Any]
    name: str | None

    @property
    def type(self) -> str:
        return str(self.definition["Type"])

    def label(self, detail: str = "") -> str:
        return f"{self.stack.name}/{self.logical_id} ({detail or self.type})"


Creator = Callable[[Context, Resource], None]


def is_custom(rtype: str) -> bool:
    return rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource"


class Provisioner:
    def __init__(self, ctx: Context, registry: dict[str, Creator]):
        self.ctx = ctx
        self.registry = registry

    def provision(self, stack: cfn.StackTemplate) -> None:
        """Create every resource of ``stack`` whose condition holds, in dependency order."""
        resources = stack.resources
        for logical_id in creation_order(resources):
            resource = resources[logical_id]
            if not self.ctx.resolver.resource_enabled(stack.name, resource):
                continue
            try:
                self.create(stack, logical_id, resource)
            except cfn.UnresolvedReference as exc:
                log.warning("%s/%s (%s) not created: %s", stack.name, logical_id, resource["Type"], exc)
                self.ctx.not_emulated.append(f"{stack.name}/{logical_id} ({resource['Type']}): {exc}")

    def create(self, stack: cfn.StackTemplate, logical_id: str, definition: dict[str, Any]) -> None:
        rtype = definition["Type"]
        props = self.ctx.resolver.resolve(stack.name, definition.get("Properties", {})) or {}
        named = rtype != "AWS::KMS::Key" and not is_custom(rtype)
        name = self.ctx.resolver.default_name(stack.name, logical_id, definition) if named else None
        resource = Resource(stack, logical_id, definition, props, name)
        creator = self.registry.get(CUSTOM if is_custom(rtype) else rtype)
        if creator is None:
            self.placeholder(resource)
        else:
            creator(self.ctx, resource)

    def placeholder(self, resource: Resource) -> None:
        """A type not emulated: listed, and its Ref/Arn resolve to a stand-in (e.g. the API's URL in an output)."""
        if not resource.type.startswith(NOT_EMULATED_PREFIXES):
            log.info("%s: not emulated", resource.label())
        self.ctx.not_emulated.append(resource.label())
        value = resource.name or resource.logical_id
        if resource.type == "AWS::ApiGateway::RestApi":
            value = cfn.cfn_physical_name(resource.stack.name, resource.logical_id).rsplit("-", 1)[1].lower()[:10]
        register(self.ctx, resource, value, Arn=self.ctx.resolver.arn(resource.type.split("::")[1].lower(), value),
                 RootResourceId=f"{value[:6]}root")


def register(ctx: Context, resource: Resource, ref: Any, **attrs: Any) -> None:
    """What the created resource resolves to: its ``Ref`` value and ``Fn::GetAtt`` attributes."""
    ctx.resolver.register(resource.stack.name, resource.logical_id, ref, **attrs)


_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


def references(value: Any) -> set[str]:
    """Logical ids that ``value`` refers to (Ref / GetAtt / Sub) — used to order creation."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                walk(n)
        elif isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Ref" and isinstance(arg, str) and not arg.startswith("AWS::"):
                    found.add(arg)
                    return
                if key == "Fn::GetAtt":
                    found.add(arg.split(".")[0] if isinstance(arg, str) else arg[0])
                    return
                if key == "Fn::Sub":
                    text = arg if isinstance(arg, str) else arg[0]
                    for name in _SUB.findall(text):
                        if not name.startswith("AWS::"):
                            found.add(name.split(".")[0])
                    if not isinstance(arg, str):
                        walk(arg[1])
                    return
            for v in node.values():
                walk(v)

    walk(value)
    return found


def creation_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Topological order over Ref/GetAtt/Sub/DependsOn, like CloudFormation's."""
    deps: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        found = references(resource.get("Properties", {}))
        depends = resource.get("DependsOn", [])
        found |= set([depends] if isinstance(depends, str) else depends)
        deps[logical_id] = {d for d in found if d in resources and d != logical_id}
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            raise ValueError(f"circular dependency at {node}")
        state[node] = 1
        for dep in sorted(deps[node]):
            visit(dep)
        state[node] = 2
        order.append(node)

    for logical_id in sorted(resources):
        visit(logical_id)
    return order
