"""What one call needs (IAM requests), and what AWS services do as the stack's principals."""

from __future__ import annotations

import ast
import fnmatch
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .policies import (
    ACCOUNT, ARN_OF, AnalysisError, Cfn, PARTITION, Policies, REGION, Request, WILD, fill_arn, sar, show)
from .source import Module
from .values import DictV, JsonV, ListV, NONE, UNKNOWN, Values, patterns_overlap, squash, strings, values
from .evaluator import Call
from .facts import EVENT_FACTS, UNANALYSED_ROLES, event_patterns


# -- the app: functions, roles, keys ----------------------------------------------------------------------------------
@dataclass
class LambdaFunction:
    stack: str
    logical_id: str
    name: str
    arn: str
    role_arn: str
    handler: str
    env: dict[str, str]
    path: str


class App:
    """The synthesized templates of one stage, resolved, with the facts the analysis needs about them."""

    def __init__(self, templates: Mapping[str, dict]) -> None:
        self.cfn = Cfn(templates)
        self.policies = Policies(self.cfn)
        self.functions: list[LambdaFunction] = []
        for stack, logical_id, fn in self.cfn.resources("AWS::Lambda::Function"):
            props = fn["Properties"]
            name = self.cfn.physical_name(stack, logical_id)
            self.functions.append(LambdaFunction(
                stack=stack, logical_id=logical_id, name=name, arn=ARN_OF["AWS::Lambda::Function"](name),
                role_arn=self.cfn.resolve(stack, props["Role"]), handler=props.get("Handler", ""),
                env={k: str(v) for k, v in self.cfn.resolve(stack, props.get("Environment", {}).get(
                    "Variables", {})).items()},
                path=self.cfn.path(stack, logical_id)))
        self.keys: dict[str, str] = {}  # resource ARN (bucket, topic, queue, table, log group) -> its KMS key ARN
        for stack, logical_id, r in self.cfn.resources():
            props = r.get("Properties", {})
            key = None
            if r["Type"] == "AWS::S3::Bucket":
                for rule in props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                    key = rule.get("ServerSideEncryptionByDefault", {}).get("KMSMasterKeyID") or key
            elif r["Type"] in ("AWS::SNS::Topic", "AWS::SQS::Queue"):
                key = props.get("KmsMasterKeyId")
            elif r["Type"] == "AWS::DynamoDB::Table":
                key = props.get("SSESpecification", {}).get("KMSMasterKeyId")
            elif r["Type"] == "AWS::Logs::LogGroup":
                key = props.get("KmsKeyId")
            if key is not None:
                owner = self.cfn.attribute(stack, logical_id, "Arn")
                self.keys[owner.removesuffix(":*")] = self.cfn.resolve(stack, key)
        self.rules = [(stack, logical_id, r) for stack, logical_id, r in self.cfn.resources("AWS::Events::Rule")]
        # MLflow Apps by ARN: (artifact store URI, the app's role ARN).
        self.mlflow_apps = {
            self.cfn.attribute(stack, logical_id, "Arn"): (self.cfn.resolve(stack, r["Properties"]["ArtifactStoreUri"]),
                                                           self.cfn.resolve(stack, r["Properties"]["RoleArn"]))
            for stack, logical_id, r in self.cfn.resources("AWS::SageMaker::MlflowApp")}
        self.endpoint_config_keys: set[str] = set()  # KmsKeyId of the endpoint configs the code creates
        # Roles whose work is not modelled (UNANALYSED_ROLES): role ARN -> reason.
        self.unanalysed_roles = {arn: reason for arn, path in self.policies.role_paths.items()
                                 for pattern, reason in UNANALYSED_ROLES.items() if fnmatch.fnmatchcase(path, pattern)}

    def key_of(self, resource_arn: str) -> str | None:
        for owner, key in self.keys.items():
            if resource_arn == owner or resource_arn.startswith(owner + "/") or resource_arn.startswith(owner + ":"):
                return key
        return None

    def rule_patterns(self, target_arn: str | None = None) -> dict[str, set[str]]:
        """What the event rules (those targeting ``target_arn``, or all) let through, by detail field."""
        out: dict[str, set[str]] = defaultdict(set)
        for stack, logical_id, rule in self.rules:
            props = rule["Properties"]
            if "EventPattern" not in props:
                continue
            targets = [self.cfn.resolve(stack, t["Arn"]) for t in props.get("Targets", [])]
            if target_arn is not None and not any(t == target_arn or t.startswith(target_arn + ":") for t in targets):
                continue
            pattern = self.cfn.resolve(stack, props["EventPattern"])
            detail = pattern.get("detail", {})
            bucket = event_patterns(detail.get("bucket", {}))
            obj = event_patterns(detail.get("object", {}))
            for k, v in bucket.items():
                out[f"{k}@bucket"] |= v
            for k, v in obj.items():
                out[f"{k}@object"] |= v
            for k, v in event_patterns({k: v for k, v in detail.items() if k not in ("bucket", "object")}).items():
                out[k] |= v
        return out

    def event_facts(self, function: LambdaFunction) -> list[dict[str, set[str]]]:
        """What the keys a function reads from its events hold: one set of facts per combination of the
        alternatives its rules let through."""
        own = self.rule_patterns(function.arn)
        combinations: list[dict[str, set[str]]] = [{}]
        for key, field_ in EVENT_FACTS.items():
            alternatives = sorted(own.get(field_, ()))
            if alternatives:
                combinations = [{**c, key: {a}} for c in combinations for a in alternatives]
        return combinations


# -- requests: what one call needs ---------------------------------------------------------------------------------
# Resource types of the reference a call never names here (access points, indexes, inference components, ...).
IGNORED_RESOURCE_TYPES = {"accesspoint", "accesspointobject", "index", "inference-component", "reserved-capacity",
                          "training-plan", "action", "job"}
TLS = (("aws:SecureTransport", ("true",)), ("s3:TlsVersion", ("1.3",)))

# What an operation needs besides its own action, and why. Each row is applied by requests_for_call.
IMPLIED = {
    "tags": "SAR dependent action: a Create* request with Tags is also authorised as sagemaker:AddTags on the "
            "new resource",
    "pass-role": "SAR dependent action: passing an execution role (RoleArn/ExecutionRoleArn) needs iam:PassRole "
                 "on it, with iam:PassedToService",
    "volume-key": "an EBS volume encrypted with a customer key (VolumeKmsKeyId; an endpoint config's KmsKeyId for "
                  "CreateEndpoint/UpdateEndpoint): SageMaker creates a grant for it as the caller (CreateGrant with "
                  "GrantIsForAWSResource) after checking the key (DescribeKey)",
    "rollback-alarms": "UpdateEndpoint with AutoRollbackConfiguration: SageMaker reads the alarms as the caller",
    "aas-sagemaker": "Application Auto Scaling checks the caller may describe and scale the endpoint variant "
                     "(DescribeEndpoint, UpdateEndpointWeightsAndCapacities) when registering it",
    "aas-slr": "the first registration creates the service-linked role "
               "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint as the caller",
    "aas-alarms": "target tracking creates (PutScalingPolicy) and deletes (with the target, DeregisterScalableTarget) "
                  "its CloudWatch alarms TargetTracking-<resource id>-* as the caller",
    "endpoint-scaling": "deleting an endpoint deregisters its scalable targets as the caller (SageMaker: delete "
                        "endpoints configured for auto scaling)",
    "transact": "TransactWriteItems is authorised per item: PutItem/UpdateItem/DeleteItem/ConditionCheckItem "
                "(the item kinds the calling module writes)",
    "head": "HeadObject is authorised as s3:GetObject (s3:GetObjectVersion with VersionId)",
    "copy-source": "CopyObject reads the source: s3:GetObject(Version) and, TaggingDirective COPY being the "
                   "default, s3:GetObject(Version)Tagging",
    "copy-target": "CopyObject writes the target: s3:PutObject and (tags are copied) s3:PutObjectTagging",
    "list": "ListObjectsV2 is s3:ListBucket and ListObjectVersions is s3:ListBucketVersions, with s3:prefix",
    "not-found": "S3 answers 404 for a missing key only to a caller with s3:ListBucket on the bucket (otherwise "
                 "403); the code treats NotFound as an answer (clients.is_not_found), so every object read needs it, "
                 "without an s3:prefix (S3 checks it without one)",
    "sse-read": "reading an SSE-KMS object: kms:Decrypt on its key (the bucket's default key)",
    "sse-write": "writing an SSE-KMS object: kms:GenerateDataKey on its key (SSEKMSKeyId, else the bucket's key)",
    "sns-kms": "publishing to a KMS-encrypted topic: kms:GenerateDataKey and kms:Decrypt on the topic's key",
    "dynamodb-kms": "a table encrypted with a customer managed key: kms:Decrypt on it for item operations",
    "sqs-kms": "sending to a KMS-encrypted queue: kms:GenerateDataKey and kms:Decrypt on the queue's key",
}


TRANSACT_ITEMS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                  "ConditionCheck": "ConditionCheckItem"}


def transact_kinds(module: Module) -> set[str]:
    """The TransactWriteItems item kinds a module builds: keys of its dict displays (conservative)."""
    return {k.value for node in ast.walk(module.tree) if isinstance(node, ast.Dict) for k in node.keys
            if isinstance(k, ast.Constant) and k.value in TRANSACT_ITEMS}


def paths(kwargs: DictV, *path: str) -> Values:
    """Values at a path of nested dicts (lists are looked through)."""
    current: Values = values(kwargs)
    for step in path:
        found: set = set()
        for atom in current:
            for container in (atom.elements if isinstance(atom, ListV) else (atom,)):
                if isinstance(container, DictV):
                    found |= container.get(step) or set()
                elif container is UNKNOWN:
                    found.add(UNKNOWN)
        current = frozenset(found)
    return current


def present(kwargs: DictV, *path: str) -> bool:
    found = paths(kwargs, *path)
    return bool(found) and found != {NONE}


def concrete(patterns: Iterable[str]) -> list[str]:
    return sorted({p for p in patterns if p})


def parse_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def s3_object(bucket: str, key: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}/{key}"


def s3_bucket(bucket: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}"


class RequestBuilder:
    """Turns calls (and what services do for the stack) into IAM requests for one principal."""

    def __init__(self, app: App, principal: str, operation: str, source: str) -> None:
        self.app, self.principal, self.operation, self.source = app, principal, operation, source
        self.requests: list[Request] = []

    def add(self, action: str, resource: str, *, why: str = "", context: Mapping[str, Iterable[str]] | None = None,
            tls: bool = True) -> None:
        sar().privilege(action)  # the action must exist
        ctx = dict(TLS) if tls else {}
        if self.principal.startswith("arn:"):
            ctx["aws:PrincipalArn"] = (self.principal,)
        for k, v in (context or {}).items():
            ctx[k] = tuple(sorted(v))
        self.requests.append(Request(self.principal, sar().canonical(action), resource,
                                     tuple(sorted(ctx.items())), self.operation, self.source,
                                     IMPLIED[why] if why else ""))

    def sar_resources(self, action: str, names: Mapping[str, Iterable[str]]) -> list[str]:
        """The ARNs of every resource type of the action the call names; '*' if the action has none."""
        return [arn for _, arn in self.typed_resources(action, names)] or ["*"]

    def typed_resources(self, action: str, names: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
        """(resource type, ARN) of every resource type of the action the call names."""
        arns: list[tuple[str, str]] = []
        types = {t: r for t, r in sar().resource_types(action).items() if t not in IGNORED_RESOURCE_TYPES}
        for resource_type, required in types.items():
            template = sar().arn_template(action, resource_type)
            placeholders = [p for p in re.findall(r"\$\{(\w+)\}", template)
                            if p not in ("Partition", "Region", "Account")]
            if all(names.get(p) for p in placeholders):
                combos: list[dict[str, str]] = [{}]
                for p in placeholders:
                    combos = [{**c, p: v} for c in combos for v in concrete(names[p])]
                arns += [(resource_type, squash(fill_arn(template, c))) for c in combos]
            elif required:
                raise AnalysisError(f"{self.operation} ({self.source}): no value for {resource_type} "
                                    f"({', '.join(placeholders)}) of {action}")
        return arns

    def key_use(self, key_arns: Iterable[str], actions: Iterable[str], why: str,
                context: Mapping[str, Iterable[str]] | None = None) -> None:
        for key in concrete(key_arns):
            for action in actions:
                self.add(action, key, why=why, context=context)


def _names_of(kwargs: DictV) -> dict[str, set[str]]:
    return {k: strings(v) for k, v, _ in kwargs.items}


def _arn_part(arn: str, marker: str) -> str:
    return arn.split(marker, 1)[1] if marker in arn else arn


def requests_for_call(app: App, principal: str, call: Call, module_kinds: set[str],
                      tables: Iterable[str] = ()) -> list[Request]:
    """The IAM requests one botocore call makes (with every IMPLIED row that applies)."""
    b = RequestBuilder(app, principal, call.name, call.location)
    for kw in call.kwargs:
        names = _names_of(kw)
        op = call.operation
        if call.service == "s3":
            _s3_requests(b, app, op, kw, names)
            continue
        if call.service == "dynamodb":
            table = concrete(names.get("TableName", set()))
            if op == "TransactWriteItems":  # each item names its table
                table = concrete({t for kind in TRANSACT_ITEMS for t in strings(paths(kw, "TransactItems", kind,
                                                                                    "TableName")) if t != WILD})
                table = table or concrete(tables)  # items built elsewhere: the tables this function writes
            actions = ([f"dynamodb:{TRANSACT_ITEMS[k]}" for k in sorted(module_kinds & set(TRANSACT_ITEMS))]
                       if op == "TransactWriteItems" else [f"dynamodb:{op}"])
            for action in actions:
                for arn in b.sar_resources(action, {"TableName": table}):
                    b.add(action, arn, why="transact" if op == "TransactWriteItems" else "")
            for t in table:
                b.key_use([k for k in [app.key_of(f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{t}")] if k],
                          ["kms:Decrypt"], "dynamodb-kms")
            continue
        if call.service == "sns" and op == "Publish":
            for topic in concrete(names.get("TopicArn", set())):
                b.add("sns:Publish", topic)
                b.key_use([k for k in [app.key_of(topic)] if k], ["kms:GenerateDataKey", "kms:Decrypt"], "sns-kms")
            continue
        if call.service == "cloudwatch" and op == "PutMetricData":
            namespaces = concrete(names.get("Namespace", {WILD}))
            b.add("cloudwatch:PutMetricData", "*", context={"cloudwatch:namespace": namespaces})
            continue
        if call.service == "application-autoscaling":
            _autoscaling_requests(b, op, kw, names)
            continue
        if call.service == "sagemaker":
            _sagemaker_requests(b, app, op, kw, names)
            continue
        action = f"{call.service}:{op}"
        for arn in b.sar_resources(action, names):
            b.add(action, arn)
    return b.requests


def _s3_requests(b: RequestBuilder, app: App, op: str, kw: DictV, names: dict[str, set[str]]) -> None:
    buckets = concrete(names.get("Bucket", {WILD}))
    keys = concrete(names.get("Key", {WILD}))
    versioned = present(kw, "VersionId")

    def read(bucket: str, key: str, *, by_version: bool, tagging: bool, why: str) -> None:
        obj = s3_object(bucket, key)
        b.add("s3:GetObjectVersion" if by_version else "s3:GetObject", obj, why=why)
        if tagging:
            b.add("s3:GetObjectVersionTagging" if by_version else "s3:GetObjectTagging", obj, why="copy-source")
        b.add("s3:ListBucket", s3_bucket(bucket), why="not-found")
        b.key_use([k for k in [app.key_of(obj)] if k], ["kms:Decrypt"], "sse-read")

    def write(bucket: str, key: str, *, why: str = "") -> None:
        obj = s3_object(bucket, key)
        b.add("s3:PutObject", obj, why=why)
        if why == "copy-target":
            b.add("s3:PutObjectTagging", obj, why=why)
        explicit = concrete(names.get("SSEKMSKeyId", set()))
        b.key_use(explicit or [k for k in [app.key_of(obj)] if k], ["kms:GenerateDataKey"], "sse-write")

    def read_copy_source(*, tagging: bool) -> None:
        # A VersionId that may be absent: both the latest-object and the by-version permission are needed.
        for by_version in ([False, True] if present(kw, "CopySource", "VersionId") else [False]):
            for bucket in concrete(strings(paths(kw, "CopySource", "Bucket"))):
                for key in concrete(strings(paths(kw, "CopySource", "Key"))):
                    read(bucket, key, by_version=by_version, tagging=tagging, why="copy-source")

    if op in ("GetObject", "HeadObject"):
        for by_version in ([False, True] if versioned else [False]):
            for bucket in buckets:
                for key in keys:
                    read(bucket, key, by_version=by_version, tagging=False, why="head" if op == "HeadObject" else "")
    elif op == "PutObject":
        for bucket in buckets:
            for key in keys:
                write(bucket, key)
    elif op == "CopyObject":
        read_copy_source(tagging=True)
        for bucket in buckets:
            for key in keys:
                write(bucket, key, why="copy-target")
    elif op == "GetObjectTagging":
        for bucket in buckets:
            for key in keys:
                b.add("s3:GetObjectVersionTagging" if versioned else "s3:GetObjectTagging", s3_object(bucket, key),
                      why="copy-source")
    elif op == "CreateMultipartUpload":  # a multipart copy's target (copies.py): its tags go with the request
        for bucket in buckets:
            for key in keys:
                write(bucket, key)
                if present(kw, "Tagging"):
                    b.add("s3:PutObjectTagging", s3_object(bucket, key), why="copy-target")
    elif op == "UploadPartCopy":
        read_copy_source(tagging=False)
        for bucket in buckets:
            for key in keys:
                write(bucket, key)
    elif op == "CompleteMultipartUpload":
        for bucket in buckets:
            for key in keys:
                write(bucket, key)
                # S3 reads the encrypted parts back to complete the object.
                b.key_use([k for k in [app.key_of(s3_object(bucket, key))] if k], ["kms:Decrypt"], "sse-read")
    elif op == "AbortMultipartUpload":
        for bucket in buckets:
            for key in keys:
                b.add("s3:AbortMultipartUpload", s3_object(bucket, key))
    elif op in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
        action = "s3:ListBucketVersions" if op == "ListObjectVersions" else "s3:ListBucket"
        prefixes = concrete(names.get("Prefix", set()))
        for bucket in buckets:
            b.add(action, s3_bucket(bucket), why="list", context={"s3:prefix": prefixes} if prefixes else None)
    else:
        raise AnalysisError(f"s3.{op} is not modelled ({b.source})")


def _autoscaling_requests(b: RequestBuilder, op: str, kw: DictV, names: dict[str, set[str]]) -> None:
    target = f"arn:{PARTITION}:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/{WILD}"  # a random id
    b.add(f"application-autoscaling:{op}", target)
    resource_ids = concrete(names.get("ResourceId", {WILD}))
    namespaces = concrete(names.get("ServiceNamespace", {WILD}))
    if namespaces != ["sagemaker"]:
        raise AnalysisError(f"Application Auto Scaling for {namespaces} is not modelled ({b.source})")
    alarms = [f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:TargetTracking-{r}-{WILD}" for r in resource_ids]
    if op == "RegisterScalableTarget":
        for resource_id in resource_ids:
            endpoint = resource_id.split("/")[1] if resource_id.startswith("endpoint/") else WILD
            arn = f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:endpoint/{endpoint}"
            b.add("sagemaker:DescribeEndpoint", arn, why="aas-sagemaker")
            b.add("sagemaker:UpdateEndpointWeightsAndCapacities", arn, why="aas-sagemaker")
        b.add("iam:CreateServiceLinkedRole",
              f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
              "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint", why="aas-slr",
              context={"iam:AWSServiceName": ["sagemaker.application-autoscaling.amazonaws.com"]})
    elif op == "PutScalingPolicy":
        for alarm in alarms:
            b.add("cloudwatch:PutMetricAlarm", alarm, why="aas-alarms")
            b.add("cloudwatch:DescribeAlarms", alarm, why="aas-alarms")
    elif op == "DeregisterScalableTarget":
        for alarm in alarms:
            b.add("cloudwatch:DeleteAlarms", alarm, why="aas-alarms")
            b.add("cloudwatch:DescribeAlarms", alarm, why="aas-alarms")
    else:
        raise AnalysisError(f"application-autoscaling.{op} is not modelled ({b.source})")


def _sagemaker_requests(b: RequestBuilder, app: App, op: str, kw: DictV, names: dict[str, set[str]]) -> None:
    action = f"sagemaker:{op}"
    names = dict(names)
    for arn_param in ("ModelPackageArn", "ModelPackageName"):
        if arn_param in names:
            names["ModelPackageName"] = {_arn_part(a, "model-package/") for a in names[arn_param]}
    if op == "CreateModelPackage":
        names["ModelPackageName"] = {f"{g}/{WILD}" for g in names.get("ModelPackageGroupName", {WILD})}
    typed = [] if op.startswith("List") else b.typed_resources(action, names)
    for arn in [a for _, a in typed] or ["*"]:
        b.add(action, arn)
    if present(kw, "Tags"):  # the created resource: the type whose row lists sagemaker:AddTags
        for resource_type, arn in typed:
            if "sagemaker:AddTags" in sar().privilege(action)["resource_types"][resource_type]["dependent_actions"]:
                b.add("sagemaker:AddTags", arn, why="tags")
    for role_param in ("RoleArn", "ExecutionRoleArn"):
        for role in concrete(names.get(role_param, set())):
            b.add("iam:PassRole", role, why="pass-role", context={"iam:PassedToService": ["sagemaker.amazonaws.com"]})
    volume_keys = strings(paths(kw, "ProcessingResources", "ClusterConfig", "VolumeKmsKeyId")) | strings(
        paths(kw, "ResourceConfig", "VolumeKmsKeyId"))
    if op in ("CreateEndpoint", "UpdateEndpoint"):
        volume_keys |= set(app.endpoint_config_keys)
    b.key_use(volume_keys, ["kms:CreateGrant", "kms:DescribeKey"], "volume-key",
              context={"kms:GrantIsForAWSResource": ["true"]})
    if op == "UpdateEndpoint":
        for alarm in concrete(strings(paths(kw, "DeploymentConfig", "AutoRollbackConfiguration", "Alarms",
                                            "AlarmName"))):
            b.add("cloudwatch:DescribeAlarms", f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}",
                  why="rollback-alarms")
    if op == "DeleteEndpoint":
        b.add("application-autoscaling:DeregisterScalableTarget",
              f"arn:{PARTITION}:application-autoscaling:{REGION}:{ACCOUNT}:scalable-target/{WILD}",
              why="endpoint-scaling")


# -- what AWS services do on the stack's behalf ---------------------------------------------------------------------
SAGEMAKER_IMPLIED = {
    "image": "SageMaker pulls the image as the execution role: ecr:GetAuthorizationToken and the layer/image reads",
    "logs": "SageMaker writes the container's logs to /aws/sagemaker/<ProcessingJobs|TrainingJobs|Endpoints/name> "
            "as the execution role",
    "metrics": "SageMaker publishes the job's/endpoint's metrics to /aws/sagemaker/* as the execution role",
    "input": "an S3Prefix input: SageMaker lists the prefix (s3:prefix) and reads every object under it",
    "manifest": "a ManifestFile input: SageMaker reads the manifest, then each object it lists (its keys under the "
                "manifest's prefix element, as the code writes it)",
    "model": "ModelDataUrl: SageMaker reads the object (and checks the bucket's region)",
    "output": "an S3 output: SageMaker writes under the URI as the execution role",
    "bucket": "SageMaker checks an input/output bucket's region (s3:GetBucketLocation)",
    "sse-read": "inputs in an SSE-KMS bucket: kms:Decrypt on the bucket's key",
    "sse-write": "outputs to an SSE-KMS bucket: kms:GenerateDataKey on the bucket's key",
    "output-key": "an output KmsKeyId: SageMaker encrypts with it as the execution role (kms:Encrypt, "
                  "kms:GenerateDataKey)",
    "volume-key": "the volume key (VolumeKmsKeyId, an endpoint config's KmsKeyId): the execution role's grant "
                  "(kms:CreateGrant with GrantIsForAWSResource) after DescribeKey, as for the caller",
}


def sagemaker_service_requests(app: App, calls: list[Call]) -> list[Request]:
    """What SageMaker does as the execution roles for the jobs, models and endpoint configs the code creates."""
    requests: list[Request] = []
    creates = [c for c in calls if c.service == "sagemaker" and c.operation in (
        "CreateProcessingJob", "CreateTrainingJob", "CreateModel", "CreateEndpointConfig")]
    endpoints = {e for c in calls if c.service == "sagemaker" and c.operation == "CreateEndpoint"
                 for kw in c.kwargs for e in strings(paths(kw, "EndpointName"))}
    # An endpoint config's data capture and volume are the work of its models' execution role.
    model_roles = {r for c in creates if c.operation == "CreateModel" for kw in c.kwargs
                   for r in strings(paths(kw, "ExecutionRoleArn"))}
    for call in creates:
        for kw in call.kwargs:
            roles = model_roles if call.operation == "CreateEndpointConfig" else (
                strings(paths(kw, "RoleArn")) | strings(paths(kw, "ExecutionRoleArn")))
            for role in concrete(roles):
                b = RequestBuilder(app, role, f"SageMaker ({call.name})", call.location)
                _sagemaker_service(b, app, call.operation, kw, endpoints, calls)
                requests += b.requests
                if call.operation == "CreateProcessingJob":
                    b = RequestBuilder(app, role, f"the image ({call.name})", call.location)
                    _image_command(b, app, kw)
                    requests += b.requests
    return requests


# What the image's commands call themselves, as the job's role (their code is kedro_project/, not lambda/): the
# commands that parse uploads run network-isolated and call nothing; `track` talks to MLflow.
IMAGE = {
    "mlflow-api": "the image's `track` (kedro_project/src/ml_pipeline/tracking.py) calls the MLflow App's REST API "
                  "(experiments, runs, logged models, the registered model, its versions, tags and alias) through "
                  "the sagemaker-mlflow plugin, which signs every request for service `sagemaker` with the app's "
                  "ARN (MLFLOW_TRACKING_URI): authorised as sagemaker:CallMlflowAppApi on the app (the "
                  "sagemaker-mlflow:* actions are those of MLflow tracking servers)",
    "mlflow-artifacts": "MLflow's S3 artifact repository uploads the run's and the model's artifacts (log_artifact(s), "
                        "log_dict, sklearn.log_model) itself with the job's credentials, under the app's artifact "
                        "store (ArtifactStoreUri): s3:PutObject (multipart uploads above 8 MB too), "
                        "kms:GenerateDataKey, and kms:Decrypt for a multipart upload to an SSE-KMS bucket",
}


def _entrypoints(kw: DictV) -> set[str]:
    found: set[str] = set()
    for atom in paths(kw, "AppSpecification", "ContainerEntrypoint"):
        found |= strings(frozenset(atom.elements) if isinstance(atom, ListV) else frozenset({atom}))
    return found


def _image_command(b: RequestBuilder, app: App, kw: DictV) -> None:
    def add(action: str, resource: str, why: str) -> None:
        b.add(action, resource)
        b.requests[-1] = Request(**{**b.requests[-1].__dict__, "why": IMAGE[why]})

    if "track" not in _entrypoints(kw):
        return
    uris = concrete(strings(paths(kw, "Environment", "MLFLOW_TRACKING_URI")))
    if not uris:
        raise AnalysisError(f"{b.operation} ({b.source}): a track job without MLFLOW_TRACKING_URI")
    for uri in uris:
        if uri not in app.mlflow_apps:
            raise AnalysisError(f"{b.operation} ({b.source}): MLFLOW_TRACKING_URI {show(uri)} is no MLflow App of the "
                                "templates")
        add("sagemaker:CallMlflowAppApi", uri, "mlflow-api")
        bucket, key = parse_s3(app.mlflow_apps[uri][0])
        add("s3:PutObject", s3_object(bucket, squash(key + WILD)), "mlflow-artifacts")
        for key_arn in [k for k in [app.key_of(s3_bucket(bucket))] if k]:
            add("kms:GenerateDataKey", key_arn, "mlflow-artifacts")
            add("kms:Decrypt", key_arn, "mlflow-artifacts")


def dicts(kwargs: DictV, *path: str) -> list[DictV]:
    """The dicts at a path of nested dicts (lists are looked through)."""
    return [a for a in paths(kwargs, *path) if isinstance(a, DictV)]


def manifest_prefixes(uri: str, calls: list[Call]) -> set[str]:
    """The S3 prefixes a ManifestFile lists: the {"prefix": ...} element of what the code writes to it (PutObject
    of json.dumps([...]))."""
    bucket, key = parse_s3(uri)
    found: set[str] = set()
    for call in calls:
        if call.name != "s3.PutObject":
            continue
        for kw in call.kwargs:
            if any(patterns_overlap(b, bucket) for b in strings(paths(kw, "Bucket"))) and any(
                    patterns_overlap(k, key) for k in strings(paths(kw, "Key"))):
                for body in paths(kw, "Body"):
                    if isinstance(body, JsonV):
                        for element in body.value:
                            items = element.elements if isinstance(element, ListV) else {element}
                            found |= {p for d in items if isinstance(d, DictV) for p in strings(d.get("prefix") or ())}
    if not found:
        raise AnalysisError(f"the manifest {show(uri)} is written by no PutObject the analysis found (its prefix is "
                            "what SageMaker reads)")
    return found


def _sagemaker_service(b: RequestBuilder, app: App, op: str, kw: DictV, endpoints: set[str],
                       calls: list[Call]) -> None:
    def add(action: str, resource: str, why: str, context: Mapping[str, Iterable[str]] | None = None) -> None:
        b.add(action, resource, context=context)
        b.requests[-1] = Request(**{**b.requests[-1].__dict__, "why": SAGEMAKER_IMPLIED[why]})

    images = strings(paths(kw, "AppSpecification", "ImageUri")) | strings(
        paths(kw, "AlgorithmSpecification", "TrainingImage")) | strings(paths(kw, "PrimaryContainer", "Image"))
    if images:
        add("ecr:GetAuthorizationToken", "*", "image")
    for image in concrete(images):
        registry, _, repository = image.partition("/")
        repository = repository.split("@")[0].rsplit(":", 1)[0]
        region = registry.split(".")[3] if registry.count(".") >= 3 else WILD
        arn = f"arn:{PARTITION}:ecr:{region}:{registry.split('.')[0]}:repository/{repository}"
        for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"):
            add(action, arn, "image")
    groups = {"CreateProcessingJob": ["/aws/sagemaker/ProcessingJobs"], "CreateTrainingJob":
              ["/aws/sagemaker/TrainingJobs"], "CreateModel": [f"/aws/sagemaker/Endpoints/{e}" for e in endpoints],
              "CreateEndpointConfig": []}[op]
    for group in groups:
        log_group = f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{group}"
        add("logs:CreateLogGroup", log_group, "logs")
        add("logs:DescribeLogStreams", log_group, "logs")
        add("logs:CreateLogStream", f"{log_group}:log-stream:{WILD}", "logs")
        add("logs:PutLogEvents", f"{log_group}:log-stream:{WILD}", "logs")
        add("cloudwatch:PutMetricData", "*", "metrics",
            context={"cloudwatch:namespace": [group.rsplit("/", 1)[0] if "Endpoints/" in group else group]})

    def bucket_of(uri: str) -> str:
        bucket = s3_bucket(parse_s3(uri)[0])
        add("s3:GetBucketLocation", bucket, "bucket")
        return bucket

    def read_object(uri: str, why: str) -> None:
        bucket, key = parse_s3(uri)
        add("s3:GetObject", s3_object(bucket, key), why)
        for key_arn in [k for k in [app.key_of(bucket_of(uri))] if k]:
            add("kms:Decrypt", key_arn, "sse-read")

    def read_input(uri: str, data_type: set[str]) -> None:
        if data_type - {"S3Prefix", "ManifestFile"}:
            raise AnalysisError(f"{b.operation} ({b.source}): S3DataType {sorted(data_type)} is not modelled")
        if "S3Prefix" in data_type:
            add("s3:ListBucket", bucket_of(uri), "input", context={"s3:prefix": [parse_s3(uri)[1]]})
            read_object(squash(uri + WILD), "input")
        if "ManifestFile" in data_type:
            read_object(uri, "manifest")
            for prefix in concrete(manifest_prefixes(uri, calls)):
                read_object(squash(prefix + WILD), "manifest")

    def write_prefix(uri: str) -> None:
        bucket, key = parse_s3(uri)
        add("s3:PutObject", s3_object(bucket, squash(key + WILD)), "output")
        for key_arn in [k for k in [app.key_of(bucket_of(uri))] if k]:
            add("kms:GenerateDataKey", key_arn, "sse-write")

    sources = dicts(kw, "ProcessingInputs", "S3Input") + dicts(kw, "InputDataConfig", "DataSource", "S3DataSource")
    for source in sources:
        for uri in concrete(strings(source.get("S3Uri") or values(UNKNOWN))):
            read_input(uri, strings(source.get("S3DataType") or values("S3Prefix")))
    outputs = strings(paths(kw, "ProcessingOutputConfig", "Outputs", "S3Output", "S3Uri")) | strings(
        paths(kw, "OutputDataConfig", "S3OutputPath")) | strings(paths(kw, "DataCaptureConfig", "DestinationS3Uri"))
    for uri in concrete(outputs):
        write_prefix(uri)
    for uri in concrete(strings(paths(kw, "PrimaryContainer", "ModelDataUrl"))):
        read_object(uri, "model")
    output_keys = strings(paths(kw, "ProcessingOutputConfig", "KmsKeyId")) | strings(
        paths(kw, "OutputDataConfig", "KmsKeyId")) | strings(paths(kw, "DataCaptureConfig", "KmsKeyId"))
    for key_arn in concrete(output_keys):
        add("kms:Encrypt", key_arn, "output-key")
        add("kms:GenerateDataKey", key_arn, "output-key")
    volume_keys = strings(paths(kw, "ProcessingResources", "ClusterConfig", "VolumeKmsKeyId")) | strings(
        paths(kw, "ResourceConfig", "VolumeKmsKeyId")) | strings(paths(kw, "KmsKeyId"))
    for key_arn in concrete(volume_keys):
        add("kms:CreateGrant", key_arn, "volume-key", context={"kms:GrantIsForAWSResource": ["true"]})
        add("kms:DescribeKey", key_arn, "volume-key")


PLATFORM = {
    "logs": "Lambda writes the function's logs to its log group (CloudWatch Logs authorises both on the log "
            "stream: log-group:<name>:log-stream:<stream>)",
    "tracing": "active tracing: the X-Ray daemon sends segments and telemetry as the function (no resource-level "
               "permissions)",
    "destination": "an asynchronous invocation that fails ends in the on-failure destination, sent as the "
                   "function's role (sqs:SendMessage; an SSE-KMS queue: kms:GenerateDataKey, kms:Decrypt)",
    "logs-kms": "CloudWatch Logs encrypts a log group with its key (the service principal logs.<region>; the "
                "actions of CloudWatch Logs' documented key policy, with the log group in the encryption context)",
    "alarm-sns": "an alarm's SNS action: CloudWatch publishes as cloudwatch.amazonaws.com (aws:SourceArn = the "
                 "alarm); an encrypted topic's key must let it GenerateDataKey/Decrypt",
    "alarm-lambda": "an alarm's Lambda action: CloudWatch invokes as lambda.alarms.cloudwatch.amazonaws.com",
    "rule-lambda": "an EventBridge rule invokes its Lambda target as events.amazonaws.com (aws:SourceArn = rule)",
    "rule-sns": "an EventBridge rule publishes to its SNS target as events.amazonaws.com; for an encrypted topic "
                "the key must let EventBridge use it (without aws:Source* keys: EventBridge sends none to KMS)",
    "rule-dlq": "an EventBridge target's dead-letter queue: EventBridge sends as events.amazonaws.com "
                "(aws:SourceArn = rule); for an encrypted queue the key must let EventBridge use it",
    "apigw": "API Gateway's AWS integration calls SageMaker runtime as the integration's credentials role",
    "framework": "CDK's provider framework (framework.onEvent) invokes the on_event handler and reads its state",
    "access-logs": "S3 server access logging delivers a bucket's logs to its target bucket as logging.s3.amazonaws.com "
                   "(aws:SourceArn = the logged bucket) under the configured prefix",
    "mlflow-app": "an MLflow App uses its role (RoleArn: 'the role the app uses to access the artifact store') to "
                  "read artifacts for its UI and API (listing, downloads) and to write them (presigned uploads it hands "
                  "out), under its ArtifactStoreUri; an SSE-KMS bucket: kms:Decrypt and kms:GenerateDataKey",
}


def platform_requests(app: App) -> list[Request]:
    """What Lambda, CloudWatch, EventBridge and API Gateway do for the stack, from the templates."""
    out: list[Request] = []
    cfn = app.cfn

    def builder(principal: str, operation: str, source: str) -> RequestBuilder:
        return RequestBuilder(app, principal, operation, source)

    def add(b: RequestBuilder, action: str, resource: str, why: str, context: Mapping | None = None,
            tls: bool = True) -> None:
        b.add(action, resource, context=context, tls=tls)
        b.requests[-1] = Request(**{**b.requests[-1].__dict__, "why": PLATFORM[why]})

    for fn in app.functions:
        if fn.role_arn in app.unanalysed_roles:
            continue
        props = cfn.resource(fn.stack, fn.logical_id)["Properties"]
        b = builder(fn.role_arn, f"Lambda ({fn.name})", fn.path)
        group = props.get("LoggingConfig", {}).get("LogGroup")
        group_name = cfn.resolve(fn.stack, group) if group else f"/aws/lambda/{fn.name}"
        stream = f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{group_name}:log-stream:{WILD}"
        add(b, "logs:CreateLogStream", stream, "logs")
        add(b, "logs:PutLogEvents", stream, "logs")
        if props.get("TracingConfig", {}).get("Mode") == "Active":
            add(b, "xray:PutTraceSegments", "*", "tracing")
            add(b, "xray:PutTelemetryRecords", "*", "tracing")
        for stack, logical_id, config in cfn.resources("AWS::Lambda::EventInvokeConfig"):
            target = cfn.resolve(stack, config["Properties"]["FunctionName"])
            if target not in (fn.name, fn.arn):
                continue
            destination = config["Properties"].get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            if destination:
                queue = cfn.resolve(stack, destination)
                add(b, "sqs:SendMessage", queue, "destination")
                for key in [k for k in [app.key_of(queue)] if k]:
                    add(b, "kms:GenerateDataKey", key, "destination")
                    add(b, "kms:Decrypt", key, "destination")
        if fn.handler == "framework.onEvent":
            target = fn.env.get("USER_ON_EVENT_FUNCTION_ARN")
            if target:
                add(b, "lambda:InvokeFunction", target, "framework")
                add(b, "lambda:GetFunction", target, "framework")
        out += b.requests
    for stack, logical_id, group in cfn.resources("AWS::Logs::LogGroup"):
        arn = cfn.attribute(stack, logical_id, "Arn").removesuffix(":*")
        key = app.key_of(arn)
        if key:
            b = builder(f"logs.{REGION}.amazonaws.com", "CloudWatch Logs", cfn.path(stack, logical_id))
            for action in ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                           "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"):
                add(b, action, key, "logs-kms", context={"kms:EncryptionContext:aws:logs:arn": [arn]}, tls=False)
            out += b.requests
    for stack, logical_id, alarm in cfn.resources("AWS::CloudWatch::Alarm"):
        alarm_arn = cfn.attribute(stack, logical_id, "Arn")
        source = {"aws:SourceArn": [alarm_arn], "aws:SourceAccount": [ACCOUNT]}
        for action_arn in cfn.resolve(stack, alarm["Properties"].get("AlarmActions", [])):
            if ":sns:" in action_arn:
                b = builder("cloudwatch.amazonaws.com", f"CloudWatch alarm {alarm_arn.rsplit(':', 1)[1]}",
                            cfn.path(stack, logical_id))
                add(b, "sns:Publish", action_arn, "alarm-sns", context=source)
                for key in [k for k in [app.key_of(action_arn)] if k]:
                    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                        add(b, action, key, "alarm-sns", context={
                            **source, "kms:EncryptionContext:aws:sns:topicArn": [action_arn]}, tls=False)
                out += b.requests
            elif ":lambda:" in action_arn:
                b = builder("lambda.alarms.cloudwatch.amazonaws.com", f"CloudWatch alarm {alarm_arn.rsplit(':', 1)[1]}",
                            cfn.path(stack, logical_id))
                add(b, "lambda:InvokeFunction", action_arn, "alarm-lambda", context=source)
                out += b.requests
    for stack, logical_id, rule in app.rules:
        rule_arn = cfn.attribute(stack, logical_id, "Arn")
        source = {"aws:SourceArn": [rule_arn], "aws:SourceAccount": [ACCOUNT]}
        for target in rule["Properties"].get("Targets", []):
            b = builder("events.amazonaws.com", f"EventBridge rule {rule_arn.rsplit('/', 1)[1]}",
                        cfn.path(stack, logical_id))
            arn = cfn.resolve(stack, target["Arn"])
            if ":lambda:" in arn:
                add(b, "lambda:InvokeFunction", arn, "rule-lambda", context=source)
            elif ":sns:" in arn:
                add(b, "sns:Publish", arn, "rule-sns", context=source)
                for key in [k for k in [app.key_of(arn)] if k]:
                    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                        add(b, action, key, "rule-sns", tls=False)
            else:
                raise AnalysisError(f"EventBridge target {arn} is not modelled")
            dlq = target.get("DeadLetterConfig", {}).get("Arn")
            if dlq:
                queue = cfn.resolve(stack, dlq)
                add(b, "sqs:SendMessage", queue, "rule-dlq", context=source)
                for key in [k for k in [app.key_of(queue)] if k]:
                    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                        add(b, action, key, "rule-dlq", tls=False)
            out += b.requests
    for stack, logical_id, bucket in cfn.resources("AWS::S3::Bucket"):
        logging = bucket.get("Properties", {}).get("LoggingConfiguration")
        if logging:
            source = cfn.attribute(stack, logical_id, "Arn")
            b = builder("logging.s3.amazonaws.com", f"S3 access logs of {source}", cfn.path(stack, logical_id))
            target = cfn.resolve(stack, logging["DestinationBucketName"])
            prefix = cfn.resolve(stack, logging.get("LogFilePrefix", ""))
            add(b, "s3:PutObject", s3_object(target, squash(prefix + WILD)),
                "access-logs", context={"aws:SourceArn": [source], "aws:SourceAccount": [ACCOUNT]})
            out += b.requests
    for stack, logical_id, mlflow_app in cfn.resources("AWS::SageMaker::MlflowApp"):
        props = mlflow_app["Properties"]
        b = builder(cfn.resolve(stack, props["RoleArn"]), "SageMaker MLflow App", cfn.path(stack, logical_id))
        bucket, key = parse_s3(cfn.resolve(stack, props["ArtifactStoreUri"]))
        objects = s3_object(bucket, squash(key + WILD))
        add(b, "s3:GetObject", objects, "mlflow-app")
        add(b, "s3:PutObject", objects, "mlflow-app")
        add(b, "s3:ListBucket", s3_bucket(bucket), "mlflow-app", context={"s3:prefix": [squash(key + WILD)]})
        for key_arn in [k for k in [app.key_of(s3_bucket(bucket))] if k]:
            add(b, "kms:Decrypt", key_arn, "mlflow-app")
            add(b, "kms:GenerateDataKey", key_arn, "mlflow-app")
        out += b.requests
    for stack, logical_id, method in cfn.resources("AWS::ApiGateway::Method"):
        integration = method["Properties"].get("Integration", {})
        if integration.get("Type") != "AWS" or "Credentials" not in integration:
            continue
        uri = cfn.resolve(stack, integration["Uri"])
        match = re.search(r":runtime\.sagemaker:path/endpoints/([^/]+)/invocations$", uri)
        if not match:
            raise AnalysisError(f"API Gateway integration {uri} is not modelled")
        b = builder(cfn.resolve(stack, integration["Credentials"]), "API Gateway integration",
                    cfn.path(stack, logical_id))
        add(b, "sagemaker:InvokeEndpoint", f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:endpoint/{match.group(1)}",
            "apigw")
        out += b.requests
    return out
