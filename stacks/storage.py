"""Stateful resources: the customer-managed key, the buckets and the decision ledger.

Kept apart from everything else so that the stateless stacks can be destroyed and redeployed freely.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import StageConfig
from stacks.names import Names
from stacks.nag import arn

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


class StorageStack(Stack):
    """KMS key, data/artifacts/log buckets, DynamoDB ledger."""

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

        CfnOutput(self, "DataBucketName", value=self.data.bucket_name,
                  description="Upload CSV/Parquet files under incoming/")
        CfnOutput(self, "ArtifactsBucketName", value=self.artifacts.bucket_name)
        CfnOutput(self, "LedgerTableName", value=self.ledger.table_name)
        CfnOutput(self, "KmsKeyArn", value=self.key.key_arn)
