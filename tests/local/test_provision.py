"""Provisioning (local.provision and its creators): a template's resources created in moto and in the stack's parts."""

import json

import pytest

from local import aws, cfn
from local.alarm_evaluator import AlarmEvaluator
from local.bus import EventBus
from local.destinations import Destinations
from local.functions import FunctionRegistry
from local.object_events import ObjectEvents
from local.provision import CUSTOM, Context, Provisioner
from local.resources_compute import CREATORS as COMPUTE
from local.resources_data import CREATORS as DATA
from local.schedules import Scheduler

HANDLER = '''
import os
def handler(event, context):
    if event.get("RequestType") == "Create":
        return {"PhysicalResourceId": "thing-1", "Data": {"Answer": os.environ["BUCKET"]}}
    return {"ok": True}
'''

FN = {"Fn::GetAtt": ["Fn", "Arn"]}
TEMPLATE = {
    "Conditions": {"Never": {"Fn::Equals": ["a", "b"]}},
    "Resources": {
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"EnableKeyRotation": True}},
        "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
            "BucketName": "prov-data", "VersioningConfiguration": {"Status": "Enabled"},
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}}},
        "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TableName": "prov-ledger", "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True}}},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "prov-dlq"}},
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17"}}},
        "Fn": {"Type": "AWS::Lambda::Function", "Metadata": {"aws:asset:path": "asset.fn"}, "Properties": {
            "FunctionName": "prov-fn", "Runtime": "python3.11", "Handler": "handlers.fn.handler", "Timeout": 30,
            "Role": {"Fn::GetAtt": ["Role", "Arn"]}, "Environment": {"Variables": {"BUCKET": {"Ref": "Bucket"}}}}},
        "Live": {"Type": "AWS::Lambda::Alias", "Properties": {"FunctionName": {"Ref": "Fn"}, "Name": "live"}},
        "Invoke": {"Type": "AWS::Lambda::EventInvokeConfig", "Properties": {
            "FunctionName": {"Ref": "Fn"}, "Qualifier": "live", "MaximumRetryAttempts": 1,
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Queue", "Arn"]}}}}},
        "Uploads": {"Type": "AWS::Events::Rule", "Properties": {
            "EventPattern": {"source": ["aws.s3"]}, "Targets": [{"Arn": {"Ref": "Live"}, "Id": "t"}]}},
        "Daily": {"Type": "AWS::Events::Rule", "Properties": {
            "ScheduleExpression": "rate(1 day)", "Targets": [{"Arn": {"Ref": "Live"}, "Id": "t"}]}},
        "Drift": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
            "AlarmName": "prov-drift", "Namespace": "P", "MetricName": "DataDrift", "Statistic": "Maximum",
            "Period": 300, "EvaluationPeriods": 1, "Threshold": 0.25, "ComparisonOperator": "GreaterThanThreshold",
            "AlarmActions": [{"Ref": "Live"}]}},
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "prov-api"}},
        "Thing": {"Type": "Custom::Thing", "Properties": {"ServiceToken": FN, "Size": 3}},
        "NeedsApi": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::GetAtt": ["Api", "NoSuchAttr"]}}},
        "ProdOnly": {"Type": "AWS::SNS::Topic", "Condition": "Never", "Properties": {"TopicName": "prov-prod"}},
    },
    "Outputs": {"Answer": {"Value": {"Fn::GetAtt": ["Thing", "Answer"]}},
                "Url": {"Value": {"Fn::Join": ["", ["https://", {"Ref": "Api"}, ".execute-api"]]}}},
}


@pytest.fixture(scope="module")
def provisioned(moto, tmp_path_factory):
    work = tmp_path_factory.mktemp("prov")
    (work / "asset.fn" / "handlers").mkdir(parents=True)
    (work / "asset.fn" / "handlers" / "__init__.py").write_text("")
    (work / "asset.fn" / "handlers" / "fn.py").write_text(HANDLER)
    (work / "App.template.json").write_text(json.dumps(TEMPLATE))
    stack = cfn.StackTemplate("App", TEMPLATE, work / "App.template.json")
    destinations = Destinations(moto.client, work / "dead.jsonl")
    functions = FunctionRegistry({"PATH": "/usr/bin:/bin", **aws.client_environment(moto.url, moto.region)},
                                 work / "logs", destinations.dead_letter)
    destinations.functions = functions
    bus = EventBus(destinations)
    ctx = Context(cfn.Resolver("123456789012", moto.region), moto.client, functions, bus,
                  Scheduler(bus, "123456789012", moto.region), AlarmEvaluator(destinations, "123456789012", moto.region),
                  destinations, ObjectEvents(bus.emit, "123456789012", moto.region))
    ctx.resolver.add_stack(stack)
    try:
        Provisioner(ctx, {**DATA, **COMPUTE}).provision(stack)
        yield ctx, ctx.resolver.publish_outputs(stack)
    finally:
        functions.stop()


def test_the_registry_has_one_creator_per_emulated_type():
    assert not set(DATA) & set(COMPUTE)
    assert {"AWS::S3::Bucket", "AWS::Lambda::Function", "AWS::CloudWatch::Alarm", CUSTOM} <= set(DATA) | set(COMPUTE)


def test_data_resources_exist_in_moto_as_the_template_says(provisioned, moto):
    ctx, _ = provisioned
    assert moto.client("s3").get_bucket_versioning(Bucket="prov-data")["Status"] == "Enabled"
    assert ctx.objects.buckets == {"prov-data"}
    ttl = moto.client("dynamodb").describe_time_to_live(TableName="prov-ledger")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at"
    assert ctx.destinations.queues["prov-dlq"].endswith("/prov-dlq")
    role = cfn.cfn_physical_name("App", "Role")
    assert moto.client("iam").get_role(RoleName=role)["Role"]["Arn"].endswith(f":role/{role}")


def test_functions_rules_schedules_and_alarms_join_the_stacks_parts(provisioned):
    ctx, _ = provisioned
    fn = ctx.functions.lookup("prov-fn")
    assert fn.spec.environment == {"BUCKET": "prov-data"} and fn.spec.timeout == 30
    assert fn.spec.max_retries == 1 and fn.spec.failure_destination.endswith(":sqs:us-east-1:123456789012:prov-dlq")
    assert [r.name for r in ctx.bus.rules] == [cfn.cfn_physical_name("App", "Uploads")]
    assert ctx.bus.rules[0].targets[0].arn.endswith(":function:prov-fn:live")
    assert [r.schedule for r in ctx.scheduler.rules] == ["rate(1 day)"]
    assert ctx.alarms.state("prov-drift") == "INSUFFICIENT_DATA"


def test_a_custom_resource_gets_its_create_request_and_its_data_resolves(provisioned):
    ctx, outputs = provisioned
    assert outputs["Answer"] == "prov-data"
    assert ctx.functions.lookup("prov-fn").invocations[0]["source"] == "cloudformation"


def test_what_is_not_emulated_is_listed_and_still_resolves(provisioned):
    ctx, outputs = provisioned
    listed = "\n".join(ctx.not_emulated)
    assert "App/Api (AWS::ApiGateway::RestApi)" in listed
    assert "App/NeedsApi (AWS::SNS::Topic): " in listed and "NoSuchAttr" in listed
    assert "ProdOnly" not in listed  # a false condition: not created, not listed
    assert outputs["Url"].startswith("https://") and outputs["Url"].endswith(".execute-api")
