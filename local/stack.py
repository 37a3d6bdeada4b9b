"""The embedded stack: synthesizes the CDK app and runs what its templates describe on one machine.

Everything created here is read from ``cdk.out`` through :mod:`local.cfn` — bucket and table names,
rule patterns and targets, function handlers and environment, alarm definitions, schedules. Nothing is
described a second time by hand.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import alarms as alarm_eval
from . import aws, cfn, events
from .endpoints import EndpointManager
from .functions import FunctionError, FunctionRegistry, FunctionSpec
from .jobs import ContainerRuntime, JobRunner
from .runtime import RuntimeServer
from .tls import ensure_certificates

log = logging.getLogger("local.stack")

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON_RUNTIME = re.compile(r"^python3(\.\d+)?$")

# Resource types the embedded stack does not emulate; their Refs resolve to placeholders so that
# templates referencing them still resolve, and they are listed in docs/local.md.
NOT_EMULATED_PREFIXES = ("AWS::ApiGateway::", "AWS::CDK::Metadata", "AWS::Logs::", "AWS::Lambda::Permission",
                         "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy", "AWS::KMS::Alias")


@dataclass
class Settings:
    state_dir: Path = field(default_factory=lambda: REPO_ROOT / ".local")
    cdk_out: Path = field(default_factory=lambda: REPO_ROOT / "cdk.out")
    context: list[str] = field(default_factory=list)  # "key=value" as given to -c
    region: str = field(default_factory=lambda: os.environ.get("LOCAL_REGION", "us-east-1"))
    aws_port: int = field(default_factory=lambda: int(os.environ.get("LOCAL_AWS_PORT", "0")))
    runtime_port: int = field(default_factory=lambda: int(os.environ.get("LOCAL_RUNTIME_PORT", "0")))
    image: str | None = field(default_factory=lambda: os.environ.get("MLOPS_IMAGE") or None)
    health_timeout: float = field(default_factory=lambda: float(os.environ.get("LOCAL_HEALTH_TIMEOUT", "120")))
    alarm_interval: float = field(default_factory=lambda: float(os.environ.get("LOCAL_ALARM_INTERVAL", "10")))
    synth: bool = True


class EmbeddedStack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.state_dir = settings.state_dir
        self.region = settings.region
        self.account = aws.ACCOUNT
        self.token = secrets.token_urlsafe(24)
        self.resolver = cfn.Resolver(self.account, self.region)
        self.stacks: list[cfn.StackTemplate] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.eventbridge_buckets: set[str] = set()
        self.alarm_defs: dict[str, alarm_eval.AlarmDefinition] = {}
        self.alarm_arns: dict[str, str] = {}
        self.alarm_states: dict[str, alarm_eval.Evaluation] = {}
        self.unsupported_alarms: dict[str, str] = {}
        self.schedules: list[events.Rule] = []
        self.not_emulated: list[str] = []
        self.queues: dict[str, str] = {}  # queue name -> url
        self._framework_functions: dict[str, dict[str, Any]] = {}
        self.s3_events: dict[str, dict[str, Any]] = {}
        self._alarm_lock = threading.Lock()
        self._event_queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._dispatching = 0
        self._dispatch_lock = threading.Lock()
        self._sequencer = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.aws_server: aws.AwsServer | None = None
        self.runtime: RuntimeServer | None = None
        self.functions: FunctionRegistry | None = None
        self.jobs: JobRunner | None = None
        self.endpoints: EndpointManager | None = None
        self.bus: events.EventBus | None = None
        self.started_at = 0.0

    # ------------------------------------------------------------------------------------------
    @property
    def aws_url(self) -> str:
        assert self.aws_server is not None
        return self.aws_server.url

    @property
    def runtime_url(self) -> str:
        assert self.runtime is not None
        return f"https://localhost:{self.runtime.port}"

    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def client(self, service: str) -> Any:
        return aws.client(service, self.aws_url, self.region)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        for sub in ("logs", "jobs", "endpoints"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        if self.settings.synth:
            synthesize(self.settings.cdk_out, self.settings.context, self.account, self.region,
                       self.state_dir / "logs" / "synth.log")
        self.stacks = cfn.load_assembly(self.settings.cdk_out)

        self.aws_server = aws.AwsServer(port=self.settings.aws_port)
        self.aws_server.start()
        base_env = {**aws.clean_environ(), **aws.client_environment(self.aws_url, self.region)}
        runtime = ContainerRuntime.detect(self.settings.image)
        self.container_runtime = runtime
        self.functions = FunctionRegistry(base_env, self.state_dir / "logs" / "lambda", self._function_failed)
        self.bus = events.EventBus(self._deliver, journal=self.state_dir / "logs" / "events.jsonl")
        self.jobs = JobRunner(self.region, self.aws_url, self.state_dir / "jobs", runtime, self.emit, base_env)
        self.endpoints = EndpointManager(self.region, self.aws_url, self.state_dir / "endpoints", runtime, self.emit,
                                         base_env, health_timeout=self.settings.health_timeout,
                                         alarm_state=self.alarm_state)
        aws.HOOKS.sagemaker = _SageMakerHooks(self.jobs, self.endpoints)
        aws.HOOKS.object_created = self._object_created
        aws.HOOKS.sns_published = self._sns_published

        self._thread(self._dispatch_loop, "event-dispatch")
        tls = ensure_certificates(self.state_dir / "tls")
        self.runtime = RuntimeServer(self.endpoints, tls.server_context(), port=self.settings.runtime_port,
                                     account=self.account, region=self.region, control=self._control,
                                     control_token=self.token)
        self.runtime.start()

        for stack in self.stacks:
            self.resolver.add_stack(stack)
            self._provision(stack)
            self.outputs[stack.name] = self.resolver.publish_outputs(stack)
        self._complete_outputs()
        self._write_state()
        self._thread(self._alarm_loop, "alarm-evaluator")
        self._thread(self._schedule_loop, "scheduler")

    def stop(self) -> None:
        self._stop.set()
        self._event_queue.put(None)
        if self.endpoints is not None:
            self.endpoints.stop()
        if self.jobs is not None:
            self.jobs.stop_all()
        if self.functions is not None:
            self.functions.stop()
        if self.runtime is not None:
            self.runtime.stop()
        if self.aws_server is not None:
            self.aws_server.stop()
        aws.HOOKS.sagemaker = None
        aws.HOOKS.object_created = None
        aws.HOOKS.sns_published = None
        state = self.state_dir / "state.json"
        if state.exists():
            try:
                if json.loads(state.read_text()).get("pid") == os.getpid():
                    state.unlink()
            except ValueError:
                pass

    def _thread(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- provisioning from the templates ------------------------------------------------------
    def _provision(self, stack: cfn.StackTemplate) -> None:
        resources = stack.resources
        order = _creation_order(resources)
        for logical_id in order:
            resource = resources[logical_id]
            if not self.resolver.resource_enabled(stack.name, resource):
                continue
            rtype = resource["Type"]
            try:
                self._create(stack, logical_id, resource)
            except cfn.UnresolvedReference as exc:
                log.warning("%s/%s (%s) not created: %s", stack.name, logical_id, rtype, exc)
                self.not_emulated.append(f"{stack.name}/{logical_id} ({rtype}): {exc}")

    def _create(self, stack: cfn.StackTemplate, logical_id: str, resource: dict[str, Any]) -> None:
        s = stack.name
        rtype = resource["Type"]
        props = self.resolver.resolve(s, resource.get("Properties", {})) or {}
        name = None
        if rtype not in ("AWS::KMS::Key",) and not rtype.startswith("Custom::") and \
                rtype != "AWS::CloudFormation::CustomResource":
            name = self.resolver.default_name(s, logical_id, resource)
        arn = self.resolver.arn
        if rtype == "AWS::KMS::Key":
            key = self.client("kms").create_key(Description=props.get("Description", logical_id))["KeyMetadata"]
            if props.get("EnableKeyRotation"):
                self.client("kms").enable_key_rotation(KeyId=key["KeyId"])
            self.resolver.register(s, logical_id, key["KeyId"], Arn=key["Arn"], KeyId=key["KeyId"])
        elif rtype == "AWS::KMS::Alias":
            self.client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
            self.resolver.register(s, logical_id, props["AliasName"])
        elif rtype == "AWS::S3::Bucket":
            self._create_bucket(name, props)
            self.resolver.register(s, logical_id, name, Arn=f"arn:aws:s3:::{name}",
                                   DomainName=f"{name}.s3.amazonaws.com",
                                   RegionalDomainName=f"{name}.s3.{self.region}.amazonaws.com",
                                   WebsiteURL=f"http://{name}.s3-website-{self.region}.amazonaws.com")
        elif rtype == "AWS::S3::BucketPolicy":
            # Not applied: moto evaluates a Deny with a condition (the TLS-only statement) as an
            # unconditional Deny, which would refuse every request. Listed in docs/local.md.
            self.not_emulated.append(f"{s}/{logical_id} (AWS::S3::BucketPolicy on {props['Bucket']}: not enforced)")
            self.resolver.register(s, logical_id, props["Bucket"])
        elif rtype == "AWS::DynamoDB::Table":
            self._create_table(name, props)
            self.resolver.register(s, logical_id, name, Arn=arn("dynamodb", f"table/{name}"),
                                   StreamArn=arn("dynamodb", f"table/{name}/stream/local"))
        elif rtype == "AWS::SNS::Topic":
            attributes = {k: str(v) for k, v in {"KmsMasterKeyId": props.get("KmsMasterKeyId"),
                                                 "DisplayName": props.get("DisplayName")}.items() if v}
            topic_arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
            self.resolver.register(s, logical_id, topic_arn, TopicArn=topic_arn, TopicName=name)
        elif rtype == "AWS::SNS::Subscription":
            self.client("sns").subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                                         Endpoint=props.get("Endpoint", ""))
            self.resolver.register(s, logical_id, f"{props['TopicArn']}:{logical_id}")
        elif rtype == "AWS::SQS::Queue":
            url = self.client("sqs").create_queue(QueueName=name)["QueueUrl"]
            self.queues[name] = url
            self.resolver.register(s, logical_id, url, Arn=arn("sqs", name), QueueName=name, QueueUrl=url)
        elif rtype == "AWS::IAM::Role":
            iam = self.client("iam")
            role = iam.create_role(RoleName=name, Path=props.get("Path", "/"),
                                   AssumeRolePolicyDocument=json.dumps(props.get("AssumeRolePolicyDocument", {})))["Role"]
            for policy in props.get("Policies", []) or []:
                iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                                    PolicyDocument=json.dumps(policy["PolicyDocument"]))
            self.resolver.register(s, logical_id, name, Arn=role["Arn"], RoleId=role["RoleId"])
        elif rtype == "AWS::IAM::Policy":
            for role in props.get("Roles", []) or []:
                self.client("iam").put_role_policy(RoleName=role, PolicyName=props["PolicyName"],
                                                   PolicyDocument=json.dumps(props["PolicyDocument"]))
            self.resolver.register(s, logical_id, name)
        elif rtype == "AWS::Lambda::Function":
            self._create_function(stack, logical_id, resource, props, name)
        elif rtype in ("AWS::Lambda::Version", "AWS::Lambda::Alias"):
            # Every qualifier runs the one local copy of the function (there is no older code to run);
            # only the ARNs that event sources and alarms invoke need to exist.
            assert self.functions is not None
            fn = self.functions.lookup(props["FunctionName"])
            if fn is None:
                raise cfn.UnresolvedReference(f"{props['FunctionName']} is not a function of this stack")
            if rtype == "AWS::Lambda::Version":
                self.resolver.register(s, logical_id, f"{fn.spec.arn}:1", Version="1", FunctionArn=fn.spec.arn)
            else:
                self.resolver.register(s, logical_id, f"{fn.spec.arn}:{props['Name']}", AliasArn=f"{fn.spec.arn}:{props['Name']}")
        elif rtype == "AWS::Lambda::EventInvokeConfig":
            assert self.functions is not None
            fn = self.functions.lookup(props["FunctionName"])
            if fn is not None:
                fn.spec.max_retries = int(props.get("MaximumRetryAttempts", 2))
                fn.spec.max_event_age = int(props.get("MaximumEventAgeInSeconds", 21600))
                on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                fn.spec.failure_destination = on_failure or fn.spec.failure_destination
            self.resolver.register(s, logical_id, name)
        elif rtype == "AWS::Events::Rule":
            self._create_rule(stack, logical_id, props, name)
        elif rtype == "AWS::CloudWatch::Alarm":
            self._create_alarm(s, logical_id, props, name)
        elif rtype == "AWS::CloudWatch::Dashboard":
            self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=props.get("DashboardBody", "{}"))
            self.resolver.register(s, logical_id, name)
        elif rtype == "AWS::SageMaker::ModelPackageGroup":
            group = self.client("sagemaker").create_model_package_group(
                ModelPackageGroupName=name, ModelPackageGroupDescription=props.get("ModelPackageGroupDescription", ""))
            self.resolver.register(s, logical_id, group["ModelPackageGroupArn"],
                                   ModelPackageGroupArn=group["ModelPackageGroupArn"])
        elif rtype.startswith("Custom::") or rtype == "AWS::CloudFormation::CustomResource":
            self._custom_resource(stack, logical_id, resource, props)
        else:
            if not rtype.startswith(NOT_EMULATED_PREFIXES):
                log.info("%s/%s: %s is not emulated", s, logical_id, rtype)
            self.not_emulated.append(f"{s}/{logical_id} ({rtype})")
            # A placeholder keeps references to it resolvable (e.g. the API's URL in an output).
            placeholder = name or logical_id
            if rtype == "AWS::ApiGateway::RestApi":
                placeholder = cfn.cfn_physical_name(s, logical_id).rsplit("-", 1)[1].lower()[:10]
            self.resolver.register(s, logical_id, placeholder,
                                   Arn=arn(rtype.split("::")[1].lower(), placeholder),
                                   RootResourceId=f"{placeholder[:6]}root")

    def _create_bucket(self, name: str, props: dict[str, Any]) -> None:
        s3 = self.client("s3")
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        s3.create_bucket(**kwargs)
        if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if props.get("BucketEncryption"):
            rules = []
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]:
                api_rule = {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                if "BucketKeyEnabled" in rule:
                    api_rule["BucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
                rules.append(api_rule)
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if props.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(Bucket=name,
                                       PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
        notification = props.get("NotificationConfiguration") or {}
        if (notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
            self.eventbridge_buckets.add(name)

    def _create_table(self, name: str, props: dict[str, Any]) -> None:
        ddb = self.client("dynamodb")
        kwargs: dict[str, Any] = {
            "TableName": name, "KeySchema": props["KeySchema"], "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if kwargs["BillingMode"] == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props.get("ProvisionedThroughput",
                                                        {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
            if props.get(key):
                kwargs[key] = props[key]
        if "StreamSpecification" in kwargs:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **kwargs["StreamSpecification"]}
        ddb.create_table(**kwargs)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": ttl["AttributeName"]})

    def _create_function(self, stack: cfn.StackTemplate, logical_id: str, resource: dict[str, Any],
                         props: dict[str, Any], name: str) -> None:
        fn_arn = self.resolver.arn("lambda", f"function:{name}")
        self.resolver.register(stack.name, logical_id, name, Arn=fn_arn)
        runtime = str(props.get("Runtime", ""))
        if not PYTHON_RUNTIME.match(runtime):
            # CDK's own framework functions (Node.js) are not run; their custom resources are handled here.
            self.not_emulated.append(f"{stack.name}/{logical_id} (Lambda {runtime} {props.get('Handler')})")
            self._framework_functions[fn_arn] = props
            return
        asset = (resource.get("Metadata") or {}).get("aws:asset:path")
        code_dir = (stack.path.parent / asset) if asset else REPO_ROOT / "lambda"
        if not code_dir.is_dir():
            code_dir = REPO_ROOT / "lambda"
        dead_letter = (props.get("DeadLetterConfig") or {}).get("TargetArn")
        spec = FunctionSpec(
            name=name, arn=fn_arn, handler=props["Handler"], code_dir=code_dir,
            environment={k: str(v) for k, v in ((props.get("Environment") or {}).get("Variables") or {}).items()},
            timeout=int(props.get("Timeout", 3)), memory=int(props.get("MemorySize", 128)), runtime=runtime,
            failure_destination=dead_letter, logical_id=logical_id, stack=stack.name,
        )
        assert self.functions is not None
        self.functions.add(spec)

    def _create_rule(self, stack: cfn.StackTemplate, logical_id: str, props: dict[str, Any], name: str) -> None:
        rule_arn = self.resolver.arn("events", f"rule/{name}")
        self.resolver.register(stack.name, logical_id, name, Arn=rule_arn)
        targets = []
        for t in props.get("Targets", []) or []:
            retry = t.get("RetryPolicy") or {}
            targets.append(events.Target(
                arn=t["Arn"], target_id=t["Id"], input=t.get("Input"), input_path=t.get("InputPath"),
                input_transformer=t.get("InputTransformer"), max_event_age=retry.get("MaximumEventAgeInSeconds"),
                max_retries=retry.get("MaximumRetryAttempts"),
                dead_letter_arn=(t.get("DeadLetterConfig") or {}).get("Arn")))
        rule = events.Rule(name=name, arn=rule_arn, pattern=props.get("EventPattern"),
                           schedule=props.get("ScheduleExpression"), targets=targets,
                           enabled=props.get("State", "ENABLED") == "ENABLED",
                           bus=props.get("EventBusName", "default"))
        # Also registered in moto's EventBridge so `aws events list-rules` shows what runs.
        kwargs: dict[str, Any] = {"Name": name, "State": props.get("State", "ENABLED")}
        if rule.pattern is not None:
            kwargs["EventPattern"] = json.dumps(rule.pattern)
        if rule.schedule:
            kwargs["ScheduleExpression"] = rule.schedule
        try:
            self.client("events").put_rule(**kwargs)
            if targets:
                self.client("events").put_targets(Rule=name, Targets=[{"Id": t.target_id, "Arn": t.arn} for t in targets])
        except Exception as exc:  # moto validation differences must not stop the stack
            log.warning("moto EventBridge rejected rule %s: %s", name, exc)
        assert self.bus is not None
        if rule.pattern is not None:
            self.bus.add_rule(rule)
        if rule.schedule and rule.enabled:
            self.schedules.append(rule)

    def _create_alarm(self, stack: str, logical_id: str, props: dict[str, Any], name: str) -> None:
        props = {**props, "AlarmName": name}
        alarm_arn = self.resolver.arn("cloudwatch", f"alarm:{name}")
        self.resolver.register(stack, logical_id, name, Arn=alarm_arn)
        api_props = {k: v for k, v in props.items() if k not in ("Tags",)}
        if "Dimensions" in api_props:
            api_props["Dimensions"] = [{"Name": d["Name"], "Value": str(d["Value"])} for d in api_props["Dimensions"]]
        self.client("cloudwatch").put_metric_alarm(**api_props)
        try:
            definition = alarm_eval.AlarmDefinition.from_properties(props)
        except alarm_eval.UnsupportedAlarm as exc:
            self.unsupported_alarms[name] = str(exc)
            return
        self.alarm_defs[name] = definition
        self.alarm_arns[name] = alarm_arn
        self.alarm_states[name] = alarm_eval.Evaluation("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")

    def _custom_resource(self, stack: cfn.StackTemplate, logical_id: str, resource: dict[str, Any],
                         props: dict[str, Any]) -> None:
        token = props.get("ServiceToken", "")
        assert self.functions is not None
        target = self.functions.lookup(token)
        if target is None and token in self._framework_functions:
            user = ((self._framework_functions[token].get("Environment") or {}).get("Variables") or {}).get(
                "USER_ON_EVENT_FUNCTION_ARN")
            target = self.functions.lookup(user) if user else None
        if target is None:
            # e.g. Custom::S3AutoDeleteObjects (Node.js, acts only on stack delete).
            self.not_emulated.append(f"{stack.name}/{logical_id} ({resource['Type']})")
            self.resolver.register(stack.name, logical_id, f"{logical_id}-local")
            return
        request = {
            "RequestType": "Create", "ServiceToken": token, "ResponseURL": "", "StackId":
                self.resolver.arn("cloudformation", f"stack/{stack.name}/local"),
            "RequestId": secrets.token_hex(16), "LogicalResourceId": logical_id, "ResourceType": resource["Type"],
            "ResourceProperties": {k: v for k, v in props.items()},
        }
        try:
            result = target.invoke(request, source="cloudformation") or {}
        except FunctionError as exc:
            raise RuntimeError(f"custom resource {stack.name}/{logical_id} failed to create: {exc}") from exc
        data = result.get("Data") or {}
        self.resolver.register(stack.name, logical_id, result.get("PhysicalResourceId") or request["RequestId"], **data)

    def _complete_outputs(self) -> None:
        """outputs.json in ``cdk deploy --outputs-file`` shape, plus how to reach the local APIs."""
        assert self.functions is not None
        env = next((f.spec.environment for f in self.functions.by_name.values()
                    if "DATA_BUCKET" in f.spec.environment), {})
        local = {
            "AwsEndpointUrl": self.aws_url,
            "RuntimeEndpointUrl": self.runtime_url,
            "RuntimeCaBundle": str(self.ca_bundle),
            "Region": self.region,
        }
        derived = {"DataBucketName": env.get("DATA_BUCKET"), "ArtifactsBucketName": env.get("ARTIFACTS_BUCKET"),
                   "EndpointName": env.get("ENDPOINT_NAME"), "LedgerTableName": env.get("LEDGER_TABLE"),
                   "NotificationTopicArn": env.get("NOTIFY_TOPIC_ARN")}
        for outputs in self.outputs.values():
            outputs.update(local)
        # Older templates may lack an output the docs promise: fall back to the functions' environment.
        first = next(iter(self.outputs.values()), None)
        for key, value in derived.items():
            if value and first is not None and not any(key in o for o in self.outputs.values()):
                first[key] = value
        path = self.state_dir / "outputs.json"
        path.write_text(json.dumps(self.outputs, indent=2) + "\n")

    def output(self, key: str) -> Any:
        for outputs in self.outputs.values():
            if key in outputs:
                return outputs[key]
        raise KeyError(key)

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(), "aws_url": self.aws_url, "runtime_url": self.runtime_url,
            "control_token": self.token, "ca_bundle": str(self.ca_bundle), "region": self.region,
            "container_runtime": self.container_runtime.describe(), "started_at": self.started_at,
            "functions": {f.spec.handler: {"name": f.spec.name, "environment": f.spec.environment}
                          for f in self.functions.by_name.values()} if self.functions else {},
        }
        path = self.state_dir / "state.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)

    # -- events -------------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Queue an AWS event for EventBridge (delivered in order by one dispatcher, like a bus)."""
        with self._dispatch_lock:
            self._dispatching += 1
        self._event_queue.put(event)

    def _dispatch_loop(self) -> None:
        while True:
            event = self._event_queue.get()
            if event is None:
                return
            try:
                assert self.bus is not None
                matched = self.bus.put(event)
                if matched:
                    self._put_metrics("AWS/Events", [
                        {"MetricName": "TriggeredRules", "Value": 1.0, "Unit": "Count",
                         "Dimensions": [{"Name": "RuleName", "Value": name}]} for name in matched])
            except Exception:
                log.exception("event dispatch failed")
            finally:
                with self._dispatch_lock:
                    self._dispatching -= 1

    def _deliver(self, target: events.Target, payload: Any, event: dict[str, Any], rule: events.Rule) -> None:
        assert self.functions is not None
        if ":lambda:" in target.arn or ":function:" in target.arn:
            fn = self.functions.lookup(target.arn)
            if fn is None:
                log.warning("rule %s: target %s is not a function of this stack", rule.name, target.arn)
                return
            fn.invoke_async(payload, source=f"rule:{rule.name}")
        elif ":sns:" in target.arn:
            self.client("sns").publish(TopicArn=target.arn, Message=json.dumps(payload))
        elif ":sqs:" in target.arn:
            url = self.queues.get(target.arn.rsplit(":", 1)[-1])
            if url:
                self.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(payload))
        else:
            log.warning("rule %s: target type of %s is not emulated", rule.name, target.arn)

    def _object_created(self, account: str, event_name: str, bucket: Any, key: Any) -> None:
        if bucket.name not in self.eventbridge_buckets:
            return
        with self._dispatch_lock:
            self._sequencer += 1
            sequencer = f"{int(time.time() * 1000):012X}{self._sequencer:06X}"
        self.emit(self._remember(key.name, events.s3_object_created(
            bucket=bucket.name, key=key.name, size=int(key.size), etag=key.etag, version_id=key.version_id,
            reason=events.S3_REASONS.get(event_name, "PutObject"), account=self.account, region=self.region,
            sequencer=sequencer)))

    def _remember(self, key: str, event: dict[str, Any]) -> dict[str, Any]:
        with self._dispatch_lock:
            self.s3_events[key] = event
        return event

    def redeliver(self, key: str) -> int:
        """Deliver the last S3 event for ``key`` again, unchanged: S3 delivers events at least once."""
        with self._dispatch_lock:
            event = self.s3_events.get(key)
        if event is None:
            return 0
        self.emit(event)
        return 1

    def _sns_published(self, topic_arn: str, message: str, subject: str | None) -> None:
        path = self.state_dir / "logs" / "sns.log"
        entry = {"time": datetime.now(timezone.utc).isoformat(), "topic": topic_arn, "subject": subject,
                 "message": message}
        with self._dispatch_lock, path.open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _function_failed(self, spec: FunctionSpec, event: Any, exc: FunctionError) -> None:
        """Lambda's on-failure destination: the invocation record goes to the SQS queue/SNS topic."""
        record = {
            "version": "1.0", "timestamp": datetime.now(timezone.utc).isoformat(),
            "requestContext": {"requestId": secrets.token_hex(16), "functionArn": f"{spec.arn}:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": spec.max_retries + 1},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": exc.error,
        }
        with self._dispatch_lock, (self.state_dir / "logs" / "dead-letters.jsonl").open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        destination = spec.failure_destination or ""
        try:
            if ":sqs:" in destination:
                url = self.queues.get(destination.rsplit(":", 1)[-1])
                if url:
                    self.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))
            elif ":sns:" in destination:
                self.client("sns").publish(TopicArn=destination, Message=json.dumps(record, default=str))
        except Exception:
            log.exception("sending %s's failed event to %s failed", spec.name, destination)

    def _put_metrics(self, namespace: str, data: list[dict[str, Any]]) -> None:
        try:
            self.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)
        except Exception:
            log.exception("put_metric_data %s failed", namespace)

    # -- alarms -------------------------------------------------------------------------------
    def alarm_state(self, name: str) -> str:
        with self._alarm_lock:
            state = self.alarm_states.get(name)
        return state.state if state else "INSUFFICIENT_DATA"

    def _publish_queue_metrics(self) -> None:
        """AWS/SQS metrics CloudWatch would have for the stack's queues (the dead-letter alarm reads them)."""
        for name, url in self.queues.items():
            try:
                attrs = self.client("sqs").get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            except Exception:
                continue
            self._put_metrics("AWS/SQS", [{"MetricName": "ApproximateNumberOfMessagesVisible",
                                           "Value": float(attrs.get("ApproximateNumberOfMessages", 0)),
                                           "Dimensions": [{"Name": "QueueName", "Value": name}]}])

    def evaluate_alarms(self, now: datetime | None = None) -> dict[str, str]:
        """One evaluation tick over every alarm; fires actions on state transitions."""
        now = now or datetime.now(timezone.utc)
        self._publish_queue_metrics()
        backend = aws.cloudwatch_backend(self.region)
        wanted = {(d.namespace, d.metric_name): max(d.period * (d.evaluation_periods + 1), 3600)
                  for d in self.alarm_defs.values()}
        by_metric: dict[tuple[str, str], list[alarm_eval.Datapoint]] = {}
        for m in list(backend.metric_data):
            key = (m.namespace, m.name)
            if key in wanted:
                point = _datapoint(m)
                if (now - point.timestamp).total_seconds() <= wanted[key]:
                    by_metric.setdefault(key, []).append(point)
        transitions = []
        with self._alarm_lock:
            for name, definition in self.alarm_defs.items():
                points = by_metric.get((definition.namespace, definition.metric_name), [])
                previous = self.alarm_states[name]
                result = alarm_eval.evaluate(definition, points, now, previous.state)
                self.alarm_states[name] = result
                if result.state != previous.state:
                    transitions.append((definition, previous, result))
        for definition, previous, result in transitions:
            log.info("alarm %s: %s -> %s", definition.name, previous.state, result.state)
            self.client("cloudwatch").set_alarm_state(AlarmName=definition.name, StateValue=result.state,
                                                      StateReason=result.reason[:1023],
                                                      StateReasonData=json.dumps(result.reason_data))
            self._fire_actions(definition, previous, result, now)
        return {name: state.state for name, state in self.alarm_states.items()}

    def _fire_actions(self, definition: alarm_eval.AlarmDefinition, previous: alarm_eval.Evaluation,
                      result: alarm_eval.Evaluation, now: datetime) -> None:
        assert self.functions is not None
        alarm_arn = self.alarm_arns[definition.name]
        for action in definition.actions_for(result.state):
            if ":lambda:" in action:
                fn = self.functions.lookup(action)
                if fn is None:
                    log.warning("alarm %s: action %s is not a function of this stack", definition.name, action)
                    continue
                fn.invoke_async(alarm_eval.lambda_action_payload(definition, alarm_arn, self.account, self.region,
                                                                 result, previous, now),
                                source=f"alarm:{definition.name}")
            elif ":sns:" in action:
                message = alarm_eval.sns_message(definition, alarm_arn, self.account, self.region, result,
                                                 previous, now)
                subject = f'{result.state}: "{definition.name}" in {self.region}'
                self.client("sns").publish(TopicArn=action, Message=json.dumps(message), Subject=subject[:100])
            else:
                log.info("alarm %s: action %s is not emulated", definition.name, action)

    def _alarm_loop(self) -> None:
        while not self._stop.wait(self.settings.alarm_interval):
            try:
                self.evaluate_alarms()
            except Exception:
                log.exception("alarm evaluation failed")

    # -- schedules ----------------------------------------------------------------------------
    def fire_schedule(self, rule_name: str | None = None) -> list[str]:
        assert self.bus is not None
        fired = []
        for rule in self.schedules:
            if rule_name in (None, rule.name):
                self.bus.fire_schedule(rule, self.account, self.region)
                fired.append(rule.name)
        return fired

    def _schedule_loop(self) -> None:
        next_fire: dict[str, float] = {}
        for rule in self.schedules:
            interval = schedule_interval(rule.schedule or "")
            if interval is None:
                log.warning("schedule %s (%s) is not run locally (only rate() is)", rule.name, rule.schedule)
            else:
                next_fire[rule.name] = time.time() + interval
        while not self._stop.wait(1.0):
            for rule in self.schedules:
                due = next_fire.get(rule.name)
                if due is not None and time.time() >= due:
                    self.fire_schedule(rule.name)
                    next_fire[rule.name] = due + (schedule_interval(rule.schedule or "") or 0)

    # -- quiescence & control -----------------------------------------------------------------
    def busy(self) -> dict[str, bool]:
        with self._dispatch_lock:
            dispatching = self._dispatching > 0
        return {
            "events": dispatching,
            "functions": bool(self.functions and self.functions.busy),
            "jobs": bool(self.jobs and self.jobs.busy),
            "endpoints": bool(self.endpoints and self.endpoints.busy),
        }

    def wait_idle(self, timeout: float = 300.0, settle: float = 0.5) -> bool:
        """True once no event, invocation, job or deployment is in flight (stable for ``settle`` s)."""
        deadline = time.time() + timeout
        quiet_since = None
        while time.time() < deadline:
            if any(self.busy().values()):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.time()
            elif time.time() - quiet_since >= settle:
                return True
            time.sleep(0.1)
        return False

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        args = json.loads(body or b"{}") if body else {}
        if method == "POST" and path == "/_local/alarms/evaluate":
            at = args.get("at")
            now = datetime.fromisoformat(at) if at else None
            return 200, {"alarms": self.evaluate_alarms(now)}
        if method == "POST" and path == "/_local/schedules/fire":
            return 200, {"fired": self.fire_schedule(args.get("rule"))}
        if method == "POST" and path == "/_local/events/redeliver":
            return 200, {"redelivered": self.redeliver(str(args.get("key", "")))}
        if method == "POST" and path == "/_local/functions/invoke":
            # `aws lambda invoke` (a manual retrain) is not routed to these functions: this is its stand-in.
            name = str(args.get("function", ""))
            fn = self.functions.lookup(name.split(":")[0] if ":function:" not in name else name) if self.functions else None
            if fn is None:
                return 404, {"error": f"no function {args.get('function')!r}"}
            try:
                return 200, {"result": fn.invoke(args.get("payload") or {}, source="manual")}
            except FunctionError as exc:
                return 200, {"error": exc.error}
        if method == "POST" and path == "/_local/idle":
            return 200, {"idle": self.wait_idle(float(args.get("timeout", 120))), "busy": self.busy()}
        if method == "GET" and path == "/_local/state":
            assert self.endpoints is not None and self.functions is not None
            return 200, {
                "busy": self.busy(),
                "alarms": {n: s.state for n, s in self.alarm_states.items()},
                "unsupported_alarms": self.unsupported_alarms,
                "endpoints": self.endpoints.live_configs(),
                "invocations": {f.spec.handler: f.invocations for f in self.functions.by_name.values()},
                "not_emulated": self.not_emulated,
            }
        return 404, {"error": f"no control operation {method} {path}"}


class _SageMakerHooks:
    def __init__(self, jobs: JobRunner, endpoints: EndpointManager):
        self.jobs = jobs
        self.endpoints = endpoints

    def training_job_created(self, name: str) -> None:
        self.jobs.training_job_created(name)

    def processing_job_created(self, name: str) -> None:
        self.jobs.processing_job_created(name)

    def training_job_stop_requested(self, name: str) -> None:
        self.jobs.stop_requested(name)

    def processing_job_stop_requested(self, name: str) -> None:
        self.jobs.stop_requested(name)

    def endpoint_created(self, name: str) -> None:
        self.endpoints.endpoint_created(name)

    def endpoint_updated(self, name: str, new_config: str, retain: bool, deployment_config: Any) -> None:
        self.endpoints.endpoint_updated(name, new_config, retain, deployment_config)

    def endpoint_deleted(self, name: str) -> None:
        self.endpoints.endpoint_deleted(name)


def _datapoint(metric: Any) -> alarm_eval.Datapoint:
    ts = metric.timestamp
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    dims = tuple(sorted((d.name, str(d.value)) for d in metric.dimensions))
    if hasattr(metric, "value"):
        return alarm_eval.Datapoint(ts, dims, value=float(metric.value), unit=metric.unit)
    return alarm_eval.Datapoint(ts, dims, sample_count=float(metric.sample_count), total=float(metric.sum),
                                minimum=float(metric.min), maximum=float(metric.max), unit=metric.unit)


def _creation_order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Topological order over Ref/GetAtt/Sub/DependsOn, like CloudFormation's."""
    deps: dict[str, set[str]] = {}
    for logical_id, resource in resources.items():
        found = cfn.references(resource.get("Properties", {}))
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


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")


def schedule_interval(expression: str) -> float | None:
    match = _RATE.match(expression.strip())
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2)
    return n * {"minute": 60, "hour": 3600, "day": 86400}[unit.rstrip("s")]


def synthesize(out_dir: Path, context: list[str], account: str, region: str, log_path: Path) -> None:
    """``cdk synth`` with the pinned CLI; context passes through exactly as ``cdk deploy -c`` takes it."""
    cdk = REPO_ROOT / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        raise RuntimeError(f"{cdk} is missing: run `make install` (npm ci) first")
    cmd = [str(cdk), "synth", "--quiet", "-o", str(out_dir)]
    for item in context:
        cmd += ["-c", item]
    env = {**aws.clean_environ(),
           "CDK_DEFAULT_ACCOUNT": account, "CDK_DEFAULT_REGION": region,
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1", "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
           "CDK_DISABLE_VERSION_CHECK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(var, None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    started = time.time()
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    log_path.write_text(result.stdout + result.stderr)
    manifest = out_dir / "manifest.json"
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        if not manifest.exists() or os.environ.get("LOCAL_STRICT_SYNTH", "1") == "1":
            raise RuntimeError(f"cdk synth failed (exit {result.returncode}); see {log_path}:\n{tail}")
    log.info("synthesized in %.1f s", time.time() - started)
