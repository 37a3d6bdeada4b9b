"""Pipeline stack (and every control-plane function wherever it lives): image, SageMaker role, Lambdas,
EventBridge rules, notifications, dead letters. Contract names are read from docs/CONTRACTS.md."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match

from stack_synth import sagemaker_roles

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = (ROOT / "docs" / "CONTRACTS.md").read_text()


def contract_section(title: str, end: str) -> str:
    start = CONTRACTS.index(title)
    return CONTRACTS[start:CONTRACTS.index(end, start)]


CONTRACT_ENV = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(
    line.split("|")[1] for line in contract_section("Environment variables", "## SageMaker jobs").splitlines()
    if line.startswith("| `"))))
CONTRACT_HANDLERS = set(re.findall(r"^\| `(handlers\.[a-z_]+\.handler)`", CONTRACTS, re.M))


def functions(synth):
    """Every Lambda function of the app (ours: those from the lambda/ asset), by function name."""
    out = {}
    for logical_id, (kind, res) in synth.all_resources("AWS::Lambda::Function").items():
        name = res["Properties"].get("FunctionName")
        if isinstance(name, str) and name.startswith(synth.config.prefix):
            out[name] = (kind, logical_id, res)
    return out


def ours(synth):
    return {n: f for n, f in functions(synth).items() if f[2]["Properties"]["Handler"].startswith("handlers.")}


def test_contract_tables_were_parsed():
    assert len(CONTRACT_ENV) >= 25 and "ROLLBACK_ALARM_NAMES" in CONTRACT_ENV
    assert len(CONTRACT_HANDLERS) == 7


def test_every_contract_handler_is_deployed_exactly_once(synth):
    handlers = sorted(f[2]["Properties"]["Handler"] for f in ours(synth).values())
    assert handlers == sorted(CONTRACT_HANDLERS)
    for handler in CONTRACT_HANDLERS:  # the handler strings point at files of the one asset
        module = handler.rsplit(".", 1)[0].replace(".", "/")
        assert (ROOT / "lambda" / f"{module}.py").exists() or not any((ROOT / "lambda" / "handlers").glob("*.py"))


def newest_python_runtime() -> str:
    versions = [tuple(map(int, m.groups())) for name in dir(lambda_.Runtime)
                if (m := re.fullmatch(r"PYTHON_(\d+)_(\d+)", name))]
    return "python%d.%d" % max(versions)


def test_functions_use_the_newest_python_runtime_with_explicit_limits(synth):
    cfg = synth.config
    for name, (_, _, res) in ours(synth).items():
        props = res["Properties"]
        assert props["Runtime"] == newest_python_runtime(), name
        assert props["MemorySize"] == cfg.lambda_memory_mb, name
        expected_timeout = 300 if name.endswith("-provision") else cfg.lambda_timeout_seconds
        assert props["Timeout"] == expected_timeout, name
        assert props["TracingConfig"] == {"Mode": "Active"}, name
        assert props["ReservedConcurrentExecutions"] >= 1, name
        assert "LoggingConfig" in props and "LogGroup" in props["LoggingConfig"], name
    fan_in = {n: f[2]["Properties"]["ReservedConcurrentExecutions"] for n, f in ours(synth).items()}
    assert fan_in[f"{cfg.prefix}-trigger"] == cfg.lambda_reserved_concurrency
    assert fan_in[f"{cfg.prefix}-training-done"] == 1  # deployments are serialized


def test_every_function_gets_the_contract_environment(synth):
    cfg = synth.config
    for name, (_, _, res) in ours(synth).items():
        env = res["Properties"]["Environment"]["Variables"]
        assert set(env) == CONTRACT_ENV, (name, set(env) ^ CONTRACT_ENV)
        assert env["NAME_PREFIX"] == cfg.prefix
        assert env["ENDPOINT_NAME"] == f"{cfg.prefix}-endpoint"
        assert env["MODEL_PACKAGE_GROUP"] == f"{cfg.prefix}-models"
        assert env["LEDGER_TABLE"] == f"{cfg.prefix}-ledger"
        assert env["TARGET_COLUMN"] == cfg.target_column
        assert env["SERVING_MIN_INSTANCES"] == str(cfg.serving_min_instances)
        assert env["SERVING_MAX_INSTANCES"] == str(cfg.serving_max_instances)
        assert env["SCALING_TARGET_INVOCATIONS"] == str(cfg.scaling_target_invocations)
        assert json.loads(env["QUALITY_GATE"]) == cfg.quality_gate
        assert json.loads(env["TRAINING_HYPERPARAMETERS"]) == dict(cfg.training_hyperparameters)
        assert env["DRIFT_THRESHOLD"] == str(cfg.drift_threshold)
        assert env["ALLOWED_EXTENSIONS"] == ",".join(cfg.allowed_extensions)
        assert env["ROLLBACK_ALARM_NAMES"] == f"{cfg.prefix}-endpoint-5xx,{cfg.prefix}-model-latency"


def test_target_column_override_reaches_the_functions(tmp_path_factory):
    from stack_synth import synthesize
    synth = synthesize(tmp_path_factory.mktemp("cdk-price"), {"stage": "dev", "target_column": "price",
                                                              "serving_max_instances": "5"})
    for _, _, res in ours(synth).values():
        env = res["Properties"]["Environment"]["Variables"]
        assert env["TARGET_COLUMN"] == "price" and env["SERVING_MAX_INSTANCES"] == "5"


def test_log_groups_have_the_configured_retention_and_kms(synth):
    groups = [r for _, r in synth.all_resources("AWS::Logs::LogGroup").values()]
    assert len(groups) >= len(ours(synth)) + 1  # + the API access log
    for group in groups:
        assert group["Properties"]["RetentionInDays"] == synth.config.log_retention_days
        assert "KmsKeyId" in group["Properties"]


def test_async_invocations_retry_then_dead_letter(synth):
    """Lambda keeps async settings per qualifier: the live alias (what events invoke) needs its own."""
    cfg = synth.config
    def qualifier(kind: str, value) -> str:
        if isinstance(value, str):
            return value
        # CDK's form for an alias: the 8th field of the alias ARN (…:function:name:alias).
        index, (separator, ref) = value["Fn::Select"][0], value["Fn::Select"][1]["Fn::Split"]
        assert (index, separator) == (7, ":")
        return synth.templates[kind]["Resources"][ref["Ref"]]["Properties"]["Name"]

    by_qualifier = {(res["Properties"]["FunctionName"]["Ref"], qualifier(kind, res["Properties"]["Qualifier"])):
                    res["Properties"] for kind, res in synth.all_resources("AWS::Lambda::EventInvokeConfig").values()}
    for name, (_, logical_id, _) in ours(synth).items():
        qualifiers = ["$LATEST"] if name.endswith("-provision") else ["$LATEST", "live"]
        for qualifier in qualifiers:
            props = by_qualifier[(logical_id, qualifier)]
            assert props["MaximumRetryAttempts"] == cfg.async_retry_attempts, (name, qualifier)
            assert props["MaximumEventAgeInSeconds"] == cfg.async_max_event_age_seconds, (name, qualifier)
            destination = json.dumps(props["DestinationConfig"]["OnFailure"]["Destination"])
            assert "DeadLetters" in destination, (name, qualifier)


def live_aliases(synth) -> dict[str, tuple[str, str]]:
    """function logical id -> (stack kind, alias logical id) of every `live` alias."""
    return {res["Properties"]["FunctionName"]["Ref"]: (kind, alias_id)
            for alias_id, (kind, res) in synth.all_resources("AWS::Lambda::Alias").items()
            if res["Properties"]["Name"] == "live"}


def test_event_driven_functions_snap_start_from_a_published_version_behind_the_live_alias(synth):
    aliases = live_aliases(synth)
    for name, (kind, logical_id, res) in ours(synth).items():
        props = res["Properties"]
        if name.endswith("-provision"):  # runs once per deployment: no snapshot to pay for, invoked directly
            assert "SnapStart" not in props and logical_id not in aliases, name
            continue
        assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
        alias_kind, alias_id = aliases[logical_id]
        assert alias_kind == kind and synth.invoked_function(kind, {"Ref": alias_id}) == logical_id
        versions = [r for r in synth.resources(kind, "AWS::Lambda::Version").values()
                    if r["Properties"]["FunctionName"] == {"Ref": logical_id}]
        # One version per deployment, and a replaced one is deleted so it stops holding a billed snapshot.
        assert len(versions) == 1 and versions[0]["DeletionPolicy"] == "Delete", name
    assert len(aliases) == 6


def test_snap_start_can_be_turned_off_keeping_the_same_wiring(tmp_path_factory, dev):
    from stack_synth import synthesize
    off = synthesize(tmp_path_factory.mktemp("cdk-nosnap"), {"stage": "dev", "lambda_snap_start": "false"})
    assert all("SnapStart" not in f[2]["Properties"] for f in ours(off).values())
    assert sorted(live_aliases(off)) == sorted(live_aliases(dev))
    lambda_rules = {n: r for n, r in rules(off).items() if n != off.config.prefix + "-failed-jobs"}
    assert len(lambda_rules) == 5
    for rule in lambda_rules.values():
        target_function(off, rule)  # asserts the target is a live alias


def test_dead_letter_queue_and_topic_are_kms_encrypted_and_tls_only(synth):
    t = synth.template("Pipeline")
    t.has_resource_properties("AWS::SQS::Queue", {"QueueName": f"{synth.config.prefix}-dead-letters",
                                                  "KmsMasterKeyId": Match.any_value(),
                                                  "MessageRetentionPeriod": 14 * 24 * 3600})
    t.has_resource_properties("AWS::SNS::Topic", {"TopicName": f"{synth.config.prefix}-notifications",
                                                  "KmsMasterKeyId": Match.any_value()})
    for type_, prop in (("AWS::SQS::QueuePolicy", "PolicyDocument"), ("AWS::SNS::TopicPolicy", "PolicyDocument")):
        statements = [s for r in synth.resources("Pipeline", type_).values() for s in r["Properties"][prop]["Statement"]]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements), type_


def rules(synth):
    return {r["Properties"]["Name"]: r["Properties"] for _, r in synth.resources("Pipeline", "AWS::Events::Rule").items()}


def target_function(synth, rule) -> str:
    (target,) = rule["Targets"]
    logical_id = synth.invoked_function("Pipeline", target["Arn"])
    return synth.templates["Pipeline"]["Resources"][logical_id]["Properties"]["Handler"]


def test_upload_rule_matches_incoming_objects_of_the_data_bucket_only(synth):
    p = synth.config.prefix
    rule = rules(synth)[f"{p}-upload"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "incoming/"}, {"prefix": "ground-truth/"}]
    (bucket,) = pattern["detail"]["bucket"]["name"]
    assert bucket["Fn::Join"][1][0] == f"{p}-data-"
    assert target_function(synth, rule) == "handlers.trigger.handler"


@pytest.mark.parametrize("rule_suffix, detail_type, name_key, prefixes, handler", [
    ("processing-jobs", "SageMaker Processing Job State Change", "ProcessingJobName", ("val", "mon", "gt", "trk"),
     "handlers.processing_done.handler"),
    ("training-jobs", "SageMaker Training Job State Change", "TrainingJobName", ("train",),
     "handlers.training_done.handler"),
])
def test_job_rules_are_filtered_to_this_stages_jobs(synth, rule_suffix, detail_type, name_key, prefixes, handler):
    assert synth.config.mlflow_tracking  # track jobs (trk) are there because tracking is on in every stage
    p = synth.config.prefix
    rule = rules(synth)[f"{p}-{rule_suffix}"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.sagemaker"] and pattern["detail-type"] == [detail_type]
    assert pattern["detail"][name_key] == [{"prefix": f"{p}-{x}-"} for x in prefixes]
    assert sorted(pattern["detail"][name_key.replace("Name", "Status")]) == ["Completed", "Failed", "Stopped"]
    assert target_function(synth, rule) == handler


def test_endpoint_rule_is_filtered_to_this_stages_endpoint(synth):
    p = synth.config.prefix
    rule = rules(synth)[f"{p}-endpoint-state"]
    assert rule["EventPattern"] == {"source": ["aws.sagemaker"], "detail-type": ["SageMaker Endpoint State Change"],
                                    "detail": {"EndpointName": [f"{p}-endpoint"]}}
    assert target_function(synth, rule) == "handlers.endpoint_state.handler"


def test_monitor_runs_on_the_configured_schedule(synth):
    rule = rules(synth)[f"{synth.config.prefix}-monitor-schedule"]
    assert rule["ScheduleExpression"] == synth.config.monitor_schedule
    assert target_function(synth, rule) == "handlers.monitor_schedule.handler"


def test_failed_jobs_rule_notifies_and_counts(synth):
    p = synth.config.prefix
    rule = rules(synth)[f"{p}-failed-jobs"]
    branches = rule["EventPattern"]["detail"]["$or"]
    assert {b.get("ProcessingJobStatus", b.get("TrainingJobStatus"))[0] for b in branches} == {"Failed"}
    # Every job the control plane starts: the same processing prefixes as processing_done's rule, and training.
    processing = rules(synth)[f"{p}-processing-jobs"]["EventPattern"]["detail"]["ProcessingJobName"]
    assert [b["ProcessingJobName"] for b in branches if "ProcessingJobName" in b] == [processing]
    assert [b["TrainingJobName"] for b in branches if "TrainingJobName" in b] == [[{"prefix": f"{p}-train-"}]]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": next(iter(synth.resources("Pipeline", "AWS::SNS::Topic")))}


def test_every_rule_target_has_a_dead_letter_queue_and_retry_policy(synth):
    cfg = synth.config
    all_rules = [r for _, r in synth.all_resources("AWS::Events::Rule").values()]
    assert len(all_rules) == 6
    for rule in all_rules:
        for target in rule["Properties"]["Targets"]:
            assert "DeadLetters" in json.dumps(target["DeadLetterConfig"]["Arn"])
            assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == cfg.async_max_event_age_seconds
            assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_image_is_built_from_the_repo_root_with_the_base_image_build_arg(synth):
    assets = json.loads((synth.outdir / f"{synth.stack_names['Pipeline']}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    source = image["source"]
    assert source["dockerFile"] == "container/Dockerfile"
    assert source["dockerBuildArgs"] == {"BASE_IMAGE": synth.config.base_image}
    assert source["platform"] == "linux/amd64"
    staged = synth.outdir / source["directory"]
    entries = {p.name for p in staged.iterdir()}
    assert "container" in entries and (staged / "container" / "Dockerfile").exists()
    assert not entries & {".venv", "node_modules", "cdk.out", ".local", ".git"}
    dockerignore = ROOT / ".dockerignore"
    if dockerignore.exists():  # the whitelist decides the context (CONTRACTS.md): CDK must not widen it
        assert entries <= {".dockerignore", "container", "kedro_project", "constraints.txt"}, entries
        for line in dockerignore.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "!")) and "*" not in line:
                assert not (staged / line.rstrip("/")).exists(), f"{line} is excluded by .dockerignore"
    env = next(iter(ours(synth).values()))[2]["Properties"]["Environment"]["Variables"]
    assert "container-assets" in json.dumps(env["IMAGE_URI"])


# Logical id of the single SageMaker role of earlier versions, kept by the training role: the serving and
# monitoring stacks import its ARN export, and CloudFormation cannot remove an export that is in use.
LEGACY_ROLE_ID = "SageMakerExecutionRole38ADDEB7"
COMMON_ACTIONS = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant",
                  "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
                  "ecr:GetAuthorizationToken", "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                  "logs:DescribeLogStreams", "cloudwatch:PutMetricData"}


def role_statements(synth, role_id: str) -> list[dict]:
    return [s for p in synth.resources("Pipeline", "AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def as_list(value) -> list:
    return [value] if isinstance(value, (str, dict)) else value


def s3_grants(statements: list[dict]) -> dict[str, set[str]]:
    """s3 object/bucket pattern (bucket purpose + key pattern, e.g. 'artifacts/models/*') -> allowed s3 actions."""
    grants: dict[str, set[str]] = {}
    for s in statements:
        actions = {a for a in as_list(s["Action"]) if a.startswith("s3:")}
        for resource in as_list(s["Resource"]):
            if not actions or not isinstance(resource, dict) or "Fn::Join" not in resource:
                continue
            parts = resource["Fn::Join"][1]
            text = "".join(p if isinstance(p, str) else "<>" for p in parts)
            # arn:<>:s3:::mlops-dev-data-<>-<>/validated/*  ->  data/validated/*
            name, _, key = text.split(":::", 1)[1].partition("/")
            purpose = name.split("-")[-3] if name.endswith("-<>-<>") else name
            target = f"{purpose}/{key}" if key else purpose
            grants.setdefault(target, set()).update(actions)
    return grants


def test_sagemaker_work_runs_under_least_privilege_roles(synth):
    """Only training reads validated data and writes models; validation and monitoring (untrusted input)
    read their inputs and write reports; the endpoint's model reads its artifact and writes captured data; track jobs
    read the model they log and write their report and MLflow's artifacts (and talk to the MLflow App only)."""
    roles = sagemaker_roles(synth)
    expected = {
        "processing": {"artifacts/validation-input/*": {"s3:GetObject"},
                       "artifacts/labels-input/*": {"s3:GetObject"},
                       "artifacts/datacapture/*": {"s3:GetObject"},
                       # an S3Prefix input of the production model.tar.gz: what that key starts
                       "artifacts/models/*/output/model.tar.gz*": {"s3:GetObject"},
                       "artifacts/reports/*": {"s3:PutObject"},
                       "artifacts/ground-truth/*": {"s3:PutObject"},
                       "artifacts": {"s3:ListBucket", "s3:GetBucketLocation"}},
        "training": {"data/validated/*": {"s3:GetObject"},
                     "data": {"s3:ListBucket", "s3:GetBucketLocation"},
                     "artifacts/models/*": {"s3:GetObject", "s3:PutObject"},
                     "artifacts": {"s3:ListBucket", "s3:GetBucketLocation"}},
        "model": {"artifacts/models/*/output/model.tar.gz": {"s3:GetObject"},
                  "artifacts/datacapture/*": {"s3:PutObject"},
                  "artifacts": {"s3:GetBucketLocation"}},
        "tracking": {"artifacts/models/*/output/model.tar.gz*": {"s3:GetObject"},
                     "artifacts/reports/tracking/*": {"s3:PutObject"},
                     "artifacts/mlflow/*": {"s3:PutObject"},
                     "artifacts": {"s3:ListBucket", "s3:GetBucketLocation"}},
    }
    own_actions = {"tracking": {"sagemaker:CallMlflowAppApi"}}
    assert set(roles) == {"training", "processing", "model", "tracking"}
    for kind, role_id in roles.items():
        statements = role_statements(synth, role_id)
        assert s3_grants(statements) == expected[kind], kind
        actions = {a for s in statements for a in as_list(s["Action"]) if not a.startswith("s3:")}
        assert actions == COMMON_ACTIONS | own_actions.get(kind, set()), (kind, actions ^ COMMON_ACTIONS)
        metrics = next(s for s in statements if s["Action"] == "cloudwatch:PutMetricData")
        assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}
        kms = [s for s in statements if any(a.startswith("kms:") for a in as_list(s["Action"]))]
        assert kms and all("EncryptionKey" in json.dumps(s["Resource"]) for s in kms), kind  # the stage key only
        # Listing stays within the prefixes the role reads.
        for s in statements:
            if "s3:ListBucket" in as_list(s["Action"]):
                prefixes = s["Condition"]["StringLike"]["s3:prefix"]
                readable = {k.split("/", 1)[1] for k in expected[kind] if "/" in k}
                assert all(any(fnmatch.fnmatchcase(prefix, r) for r in readable) for prefix in as_list(prefixes)), (
                    kind, prefixes)
    # Nobody but training writes models; validation/monitoring never see validated data or raw uploads.
    processing = json.dumps(role_statements(synth, roles["processing"]))
    assert "/validated/" not in processing and "/incoming/" not in processing and "/quarantine/" not in processing
    # The one role whose jobs have network access reaches this stage's MLflow App and nothing else of SageMaker.
    (mlflow,) = [s for s in role_statements(synth, roles["tracking"]) if s["Action"] == "sagemaker:CallMlflowAppApi"]
    assert "MlflowApp" in json.dumps(mlflow["Resource"]) and "Fn::ImportValue" in mlflow["Resource"]


def test_training_role_keeps_the_logical_id_of_the_role_it_replaced(synth):
    assert sagemaker_roles(synth)["training"] == LEGACY_ROLE_ID


def test_functions_know_the_execution_roles_and_the_bake_time(synth):
    roles = sagemaker_roles(synth)
    for name, (kind, _, res) in ours(synth).items():
        env = res["Properties"]["Environment"]["Variables"]
        assert "SAGEMAKER_ROLE_ARN" not in env, name
        for variable, role in (("TRAINING_ROLE_ARN", "training"), ("PROCESSING_ROLE_ARN", "processing"),
                               ("MODEL_ROLE_ARN", "model"), ("TRACKING_ROLE_ARN", "tracking")):
            value = json.dumps(env[variable])
            assert roles[role] in value and "Arn" in value, (name, variable, value)
        assert env["DEPLOY_BAKE_SECONDS"] == str(synth.config.deploy_bake_seconds), name


def test_stacks_output_what_users_and_the_local_stack_need(synth):
    expected = {"Storage": {"DataBucketName", "ArtifactsBucketName", "LedgerTableName", "KmsKeyArn", "MlflowAppArn",
                            "MlflowUiUrlCommand"},
                "Pipeline": {"NotificationTopicArn", "DeadLetterQueueUrl", "ImageUri", "TrainingRoleArn",
                             "ProcessingRoleArn", "ModelRoleArn", "ModelPackageGroupName", "TrackingRoleArn",
                             "MlflowExperimentName", "MlflowRegisteredModelName"},
                "Serving": {"EndpointName", "InvokeUrl"},
                "Monitoring": {"DashboardName", "RetrainFunctionName"}}
    if synth.config.api_auth == "api_key":
        expected["Serving"].add("ApiKeyId")
    for kind, names in expected.items():
        outputs = {k for k, v in synth.templates[kind].get("Outputs", {}).items() if "Export" not in v}
        assert outputs == names, kind


def function_statements(synth, function_name: str) -> list[dict]:
    kind, _, res = functions(synth)[function_name]
    role_id = res["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for p in synth.resources(kind, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_trigger_writes_only_the_job_input_copies(synth):
    statements = function_statements(synth, f"{synth.config.prefix}-trigger")
    puts = [s for s in statements if "s3:PutObject" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    text = json.dumps([put["Resource"] for put in puts])
    assert f"{synth.config.prefix}-artifacts-" in text and "/validation-input/*" in text and "/labels-input/*" in text
    assert f"{synth.config.prefix}-data-" not in text  # an upload is read and copied, never rewritten
    assert not any("s3:DeleteObject" in json.dumps(s["Action"]) for s in statements)


def test_copies_of_a_tagged_upload_version_may_copy_its_tags(synth):
    """CopyObject of a given version copies its tags (TaggingDirective COPY, the default): the source needs
    GetObjectVersion + GetObjectVersionTagging, the target PutObjectTagging, each on its own prefix only. A copy over
    5 GiB is a multipart copy, which a failure aborts (AbortMultipartUpload on the same targets)."""
    p = synth.config.prefix
    copy_target = {"s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"}
    trigger = s3_grants(function_statements(synth, f"{p}-trigger"))
    assert {"s3:GetObjectVersion", "s3:GetObjectVersionTagging"} <= trigger["data/incoming/*"]
    assert trigger["artifacts/validation-input/*"] == copy_target
    verdict = s3_grants(function_statements(synth, f"{p}-processing-done"))
    assert {"s3:GetObjectVersion", "s3:GetObjectVersionTagging"} <= verdict["data/incoming/*"]
    assert verdict["data/quarantine/*"] == copy_target
    # validated/ is also read: which upload version the copy holds, so a retried verdict copies nothing again.
    assert verdict["data/validated/*"] == copy_target | {"s3:GetObject"}
    assert "s3:GetObjectTagging" in verdict["artifacts/reports/*"]  # the HTML report copied into quarantine/
    for grants in (trigger, verdict):  # nothing broader than those prefixes writes or reads tags
        for target, actions in grants.items():
            if any("Tagging" in a for a in actions):
                assert target in ("data/incoming/*", "artifacts/validation-input/*", "data/validated/*",
                                  "data/quarantine/*", "artifacts/reports/*", "data/ground-truth/*",
                                  "artifacts/labels-input/*", "artifacts/ground-truth/*",
                                  "data/incoming/labeled/*"), target
