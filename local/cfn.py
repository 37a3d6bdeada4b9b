"""Read a synthesized cloud assembly and resolve CloudFormation intrinsics against local names.

The embedded stack creates exactly what the templates say, so everything it needs (names, environment
variables, event patterns, alarm definitions) is read from ``cdk.out`` through this resolver.

**moto resolves the intrinsics.** Values go through moto's own CloudFormation resolution,
``moto.cloudformation.parsing.clean_json`` (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split,
Fn::ImportValue, Fn::If, Fn::FindInMap, Fn::GetAZs, Fn::Base64, Fn::ToJsonString) and ``parse_condition``
(Fn::Equals/And/Or/Not, Condition), with moto's ``LazyDict`` of conditions and its ``Export`` objects. What
moto's ``ResourceMap`` would do — look a logical id up and *create* the resource in moto through moto's own
CloudFormation models — is replaced by :class:`_StackScope`, which answers with what the embedded stack
registered for it (it creates resources through the AWS API, :mod:`local.provision`).

**Kept here, and why:**

- Reading the cloud assembly (``manifest.json``, nested stage assemblies, stack dependencies, deploy order):
  moto knows CloudFormation templates, not CDK assemblies.
- Physical names: explicit name properties win, otherwise CloudFormation's ``<stack>-<logicalId>-<SUFFIX>``.
  moto's ``generate_resource_name`` uses a random suffix (names would change at each start; these are stable,
  so logs and outputs of two runs compare), and moto's name-property map
  (``resource_name_property_from_type``) has no entry for alarms, dashboards, inline IAM policies and model
  package groups and gives ``RestApi`` for API Gateway REST APIs (it is ``Name``): ``NAME_PROPERTIES`` below.
- Creation order (:func:`local.provision.creation_order`): moto's ``ResourceMap`` orders by ``DependsOn`` only and
  relies on creating a referenced resource lazily, on first lookup; here a resource is created by an API call
  after everything it refers to (Ref, Fn::GetAtt, Fn::Sub), as CloudFormation does.
- A reference to something not created (a resource type not emulated) raises :class:`UnresolvedReference`, so
  the resource that needs it is listed as not emulated instead of being created with a wrong value; moto's
  ``ResourceMap`` would create the referenced resource through its own model on first lookup, and an attribute
  that model lacks leaves the ``Fn::GetAtt`` in place with a logged warning.

Behaviours of moto's resolution that differ from CloudFormation and do not occur in this app's templates:
``AWS::NoValue`` inside a list leaves a ``null`` element; ``Fn::Join`` writes a boolean as ``True``.
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

# Name properties per resource type: when present, the property is the physical name.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Policy": "PolicyName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Events::Rule": "Name",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::ApiGateway::RestApi": "Name",
}


class UnresolvedReference(Exception):
    """An intrinsic points at something the embedded stack has no value for."""


@dataclass
class StackTemplate:
    name: str
    template: dict[str, Any]
    path: Path
    dependencies: list[str] = field(default_factory=list)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.get("Resources", {})


def load_assembly(cdk_out: Path) -> list[StackTemplate]:
    """Every CloudFormation stack in the assembly (nested stage assemblies included), in deploy order."""
    stacks: dict[str, StackTemplate] = {}
    _collect(Path(cdk_out), stacks)
    if not stacks:
        raise FileNotFoundError(f"no CloudFormation stack found in {cdk_out}/manifest.json")
    return _deploy_order(stacks)


def _collect(directory: Path, stacks: dict[str, StackTemplate]) -> None:
    manifest = json.loads((directory / "manifest.json").read_text())
    artifact_ids = {}
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        kind = artifact.get("type")
        props = artifact.get("properties", {})
        if kind == "cdk:cloud-assembly":
            _collect(directory / props["directoryName"], stacks)
        elif kind == "aws:cloudformation:stack":
            name = props.get("stackName") or artifact_id
            artifact_ids[artifact_id] = name
            stacks[name] = StackTemplate(name=name, template=json.loads((directory / props["templateFile"]).read_text()),
                                         path=directory / props["templateFile"],
                                         dependencies=list(artifact.get("dependencies", [])))
    for stack in stacks.values():
        stack.dependencies = [artifact_ids.get(d, d) for d in stack.dependencies]


def _deploy_order(stacks: dict[str, StackTemplate]) -> list[StackTemplate]:
    ordered: list[StackTemplate] = []
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in seen or name not in stacks:
            return
        if name in path:
            raise ValueError(f"stack dependency cycle: {' -> '.join(path + (name,))}")
        for dep in stacks[name].dependencies:
            visit(dep, path + (name,))
        seen.add(name)
        ordered.append(stacks[name])

    for name in sorted(stacks):
        visit(name, ())
    return ordered


def cfn_physical_name(stack: str, logical_id: str, lowercase: bool = False, limit: int = 64) -> str:
    """CloudFormation's generated name: ``stack-logicalId-SUFFIX`` (deterministic here)."""
    suffix = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:12].upper()
    base = f"{stack}-{logical_id}"
    name = f"{base[:limit - len(suffix) - 1]}-{suffix}"
    return name.lower() if lowercase else name


@dataclass
class Physical:
    """A created resource as moto's resolution reads it: its Ref value and its GetAtt attributes."""

    physical_resource_id: Any
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""

    def get_cfn_attribute(self, attribute: str) -> Any:
        if attribute not in self.attrs:
            raise UnresolvedReference(f"{self.where}: GetAtt {attribute} (unknown attribute)")
        return self.attrs[attribute]


class _StackScope(collections.abc.Mapping):  # type: ignore[type-arg]
    """One stack's names, in the interface moto's ``clean_json`` expects of its ``ResourceMap``."""

    def __init__(self, resolver: "Resolver", stack: StackTemplate):
        from moto.cloudformation.parsing import LazyDict, parse_condition

        self.resolver = resolver
        self.stack = stack
        self.cross_stack_resources = resolver.exports
        template = stack.template
        self.values: dict[str, Any] = {
            "AWS::AccountId": resolver.account, "AWS::Region": resolver.region, "AWS::Partition": resolver.partition,
            "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None, "AWS::NotificationARNs": [],
            "AWS::StackName": stack.name, "AWS::StackId": resolver.arn("cloudformation", f"stack/{stack.name}/local"),
            **template.get("Mappings", {}),
        }
        for name, parameter in template.get("Parameters", {}).items():
            if "Default" in parameter:
                self.values[name] = parameter["Default"]
        self.lazy_condition_map = LazyDict()
        for name, condition in template.get("Conditions", {}).items():
            self.lazy_condition_map[name] = functools.partial(parse_condition, condition, self, self.lazy_condition_map)

    def __getitem__(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        physical = self.resolver.physical.get((self.stack.name, key))
        if physical is None:
            if key in self.stack.template.get("Parameters", {}):
                raise UnresolvedReference(f"{self.stack.name}: parameter {key} has no default")
            raise UnresolvedReference(f"{self.stack.name}: {key} (not created by the embedded stack)")
        return physical

    def __iter__(self) -> Iterator[str]:
        return iter(self.stack.resources)

    def __len__(self) -> int:
        return len(self.stack.resources)


class Resolver:
    """Resolves intrinsics for one assembly. Register each resource's physical values, then resolve."""

    def __init__(self, account: str, region: str, partition: str = "aws"):
        self.account = account
        self.region = region
        self.partition = partition
        self.physical: dict[tuple[str, str], Physical] = {}
        self.exports: dict[str, Any] = {}  # export name -> moto's Export
        self.scopes: dict[str, _StackScope] = {}

    def add_stack(self, stack: StackTemplate) -> None:
        self.scopes[stack.name] = _StackScope(self, stack)

    def register(self, stack: str, logical_id: str, ref: Any, **attrs: Any) -> None:
        self.physical[(stack, logical_id)] = Physical(ref, dict(attrs), where=f"{stack}/{logical_id}")

    def resolve(self, stack: str, value: Any) -> Any:
        from moto.cloudformation.exceptions import ExportNotFound
        from moto.cloudformation.parsing import clean_json

        try:
            return clean_json(value, self.scopes[stack])
        except ExportNotFound as exc:
            raise UnresolvedReference(f"{stack}: ImportValue: {exc.message}") from exc

    def condition(self, stack: str, name: str) -> bool:
        try:
            return bool(self.scopes[stack].lazy_condition_map[name])
        except KeyError:
            raise UnresolvedReference(f"{stack}: unknown condition {name}") from None

    def resource_enabled(self, stack: str, resource: dict[str, Any]) -> bool:
        return "Condition" not in resource or self.condition(stack, resource["Condition"])

    def publish_outputs(self, stack: StackTemplate) -> dict[str, Any]:
        """Resolve the stack's Outputs (what ``cdk deploy --outputs-file`` writes) and its exports."""
        from moto.cloudformation.parsing import Export

        outputs: dict[str, Any] = {}
        for key, output in stack.template.get("Outputs", {}).items():
            if "Condition" in output and not self.condition(stack.name, output["Condition"]):
                continue
            try:
                value = self.resolve(stack.name, output["Value"])
            except UnresolvedReference:
                continue
            outputs[key] = value
            if "Export" in output:
                name = self.resolve(stack.name, output["Export"]["Name"])
                self.exports[name] = Export(self.arn("cloudformation", f"stack/{stack.name}/local"), name, value)
        return outputs

    def default_name(self, stack: str, logical_id: str, resource: dict[str, Any]) -> str:
        rtype = resource.get("Type", "")
        prop = NAME_PROPERTIES.get(rtype)
        props = resource.get("Properties", {}) or {}
        if prop and prop in props:
            return str(self.resolve(stack, props[prop]))
        if rtype == "AWS::S3::Bucket":
            return cfn_physical_name(stack, logical_id, lowercase=True, limit=63)
        return cfn_physical_name(stack, logical_id)

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region else ''}:"
                f"{self.account if account else ''}:{resource}")
