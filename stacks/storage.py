"""Stateful resources: the customer-managed key, the buckets, the decision ledger and the MLflow App (runs and
registered model versions).

Kept apart from everything else so that the stateless stacks can be destroyed and redeployed freely.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.config import StageConfig
from stacks.names import MLFLOW_ARTIFACTS_PREFIX, Names
from stacks.nag import ScopedPolicy, arn

# Prefixes of the data bucket (CONTRACTS.md): users write incoming/, the system writes the others.
INCOMING_PREFIX, VALIDATED_PREFIX, QUARANTINE_PREFIX = "incoming/", "validated/", "quarantine/"
DATA_PREFIXES = (INCOMING_PREFIX, VALIDATED_PREFIX, QUARANTINE_PREFIX)
# Every request that creates an object under validated/ or changes one there. s3:PutObject also authorises
# CopyObject's target and the multipart calls (CreateMultipartUpload, UploadPart(Copy), CompleteMultipartUpload).
# Deletes are left out on purpose: removing a file adds no unvalidated data, no system role deletes, and
# dev's stack deletion empties the bucket.
OBJECT_WRITE_ACTIONS = ("s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:PutObjectTagging",
                        "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging",
                        "s3:PutObjectRetention", "s3:PutObjectLegalHold", "s3:ReplicateObject", "s3:ReplicateTags")


class EncryptionKey(Construct):
    """One customer-managed key for data at rest, usable by the AWS services that write on our behalf."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, alias=names.key_alias,
                           description=f"{names.prefix}: data, artifacts, ledger, queues, topics, logs",
                           removal_policy=removal_policy)
        use = ["kms:Decrypt", "kms:GenerateDataKey"]
        same_account = {"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
        # Alarms publish to the KMS-encrypted topic. (EventBridge's use of the key, for the topic and the
        # dead-letter queue, is added by CDK's event targets.)
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarms", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=use, resources=["*"], conditions=same_account))
        # CloudWatch Logs encrypts the Lambda, API access and provider log groups with this key.
        self.key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchLogs",
            principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
            actions=["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
                     "kms:GenerateDataKeyWithoutPlaintext", "kms:DescribeKey"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": arn("logs", "log-group:*")}}))


class SecureBucket(Construct):
    """A versioned, KMS-encrypted, TLS-only, private, access-logged bucket that emits EventBridge events."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket_name: str, key: kms.IKey,
                 access_logs: s3.IBucket, lifecycle_rules: list[s3.LifecycleRule], retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self, "Bucket", bucket_name=bucket_name, versioned=True,
            encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
            enforce_ssl=True, minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs, server_access_logs_prefix=f"{construct_id.lower()}/",
            lifecycle_rules=lifecycle_rules,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            auto_delete_objects=not retain,
        )
        # Native CloudFormation switch: no notification custom resource, every object event on the default bus.
        cfn = self.bucket.node.default_child
        assert isinstance(cfn, s3.CfnBucket)
        cfn.add_property_override("NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True)


class ExperimentTracking(Construct):
    """SageMaker's serverless managed MLflow (an MLflow App): every training run, its metrics and its model as a
    version of one registered model. Its artifacts (models, reports) live under mlflow/ of the artifacts bucket.

    Why in the storage stack: runs, metrics and registered model versions are history nothing can recreate (the app
    keeps them in its managed backend; deleting the app deletes them), like the ledger. The stateless stacks are
    destroyed and redeployed freely; this one is not, and with retain_data (prod) the app is retained on stack
    deletion with the buckets it writes to, while dev deletes it. Name and role are replacement-only properties of
    AWS::SageMaker::MlflowApp, so both are fixed here for the app's lifetime.

    Registration into the SageMaker Model Registry stays off (AutoModelRegistrationDisabled): the package group the
    quality gate approves into is the one source of what deploys; the control plane writes the MLflow run id and model
    version onto the package itself."""

    def __init__(self, scope: Construct, construct_id: str, *, names: Names, key: kms.IKey, artifacts: s3.IBucket,
                 removal_policy: RemovalPolicy) -> None:
        super().__init__(scope, construct_id)
        # The role the app uses for its artifact store. No aws:SourceAccount/aws:SourceArn condition: SageMaker
        # documents those trust conditions per feature (training, processing, inference, ...), MLflow Apps not among
        # them, and a condition the service does not send would make the app unable to assume its role.
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description=f"{names.prefix}: the MLflow App's artifact store (mlflow/ of the artifacts "
                                         "bucket)")
        policy = ScopedPolicy(self.role)
        bucket = names.artifacts_bucket

        def s3_arn(resource: str) -> str:
            return arn("s3", resource, region=False, account=False)

        # The app reads artifacts for its UI and API (downloads, model version download URIs) and writes them when it
        # hands out presigned uploads; clients with their own S3 access write directly.
        policy.allow(actions=["s3:GetObject", "s3:PutObject"],
                     resources=[s3_arn(f"{bucket}/{MLFLOW_ARTIFACTS_PREFIX}*")],
                     why="MLflow names artifact keys per experiment, run and logged model under the artifact store "
                         f"{MLFLOW_ARTIFACTS_PREFIX} (generated ids).")
        policy.allow(actions=["s3:ListBucket"], resources=[s3_arn(bucket)],
                     conditions={"StringLike": {"s3:prefix": [f"{MLFLOW_ARTIFACTS_PREFIX}*"]}})
        # The artifacts bucket is SSE-KMS with the stage key (its policy delegates to IAM).
        policy.allow(actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[key.key_arn])
        self.app = sagemaker.CfnMlflowApp(
            self, "App", name=names.mlflow_app, artifact_store_uri=names.mlflow_artifact_store,
            role_arn=self.role.role_arn, model_registration_mode="AutoModelRegistrationDisabled")
        self.app.apply_removal_policy(removal_policy)
        # The app uses its role and its artifact store as soon as it exists: the role's policy and the bucket first.
        # (The role itself is already a dependency, through RoleArn.)
        self.app.node.add_dependency(self.role.node.find_child("DefaultPolicy"), artifacts)

    @property
    def app_arn(self) -> str:
        return self.app.attr_arn


class StorageStack(Stack):
    """KMS key, data/artifacts/log buckets, DynamoDB ledger, MLflow App (with mlflow_tracking)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig,
                 env: Environment | None = None, description: str | None = None) -> None:
        # Data that must survive (retain_data) is also protected from an accidental `cdk destroy`.
        super().__init__(scope, construct_id, env=env, description=description,
                         termination_protection=config.retain_data)
        names = Names(config.prefix)
        retain = config.retain_data
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY

        self.key = EncryptionKey(self, "Encryption", names=names, removal_policy=removal).key

        # S3 server access logging cannot deliver to SSE-KMS buckets, hence S3-managed encryption here.
        self.logs_bucket = s3.Bucket(
            self, "AccessLogs", bucket_name=names.logs_bucket, versioned=True,
            encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True, minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30),
                                              abort_incomplete_multipart_upload_after=Duration.days(1))],
            removal_policy=removal, auto_delete_objects=not retain)

        self.data = SecureBucket(
            self, "Data", bucket_name=names.data_bucket, key=self.key, access_logs=self.logs_bucket,
            retain=retain,
            lifecycle_rules=[
                # Uploads are never deleted by the system; old versions of rewritten keys are.
                s3.LifecycleRule(id="expire-noncurrent-versions", noncurrent_version_expiration=Duration.days(90)),
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
                s3.LifecycleRule(id="archive-quarantine", prefix="quarantine/", transitions=[
                    s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=Duration.days(30))]),
            ]).bucket
        # Training reads everything under validated/: only the function that copies uploads there after their
        # validation passed may write it, whatever an identity policy elsewhere in the account allows. The role
        # is matched by name (it lives in the pipeline stack, which deploys later; a Deny naming a role that
        # does not exist yet simply denies everyone).
        self.data.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheValidationVerdictWritesValidated", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=list(OBJECT_WRITE_ACTIONS), resources=[self.data.arn_for_objects(f"{VALIDATED_PREFIX}*")],
            conditions={"ArnNotEquals": {
                "aws:PrincipalArn": arn("iam", f"role/{names.validated_writer_role}", region=False)}}))
        self.artifacts = SecureBucket(
            self, "Artifacts", bucket_name=names.artifacts_bucket, key=self.key, access_logs=self.logs_bucket,
            retain=retain,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-noncurrent-versions", noncurrent_version_expiration=Duration.days(90)),
                s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
                # Captured requests are only needed until the next monitoring runs have read them.
                s3.LifecycleRule(id="expire-data-capture", prefix="datacapture/", expiration=Duration.days(90)),
                # Each validation job's private copy of the upload it checked: the upload itself, and its
                # validated/ or quarantine/ copy, stay in the data bucket.
                s3.LifecycleRule(id="expire-validation-inputs", prefix="validation-input/",
                                 expiration=Duration.days(14), noncurrent_version_expiration=Duration.days(1)),
            ]).bucket

        self.ledger = dynamodb.Table(
            self, "Ledger", table_name=names.ledger_table,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            time_to_live_attribute="expires_at",
            deletion_protection=retain,
            removal_policy=removal)

        self.tracking: ExperimentTracking | None = None
        if config.mlflow_tracking:
            self.tracking = ExperimentTracking(self, "Mlflow", names=names, key=self.key, artifacts=self.artifacts,
                                               removal_policy=removal)
            CfnOutput(self, "MlflowAppArn", value=self.tracking.app_arn,
                      description="The MLflow App (tracking URI of the MLflow client with the sagemaker-mlflow plugin)")
            # The app has no static URL: the UI opens through a presigned URL (CreatePresignedMlflowAppUrl, which needs
            # sagemaker:CreatePresignedMlflowAppUrl on the app), usable once, within ExpiresInSeconds (at most 300).
            CfnOutput(self, "MlflowUiUrlCommand",
                      value=f"aws sagemaker create-presigned-mlflow-app-url --region {Aws.REGION} "
                            f"--arn {self.tracking.app_arn} --expires-in-seconds 300 "
                            "--query AuthorizedUrl --output text",
                      description="Prints a one-time presigned URL of the MLflow UI: open it in a browser within 5 "
                                  "minutes")

        CfnOutput(self, "DataBucketName", value=self.data.bucket_name,
                  description="Upload CSV/Parquet files under incoming/")
        CfnOutput(self, "ArtifactsBucketName", value=self.artifacts.bucket_name)
        CfnOutput(self, "LedgerTableName", value=self.ledger.table_name)
        CfnOutput(self, "KmsKeyArn", value=self.key.key_arn)
