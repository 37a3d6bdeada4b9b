"""Read a synthesized cloud assembly and resolve CloudFormation intrinsics against local names.

The embedded stack must create exactly what the templates say, so everything it needs (names,
environment variables, event patterns, alarm definitions) is read from ``cdk.out`` through this
resolver. Physical names are chosen the way CloudFormation chooses them: explicit name properties
win, otherwise ``<stack>-<logicalId>-<suffix>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

NO_VALUE = object()

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

    def of_type(self, *types: str) -> Iterable[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") in types or (
                "Custom::*" in types and str(resource.get("Type", "")).startswith("Custom::")
            ):
                yield logical_id, resource


def load_assembly(cdk_out: Path) -> list[StackTemplate]:
    """Every CloudFormation stack in the assembly (nested stage assemblies included), in deploy order."""
    stacks: dict[str, StackTemplate] = {}
    _collect(Path(cdk_out), stacks)
    if not stacks:
        raise FileNotFoundError(f"no CloudFormation stack found in {cdk_out}/manifest.json")
    return _deploy_order(stacks)


def _collect(directory: Path, stacks: dict[str, StackTemplate]) -> None:
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    artifact_ids = {}
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        kind = artifact.get("type")
        props = artifact.get("properties", {})
        if kind == "cdk:cloud-assembly":
            _collect(directory / props["directoryName"], stacks)
        elif kind == "aws:cloudformation:stack":
            name = props.get("stackName") or artifact_id
            artifact_ids[artifact_id] = name
            template = json.loads((directory / props["templateFile"]).read_text())
            stacks[name] = StackTemplate(
                name=name,
                template=template,
                path=directory / props["templateFile"],
                dependencies=list(artifact.get("dependencies", [])),
            )
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
    budget = limit - len(suffix) - 1
    name = f"{base[:budget]}-{suffix}"
    return name.lower() if lowercase else name


@dataclass
class Physical:
    """What a logical resource resolves to: its Ref value and its GetAtt attributes."""

    ref: Any
    attrs: dict[str, Any] = field(default_factory=dict)


class Resolver:
    """Resolves intrinsics for one assembly. Register each resource's physical values, then resolve."""

    def __init__(self, account: str, region: str, partition: str = "aws"):
        self.account = account
        self.region = region
        self.partition = partition
        self.physical: dict[tuple[str, str], Physical] = {}
        self.exports: dict[str, Any] = {}
        self.templates: dict[str, StackTemplate] = {}

    # -- registration -------------------------------------------------------------------------
    def add_stack(self, stack: StackTemplate) -> None:
        self.templates[stack.name] = stack

    def register(self, stack: str, logical_id: str, ref: Any, **attrs: Any) -> None:
        self.physical[(stack, logical_id)] = Physical(ref, dict(attrs))

    def is_registered(self, stack: str, logical_id: str) -> bool:
        return (stack, logical_id) in self.physical

    def publish_outputs(self, stack: StackTemplate) -> dict[str, Any]:
        """Resolve the stack's Outputs (what ``cdk deploy --outputs-file`` writes) and its exports."""
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
                export_name = self.resolve(stack.name, output["Export"]["Name"])
                self.exports[export_name] = value
        return outputs

    # -- default names ------------------------------------------------------------------------
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
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )

    # -- resolution ---------------------------------------------------------------------------
    def resolve(self, stack: str, value: Any) -> Any:
        result = self._resolve(stack, value)
        return None if result is NO_VALUE else result

    def _resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(stack, v) for v in value]
            return [i for i in items if i is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            handler = self._intrinsics().get(key)
            if handler is not None:
                return handler(stack, arg)
        out = {}
        for k, v in value.items():
            r = self._resolve(stack, v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def _intrinsics(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Join": self._join,
            "Fn::Sub": self._sub,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::ImportValue": self._import_value,
            "Fn::If": self._if,
            "Fn::Equals": lambda s, a: self._resolve(s, a[0]) == self._resolve(s, a[1]),
            "Fn::And": lambda s, a: all(self._cond_value(s, x) for x in a),
            "Fn::Or": lambda s, a: any(self._cond_value(s, x) for x in a),
            "Fn::Not": lambda s, a: not self._cond_value(s, a[0]),
            "Condition": lambda s, a: self.condition(s, a),
            "Fn::FindInMap": self._find_in_map,
            "Fn::GetAZs": lambda s, a: [f"{self.region}{z}" for z in "abc"],
            "Fn::Base64": lambda s, a: __import__("base64").b64encode(
                str(self._resolve(s, a)).encode()
            ).decode(),
            "Fn::Length": lambda s, a: len(self._resolve(s, a)),
            "Fn::ToJsonString": lambda s, a: json.dumps(self._resolve(s, a), separators=(",", ":")),
        }

    def _pseudo(self, name: str) -> Any:
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        raise KeyError(name)

    def _ref(self, stack: str, name: str) -> Any:
        if name == "AWS::StackName":
            return stack
        if name == "AWS::StackId":
            return self.arn("cloudformation", f"stack/{stack}/local")
        try:
            return self._pseudo(name)
        except KeyError:
            pass
        template = self.templates.get(stack)
        if template is not None and name in template.template.get("Parameters", {}):
            param = template.template["Parameters"][name]
            if "Default" in param:
                return param["Default"]
            raise UnresolvedReference(f"{stack}: parameter {name} has no default")
        physical = self.physical.get((stack, name))
        if physical is None:
            raise UnresolvedReference(f"{stack}: Ref {name} (not created by the embedded stack)")
        return physical.ref

    def _get_att(self, stack: str, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, attribute = arg.split(".", 1)
        else:
            logical_id, attribute = arg[0], self._resolve(stack, arg[1])
        physical = self.physical.get((stack, logical_id))
        if physical is None:
            raise UnresolvedReference(f"{stack}: GetAtt {logical_id}.{attribute} (not created)")
        if attribute not in physical.attrs:
            raise UnresolvedReference(f"{stack}: GetAtt {logical_id}.{attribute} (unknown attribute)")
        return physical.attrs[attribute]

    def _join(self, stack: str, arg: Any) -> str:
        delimiter, items = arg
        values = self._resolve(stack, items)
        return str(delimiter).join(_scalar(v) for v in values)

    _SUB = re.compile(r"\$\{([^}!][^}]*)\}")

    def _sub(self, stack: str, arg: Any) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = arg[0], {k: self._resolve(stack, v) for k, v in arg[1].items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return _scalar(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return _scalar(self._get_att(stack, name))
            return _scalar(self._ref(stack, name))

        resolved = self._SUB.sub(replace, text)
        return resolved.replace("${!", "${")

    def _select(self, stack: str, arg: Any) -> Any:
        index = int(self._resolve(stack, arg[0]))
        values = self._resolve(stack, arg[1])
        return values[index]

    def _split(self, stack: str, arg: Any) -> list[str]:
        delimiter, source = arg
        return str(self._resolve(stack, source)).split(delimiter)

    def _import_value(self, stack: str, arg: Any) -> Any:
        name = self._resolve(stack, arg)
        if name not in self.exports:
            raise UnresolvedReference(f"{stack}: ImportValue {name} (no stack exports it)")
        return self.exports[name]

    def _if(self, stack: str, arg: Any) -> Any:
        condition, when_true, when_false = arg
        return self._resolve(stack, when_true if self.condition(stack, condition) else when_false)

    def _cond_value(self, stack: str, value: Any) -> bool:
        return bool(self._resolve(stack, value))

    def condition(self, stack: str, name: str) -> bool:
        conditions = self.templates[stack].template.get("Conditions", {})
        if name not in conditions:
            raise UnresolvedReference(f"{stack}: unknown condition {name}")
        return bool(self._resolve(stack, conditions[name]))

    def _find_in_map(self, stack: str, arg: Any) -> Any:
        map_name, top, second = (self._resolve(stack, a) for a in arg[:3])
        return self.templates[stack].template["Mappings"][map_name][top][second]

    def resource_enabled(self, stack: str, resource: dict[str, Any]) -> bool:
        return "Condition" not in resource or self.condition(stack, resource["Condition"])


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise UnresolvedReference(f"cannot join a non-scalar value: {value!r}")
    return str(value)


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
                    for name in Resolver._SUB.findall(text):
                        if not name.startswith("AWS::"):
                            found.add(name.split(".")[0])
                    if not isinstance(arg, str):
                        walk(arg[1])
                    return
            for v in node.values():
                walk(v)

    walk(value)
    return found
