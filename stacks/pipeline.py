"""The event-driven training pipeline: image, SageMaker roles, control-plane Lambdas, EventBridge rules,
notifications and the dead-letter queue every asynchronous path ends in."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Aws, CfnOutput, Duration, Environment, IgnoreMode, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.config import StageConfig
from stacks.control_plane import (REPO_ROOT, Capabilities, ControlPlaneFunction, ControlPlaneProps,
                                  SageMakerRoleArns, control_plane_environment)
from stacks.nag import ScopedPolicy, acknowledge, acknowledge_unused_grant, arn
from stacks.names import MLFLOW_ARTIFACTS_PREFIX, VALIDATED_WRITER, Names

# The build context is the repository root (CONTRACTS.md, "Image"), whitelisted by the root .dockerignore,
# which CDK applies first. These exclusions come after it and only remove (a negation here would re-include
# what .dockerignore drops): the asset hash and the staged copy never walk these, .dockerignore or not.
IMAGE_CONTEXT_EXCLUDES = ["cdk.out", ".venv", "node_modules", ".local", ".git", "**/__pycache__", "**/*.pyc",
                          "**/.pytest_cache", "**/*.egg-info", "**/.venv"]
# Delivery retries of EventBridge -> Lambda (the asynchronous invocation then has its own retries).
EVENT_DELIVERY_RETRIES = 10

JOB_TERMINAL_STATES = ["Completed", "Failed", "Stopped"]


class ModelImage(Construct):
    """The one image (train, serve, validate, monitor), built from container/Dockerfile."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.asset = ecr_assets.DockerImageAsset(
            self, "Image", directory=str(REPO_ROOT), file="container/Dockerfile",
            build_args={"BASE_IMAGE": config.base_image},
            platform=ecr_assets.Platform.LINUX_AMD64,  # SageMaker ml.* instances are x86_64
            ignore_mode=IgnoreMode.DOCKER, exclude=IMAGE_CONTEXT_EXCLUDES,
            display_name=f"{config.prefix} model image")
        self.image_uri = self.asset.image_uri


MODEL_ARTIFACT = "models/*/output/model.tar.gz"  # SageMaker's model.tar.gz of each training job (models/<job>/)


class SageMakerExecutionRole(Construct):
    """A role SageMaker assumes for one kind of work. Every kind pulls the one image, writes its logs and
    SageMaker's own metrics, and uses the stage key; what it may read and write in S3 is the kind's own."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey,
                 image: ecr_assets.DockerImageAsset, description: str) -> None:
        super().__init__(scope, construct_id)
        self.names = names
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"{names.prefix}: {description}")
        self.policy = ScopedPolicy(self.role)
        policy = self.policy
        # The key policy delegates to IAM (account root), so these statements are all the key needs.
        policy.allow(actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                     resources=[key.key_arn])
        policy.allow(actions=["kms:CreateGrant"], resources=[key.key_arn],
                     conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}})
        policy.allow(actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                     resources=[image.repository.repository_arn])
        policy.allow(actions=["ecr:GetAuthorizationToken"], resources=["*"],
                     why="ecr:GetAuthorizationToken has no resource-level permissions (registry login).")
        policy.allow(actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                              "logs:DescribeLogStreams"],
                     resources=[arn("logs", "log-group:/aws/sagemaker/*")],
                     why="SageMaker writes job and endpoint logs to per-job log groups/streams under /aws/sagemaker/.")
        policy.allow(actions=["cloudwatch:PutMetricData"], resources=["*"],
                     conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
                     why="PutMetricData has no resource-level permissions; the namespace condition limits it.")

    @staticmethod
    def s3(resource: str) -> str:
        return arn("s3", resource, region=False, account=False)

    def list_prefixes(self, bucket: str, prefixes: list[str], why_unused: str | None = None) -> None:
        """ListBucket only under the given prefixes (S3Prefix inputs list before they download)."""
        self.policy.allow(actions=["s3:ListBucket"], resources=[self.s3(bucket)],
                          conditions={"StringLike": {"s3:prefix": prefixes}}, why_unused=why_unused)

    @property
    def role_arn(self) -> str:
        return self.role.role_arn


class ProcessingExecutionRole(SageMakerExecutionRole):
    """Validation, monitoring and ground-truth jobs. They parse untrusted files, so they can read only their
    inputs (the trigger's copy of one upload or labels file, captured requests, the production model) and write
    only reports and joined labels."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey,
                 image: ecr_assets.DockerImageAsset) -> None:
        super().__init__(scope, construct_id, names=names, key=key, image=image,
                         description="SageMaker validation and monitoring jobs (read inputs, write reports)")
        artifacts, s3 = names.artifacts_bucket, self.s3
        self.policy.allow(actions=["s3:GetObject"],
                          resources=[s3(f"{artifacts}/validation-input/*"), s3(f"{artifacts}/labels-input/*"),
                                     s3(f"{artifacts}/datacapture/*")],
                          why="Each validation (ground-truth) job reads its copy under validation-input/<job>/ "
                              "(labels-input/<job>/); monitoring and ground truth read the captured requests "
                              "SageMaker writes under datacapture/<endpoint>/ (generated keys).")
        # The production model (expectation suite, reference profile) is an S3Prefix input of the one key
        # models/<job>/output/model.tar.gz: SageMaker reads every object that key starts, hence the trailing *.
        self.policy.allow(actions=["s3:GetObject"], resources=[s3(f"{artifacts}/{MODEL_ARTIFACT}*")],
                          why="The production model is an input: model.tar.gz (an S3Prefix of that one key) under "
                              "models/<training-job>/output/, read-only.")
        self.policy.allow(actions=["s3:PutObject"],
                          resources=[s3(f"{artifacts}/reports/*"), s3(f"{artifacts}/ground-truth/*")],
                          why="Reports go to reports/<validation|monitor|ground-truth>/<job>/, joined labels to "
                              "ground-truth/<job>/joined/ (generated keys).")
        self.list_prefixes(artifacts, ["validation-input/*", "labels-input/*", "datacapture/*", MODEL_ARTIFACT])
        self.policy.allow(actions=["s3:GetBucketLocation"], resources=[s3(artifacts)])


class TrainingExecutionRole(SageMakerExecutionRole):
    """Training jobs: the only SageMaker work that reads validated data and writes models."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey,
                 image: ecr_assets.DockerImageAsset) -> None:
        super().__init__(scope, construct_id, names=names, key=key, image=image,
                         description="SageMaker training jobs (read validated data, write models)")
        data, artifacts, s3 = names.data_bucket, names.artifacts_bucket, self.s3
        # The train channel is a ManifestFile (models/<job>/manifest.json) listing files under validated/.
        self.policy.allow(actions=["s3:GetObject"], resources=[s3(f"{data}/validated/*")],
                          why="The training channel's manifest lists validated files (user-chosen names).")
        self.list_prefixes(data, ["validated/*"], why_unused=(
            "SageMaker reads a ManifestFile channel's objects by key; its documentation does not say whether it also "
            "lists the manifest's prefix, so the listing stays granted (the variant that cannot fail the first "
            "training run)."))
        # Reads its manifest and the champion model (an S3Prefix of the production model.tar.gz) under models/,
        # writes the job's output (models/<job>/output/model.tar.gz, output.tar.gz).
        self.policy.allow(actions=["s3:GetObject", "s3:PutObject"], resources=[s3(f"{artifacts}/models/*")],
                          why="Model artifacts have per-run keys under models/<training-job>/.")
        self.list_prefixes(artifacts, ["models/*"])
        self.policy.allow(actions=["s3:GetBucketLocation"], resources=[s3(data), s3(artifacts)])


class ModelExecutionRole(SageMakerExecutionRole):
    """The endpoint's models: load the model artifact; SageMaker writes captured requests with this role."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey,
                 image: ecr_assets.DockerImageAsset) -> None:
        super().__init__(scope, construct_id, names=names, key=key, image=image,
                         description="SageMaker endpoint models (read the model artifact, write data capture)")
        artifacts, s3 = names.artifacts_bucket, self.s3
        self.policy.allow(actions=["s3:GetObject"], resources=[s3(f"{artifacts}/{MODEL_ARTIFACT}")],
                          why="A model's ModelDataUrl is models/<training-job>/output/model.tar.gz; read-only.")
        self.policy.allow(actions=["s3:PutObject"], resources=[s3(f"{artifacts}/datacapture/*")],
                          why="Data capture writes datacapture/<endpoint>/<variant>/<date>/... (generated keys).")
        self.policy.allow(actions=["s3:GetBucketLocation"], resources=[s3(artifacts)])


class TrackingExecutionRole(SageMakerExecutionRole):
    """Track jobs: log a training run and its model to MLflow. Unlike the jobs that parse uploads they are not
    network-isolated (the MLflow client calls the MLflow App's API), so the role reads only the one model artifact
    it is given, writes only its report and MLflow's artifacts, and may call only this stage's MLflow App."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey,
                 image: ecr_assets.DockerImageAsset, mlflow_app_arn: str) -> None:
        super().__init__(scope, construct_id, names=names, key=key, image=image,
                         description="SageMaker track jobs (read a model, log it to MLflow)")
        artifacts, s3 = names.artifacts_bucket, self.s3
        # The model is an S3Prefix input of the one key models/<job>/output/model.tar.gz (hence the trailing *).
        self.policy.allow(actions=["s3:GetObject"], resources=[s3(f"{artifacts}/{MODEL_ARTIFACT}*")],
                          why="The tracked model is an input: model.tar.gz (an S3Prefix of that one key) under "
                              "models/<training-job>/output/, read-only.")
        self.policy.allow(actions=["s3:PutObject"], resources=[s3(f"{artifacts}/reports/tracking/*")],
                          why="The report goes to reports/tracking/<job>/ (generated keys).")
        # The MLflow client uploads run and model artifacts to the artifact store itself, with the job's credentials
        # (the app only names the location, mlflow/<experiment>/...); `track` never reads them back nor lists them.
        self.policy.allow(actions=["s3:PutObject"], resources=[s3(f"{artifacts}/{MLFLOW_ARTIFACTS_PREFIX}*")],
                          why="MLflow names artifact keys per experiment, run and logged model under the artifact "
                              f"store {MLFLOW_ARTIFACTS_PREFIX} (generated ids).")
        self.list_prefixes(artifacts, [MODEL_ARTIFACT])
        self.policy.allow(actions=["s3:GetBucketLocation"], resources=[s3(artifacts)])
        # An MLflow App's REST API (the MLflow client signs for service `sagemaker`, the app's ARN in the request) is
        # authorised as one action on the app: sagemaker:CallMlflowAppApi. The sagemaker-mlflow:* actions are those of
        # MLflow tracking servers (resource type mlflow-tracking-server only, Service Authorization Reference).
        self.policy.allow(actions=["sagemaker:CallMlflowAppApi"], resources=[mlflow_app_arn])


class PipelineStack(Stack):
    """Upload -> validate -> train -> deploy, driven by EventBridge."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey,
                 mlflow_app_arn: str | None = None, env: Environment | None = None,
                 description: str | None = None) -> None:
        """``mlflow_app_arn``: the storage stack's MLflow App (None when mlflow_tracking is off)."""
        super().__init__(scope, construct_id, env=env, description=description)
        names = Names(config.prefix)
        self.names = names

        self.image = ModelImage(self, "ModelImage", config=config)
        role_props = {"names": names, "key": key, "image": self.image.asset}
        # The training role keeps the construct id of the single role it replaced (so its logical id, ARN and
        # export): the serving and monitoring stacks import that export, and CloudFormation refuses to remove an
        # export still in use while it updates this stack first.
        self.training_role = TrainingExecutionRole(self, "SageMakerExecution", **role_props)
        self.processing_role = ProcessingExecutionRole(self, "SageMakerProcessing", **role_props)
        self.model_role = ModelExecutionRole(self, "SageMakerModel", **role_props)
        self.tracking_role: TrackingExecutionRole | None = None
        if mlflow_app_arn:
            self.tracking_role = TrackingExecutionRole(self, "SageMakerTracking", mlflow_app_arn=mlflow_app_arn,
                                                       **role_props)
        sagemaker_roles = SageMakerRoleArns(training=self.training_role.role_arn,
                                            processing=self.processing_role.role_arn,
                                            model=self.model_role.role_arn,
                                            tracking=self.tracking_role.role_arn if self.tracking_role else "")

        self.topic = sns.Topic(self, "Notifications", topic_name=names.topic, master_key=key, enforce_ssl=True,
                               display_name=f"{names.prefix} notifications")
        # enforce_ssl replaces SNS's default topic policy, which let the account's alarms publish: this stage's
        # alarms (names start with P-) may, on behalf of this account only.
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowThisStagesAlarms", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"ArnLike": {"aws:SourceArn": arn("cloudwatch", f"alarm:{names.prefix}-*")},
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}))
        if config.notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.notification_email))

        self.dead_letters = sqs.Queue(
            self, "DeadLetters", queue_name=names.dead_letter_queue,
            encryption=sqs.QueueEncryption.KMS, encryption_master_key=key, data_key_reuse=Duration.hours(1),
            enforce_ssl=True, retention_period=Duration.days(14))
        acknowledge(self.dead_letters, "AwsSolutions-SQS3",
                    "This queue is the dead-letter destination of every Lambda and EventBridge target; "
                    "a DLQ of the DLQ would only move the problem (its depth is alarmed instead).")

        environment = control_plane_environment(
            config=config, names=names, key_arn=key.key_arn, image_uri=self.image.image_uri,
            sagemaker_roles=sagemaker_roles, topic_arn=self.topic.topic_arn, tracking_uri=mlflow_app_arn or "")
        self.control_plane = ControlPlaneProps(
            config=config, names=names, environment=environment, dead_letter_queue=self.dead_letters, key=key,
            sagemaker_roles=sagemaker_roles, topic_arn=self.topic.topic_arn)
        self.capabilities = Capabilities(names=names, config=config, sagemaker_roles=sagemaker_roles, key=key)
        caps = self.capabilities

        def function(construct_id: str, short: str, handler: str, description: str, reserved: int,
                     grants: list[Callable[[ScopedPolicy], None]]) -> ControlPlaneFunction:
            # The data bucket's policy names the role of the function that writes validated/ (storage stack).
            role_name = names.validated_writer_role if short == VALIDATED_WRITER else None
            fn = ControlPlaneFunction(self, construct_id, props=self.control_plane, short_name=short,
                                      handler=handler, description=description, reserved_concurrency=reserved,
                                      role_name=role_name)
            for grant in grants:
                grant(fn.policy)
            return fn

        fan_in = config.lambda_reserved_concurrency
        # Deployment steps run one at a time: two deployers racing on one endpoint is never useful.
        self.trigger = function("Trigger", "trigger", "handlers.trigger.handler",
                                "Upload under incoming/ or ground-truth/: cheap checks, de-duplication, start the job",
                                fan_in, [caps.start_validation, caps.start_ground_truth, caps.read_uploads,
                                         caps.stage_validation_input])
        self.processing_done = function(
            "ProcessingDone", VALIDATED_WRITER, "handlers.processing_done.handler",
            "Validation/monitor/ground-truth/track job finished: metrics, validated/ or quarantine/, start training",
            fan_in, [caps.observe_processing, caps.read_job_reports, caps.write_data, caps.publish_metrics,
                     caps.start_training, caps.send_labeled_rows, caps.record_tracking])
        self.training_done = function(
            "TrainingDone", "training-done", "handlers.training_done.handler",
            "Training job finished: quality gate, register, model, endpoint config, endpoint",
            1, [caps.deploy_models, caps.start_training])
        self.endpoint_state = function(
            "EndpointState", "endpoint-state", "handlers.endpoint_state.handler",
            "Endpoint state changed: verify the new config serves, record, prune, autoscaling",
            1, [caps.deploy_models])
        self.monitor_schedule = function(
            "MonitorSchedule", "monitor-schedule", "handlers.monitor_schedule.handler",
            "Scheduled: start the drift-monitoring job over captured requests", 1, [caps.start_monitoring])

        self.rules = EventRouting(self, "Events", config=config, names=names, pipeline=self, key=key)

        CfnOutput(self, "NotificationTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letters.queue_url)
        CfnOutput(self, "ImageUri", value=self.image.image_uri)
        CfnOutput(self, "TrainingRoleArn", value=self.training_role.role_arn)
        CfnOutput(self, "ProcessingRoleArn", value=self.processing_role.role_arn)
        CfnOutput(self, "ModelRoleArn", value=self.model_role.role_arn)
        CfnOutput(self, "ModelPackageGroupName", value=names.model_package_group,
                  description="The gate-approved models (the control plane creates the group with the first one)")
        if self.tracking_role:
            CfnOutput(self, "TrackingRoleArn", value=self.tracking_role.role_arn)
            CfnOutput(self, "MlflowExperimentName", value=names.mlflow_experiment)
            CfnOutput(self, "MlflowRegisteredModelName", value=names.registered_model)


class EventRouting(Construct):
    """EventBridge rules, each filtered to this stage's bucket prefix, job prefixes or endpoint."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, names: Names,
                 pipeline: PipelineStack, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        dlq = pipeline.dead_letters

        def to_lambda(fn: ControlPlaneFunction) -> targets.LambdaFunction:
            return targets.LambdaFunction(fn.target, dead_letter_queue=dlq, retry_attempts=EVENT_DELIVERY_RETRIES,
                                          max_event_age=Duration.seconds(config.async_max_event_age_seconds))

        self.upload = events.Rule(
            self, "Upload", rule_name=names.rule("upload"),
            description="Object created under incoming/ or ground-truth/ in the data bucket -> trigger",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [names.data_bucket]},
                        "object": {"key": [{"prefix": "incoming/"}, {"prefix": "ground-truth/"}]}}),
            targets=[to_lambda(pipeline.trigger)])
        # Every processing job the control plane starts (validation, monitoring, ground truth, and track jobs when
        # tracking is on): their state changes go to processing_done, their failures to the failed-jobs rule.
        processing_prefixes = [names.validation_job_prefix, names.monitor_job_prefix, names.ground_truth_job_prefix]
        if config.mlflow_tracking:
            processing_prefixes.append(names.tracking_job_prefix)
        processing_jobs = [{"prefix": p} for p in processing_prefixes]
        self.processing = events.Rule(
            self, "ProcessingJobs", rule_name=names.rule("processing-jobs"),
            description="Processing jobs of this stage reached a final state -> processing_done",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Processing Job State Change"],
                detail={"ProcessingJobName": processing_jobs, "ProcessingJobStatus": JOB_TERMINAL_STATES}),
            targets=[to_lambda(pipeline.processing_done)])
        self.training = events.Rule(
            self, "TrainingJobs", rule_name=names.rule("training-jobs"),
            description="Training jobs of this stage reached a final state -> training_done",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Training Job State Change"],
                detail={"TrainingJobName": [{"prefix": names.training_job_prefix}],
                        "TrainingJobStatus": JOB_TERMINAL_STATES}),
            targets=[to_lambda(pipeline.training_done)])
        self.endpoint = events.Rule(
            self, "EndpointState", rule_name=names.rule("endpoint-state"),
            description="This stage's endpoint changed state -> endpoint_state",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [names.endpoint]}),
            targets=[to_lambda(pipeline.endpoint_state)])
        self.monitor = events.Rule(
            self, "MonitorSchedule", rule_name=names.rule("monitor-schedule"),
            description="Start the drift monitor over captured requests",
            schedule=events.Schedule.expression(config.monitor_schedule),
            targets=[to_lambda(pipeline.monitor_schedule)])
        # Failed jobs notify at once, and the rule's TriggeredRules metric feeds the failed-jobs alarm.
        self.failed_jobs = events.Rule(
            self, "FailedJobs", rule_name=names.failed_jobs_rule,
            description="A processing or training job of this stage failed -> SNS (+ alarm metric)",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Processing Job State Change", "SageMaker Training Job State Change"],
                detail={"$or": [
                    {"ProcessingJobName": processing_jobs, "ProcessingJobStatus": ["Failed"]},
                    {"TrainingJobName": [{"prefix": names.training_job_prefix}], "TrainingJobStatus": ["Failed"]},
                ]}),
            targets=[targets.SnsTopic(pipeline.topic, dead_letter_queue=dlq, retry_attempts=EVENT_DELIVERY_RETRIES,
                                      max_event_age=Duration.seconds(config.async_max_event_age_seconds))])
        # The SNS target lets EventBridge use the topic's key with CDK's grant (kms:Decrypt, kms:GenerateDataKey*,
        # AWS's documented statement for encrypted topics, in the key's policy). SNS asks for a plain data key.
        acknowledge_unused_grant(
            key, principal="events.amazonaws.com", resources=["*"],
            actions=["kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
                     "kms:GenerateDataKeyWithoutPlaintext"],
            reason="Part of kms:GenerateDataKey*, which CDK's SnsTopic target grants EventBridge on the topic's key as "
                   "AWS documents it; SNS publishing for EventBridge uses GenerateDataKey and Decrypt only.")
