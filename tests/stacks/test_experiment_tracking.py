"""Experiment tracking: SageMaker's managed MLflow (an MLflow App) in the storage stack, the role of the track jobs
that log each training run into it, what the control plane gets to start them, and the stacks without it
(mlflow_tracking off)."""

from __future__ import annotations

import json

import boto3
import pytest
from cfnlint.api import ManualArgs, lint_file

from stack_synth import KINDS, sagemaker_roles
from test_pipeline_stack import as_list, function_statements, ours, role_statements, rules


def text(value) -> str:
    """A template value as text, pseudo parameters as <Name>, other references as <LogicalId.Attr>."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref'].removeprefix('AWS::')}>"
    if "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(text(p) for p in parts)
    if "Fn::ImportValue" in value:
        return f"<import {value['Fn::ImportValue']}>"
    raise AssertionError(f"unexpected template value {value}")


def mlflow_app(synth) -> tuple[str, dict]:
    (app,) = synth.resources("Storage", "AWS::SageMaker::MlflowApp").items()
    return app


def storage_role_statements(synth, role_id: str) -> list[dict]:
    return [s for p in synth.resources("Storage", "AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def artifacts(synth) -> str:
    return f"{synth.config.prefix}-artifacts-<AccountId>-<Region>"


def test_the_mlflow_app_keeps_its_artifacts_in_the_artifacts_bucket_and_registers_nothing(synth):
    """The gate-approved SageMaker package group stays what deploys: MLflow never registers into it."""
    logical_id, app = mlflow_app(synth)
    props = app["Properties"]
    assert props["Name"] == f"{synth.config.prefix}-mlflow"
    assert text(props["ArtifactStoreUri"]) == f"s3://{artifacts(synth)}/mlflow/"
    assert props["ModelRegistrationMode"] == "AutoModelRegistrationDisabled"
    role_id = props["RoleArn"]["Fn::GetAtt"][0]
    assert synth.templates["Storage"]["Resources"][role_id]["Type"] == "AWS::IAM::Role"
    # Its role's policy and its bucket (with the bucket's policy, and in dev the emptying of it on deletion, which
    # thus runs after the app is gone) exist before the app first uses them.
    resources = synth.templates["Storage"]["Resources"]
    types = {resources[d]["Type"] for d in app["DependsOn"]}
    assert {"AWS::IAM::Policy", "AWS::S3::Bucket", "AWS::S3::BucketPolicy"} <= types <= {
        "AWS::IAM::Policy", "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "Custom::S3AutoDeleteObjects"}
    (bucket,) = [d for d in app["DependsOn"] if resources[d]["Type"] == "AWS::S3::Bucket"]
    assert text(resources[bucket]["Properties"]["BucketName"]) == artifacts(synth)
    assert [k for k in KINDS if synth.resources(k, "AWS::SageMaker::MlflowApp")] == ["Storage"]


def test_runs_and_registered_versions_are_retained_with_the_data(dev, prod):
    """State, like the ledger: prod (retain_data) keeps the app on stack deletion; dev deletes it with its buckets."""
    for synth, policy in ((dev, "Delete"), (prod, "Retain")):
        _, app = mlflow_app(synth)
        assert app["DeletionPolicy"] == app["UpdateReplacePolicy"] == policy


def test_the_apps_role_reaches_only_its_artifact_store_and_the_key(synth):
    _, app = mlflow_app(synth)
    role_id = app["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    role = synth.templates["Storage"]["Resources"][role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    found = {(tuple(sorted(as_list(s["Action"]))), text(s["Resource"]), json.dumps(s.get("Condition"), sort_keys=True))
             for s in storage_role_statements(synth, role_id)}
    key = "<EncryptionKey3A692D6E.Arn>"
    assert found == {
        (("s3:GetObject", "s3:PutObject"), f"arn:<Partition>:s3:::{artifacts(synth)}/mlflow/*", "null"),
        (("s3:ListBucket",), f"arn:<Partition>:s3:::{artifacts(synth)}",
         json.dumps({"StringLike": {"s3:prefix": ["mlflow/*"]}})),
        (("kms:Decrypt", "kms:GenerateDataKey"), key, "null"),
    }


def test_outputs_name_the_app_and_a_command_that_opens_its_ui(synth):
    outputs = synth.templates["Storage"]["Outputs"]
    logical_id, _ = mlflow_app(synth)
    assert outputs["MlflowAppArn"]["Value"] == {"Fn::GetAtt": [logical_id, "Arn"]}
    command = text(outputs["MlflowUiUrlCommand"]["Value"])
    assert command == (f"aws sagemaker create-presigned-mlflow-app-url --region <Region> --arn <{logical_id}.Arn> "
                       "--expires-in-seconds 300 --query AuthorizedUrl --output text")
    # The command is an operation of the pinned SDK, with these parameters and that answer.
    model = boto3.client("sagemaker", region_name="us-east-1").meta.service_model
    operation = model.operation_model("CreatePresignedMlflowAppUrl")
    assert {"Arn", "ExpiresInSeconds"} <= set(operation.input_shape.members)
    assert operation.input_shape.members["ExpiresInSeconds"].metadata["max"] >= 300
    assert "AuthorizedUrl" in operation.output_shape.members


def test_functions_get_the_tracking_environment(synth):
    p = synth.config.prefix
    logical_id, _ = mlflow_app(synth)
    roles = sagemaker_roles(synth)
    for name, (kind, _, res) in ours(synth).items():
        env = res["Properties"]["Environment"]["Variables"]
        assert f"GetAtt{logical_id}Arn" in text(env["TRACKING_URI"]), name  # the app's ARN, from the storage stack
        assert roles["tracking"] in json.dumps(env["TRACKING_ROLE_ARN"]), name
        assert env["TRACKING_EXPERIMENT"] == p and env["REGISTERED_MODEL_NAME"] == f"{p}-model", name


def test_the_outputs_the_workbench_reads_name_what_the_control_plane_uses(synth):
    """workbench/ (make experiment, make reproduce) finds the package group, the experiment and the registered model
    in the stack outputs: the very names the functions work with."""
    outputs = synth.templates["Pipeline"]["Outputs"]
    for name, (_, _, res) in ours(synth).items():
        env = res["Properties"]["Environment"]["Variables"]
        assert outputs["ModelPackageGroupName"]["Value"] == env["MODEL_PACKAGE_GROUP"], name
        assert outputs["MlflowExperimentName"]["Value"] == env["TRACKING_EXPERIMENT"], name
        assert outputs["MlflowRegisteredModelName"]["Value"] == env["REGISTERED_MODEL_NAME"], name


def statements_for(synth, function: str, action: str) -> list[dict]:
    return [s for s in function_statements(synth, f"{synth.config.prefix}-{function}")
            if action in as_list(s["Action"])]


FUNCTIONS = ("trigger", "processing-done", "training-done", "endpoint-state", "monitor-schedule", "retrain",
             "provision")


def test_every_function_may_start_track_jobs_as_the_tracking_role(synth):
    """Track requests wait in the ledger's outbox, which every function sends when it starts."""
    p = synth.config.prefix
    tracking_role = sagemaker_roles(synth)["tracking"]
    for function in FUNCTIONS:
        creates = [text(r) for s in statements_for(synth, function, "sagemaker:CreateProcessingJob")
                   for r in as_list(s["Resource"])]
        assert f"arn:<Partition>:sagemaker:<Region>:<AccountId>:processing-job/{p}-trk-*" in creates, function
        passes = [json.dumps(s["Resource"]) for s in statements_for(synth, function, "iam:PassRole")]
        assert any(tracking_role in r for r in passes), function


def test_processing_done_records_a_track_jobs_result_on_the_model_package(synth):
    p = synth.config.prefix
    describe = {text(r) for s in statements_for(synth, "processing-done", "sagemaker:DescribeProcessingJob")
                for r in as_list(s["Resource"])}
    assert f"arn:<Partition>:sagemaker:<Region>:<AccountId>:processing-job/{p}-trk-*" in describe
    (update,) = statements_for(synth, "processing-done", "sagemaker:UpdateModelPackage")
    assert text(update["Resource"]) == f"arn:<Partition>:sagemaker:<Region>:<AccountId>:model-package/{p}-models/*"


# -- mlflow_tracking off -----------------------------------------------------------------------------------------
def test_without_tracking_there_is_no_app_no_role_and_no_track_job(dev_no_tracking):
    synth = dev_no_tracking
    assert not any(synth.resources(k, "AWS::SageMaker::MlflowApp") for k in KINDS)
    assert set(sagemaker_roles(synth)) == {"training", "processing", "model"}
    for name, (_, _, res) in ours(synth).items():
        env = res["Properties"]["Environment"]["Variables"]
        assert env["TRACKING_URI"] == "" and env["TRACKING_ROLE_ARN"] == "", name
    everything = json.dumps(synth.templates)
    assert "-trk-" not in everything and "CallMlflowAppApi" not in everything and "mlflow" not in everything.lower()
    p = synth.config.prefix
    processing = rules(synth)[f"{p}-processing-jobs"]["EventPattern"]["detail"]["ProcessingJobName"]
    assert processing == [{"prefix": f"{p}-{k}-"} for k in ("val", "mon", "gt")]
    assert not {"MlflowAppArn", "MlflowUiUrlCommand"} & set(synth.templates["Storage"]["Outputs"])
    assert not {"TrackingRoleArn", "MlflowExperimentName"} & set(synth.templates["Pipeline"]["Outputs"])


def test_without_tracking_the_stacks_pass_cdk_nag_and_cfn_lint(dev_no_tracking):
    synth = dev_no_tracking
    (report,) = [r for r in synth.report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert report["conclusion"] == "success"
    for kind in ("Storage", "Pipeline"):
        path = synth.outdir / f"{synth.stack_names[kind]}.template.json"
        errors = [m for m in lint_file(path, ManualArgs(regions=["us-east-1"])) if m.rule.id.startswith("E")]
        assert not errors, errors
