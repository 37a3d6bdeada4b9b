"""Serving stack: the endpoint exists only through the deployer's custom resource; the API is authenticated,
throttled, logged, and may invoke this one endpoint only."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from apigw_vtl import Template, selected

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
    assert {r["StatusCode"] for r in integration["IntegrationResponses"]} == {"200", "400", "429", "502", "503"}
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


# -- InvokeEndpoint errors as the caller sees them ----------------------------------------------------------
ACCOUNT = "123456789012"
LOG_STREAM = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/mlops-dev-endpoint"


def model_error(status: int, original: str) -> dict:
    """SageMaker's 424 ModelError body when the container answered ``status`` with body ``original``."""
    kind = "client" if status < 500 else "server"
    return {"ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL", "LogStreamArn": LOG_STREAM,
            "Message": f"Received {kind} error ({status}) from primary with message \"{original}\". See "
                       f"https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEventViewer:"
                       f"group=/aws/sagemaker/Endpoints/mlops-dev-endpoint in account {ACCOUNT} for more information.",
            "OriginalMessage": original, "OriginalStatusCode": status}


def container(reason: str) -> str:
    """The serving container's error body (orjson.dumps({"error": reason}): compact, non-ASCII as is)."""
    return json.dumps({"error": reason}, separators=(",", ":"), ensure_ascii=False)


TRICKY = 'column "age": expected a number, got \\N (row 3)\ttab — naïve ✓'
GENERIC_MODEL_FAILURE = "the model failed to answer"
CASES = [
    # (SageMaker status, body, status the caller gets, error text or None for "any generic text")
    (424, model_error(400, container("missing column 'age'")), 400, "missing column 'age'"),
    (424, model_error(400, container(TRICKY)), 400, TRICKY),
    (424, model_error(413, container("body is over the 6291456 byte limit: split the batch")), 413,
     "body is over the 6291456 byte limit: split the batch"),
    (424, model_error(415, container("unsupported Content-Type text/plain")), 415, "unsupported Content-Type text/plain"),
    (424, model_error(406, container("cannot answer in image/png")), 406, "cannot answer in image/png"),
    (424, model_error(404, container("no route GET /x")), 400, "no route GET /x"),  # not forwarded as is
    (424, model_error(400, "Bad Request"), 400, "the model rejected the request"),  # not the container's JSON
    (424, model_error(400, '{"error":"x","trace":"File /opt/ml/code"}'), 400, "the model rejected the request"),
    (424, model_error(500, container("internal error: ValueError")), 502, GENERIC_MODEL_FAILURE),
    (424, model_error(503, container("model not loaded yet")), 502, GENERIC_MODEL_FAILURE),
    (400, {"Message": f"Endpoint mlops-dev-endpoint of account {ACCOUNT} not found."}, 503, None),
    (400, {"message": "1 validation error detected: Value 'x' at 'contentType' failed to satisfy constraint"}, 400, None),
    (400, {"__type": "ThrottlingException", "message": "Rate exceeded"}, 429, None),
    (429, {"Message": "Model is not ready or too many requests"}, 429, None),
    (500, {"Message": f"InternalFailure in account {ACCOUNT}"}, 502, None),
    (503, {"Message": "ServiceUnavailable"}, 503, None),
    (530, {"Message": "InternalDependencyException"}, 502, None),
    (403, {"Message": f"User: arn:aws:sts::{ACCOUNT}:assumed-role/x is not authorized"}, 502, None),
]


def integration_of(synth) -> tuple[dict, dict]:
    (method,) = synth.resources("Serving", "AWS::ApiGateway::Method").values()
    return method["Properties"], method["Properties"]["Integration"]


def answer(integration: dict, status: int, body: dict) -> tuple[int, str, dict]:
    """What API Gateway returns for a backend answer: (status, Content-Type mapping, body)."""
    responses = {r["StatusCode"]: r for r in integration["IntegrationResponses"]}
    chosen = responses[selected({code: r.get("SelectionPattern") for code, r in responses.items()}, status)]
    templates = chosen["ResponseTemplates"]
    output, override = Template(templates["application/json"]).render(body)
    return override or int(chosen["StatusCode"]), chosen["ResponseParameters"]["method.response.header.Content-Type"], \
        json.loads(output)


@pytest.mark.parametrize("status, body, expected_status, expected_error", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_invoke_endpoint_errors_reach_the_caller_as_json_reasons_only(dev, status, body, expected_status,
                                                                      expected_error):
    """Selection patterns (Java regex on the status code, approximated by re.fullmatch) and the VTL templates
    (evaluated by tests/stacks/apigw_vtl.py, a documented subset of Velocity) against SageMaker's error bodies:
    the container's own 4xx and reason come through; SageMaker's text, account id and log stream never do."""
    method, integration = integration_of(dev)
    got_status, content_type, got = answer(integration, status, body)
    assert got_status == expected_status
    assert content_type == "'application/json'"
    assert set(got) == {"error"} and isinstance(got["error"], str) and got["error"]
    if expected_error is not None:
        assert got["error"] == expected_error
    text = json.dumps(got)
    assert ACCOUNT not in text and "arn:" not in text and "LogStream" not in text and "console.aws" not in text
    assert str(got_status) in {r["StatusCode"] for r in method["MethodResponses"]}


def test_every_non_2xx_status_selects_an_error_response_and_2xx_passes_through(synth):
    _, integration = integration_of(synth)
    responses = {r["StatusCode"]: r for r in integration["IntegrationResponses"]}
    patterns = {code: r.get("SelectionPattern") for code, r in responses.items()}
    for status in range(100, 600):
        code = selected(patterns, status)  # also asserts that no two patterns overlap
        assert (code == "200") == (200 <= status < 300), status
    ok = responses["200"]
    assert "ResponseTemplates" not in ok  # the model's answer passes through unchanged, with its Content-Type
    assert ok["ResponseParameters"] == {"method.response.header.Content-Type": "integration.response.header.Content-Type"}


def test_error_templates_emit_only_an_error_field_for_either_accepted_content_type(synth):
    method, integration = integration_of(synth)
    errors = [r for r in integration["IntegrationResponses"] if r["StatusCode"] != "200"]
    assert len(errors) == 4
    for response in errors:
        templates = response["ResponseTemplates"]
        assert set(templates) == {"application/json", "text/csv"}
        assert templates["application/json"] == templates["text/csv"]
        template = templates["application/json"]
        # Never SageMaker's body as a whole: only named fields are read, and only {"error": ...} is written.
        assert "$input.body" not in template and "$input.json" not in template and "$input.path('$')" not in template
        assert template.strip().splitlines()[-1].startswith('{"error": ')
        assert response["ResponseParameters"] == {"method.response.header.Content-Type": "'application/json'"}
    for response in method["MethodResponses"]:
        assert response["ResponseParameters"] == {"method.response.header.Content-Type": True}
    synth.template("Serving").has_resource_properties("AWS::ApiGateway::Method", {
        "Integration": Match.object_like({"IntegrationResponses": Match.array_with([
            Match.object_like({"StatusCode": "400", "SelectionPattern": "400|424",
                               "ResponseTemplates": Match.object_like({"application/json": Match.string_like_regexp(
                                   r"[\s\S]*responseOverride\.status[\s\S]*")})}),
            Match.object_like({"StatusCode": "429", "SelectionPattern": "429"}),
            Match.object_like({"StatusCode": "503", "SelectionPattern": "503"}),
            Match.object_like({"StatusCode": "502", "SelectionPattern": Match.any_value()}),
        ])}),
        "MethodResponses": Match.array_with([Match.object_like({"StatusCode": code}) for code in
                                             ("200", "400", "406", "413", "415", "422", "429", "502", "503")]),
    })
