"""The control-plane Lambda construct and the permission sets its functions are built from.

All functions come from the one ``lambda/`` asset (CONTRACTS.md) and get the same environment; they
differ in handler and in which permission sets (capabilities) their role receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import StageConfig
from stacks.nag import ScopedPolicy, arn
from stacks.names import VARIANT_NAME, Names

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DIR = REPO_ROOT / "lambda"
# The newest Python runtime aws-cdk-lib 2.275 knows; boto3 comes with it (no heavy SDKs in Lambda).
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
RETENTION = {days: getattr(logs.RetentionDays, name) for days, name in (
    (1, "ONE_DAY"), (3, "THREE_DAYS"), (5, "FIVE_DAYS"), (7, "ONE_WEEK"), (14, "TWO_WEEKS"), (30, "ONE_MONTH"),
    (60, "TWO_MONTHS"), (90, "THREE_MONTHS"), (120, "FOUR_MONTHS"), (150, "FIVE_MONTHS"), (180, "SIX_MONTHS"),
    (365, "ONE_YEAR"), (400, "THIRTEEN_MONTHS"), (545, "EIGHTEEN_MONTHS"), (731, "TWO_YEARS"),
    (1096, "THREE_YEARS"), (1827, "FIVE_YEARS"), (2192, "SIX_YEARS"), (2557, "SEVEN_YEARS"),
    (2922, "EIGHT_YEARS"), (3288, "NINE_YEARS"), (3653, "TEN_YEARS"))}


def lambda_code() -> lambda_.Code:
    """The one Lambda asset; caches and tests never ship."""
    return lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=["**/__pycache__", "**/*.pyc", "**/.pytest_cache"])


def log_group(scope: Construct, construct_id: str, *, name: str, config: StageConfig, key: kms.IKey) -> logs.LogGroup:
    return logs.LogGroup(scope, construct_id, log_group_name=name, retention=RETENTION[config.log_retention_days],
                         encryption_key=key,
                         removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY)


@dataclass(frozen=True, kw_only=True)
class ControlPlaneProps:
    """What every control-plane function needs, whichever stack it lives in."""

    config: StageConfig
    names: Names
    environment: dict[str, str]
    dead_letter_queue: sqs.IQueue
    key: kms.IKey
    sagemaker_role_arn: str
    topic_arn: str


def control_plane_environment(*, config: StageConfig, names: Names, key_arn: str, image_uri: str,
                              sagemaker_role_arn: str, topic_arn: str) -> dict[str, str]:
    """The environment variables of CONTRACTS.md, identical on every function."""
    return {
        "NAME_PREFIX": config.prefix,
        "LEDGER_TABLE": names.ledger_table,
        "DATA_BUCKET": names.data_bucket,
        "ARTIFACTS_BUCKET": names.artifacts_bucket,
        "NOTIFY_TOPIC_ARN": topic_arn,
        "KMS_KEY_ARN": key_arn,
        "IMAGE_URI": image_uri,
        "SAGEMAKER_ROLE_ARN": sagemaker_role_arn,
        "ENDPOINT_NAME": names.endpoint,
        "MODEL_PACKAGE_GROUP": names.model_package_group,
        "TARGET_COLUMN": config.target_column,
        "TASK": config.task,
        "ALLOWED_EXTENSIONS": ",".join(config.allowed_extensions),
        "MAX_UPLOAD_BYTES": str(config.max_upload_bytes),
        "PROCESSING_INSTANCE_TYPE": config.processing_instance_type,
        "TRAINING_INSTANCE_TYPE": config.training_instance_type,
        "SERVING_INSTANCE_TYPE": config.serving_instance_type,
        "SERVING_MIN_INSTANCES": str(config.serving_min_instances),
        "SERVING_MAX_INSTANCES": str(config.serving_max_instances),
        "SCALING_TARGET_INVOCATIONS": str(config.scaling_target_invocations),
        "QUALITY_GATE": json.dumps(config.quality_gate, sort_keys=True),
        "DRIFT_THRESHOLD": str(config.drift_threshold),
        "RETRAIN_COOLDOWN_SECONDS": str(config.retrain_cooldown_seconds),
        "ROLLBACK_ALARM_NAMES": ",".join(names.rollback_alarms),
        "DATA_CAPTURE_PERCENT": str(config.data_capture_percent),
        "METRIC_NAMESPACE": config.metric_namespace,
        "MAX_RUNTIME_SECONDS": str(config.max_runtime_seconds),
        "TRAINING_HYPERPARAMETERS": json.dumps(dict(config.training_hyperparameters), sort_keys=True),
    }


LIVE_ALIAS = "live"


class ControlPlaneFunction(Construct):
    """One handler of the Lambda asset: own role, encrypted log group with retention, X-Ray, reserved
    concurrency, and async retries that end in the dead-letter queue.

    An event-driven function (``published=True``) is invoked through its ``live`` alias (``target``), which
    points at the version this deployment published: SnapStart only applies to published versions, and the
    alias carries its own async retry/dead-letter settings because Lambda keeps those per qualifier."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ControlPlaneProps, short_name: str,
                 handler: str, description: str, reserved_concurrency: int,
                 timeout: Duration | None = None, published: bool = True) -> None:
        super().__init__(scope, construct_id)
        config, names = props.config, props.names
        self.function_name = names.function(short_name)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"{self.function_name}: {description}")
        self.policy = ScopedPolicy(self.role)
        self.log_group = log_group(self, "Logs", name=f"/aws/lambda/{self.function_name}", config=config,
                                   key=props.key)
        self.policy.allow(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                          resources=[self.log_group.log_group_arn])
        self.function = lambda_.Function(
            self, "Function", function_name=self.function_name, description=description,
            runtime=LAMBDA_RUNTIME, architecture=lambda_.Architecture.ARM_64,
            code=lambda_code(), handler=handler, role=self.role, environment=props.environment,
            memory_size=config.lambda_memory_mb,
            timeout=timeout or Duration.seconds(config.lambda_timeout_seconds),
            reserved_concurrent_executions=reserved_concurrency,
            tracing=lambda_.Tracing.ACTIVE, log_group=self.log_group,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if published and config.lambda_snap_start else None,
            # A replaced version is deleted, so only the live one keeps a (billed) snapshot.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
            **self._async_options(props))
        self.target: lambda_.IFunction = self.function
        if published:
            self.alias = lambda_.Alias(self, "Live", alias_name=LIVE_ALIAS, version=self.function.current_version,
                                       description="What every event source invokes: this deployment's version",
                                       **self._async_options(props))
            self.target = self.alias
        self.policy.acknowledge_wildcard("Resource::*", "X-Ray PutTraceSegments/PutTelemetryRecords (active "
                                         "tracing) support no resource-level permissions.")
        for action in ("kms:ReEncrypt*", "kms:GenerateDataKey*"):
            self.policy.acknowledge_wildcard(
                f"Action::{action}", "CDK's grant for sending to the KMS-encrypted dead-letter queue (on-failure "
                                     "destination); limited to the one stage key.")
        self._common_permissions(props)

    @staticmethod
    def _async_options(props: ControlPlaneProps) -> dict:
        return {"on_failure": destinations.SqsDestination(props.dead_letter_queue),
                "retry_attempts": props.config.async_retry_attempts,
                "max_event_age": Duration.seconds(props.config.async_max_event_age_seconds)}

    def _common_permissions(self, props: ControlPlaneProps) -> None:
        names = props.names
        # DeleteItem releases the deployment slot/lock records; nothing scans the table but `make status`.
        self.policy.allow(actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                   "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"],
                          resources=[arn("dynamodb", f"table/{names.ledger_table}")])
        self.policy.allow(actions=["sns:Publish"], resources=[props.topic_arn])
        self.policy.allow(actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                          resources=[props.key.key_arn])
        # The model artifacts and reports the decisions are made from.
        self.policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion"],
                          resources=[arn("s3", f"{names.artifacts_bucket}/*", region=False, account=False)],
                          why="Models, reports and captured data are objects with generated keys in the "
                              "artifacts bucket; read-only.")
        self.policy.allow(actions=["s3:ListBucket"],
                          resources=[arn("s3", names.artifacts_bucket, region=False, account=False)])


class Capabilities:
    """Permission sets, each named after what the holder does. Wildcards appear only where a name is
    generated at run time from a fixed prefix, and every one says why."""

    def __init__(self, *, names: Names, config: StageConfig, sagemaker_role_arn: str, key: kms.IKey) -> None:
        self.names = names
        self.config = config
        self.sagemaker_role_arn = sagemaker_role_arn
        self.key = key

    def _sm(self, resource: str) -> str:
        return arn("sagemaker", resource)

    def pass_sagemaker_role(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["iam:PassRole"], resources=[self.sagemaker_role_arn],
                     conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})

    def _start_jobs(self, policy: ScopedPolicy, kind: str, prefixes: tuple[str, ...]) -> None:
        jobs = [self._sm(f"{kind}-job/{p}*") for p in prefixes]
        policy.allow(actions=[f"sagemaker:Create{kind.capitalize()}Job", f"sagemaker:Describe{kind.capitalize()}Job",
                              "sagemaker:AddTags"],
                     resources=jobs,
                     why=f"{kind} job names are generated per run from the fixed prefix(es) {', '.join(prefixes)} "
                         "(CONTRACTS.md); the wildcard covers only this stage's jobs.")
        self.pass_sagemaker_role(policy)
        # Volumes and outputs are encrypted with the stage key; SageMaker needs a grant for the job's lifetime.
        policy.allow(actions=["kms:CreateGrant"], resources=[self.key.key_arn],
                     conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}})

    def start_validation(self, policy: ScopedPolicy) -> None:
        self._start_jobs(policy, "processing", (self.names.validation_job_prefix,))
        self.read_production_model(policy)

    def start_monitoring(self, policy: ScopedPolicy) -> None:
        self._start_jobs(policy, "processing", (self.names.monitor_job_prefix,))
        self.read_production_model(policy)

    def observe_processing(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["sagemaker:DescribeProcessingJob"],
                     resources=[self._sm(f"processing-job/{self.names.validation_job_prefix}*"),
                                self._sm(f"processing-job/{self.names.monitor_job_prefix}*")],
                     why="Processing job names are generated per run from this stage's fixed prefixes.")

    def start_training(self, policy: ScopedPolicy) -> None:
        n = self.names
        self._start_jobs(policy, "training", (n.training_job_prefix,))
        policy.allow(actions=["sagemaker:ListTrainingJobs"], resources=["*"],
                     why="List actions have no resource-level permissions; used to coalesce runs (one at a time).")
        # The run's input manifest: every validated file and its version (lineage).
        policy.allow(actions=["s3:ListBucket", "s3:ListBucketVersions"],
                     resources=[arn("s3", n.data_bucket, region=False, account=False)],
                     conditions={"StringLike": {"s3:prefix": ["validated/", "validated/*"]}})
        self.write_model_records(policy)

    def write_model_records(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["s3:PutObject"],
                     resources=[arn("s3", f"{self.names.artifacts_bucket}/models/*", region=False, account=False)],
                     why="Input manifests and lineage records sit next to each run's model under models/<job>/.")

    def read_production_model(self, policy: ScopedPolicy) -> None:
        """Which model serves now (endpoint -> config -> model), to validate new data against it."""
        n = self.names
        policy.allow(actions=["sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
                              "sagemaker:DescribeModel", "sagemaker:DescribeModelPackage",
                              "sagemaker:ListModelPackages"],
                     resources=[self._sm(f"endpoint/{n.endpoint}"),
                                self._sm(f"endpoint-config/{n.endpoint_config_prefix}*"),
                                self._sm(f"model/{n.model_prefix}*"),
                                self._sm(f"model-package-group/{n.model_package_group}"),
                                self._sm(f"model-package/{n.model_package_group}/*")],
                     why="Endpoint configs, models and model package versions are created per training run "
                         "under this stage's fixed names/prefixes.")

    def write_data(self, policy: ScopedPolicy) -> None:
        """Register validated uploads and quarantine rejected ones; never delete (nothing is lost)."""
        n = self.names
        policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"],
                     resources=[arn("s3", f"{n.data_bucket}/incoming/*", region=False, account=False)],
                     why="Uploads arrive under incoming/ with user-chosen keys.")
        policy.allow(actions=["s3:PutObject", "s3:PutObjectTagging"],
                     resources=[arn("s3", f"{n.data_bucket}/validated/*", region=False, account=False),
                                arn("s3", f"{n.data_bucket}/quarantine/*", region=False, account=False)],
                     why="Validated and quarantined copies keep the uploaded file name under their prefix.")
        policy.allow(actions=["s3:ListBucket"],
                     resources=[arn("s3", n.data_bucket, region=False, account=False)])

    def read_uploads(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion"],
                     resources=[arn("s3", f"{self.names.data_bucket}/incoming/*", region=False, account=False)],
                     why="Uploads arrive under incoming/ with user-chosen keys; the trigger reads size/metadata "
                         "and copies the announced version for its validation job.")
        # Without ListBucket, HeadObject on a vanished key answers 403 instead of 404.
        policy.allow(actions=["s3:ListBucket"], resources=[arn("s3", self.names.data_bucket, region=False, account=False)],
                     conditions={"StringLike": {"s3:prefix": ["incoming/", "incoming/*"]}})

    def stage_validation_input(self, policy: ScopedPolicy) -> None:
        """Copy the announced version of an upload to where its validation job alone reads it."""
        policy.allow(actions=["s3:PutObject"],
                     resources=[arn("s3", f"{self.names.artifacts_bucket}/validation-input/*", region=False,
                                    account=False)],
                     why="One copy per validation job under validation-input/<job>/, a generated key.")

    def publish_metrics(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["cloudwatch:PutMetricData"], resources=["*"],
                     why="PutMetricData has no resource-level permissions; the namespace condition limits it.",
                     conditions={"StringEquals": {"cloudwatch:namespace": self.config.metric_namespace}})

    def deploy_models(self, policy: ScopedPolicy) -> None:
        """Gate -> register -> model -> endpoint config -> endpoint; verify, prune, autoscale, clean up."""
        n = self.names
        self.read_production_model(policy)
        self.pass_sagemaker_role(policy)
        self.write_model_records(policy)
        policy.allow(actions=["sagemaker:DescribeTrainingJob"],
                     resources=[self._sm(f"training-job/{n.training_job_prefix}*")],
                     why="Training job names are generated per run from this stage's fixed prefix.")
        policy.allow(actions=["sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup",
                              "sagemaker:AddTags"],
                     resources=[self._sm(f"model-package-group/{n.model_package_group}")])
        policy.allow(actions=["sagemaker:CreateModelPackage", "sagemaker:UpdateModelPackage", "sagemaker:AddTags"],
                     resources=[self._sm(f"model-package/{n.model_package_group}/*")],
                     why="Model package versions are numbered by SageMaker inside this stage's group.")
        policy.allow(actions=["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:AddTags"],
                     resources=[self._sm(f"model/{n.model_prefix}*")],
                     why="One model per training run, named from this stage's fixed model prefix.")
        policy.allow(actions=["sagemaker:CreateEndpointConfig", "sagemaker:DeleteEndpointConfig", "sagemaker:AddTags"],
                     resources=[self._sm(f"endpoint-config/{n.endpoint_config_prefix}*")],
                     why="One endpoint config per deployment, named from this stage's fixed config prefix.")
        policy.allow(actions=["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint",
                              "sagemaker:AddTags"],
                     resources=[self._sm(f"endpoint/{n.endpoint}"),
                                self._sm(f"endpoint-config/{n.endpoint_config_prefix}*")],
                     why="CreateEndpoint/UpdateEndpoint are authorised on the endpoint config too, whose "
                         "names carry the training run.")
        policy.allow(actions=["sagemaker:ListEndpointConfigs", "sagemaker:ListModels"], resources=["*"],
                     why="List actions have no resource-level permissions; used to prune old configs/models.")
        policy.allow(actions=["kms:CreateGrant"], resources=[self.key.key_arn],
                     conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}})
        # Blue/green auto-rollback: SageMaker checks the alarms named in the deployment config.
        policy.allow(actions=["cloudwatch:DescribeAlarms"],
                     resources=[arn("cloudwatch", f"alarm:{a}") for a in n.rollback_alarms])
        self.manage_autoscaling(policy)

    def manage_autoscaling(self, policy: ScopedPolicy) -> None:
        """The endpoint may not exist at deploy time, so the deployer registers its scaling target."""
        policy.allow(actions=["application-autoscaling:RegisterScalableTarget",
                              "application-autoscaling:DeregisterScalableTarget",
                              "application-autoscaling:PutScalingPolicy",
                              "application-autoscaling:DeleteScalingPolicy",
                              "application-autoscaling:DescribeScalableTargets",
                              "application-autoscaling:DescribeScalingPolicies"],
                     resources=["*"],
                     why="Application Auto Scaling addresses targets by ServiceNamespace/ResourceId "
                         f"(endpoint/{self.names.endpoint}/variant/{VARIANT_NAME}); its scalable-target ARNs are "
                         "random ids unknown before registration.")
        # Target tracking creates and removes its own alarms (TargetTracking-endpoint/<name>/...).
        policy.allow(actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"],
                     resources=[arn("cloudwatch", f"alarm:TargetTracking-endpoint/{self.names.endpoint}/*")],
                     why="Target-tracking alarm names are generated by Application Auto Scaling for this endpoint.")
        policy.allow(actions=["iam:CreateServiceLinkedRole"],
                     resources=[arn("iam", "role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                                           "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint", region=False)],
                     conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}})
