"""Serving stack: the endpoint exists only through the deployer's custom resource; the API is authenticated,
throttled, logged, and may invoke this one endpoint only."""

from __future__ import annotations

import json

from aws_cdk.assertions import Match

SAGEMAKER_L1_TYPES = ("AWS::SageMaker::Endpoint", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Model")


def test_cloudformation_owns_no_endpoint_config_or_model(synth):
    for type_ in SAGEMAKER_L1_TYPES:
        assert not synth.all_resources(type_), type_


def test_endpoint_is_provisioned_by_the_deployer_custom_resource(synth):
    cfg = synth.config
    (endpoint,) = synth.resources("Serving", "Custom::SageMakerEndpoint").values()
    props = endpoint["Properties"]
    assert props["EndpointName"] == f"{cfg.prefix}-endpoint"
    assert props["VariantName"] == "AllTraffic"
    assert props["ModelPackageGroup"] == f"{cfg.prefix}-models"
    # Changing serving settings in config must reach the deployer as an Update.
    assert props["InstanceType"] == cfg.serving_instance_type
    assert props["MinInstances"] == str(cfg.serving_min_instances)
    assert props["DataCapturePercent"] == str(cfg.data_capture_percent)
    assert endpoint["DeletionPolicy"] == "Delete"  # stack delete cleans up the endpoint, configs and models

    framework_id = props["ServiceToken"]["Fn::GetAtt"][0]
    framework = synth.templates["Serving"]["Resources"][framework_id]["Properties"]
    user_fn_id = framework["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"]["Fn::GetAtt"][0]
    on_event = synth.templates["Serving"]["Resources"][user_fn_id]["Properties"]
    assert on_event["Handler"] == "handlers.provision.handler"
    assert on_event["FunctionName"] == f"{cfg.prefix}-provision"


def test_api_invokes_sagemaker_runtime_for_this_endpoint(synth):
    cfg = synth.config
    (method,) = synth.resources("Serving", "AWS::ApiGateway::Method").values()
    integration = method["Properties"]["Integration"]
    assert method["Properties"]["HttpMethod"] == "POST"
    assert integration["Type"] == "AWS" and integration["IntegrationHttpMethod"] == "POST"
    uri = "".join(p if isinstance(p, str) else "" for p in integration["Uri"]["Fn::Join"][1])
    assert uri.endswith(f":runtime.sagemaker:path/endpoints/{cfg.prefix}-endpoint/invocations")
    assert integration["RequestParameters"]["integration.request.header.Content-Type"] == \
        "method.request.header.Content-Type"
    assert method["Properties"]["RequestParameters"]["method.request.header.Content-Type"] is True
    assert {r["StatusCode"] for r in integration["IntegrationResponses"]} == {"200", "400", "502"}
    (resource,) = synth.resources("Serving", "AWS::ApiGateway::Resource").values()
    assert resource["Properties"]["PathPart"] == "invocations"


def test_api_role_may_only_invoke_this_endpoint(synth):
    (method,) = synth.resources("Serving", "AWS::ApiGateway::Method").values()
    role_id = method["Properties"]["Integration"]["Credentials"]["Fn::GetAtt"][0]
    role = synth.templates["Serving"]["Resources"][role_id]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"}
    statements = [s for p in synth.resources("Serving", "AWS::IAM::Policy").values()
                  if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert len(statements) == 1
    (statement,) = statements
    assert statement["Action"] == "sagemaker:InvokeEndpoint" and statement["Effect"] == "Allow"
    resource = "".join(p if isinstance(p, str) else "<>" for p in statement["Resource"]["Fn::Join"][1])
    assert resource == f"arn:<>:sagemaker:<>:<>:endpoint/{synth.config.prefix}-endpoint"


def test_iam_auth_is_the_default(dev, prod):
    for synth in (dev, prod):
        assert synth.config.api_auth == "iam"
        synth.template("Serving").has_resource_properties("AWS::ApiGateway::Method", {
            "AuthorizationType": "AWS_IAM", "ApiKeyRequired": False})
        assert not synth.resources("Serving", "AWS::ApiGateway::ApiKey")
        assert not synth.resources("Serving", "AWS::ApiGateway::UsagePlan")


def test_api_key_mode_requires_a_key_and_a_throttled_usage_plan(dev_api_key):
    cfg = dev_api_key.config
    t = dev_api_key.template("Serving")
    t.has_resource_properties("AWS::ApiGateway::Method", {"AuthorizationType": "NONE", "ApiKeyRequired": True})
    t.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    t.has_resource_properties("AWS::ApiGateway::UsagePlan", {
        "Throttle": {"RateLimit": cfg.api_throttle_rate_limit, "BurstLimit": cfg.api_throttle_burst_limit},
        "ApiStages": Match.array_with([Match.object_like({"Stage": Match.any_value()})])})
    t.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    assert "ApiKeyId" in dev_api_key.templates["Serving"]["Outputs"]


def test_stage_is_throttled_traced_and_access_logged(synth):
    cfg = synth.config
    (stage,) = synth.resources("Serving", "AWS::ApiGateway::Stage").values()
    props = stage["Properties"]
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == cfg.api_throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == cfg.api_throttle_burst_limit
    assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    assert props["TracingEnabled"] is True
    log_group_id = props["AccessLogSetting"]["DestinationArn"]["Fn::GetAtt"][0]
    log_group = synth.templates["Serving"]["Resources"][log_group_id]["Properties"]
    assert log_group["RetentionInDays"] == cfg.log_retention_days
    fields = json.loads(props["AccessLogSetting"]["Format"])
    assert {"requestId", "ip", "caller", "user", "status", "resourcePath"} <= set(fields)


def test_api_is_regional_and_validates_required_headers(synth):
    t = synth.template("Serving")
    t.has_resource_properties("AWS::ApiGateway::RestApi", {
        "Name": f"{synth.config.prefix}-api", "EndpointConfiguration": {"Types": ["REGIONAL"]}})
    t.has_resource_properties("AWS::ApiGateway::RequestValidator", {"ValidateRequestParameters": True})


def test_account_wide_api_logging_role_survives_stack_deletion(synth):
    """AWS::ApiGateway::Account is one setting per account/region, shared by every stage's API."""
    (account,) = synth.resources("Serving", "AWS::ApiGateway::Account").values()
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert synth.templates["Serving"]["Resources"][role_id]["DeletionPolicy"] == "Retain"
