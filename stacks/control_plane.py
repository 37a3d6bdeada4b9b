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
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
import jsii
from constructs import Construct

from stacks.config import LOG_RETENTION_PERIODS, StageConfig
from stacks.nag import ScopedPolicy, arn
from stacks.names import VARIANT_NAME, Names

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DIR = REPO_ROOT / "lambda"
# The newest Python runtime aws-cdk-lib 2.275 knows; boto3 comes with it (no heavy SDKs in Lambda).
LAMBDA_RUNTIME = lambda_.Runtime.PYTHON_3_14
# CloudWatch Logs' retention periods, by their number of days (the config accepts exactly these).
RETENTION = {days: getattr(logs.RetentionDays, name) for days, name in LOG_RETENTION_PERIODS.items()}


def lambda_code() -> lambda_.Code:
    """The one Lambda asset; caches and tests never ship."""
    return lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=["**/__pycache__", "**/*.pyc", "**/.pytest_cache"])


def log_group(scope: Construct, construct_id: str, *, name: str, config: StageConfig, key: kms.IKey) -> logs.LogGroup:
    return logs.LogGroup(scope, construct_id, log_group_name=name, retention=RETENTION[config.log_retention_days],
                         encryption_key=key,
                         removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY)


@dataclass(frozen=True, kw_only=True)
class SageMakerRoleArns:
    """The execution roles the control plane passes to SageMaker, one per kind of work."""

    training: str     # training jobs: read validated data, write models/
    processing: str   # validation and monitoring jobs (untrusted input): read their inputs, write reports/
    model: str        # the endpoint's models: read the model artifact, write captured requests
    tracking: str = ""  # track jobs: read a model, log it to MLflow ("" when mlflow_tracking is off)


@dataclass(frozen=True, kw_only=True)
class ControlPlaneProps:
    """What every control-plane function needs, whichever stack it lives in."""

    config: StageConfig
    names: Names
    environment: dict[str, str]
    dead_letter_queue: sqs.IQueue
    key: kms.IKey
    sagemaker_roles: SageMakerRoleArns
    topic_arn: str


def control_plane_environment(*, config: StageConfig, names: Names, key_arn: str, image_uri: str,
                              sagemaker_roles: SageMakerRoleArns, topic_arn: str,
                              tracking_uri: str = "") -> dict[str, str]:
    """The environment variables of CONTRACTS.md, identical on every function. ``tracking_uri``: the MLflow App's
    ARN, empty when tracking is off (the functions then start no track jobs)."""
    return {
        "NAME_PREFIX": config.prefix,
        "LEDGER_TABLE": names.ledger_table,
        "DATA_BUCKET": names.data_bucket,
        "ARTIFACTS_BUCKET": names.artifacts_bucket,
        "NOTIFY_TOPIC_ARN": topic_arn,
        "KMS_KEY_ARN": key_arn,
        "IMAGE_URI": image_uri,
        "TRAINING_ROLE_ARN": sagemaker_roles.training,
        "PROCESSING_ROLE_ARN": sagemaker_roles.processing,
        "MODEL_ROLE_ARN": sagemaker_roles.model,
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
        "DEPLOY_BAKE_SECONDS": str(config.deploy_bake_seconds),
        "STRICT_COLUMNS": ",".join(config.strict_columns),
        "TRAINING_WINDOW_DAYS": str(config.training_window_days),
        "TRAINING_WINDOW_MAX_ROWS": str(config.training_window_max_rows),
        "TRAINING_MAX_CELLS": str(config.training_cell_limit),
        "TRAINING_KEEP_ALIVE_SECONDS": str(config.training_keep_alive_seconds),
        "GATE_MIN_NEW_ROWS": str(config.gate_min_new_rows),
        "DATA_CAPTURE_PERCENT": str(config.data_capture_percent),
        "METRIC_NAMESPACE": config.metric_namespace,
        "MAX_RUNTIME_SECONDS": str(config.max_runtime_seconds),
        "TRAINING_HYPERPARAMETERS": json.dumps(dict(config.training_hyperparameters), sort_keys=True),
        "TRACKING_URI": tracking_uri,
        "TRACKING_ROLE_ARN": sagemaker_roles.tracking,
        "TRACKING_EXPERIMENT": names.mlflow_experiment,
        "REGISTERED_MODEL_NAME": names.registered_model,
        "RESPONSIBLE_ML": json.dumps(dict(config.responsible_ml), sort_keys=True) if config.responsible_ml else "",
        "FAIRNESS_GATE": json.dumps(dict(config.fairness_gate), sort_keys=True),
    }


LIVE_ALIAS = "live"


@jsii.implements(lambda_.IDestination)
class DeadLetterDestination:
    """The on-failure destination of an asynchronous invocation: the dead-letter queue. CDK's SqsDestination grants
    sqs:GetQueueAttributes/GetQueueUrl and every kms:Encrypt/ReEncrypt*/GenerateDataKey* variant, none of which
    Lambda uses to deliver a failed event: it sends the message as the function's role (sqs:SendMessage here; the
    queue key's kms:GenerateDataKey and kms:Decrypt are in every function's key statement)."""

    def __init__(self, queue: sqs.IQueue, policy: ScopedPolicy) -> None:
        self.queue = queue
        self.policy = policy
        self._granted = False

    def bind(self, _scope: Construct, _fn: lambda_.IFunction, *,
             type: lambda_.DestinationType | None = None) -> lambda_.DestinationConfig:  # noqa: A002 - jsii's name
        if not self._granted:  # the function and its alias both bind it
            self.policy.allow(actions=["sqs:SendMessage"], resources=[self.queue.queue_arn])
            self._granted = True
        return lambda_.DestinationConfig(destination=self.queue.queue_arn)


class ControlPlaneFunction(Construct):
    """One handler of the Lambda asset: own role, encrypted log group with retention, X-Ray, reserved
    concurrency, and async retries that end in the dead-letter queue.

    An event-driven function (``published=True``) is invoked through its ``live`` alias (``target``), which
    points at the version this deployment published: SnapStart only applies to published versions, and the
    alias carries its own async retry/dead-letter settings because Lambda keeps those per qualifier."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ControlPlaneProps, short_name: str,
                 handler: str, description: str, reserved_concurrency: int,
                 timeout: Duration | None = None, published: bool = True, role_name: str | None = None) -> None:
        super().__init__(scope, construct_id)
        config, names = props.config, props.names
        self.function_name = names.function(short_name)
        # A role_name only where another stack must name this role (a bucket policy); otherwise generated.
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             role_name=role_name, description=f"{self.function_name}: {description}")
        self.policy = ScopedPolicy(self.role)
        self.log_group = log_group(self, "Logs", name=f"/aws/lambda/{self.function_name}", config=config,
                                   key=props.key)
        self.policy.allow(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                          resources=[self.log_group.log_group_arn])
        self._dead_letters = DeadLetterDestination(props.dead_letter_queue, self.policy)
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
        self._common_permissions(props)

    def _async_options(self, props: ControlPlaneProps) -> dict:
        return {"on_failure": self._dead_letters,
                "retry_attempts": props.config.async_retry_attempts,
                "max_event_age": Duration.seconds(props.config.async_max_event_age_seconds)}

    def _common_permissions(self, props: ControlPlaneProps) -> None:
        names = props.names
        # Every function sends the notification outbox (Query, UpdateItem to lease, DeleteItem of what it sent) and
        # commits units of work (TransactWriteItems is authorised per item: PutItem/UpdateItem); nothing scans but
        # `make status`.
        self.policy.allow(actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                   "dynamodb:DeleteItem", "dynamodb:Query"],
                          resources=[arn("dynamodb", f"table/{names.ledger_table}")])
        self.policy.allow(actions=["sns:Publish"], resources=[props.topic_arn])
        # The stage key: the ledger, the topic and the dead-letter queue (Decrypt, GenerateDataKey) and the key of
        # the volumes of the SageMaker work every function starts (DescribeKey before its grant).
        self.policy.allow(actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                          resources=[props.key.key_arn])
        # Track jobs are requested through the ledger's outbox, which every function sends at the start of each
        # invocation: any function may be the one that starts them.
        Capabilities(names=names, config=props.config, sagemaker_roles=props.sagemaker_roles,
                     key=props.key).start_tracking(self.policy)


class Capabilities:
    """Permission sets, each named after what the holder does. Wildcards appear only where a name is
    generated at run time from a fixed prefix, and every one says why. tests/stacks/test_iam_coverage.py checks
    that each function's calls need every grant it holds, and that every call is granted."""

    def __init__(self, *, names: Names, config: StageConfig, sagemaker_roles: SageMakerRoleArns,
                 key: kms.IKey) -> None:
        self.names = names
        self.config = config
        self.sagemaker_roles = sagemaker_roles
        self.key = key

    def _sm(self, resource: str) -> str:
        return arn("sagemaker", resource)

    @staticmethod
    def _s3(resource: str) -> str:
        return arn("s3", resource, region=False, account=False)

    @staticmethod
    def _pass_role(policy: ScopedPolicy, role_arn: str) -> None:
        """One statement per role, so each function may pass exactly the roles of the work it starts."""
        policy.allow(actions=["iam:PassRole"], resources=[role_arn],
                     conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}})

    def _volume_key(self, policy: ScopedPolicy) -> None:
        # Volumes and outputs are encrypted with the stage key; SageMaker needs a grant for the work's lifetime.
        policy.allow(actions=["kms:CreateGrant"], resources=[self.key.key_arn],
                     conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}})

    def _start_jobs(self, policy: ScopedPolicy, kind: str, prefixes: tuple[str, ...],
                    role_arn: str | None = None) -> None:
        policy.allow(actions=[f"sagemaker:Create{kind.capitalize()}Job", "sagemaker:AddTags"],
                     resources=[self._sm(f"{kind}-job/{p}*") for p in prefixes],
                     why=f"{kind} job names are generated per run from the fixed prefix(es) {', '.join(prefixes)} "
                         "(CONTRACTS.md); the wildcard covers only this stage's jobs.")
        roles = self.sagemaker_roles
        self._pass_role(policy, role_arn or (roles.processing if kind == "processing" else roles.training))
        self._volume_key(policy)

    @property
    def tracking(self) -> bool:
        return bool(self.sagemaker_roles.tracking)

    def start_tracking(self, policy: ScopedPolicy) -> None:
        """A track job (a processing job as the tracking role) logs a training run to MLflow; none when tracking is
        off."""
        if self.tracking:
            self._start_jobs(policy, "processing", (self.names.tracking_job_prefix,), self.sagemaker_roles.tracking)

    def record_tracking(self, policy: ScopedPolicy) -> None:
        """A finished track job: its account of a failure, and the MLflow run and model version it reports written
        onto the run's model package (CustomerMetadataProperties). Its report is read with read_job_reports."""
        if not self.tracking:
            return
        n = self.names
        policy.allow(actions=["sagemaker:DescribeProcessingJob"],
                     resources=[self._sm(f"processing-job/{n.tracking_job_prefix}*")],
                     why="Track job names are generated per run from this stage's fixed prefix.")
        policy.allow(actions=["sagemaker:UpdateModelPackage"],
                     resources=[self._sm(f"model-package/{n.model_package_group}/*")],
                     why="Model package versions are numbered by SageMaker inside this stage's group.")

    def _artifacts_not_found(self, policy: ScopedPolicy) -> None:
        """A missing object of the artifacts bucket answers 404 (the code's "not there yet") only with ListBucket;
        S3 checks it without an s3:prefix, so a prefix condition would never match."""
        policy.allow(actions=["s3:ListBucket"], resources=[self._s3(self.names.artifacts_bucket)])

    def start_validation(self, policy: ScopedPolicy) -> None:
        self._start_jobs(policy, "processing", (self.names.validation_job_prefix,))

    def start_monitoring(self, policy: ScopedPolicy) -> None:
        """A monitoring job when requests were captured: the schedule lists the endpoint's capture prefix first."""
        n = self.names
        self._start_jobs(policy, "processing", (n.monitor_job_prefix,))
        policy.allow(actions=["s3:ListBucket"], resources=[self._s3(n.artifacts_bucket)],
                     conditions={"StringEquals": {"s3:prefix": f"datacapture/{n.endpoint}/"}})

    def start_ground_truth(self, policy: ScopedPolicy) -> None:
        """Labels under ground-truth/: copied for, and joined by, a ground-truth processing job."""
        n = self.names
        self._start_jobs(policy, "processing", (n.ground_truth_job_prefix,))
        policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging",
                              "s3:GetObjectVersionTagging"],
                     resources=[self._s3(f"{n.data_bucket}/ground-truth/*")],
                     why="Labels files arrive under ground-truth/ with user-chosen keys.")
        policy.allow(actions=["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
                     resources=[self._s3(f"{n.artifacts_bucket}/labels-input/*")],
                     why="One copy per ground-truth job under labels-input/<job>/, a generated key.")

    def observe_processing(self, policy: ScopedPolicy) -> None:
        """A finished job's own account of its failure, and (when the ledger lost it) which input it read."""
        policy.allow(actions=["sagemaker:DescribeProcessingJob"],
                     resources=[self._sm(f"processing-job/{self.names.validation_job_prefix}*"),
                                self._sm(f"processing-job/{self.names.monitor_job_prefix}*"),
                                self._sm(f"processing-job/{self.names.ground_truth_job_prefix}*")],
                     why="Processing job names are generated per run from this stage's fixed prefixes.")

    def read_job_reports(self, policy: ScopedPolicy) -> None:
        """report.json of validation, monitoring and ground-truth jobs; a failed file's report.html is copied next to
        it in quarantine/ (CopyObject copies tags: the source's are read)."""
        policy.allow(actions=["s3:GetObject", "s3:GetObjectTagging"],
                     resources=[self._s3(f"{self.names.artifacts_bucket}/reports/*")],
                     why="Reports have per-job keys under reports/<validation|monitor|ground-truth>/<job>/.")
        self._artifacts_not_found(policy)

    def start_training(self, policy: ScopedPolicy) -> None:
        n = self.names
        self._start_jobs(policy, "training", (n.training_job_prefix,))
        # The run's window: every validated file and its version (ListObjectVersions of exactly validated/).
        policy.allow(actions=["s3:ListBucketVersions"], resources=[self._s3(n.data_bucket)],
                     conditions={"StringEquals": {"s3:prefix": "validated/"}})
        self.write_model_records(policy)

    def write_model_records(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["s3:PutObject"],
                     resources=[self._s3(f"{self.names.artifacts_bucket}/models/*")],
                     why="Input manifests and lineage records sit next to each run's model under models/<job>/.")

    def write_data(self, policy: ScopedPolicy) -> None:
        """Register validated uploads and quarantine rejected ones; never delete (nothing is lost). A copy over 5 GiB
        is a multipart copy, aborted if it fails (s3:AbortMultipartUpload on the targets: lambda/mlops_control/copies.py)."""
        n = self.names
        # CopyObject of the announced version copies its tags too (TaggingDirective COPY, the default).
        policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging",
                              "s3:GetObjectVersionTagging"],
                     resources=[self._s3(f"{n.data_bucket}/incoming/*")],
                     why="Uploads arrive under incoming/ with user-chosen keys.")
        policy.allow(actions=["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
                     resources=[self._s3(f"{n.data_bucket}/validated/*"), self._s3(f"{n.data_bucket}/quarantine/*")],
                     why="Validated and quarantined copies keep the uploaded file name under their prefix.")
        # Before copying an upload to validated/, the verdict reads which upload version the copy holds (its
        # metadata), so a retried verdict does not write the same data again.
        policy.allow(actions=["s3:GetObject"], resources=[self._s3(f"{n.data_bucket}/validated/*")],
                     why="Validated copies keep the uploaded file name under validated/.")
        policy.allow(actions=["s3:ListBucket"], resources=[self._s3(n.data_bucket)])

    def read_uploads(self, policy: ScopedPolicy) -> None:
        # The tagging reads: CopyObject of a tagged version copies its tags (TaggingDirective COPY, the default).
        policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging",
                              "s3:GetObjectVersionTagging"],
                     resources=[self._s3(f"{self.names.data_bucket}/incoming/*")],
                     why="Uploads arrive under incoming/ with user-chosen keys; the trigger reads size/metadata "
                         "and copies the announced version for its validation job.")
        # Without ListBucket, HeadObject/CopyObject on a vanished key answers 403 instead of 404. S3 checks it for
        # that without an s3:prefix, so a prefix condition would never match: unconditioned (it lists keys only).
        policy.allow(actions=["s3:ListBucket"], resources=[self._s3(self.names.data_bucket)])

    def stage_validation_input(self, policy: ScopedPolicy) -> None:
        """Copy the announced version of an upload (and its tags) to where its validation job alone reads it."""
        policy.allow(actions=["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
                     resources=[self._s3(f"{self.names.artifacts_bucket}/validation-input/*")],
                     why="One copy per validation job under validation-input/<job>/, a generated key.")

    def send_labeled_rows(self, policy: ScopedPolicy) -> None:
        """Joined labels come back as an upload under incoming/labeled/ (and are validated like any file); the copy
        copies tags (TaggingDirective COPY, the default): the source's are read, the target's written."""
        n = self.names
        policy.allow(actions=["s3:GetObject", "s3:GetObjectTagging"],
                     resources=[self._s3(f"{n.artifacts_bucket}/ground-truth/*")],
                     why="Joined labels are written per job under ground-truth/<job>/joined/.")
        policy.allow(actions=["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
                     resources=[self._s3(f"{n.data_bucket}/incoming/labeled/*")],
                     why="Labeled rows are named after their labels file and job under incoming/labeled/.")

    def publish_metrics(self, policy: ScopedPolicy) -> None:
        policy.allow(actions=["cloudwatch:PutMetricData"], resources=["*"],
                     why="PutMetricData has no resource-level permissions; the namespace condition limits it.",
                     conditions={"StringEquals": {"cloudwatch:namespace": self.config.metric_namespace}})

    def find_latest_model(self, policy: ScopedPolicy) -> None:
        """Provisioning: the latest approved package of the group, and its metadata."""
        policy.allow(actions=["sagemaker:ListModelPackages"], resources=["*"],
                     why="SageMaker's List actions have no resource-level permissions (API permissions reference).")
        policy.allow(actions=["sagemaker:DescribeModelPackage"],
                     resources=[self._sm(f"model-package/{self.names.model_package_group}/*")],
                     why="Model package versions are numbered by SageMaker inside this stage's group.")

    def deploy_models(self, policy: ScopedPolicy) -> None:
        """Pin -> gate -> register -> model -> endpoint config -> endpoint; verify, prune, autoscale, clean up. One
        statement per resource type: an action granted on another type's ARN grants nothing."""
        n = self.names
        self._pass_role(policy, self.sagemaker_roles.model)  # CreateModel's ExecutionRoleArn
        self.write_model_records(policy)
        # The model artifact (its digest and metadata.json) and the run's inputs.json (lineage, fingerprint).
        policy.allow(actions=["s3:GetObject"], resources=[self._s3(f"{n.artifacts_bucket}/models/*")],
                     why="Model artifacts and run records have per-run keys under models/<training-job>/.")
        self._artifacts_not_found(policy)
        policy.allow(actions=["sagemaker:DescribeTrainingJob"],
                     resources=[self._sm(f"training-job/{n.training_job_prefix}*")],
                     why="Training job names are generated per run from this stage's fixed prefix.")
        policy.allow(actions=["sagemaker:CreateModelPackageGroup", "sagemaker:DescribeModelPackageGroup"],
                     resources=[self._sm(f"model-package-group/{n.model_package_group}")])
        # The Service Authorization Reference lists both the package and its group for CreateModelPackage (either
        # may be checked): granting both cannot fail.
        policy.allow(actions=["sagemaker:CreateModelPackage"],
                     resources=[self._sm(f"model-package-group/{n.model_package_group}"),
                                self._sm(f"model-package/{n.model_package_group}/*")],
                     why="Model package versions are numbered by SageMaker inside this stage's group.")
        policy.allow(actions=["sagemaker:UpdateModelPackage"],
                     resources=[self._sm(f"model-package/{n.model_package_group}/*")],
                     why="Model package versions are numbered by SageMaker inside this stage's group.")
        policy.allow(actions=["sagemaker:CreateModel", "sagemaker:DeleteModel", "sagemaker:AddTags"],
                     resources=[self._sm(f"model/{n.model_prefix}*")],
                     why="One model per training run, named from this stage's fixed model prefix.")
        policy.allow(actions=["sagemaker:CreateEndpointConfig", "sagemaker:DescribeEndpointConfig",
                              "sagemaker:DeleteEndpointConfig", "sagemaker:AddTags"],
                     resources=[self._sm(f"endpoint-config/{n.endpoint_config_prefix}*")],
                     why="One endpoint config per deployment, named from this stage's fixed config prefix.")
        policy.allow(actions=["sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint"],
                     resources=[self._sm(f"endpoint/{n.endpoint}"),
                                self._sm(f"endpoint-config/{n.endpoint_config_prefix}*")],
                     why="CreateEndpoint/UpdateEndpoint are authorised on the endpoint config too, whose "
                         "names carry the training run.")
        policy.allow(actions=["sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint", "sagemaker:AddTags"],
                     resources=[self._sm(f"endpoint/{n.endpoint}")])
        policy.allow(actions=["sagemaker:ListEndpointConfigs", "sagemaker:ListModels"], resources=["*"],
                     why="List actions have no resource-level permissions; used to prune old configs/models.")
        self._volume_key(policy)
        # Blue/green auto-rollback: SageMaker checks the alarms named in the deployment config.
        policy.allow(actions=["cloudwatch:DescribeAlarms"],
                     resources=[arn("cloudwatch", f"alarm:{a}") for a in n.rollback_alarms])
        self.manage_autoscaling(policy)

    def manage_autoscaling(self, policy: ScopedPolicy) -> None:
        """The endpoint may not exist at deploy time, so the deployer registers its scaling target."""
        policy.allow(actions=["application-autoscaling:RegisterScalableTarget",
                              "application-autoscaling:DeregisterScalableTarget",
                              "application-autoscaling:PutScalingPolicy"],
                     resources=["*"],
                     why="Application Auto Scaling addresses targets by ServiceNamespace/ResourceId "
                         f"(endpoint/{self.names.endpoint}/variant/{VARIANT_NAME}); its scalable-target ARNs are "
                         "random ids unknown before registration.")
        # Registering a variant, Application Auto Scaling checks that the caller may describe and scale it.
        policy.allow(actions=["sagemaker:UpdateEndpointWeightsAndCapacities"],
                     resources=[self._sm(f"endpoint/{self.names.endpoint}")])
        # Target tracking creates and removes its own alarms (TargetTracking-endpoint/<name>/...).
        policy.allow(actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:DescribeAlarms"],
                     resources=[arn("cloudwatch", f"alarm:TargetTracking-endpoint/{self.names.endpoint}/*")],
                     why="Target-tracking alarm names are generated by Application Auto Scaling for this endpoint.")
        policy.allow(actions=["iam:CreateServiceLinkedRole"],
                     resources=[arn("iam", "role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
                                           "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint", region=False)],
                     conditions={"StringLike": {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}})
