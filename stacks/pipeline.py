"""The event-driven training pipeline: image, SageMaker role, control-plane Lambdas, EventBridge rules,
notifications and the dead-letter queue every asynchronous path ends in."""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import CfnOutput, Duration, Environment, IgnoreMode, Stack
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
                                  control_plane_environment)
from stacks.nag import ScopedPolicy, acknowledge, arn
from stacks.names import Names

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


class SageMakerExecutionRole(Construct):
    """The role SageMaker jobs and the endpoint run as: read the data, write artifacts, nothing else."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey,
                 image: ecr_assets.DockerImageAsset) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"{names.prefix}: SageMaker processing, training and endpoint")
        policy = ScopedPolicy(self.role)
        data, artifacts = names.data_bucket, names.artifacts_bucket

        def s3(resource: str) -> str:
            return arn("s3", resource, region=False, account=False)

        policy.allow(actions=["s3:GetObject", "s3:GetObjectVersion"],
                     resources=[s3(f"{data}/validated/*")],
                     why="The training channel reads every validated file, by prefix.")
        policy.allow(actions=["s3:ListBucket"], resources=[s3(data)],
                     conditions={"StringLike": {"s3:prefix": ["validated/*"]}})
        policy.allow(actions=["s3:GetBucketLocation"], resources=[s3(data), s3(artifacts)])
        policy.allow(actions=["s3:GetObject", "s3:PutObject"],
                     resources=[s3(f"{artifacts}/models/*"), s3(f"{artifacts}/reports/*"),
                                s3(f"{artifacts}/datacapture/*")],
                     why="Model artifacts, reports and captured requests have per-run keys under fixed prefixes.")
        # Validation reads the trigger's copy of exactly the uploaded version, never incoming/ itself.
        policy.allow(actions=["s3:GetObject"], resources=[s3(f"{artifacts}/validation-input/*")],
                     why="Each validation job's input is a copy under validation-input/<job>/ (a generated key).")
        policy.allow(actions=["s3:ListBucket"], resources=[s3(artifacts)],
                     conditions={"StringLike": {"s3:prefix": ["models/*", "reports/*", "datacapture/*",
                                                              "validation-input/*"]}})
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


class PipelineStack(Stack):
    """Upload -> validate -> train -> deploy, driven by EventBridge."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, key: kms.IKey,
                 env: Environment | None = None, description: str | None = None) -> None:
        super().__init__(scope, construct_id, env=env, description=description)
        names = Names(config.prefix)
        self.names = names

        self.image = ModelImage(self, "ModelImage", config=config)
        self.sagemaker_role = SageMakerExecutionRole(self, "SageMakerExecution", names=names, key=key,
                                                     image=self.image.asset).role

        self.topic = sns.Topic(self, "Notifications", topic_name=names.topic, master_key=key, enforce_ssl=True,
                               display_name=f"{names.prefix} notifications")
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
            sagemaker_role_arn=self.sagemaker_role.role_arn, topic_arn=self.topic.topic_arn)
        self.control_plane = ControlPlaneProps(
            config=config, names=names, environment=environment, dead_letter_queue=self.dead_letters, key=key,
            sagemaker_role_arn=self.sagemaker_role.role_arn, topic_arn=self.topic.topic_arn)
        self.capabilities = Capabilities(names=names, config=config,
                                         sagemaker_role_arn=self.sagemaker_role.role_arn, key=key)
        caps = self.capabilities

        def function(construct_id: str, short: str, handler: str, description: str, reserved: int,
                     grants: list[Callable[[ScopedPolicy], None]]) -> ControlPlaneFunction:
            fn = ControlPlaneFunction(self, construct_id, props=self.control_plane, short_name=short,
                                      handler=handler, description=description, reserved_concurrency=reserved)
            for grant in grants:
                grant(fn.policy)
            return fn

        fan_in = config.lambda_reserved_concurrency
        # Deployment steps run one at a time: two deployers racing on one endpoint is never useful.
        self.trigger = function("Trigger", "trigger", "handlers.trigger.handler",
                                "Upload under incoming/: cheap checks, de-duplication, start validation",
                                fan_in, [caps.start_validation, caps.read_uploads, caps.stage_validation_input])
        self.processing_done = function(
            "ProcessingDone", "processing-done", "handlers.processing_done.handler",
            "Validation/monitor job finished: metrics, validated/ or quarantine/, start training",
            fan_in, [caps.observe_processing, caps.write_data, caps.publish_metrics, caps.start_training])
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

        self.rules = EventRouting(self, "Events", config=config, names=names, pipeline=self)

        CfnOutput(self, "NotificationTopicArn", value=self.topic.topic_arn)
        CfnOutput(self, "DeadLetterQueueUrl", value=self.dead_letters.queue_url)
        CfnOutput(self, "ImageUri", value=self.image.image_uri)
        CfnOutput(self, "SageMakerRoleArn", value=self.sagemaker_role.role_arn)


class EventRouting(Construct):
    """EventBridge rules, each filtered to this stage's bucket prefix, job prefixes or endpoint."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, names: Names,
                 pipeline: PipelineStack) -> None:
        super().__init__(scope, construct_id)
        dlq = pipeline.dead_letters

        def to_lambda(fn: ControlPlaneFunction) -> targets.LambdaFunction:
            return targets.LambdaFunction(fn.target, dead_letter_queue=dlq, retry_attempts=EVENT_DELIVERY_RETRIES,
                                          max_event_age=Duration.seconds(config.async_max_event_age_seconds))

        self.upload = events.Rule(
            self, "Upload", rule_name=names.rule("upload"),
            description="Object created under incoming/ in the data bucket -> trigger",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [names.data_bucket]}, "object": {"key": [{"prefix": "incoming/"}]}}),
            targets=[to_lambda(pipeline.trigger)])
        self.processing = events.Rule(
            self, "ProcessingJobs", rule_name=names.rule("processing-jobs"),
            description="Validation and monitor jobs of this stage reached a final state -> processing_done",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=["SageMaker Processing Job State Change"],
                detail={"ProcessingJobName": [{"prefix": names.validation_job_prefix},
                                              {"prefix": names.monitor_job_prefix}],
                        "ProcessingJobStatus": JOB_TERMINAL_STATES}),
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
            description="A validation, monitor or training job of this stage failed -> SNS (+ alarm metric)",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Processing Job State Change", "SageMaker Training Job State Change"],
                detail={"$or": [
                    {"ProcessingJobName": [{"prefix": names.validation_job_prefix},
                                           {"prefix": names.monitor_job_prefix}],
                     "ProcessingJobStatus": ["Failed"]},
                    {"TrainingJobName": [{"prefix": names.training_job_prefix}], "TrainingJobStatus": ["Failed"]},
                ]}),
            targets=[targets.SnsTopic(pipeline.topic, dead_letter_queue=dlq, retry_attempts=EVENT_DELIVERY_RETRIES,
                                      max_event_age=Duration.seconds(config.async_max_event_age_seconds))])
