"""Creators of the data, messaging and identity resources (the template's properties → moto's API).

Each creator makes one resource type exist in moto as the template describes it, and registers the values
its ``Ref`` and ``Fn::GetAtt`` resolve to. ``CREATORS`` is this module's part of the
provisioning registry (:mod:`local.provision`).
"""

from __future__ import annotations

import json
from typing import Any

from .provision import Context, Creator, Resource, register


def kms_key(ctx: Context, res: Resource) -> None:
    kms = ctx.client("kms")
    key = kms.create_key(Description=res.props.get("Description", res.logical_id))["KeyMetadata"]
    if res.props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key["KeyId"])
    register(ctx, res, key["KeyId"], Arn=key["Arn"], KeyId=key["KeyId"])


def kms_alias(ctx: Context, res: Resource) -> None:
    ctx.client("kms").create_alias(AliasName=res.props["AliasName"], TargetKeyId=res.props["TargetKeyId"])
    register(ctx, res, res.props["AliasName"])


def s3_bucket(ctx: Context, res: Resource) -> None:
    name, props = str(res.name), res.props
    s3 = ctx.client("s3")
    kwargs: dict[str, Any] = {"Bucket": name}
    if ctx.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": ctx.region}
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
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"])
    if ((props.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled"):
        ctx.objects.enable(name)
    register(ctx, res, name, Arn=f"arn:aws:s3:::{name}", DomainName=f"{name}.s3.amazonaws.com",
             RegionalDomainName=f"{name}.s3.{ctx.region}.amazonaws.com",
             WebsiteURL=f"http://{name}.s3-website-{ctx.region}.amazonaws.com")


def s3_bucket_policy(ctx: Context, res: Resource) -> None:
    # Not applied: moto evaluates a Deny with a condition (the TLS-only statement) as an unconditional Deny,
    # which would refuse every request. Listed in docs/local.md.
    ctx.not_emulated.append(res.label(f"AWS::S3::BucketPolicy on {res.props['Bucket']}: not enforced"))
    register(ctx, res, res.props["Bucket"])


def dynamodb_table(ctx: Context, res: Resource) -> None:
    props = res.props
    ddb = ctx.client("dynamodb")
    kwargs: dict[str, Any] = {"TableName": res.name, "KeySchema": props["KeySchema"],
                              "AttributeDefinitions": props["AttributeDefinitions"],
                              "BillingMode": props.get("BillingMode", "PROVISIONED")}
    if kwargs["BillingMode"] == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = props.get("ProvisionedThroughput",
                                                    {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5})
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            kwargs[key] = props[key]
    if props.get("StreamSpecification"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    ddb.create_table(**kwargs)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(TableName=res.name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl["AttributeName"]})
    arn = ctx.resolver.arn("dynamodb", f"table/{res.name}")
    register(ctx, res, res.name, Arn=arn, StreamArn=f"{arn}/stream/local")


def sns_topic(ctx: Context, res: Resource) -> None:
    attributes = {k: str(v) for k, v in {"KmsMasterKeyId": res.props.get("KmsMasterKeyId"),
                                         "DisplayName": res.props.get("DisplayName")}.items() if v}
    arn = ctx.client("sns").create_topic(Name=res.name, Attributes=attributes)["TopicArn"]
    register(ctx, res, arn, TopicArn=arn, TopicName=res.name)


def sns_subscription(ctx: Context, res: Resource) -> None:
    ctx.client("sns").subscribe(TopicArn=res.props["TopicArn"], Protocol=res.props["Protocol"],
                                Endpoint=res.props.get("Endpoint", ""))
    register(ctx, res, f"{res.props['TopicArn']}:{res.logical_id}")


def sqs_queue(ctx: Context, res: Resource) -> None:
    name = str(res.name)
    url = ctx.client("sqs").create_queue(QueueName=name)["QueueUrl"]
    ctx.destinations.add_queue(name, url)
    register(ctx, res, url, Arn=ctx.resolver.arn("sqs", name), QueueName=name, QueueUrl=url)


def iam_role(ctx: Context, res: Resource) -> None:
    iam = ctx.client("iam")
    role = iam.create_role(RoleName=res.name, Path=res.props.get("Path", "/"),
                           AssumeRolePolicyDocument=json.dumps(res.props.get("AssumeRolePolicyDocument", {})))["Role"]
    for policy in res.props.get("Policies", []) or []:
        iam.put_role_policy(RoleName=res.name, PolicyName=policy["PolicyName"],
                            PolicyDocument=json.dumps(policy["PolicyDocument"]))
    register(ctx, res, res.name, Arn=role["Arn"], RoleId=role["RoleId"])


def iam_policy(ctx: Context, res: Resource) -> None:
    for role in res.props.get("Roles", []) or []:
        ctx.client("iam").put_role_policy(RoleName=role, PolicyName=res.props["PolicyName"],
                                          PolicyDocument=json.dumps(res.props["PolicyDocument"]))
    register(ctx, res, res.name)


def dashboard(ctx: Context, res: Resource) -> None:
    ctx.client("cloudwatch").put_dashboard(DashboardName=res.name, DashboardBody=res.props.get("DashboardBody", "{}"))
    register(ctx, res, res.name)


def model_package_group(ctx: Context, res: Resource) -> None:
    group = ctx.client("sagemaker").create_model_package_group(
        ModelPackageGroupName=res.name,
        ModelPackageGroupDescription=res.props.get("ModelPackageGroupDescription", ""))
    register(ctx, res, group["ModelPackageGroupArn"], ModelPackageGroupArn=group["ModelPackageGroupArn"])


CREATORS: dict[str, Creator] = {
    "AWS::KMS::Key": kms_key,
    "AWS::KMS::Alias": kms_alias,
    "AWS::S3::Bucket": s3_bucket,
    "AWS::S3::BucketPolicy": s3_bucket_policy,
    "AWS::DynamoDB::Table": dynamodb_table,
    "AWS::SNS::Topic": sns_topic,
    "AWS::SNS::Subscription": sns_subscription,
    "AWS::SQS::Queue": sqs_queue,
    "AWS::IAM::Role": iam_role,
    "AWS::IAM::Policy": iam_policy,
    "AWS::CloudWatch::Dashboard": dashboard,
    "AWS::SageMaker::ModelPackageGroup": model_package_group,
}
