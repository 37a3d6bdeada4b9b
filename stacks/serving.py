"""Serving: the SageMaker endpoint (provisioned through the deployer, never owned by CloudFormation) and
the authenticated HTTPS API in front of it."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, CustomResource, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.control_plane import Capabilities, ControlPlaneFunction, ControlPlaneProps, log_group
from stacks.nag import ScopedPolicy, acknowledge, acknowledge_unused_grant, arn, logical_ref
from stacks.names import VARIANT_NAME

API_STAGE = "v1"

# -- InvokeEndpoint errors -> API answers ---------------------------------------------------------------
# For an AWS service integration, API Gateway picks the integration response whose selection pattern (a Java
# regex) matches the backend's HTTP status code; the patterns below are disjoint and cover every non-2xx code,
# so no error falls through to the 200 pass-through. Each error template emits only {"error": "..."}: never
# SageMaker's own body (Message, LogStreamArn and the console URL name the account). InvokeEndpoint answers
# 400 ValidationError (throttling may also arrive as a 400), 424 ModelError (the container answered non-2xx:
# OriginalStatusCode/OriginalMessage), 429 ModelNotReadyException, 500 InternalFailure, 503
# ServiceUnavailable, 530 InternalDependencyException.
JSON = "application/json"
# Statuses of the serving container that reach the caller as they are (its own 4xx with its JSON reason).
FORWARDED_MODEL_STATUSES = (400, 406, 413, 415, 422, 429)
# The serving container's error body, {"error": "<JSON string>"}: group 1 is the reason, still JSON-escaped,
# so it can be placed between quotes as it is. No raw control characters (they are not valid in JSON strings).
MODEL_REASON = r'\s*\{\s*"error"\s*:\s*"((?:[^"\\\x00-\x1f]|\\.)*)"\s*\}\s*'
THROTTLED = r"(?is).*(throttl|rate exceeded|too many requests).*"
NO_ENDPOINT = r"(?is).*endpoint .* not found.*"

# 400 (ValidationError) and 424 (ModelError) share one integration response: API Gateway keys integration
# responses by their status code, and both start as a 400 that the template overrides (once, at the end, as
# API Gateway requires). VTL calls methods on references only, hence a variable before every matches().
CLIENT_ERROR_TEMPLATE = "\n".join([
    "#set($status = 400)",
    "#set($original = $input.path('$.OriginalStatusCode'))",
    "#set($code = \"$!original\")",
    "#if($code.matches('\\d{3}'))",
    "## ModelError: the container's reason, and its status when it is one of ours to forward",
    "#set($reason = \"$!input.path('$.OriginalMessage')\")",
    f"#if($reason.matches('{MODEL_REASON}'))",
    f"#set($reason = $reason.replaceAll('{MODEL_REASON}', '$1'))",
    "#else",
    "#set($reason = \"the model rejected the request\")",
    "#end",
    f"#if($code.matches('{'|'.join(str(c) for c in FORWARDED_MODEL_STATUSES)}'))",
    "#set($status = $original)",
    "#elseif($code.matches('5\\d\\d'))",
    "#set($status = 502)",
    "#set($reason = \"the model failed to answer\")",
    "#end",
    "#else",
    "## ValidationError (or throttling reported as a 400): SageMaker's message may name the account",
    "#set($text = \"$!input.path('$.__type') $!input.path('$.message') $!input.path('$.Message')\")",
    f"#if($text.matches('{THROTTLED}'))",
    "#set($status = 429)",
    "#set($reason = \"too many requests: retry with backoff\")",
    f"#elseif($text.matches('{NO_ENDPOINT}'))",
    "#set($status = 503)",
    "#set($reason = \"no model is being served yet\")",
    "#else",
    "#set($reason = \"the endpoint rejected the request: check Content-Type, Accept and the body size\")",
    "#end",
    "#end",
    "#set($context.responseOverride.status = $status)",
    '{"error": "$reason"}',
])


@dataclass(frozen=True)
class ErrorResponse:
    status_code: str
    selection_pattern: str
    template: str


ERROR_RESPONSES = (
    ErrorResponse("400", "400|424", CLIENT_ERROR_TEMPLATE),
    ErrorResponse("429", "429", '{"error": "the model is busy or not ready yet: retry with backoff"}'),
    ErrorResponse("503", "503", '{"error": "the endpoint is unavailable: retry later"}'),
    # Everything else that is not 2xx: 500 InternalFailure, 530 InternalDependency, and 403/404/413 from
    # SageMaker itself, which mean this API is misconfigured, not that the caller erred.
    ErrorResponse("502", "(?!400|424|429|503)[013-9]\\d\\d", '{"error": "the model endpoint failed to answer"}'),
)
# Every status a caller can get: the integration responses' codes and the overrides of the client template.
METHOD_STATUSES = tuple(sorted({"200", *(r.status_code for r in ERROR_RESPONSES),
                                *(str(c) for c in FORWARDED_MODEL_STATUSES), "429", "502", "503"}))


class EndpointProvisioner(Construct):
    """``Custom::SageMakerEndpoint``: on Create/Update the deployer makes sure the endpoint serves the latest
    approved model (a no-op before the first model); on Delete it removes the endpoint, its configs and models.

    CloudFormation never holds an EndpointConfig, so ``cdk deploy`` cannot roll a newer model back. The
    properties carry the serving settings so that changing them in config triggers an Update."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ControlPlaneProps,
                 capabilities: Capabilities) -> None:
        super().__init__(scope, construct_id)
        config, names = props.config, props.names
        self.handler = ControlPlaneFunction(
            self, "Handler", props=props, short_name="provision", handler="handlers.provision.handler",
            description="Custom resource: ensure the endpoint serves the latest approved model; delete on stack delete",
            reserved_concurrency=1, timeout=Duration.minutes(5),
            # Runs once per deployment: a snapshot would be billed for nothing.
            published=False)
        capabilities.deploy_models(self.handler.policy)
        capabilities.find_latest_model(self.handler.policy)

        framework_role = iam.Role(self, "FrameworkRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                                  description=f"{names.prefix}: custom-resource provider framework")
        framework_logs = log_group(self, "FrameworkLogs", name=f"/aws/lambda/{names.function('provision-framework')}",
                                   config=config, key=props.key)
        ScopedPolicy(framework_role).allow(actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                           resources=[framework_logs.log_group_arn])
        self.provider = cr.Provider(self, "Provider", on_event_handler=self.handler.function,
                                    framework_on_event_role=framework_role, log_group=framework_logs,
                                    provider_function_name=names.function("provision-framework"))
        acknowledge(framework_role,
                    f"AwsSolutions-IAM5[Resource::{logical_ref(self.handler.function, 'Arn')}:*]",
                    "The provider framework may invoke any version of the provision function (CDK-generated).")
        acknowledge_unused_grant(
            framework_role, actions=["lambda:InvokeFunction"], resources=[f"{self.handler.function.function_arn}:*"],
            reason="CDK's Provider grants invoke on the handler's versions too; the framework invokes the unqualified "
                   "ARN (USER_ON_EVENT_FUNCTION_ARN), and the grant is CDK's, not ours to narrow.")

        self.endpoint = CustomResource(
            self, "Endpoint", service_token=self.provider.service_token, resource_type="Custom::SageMakerEndpoint",
            removal_policy=RemovalPolicy.DESTROY,
            properties={
                "EndpointName": names.endpoint,
                "VariantName": VARIANT_NAME,
                "ModelPackageGroup": names.model_package_group,
                "InstanceType": config.serving_instance_type,
                "MinInstances": str(config.serving_min_instances),
                "DataCapturePercent": str(config.data_capture_percent),
            })
        self.endpoint_name = names.endpoint


class InferenceApi(Construct):
    """REST API ``POST /invocations`` -> SageMaker runtime InvokeEndpoint on this stage's endpoint only."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ControlPlaneProps) -> None:
        super().__init__(scope, construct_id)
        config, names = props.config, props.names
        invoke_role = iam.Role(self, "InvokeRole", assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                               description=f"{names.prefix}: API Gateway -> InvokeEndpoint")
        ScopedPolicy(invoke_role).allow(actions=["sagemaker:InvokeEndpoint"],
                                        resources=[arn("sagemaker", f"endpoint/{names.endpoint}")])

        access_logs = log_group(self, "AccessLogs", name=f"/aws/apigateway/{names.api}", config=config, key=props.key)
        self.api = apigw.RestApi(
            self, "Api", rest_api_name=names.api,
            description=f"{names.prefix}: authenticated HTTPS front of the SageMaker endpoint",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The logging role is an account/region-wide setting shared with other stages' APIs: deleting
            # one stage must not break the others' logging, so it is retained.
            cloud_watch_role=True, cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                throttling_rate_limit=config.api_throttle_rate_limit,
                throttling_burst_limit=config.api_throttle_burst_limit,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True, http_method=True, ip=True, protocol=True, request_time=True, resource_path=True,
                    response_length=True, status=True, user=True),
                logging_level=apigw.MethodLoggingLevel.ERROR, data_trace_enabled=False,
                metrics_enabled=True, tracing_enabled=True))
        # CDK's automatic URL output has a hashed name; the stack outputs InvokeUrl instead.
        self.api.node.try_remove_child("Endpoint")
        cloudwatch_role = self.api.node.find_child("CloudWatchRole")
        acknowledge(cloudwatch_role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                     "AmazonAPIGatewayPushToCloudWatchLogs]",
                    "API Gateway's account-level logging role; AWS's managed policy is the documented one.")
        acknowledge(self.api.deployment_stage, "AwsSolutions-APIG3",
                    "WAF is an account/organisation decision with its own cost; the API is authenticated and "
                    "throttled per stage (and per key in api_key mode).")

        acknowledge(self.api, "AwsSolutions-APIG2",
                    "Headers are validated here (Content-Type required); the body is CSV or JSON for the model, "
                    "which the serving container validates and answers with a 4xx JSON reason.")
        validator = self.api.add_request_validator("Validator", validate_request_parameters=True,
                                                   validate_request_body=False)
        integration = apigw.AwsIntegration(
            service="runtime.sagemaker", path=f"endpoints/{names.endpoint}/invocations",
            integration_http_method="POST",
            options=apigw.IntegrationOptions(
                credentials_role=invoke_role,
                passthrough_behavior=apigw.PassthroughBehavior.WHEN_NO_MATCH,
                request_parameters={
                    "integration.request.header.Content-Type": "method.request.header.Content-Type",
                    "integration.request.header.Accept": "method.request.header.Accept"},
                integration_responses=[
                    apigw.IntegrationResponse(status_code="200", response_parameters={
                        "method.response.header.Content-Type": "integration.response.header.Content-Type"}),
                    # The same template under both content types a caller may Accept, so an error is never
                    # passed through for want of a template (the body is JSON either way).
                    *(apigw.IntegrationResponse(
                        status_code=r.status_code, selection_pattern=r.selection_pattern,
                        response_parameters={"method.response.header.Content-Type": f"'{JSON}'"},
                        response_templates={JSON: r.template, "text/csv": r.template}) for r in ERROR_RESPONSES),
                ]))
        iam_auth = config.api_auth == "iam"
        self.method = self.api.root.add_resource("invocations").add_method(
            "POST", integration,
            authorization_type=apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE,
            api_key_required=not iam_auth,
            request_validator=validator,
            request_parameters={"method.request.header.Content-Type": True, "method.request.header.Accept": False},
            method_responses=[apigw.MethodResponse(status_code=code,
                                                   response_parameters={"method.response.header.Content-Type": True})
                              for code in METHOD_STATUSES])
        acknowledge(self.method, "AwsSolutions-COG4",
                    "Callers are AWS principals (SigV4, IAM auth) or holders of an API key; no Cognito user pool.")
        if not iam_auth:
            acknowledge(self.method, "AwsSolutions-APIG4",
                        "api_key mode was chosen in config: every call needs the usage plan's API key.")
            key = self.api.add_api_key("Key", api_key_name=f"{names.prefix}-client")
            plan = self.api.add_usage_plan(
                "UsagePlan", name=f"{names.prefix}-clients",
                throttle=apigw.ThrottleSettings(rate_limit=config.api_throttle_rate_limit,
                                                burst_limit=config.api_throttle_burst_limit))
            plan.add_api_stage(stage=self.api.deployment_stage)
            plan.add_api_key(key)
            self.api_key_id = key.key_id
        self.invoke_url = f"{self.api.url}invocations"


class ServingStack(Stack):
    """Endpoint (via the deployer) + API Gateway."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ControlPlaneProps,
                 capabilities: Capabilities,
                 env: Environment | None = None, description: str | None = None) -> None:
        super().__init__(scope, construct_id, env=env, description=description)
        self.provisioner = EndpointProvisioner(self, "Endpoint", props=props, capabilities=capabilities)
        self.api = InferenceApi(self, "Api", props=props)
        CfnOutput(self, "EndpointName", value=self.provisioner.endpoint_name)
        CfnOutput(self, "InvokeUrl", value=self.api.invoke_url,
                  description=f"POST here ({props.config.api_auth} auth)")
        if props.config.api_auth == "api_key":
            CfnOutput(self, "ApiKeyId", value=self.api.api_key_id,
                      description="aws apigateway get-api-key --include-value --api-key <id>")
