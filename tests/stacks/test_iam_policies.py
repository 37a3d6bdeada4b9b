"""Walk every IAM policy document in every template: no `*` actions, no `*` resource on a write action
unless cdk-nag's acknowledgement for exactly that policy justifies it, and `iam:PassRole` only for the
SageMaker execution roles (each function only those of the work it starts), only to SageMaker."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from stack_synth import KINDS, sagemaker_roles

READ_ONLY_VERBS = ("Describe", "List", "Get", "BatchGet", "Head")
# Resource types whose documents are identity policies (what a principal may do).
IDENTITY = {"AWS::IAM::Policy": "PolicyDocument", "AWS::IAM::ManagedPolicy": "PolicyDocument"}
# Resource policies (who may use this resource).
RESOURCE = {"AWS::S3::BucketPolicy": "PolicyDocument", "AWS::SNS::TopicPolicy": "PolicyDocument",
            "AWS::SQS::QueuePolicy": "PolicyDocument", "AWS::KMS::Key": "KeyPolicy"}


@dataclass
class Statement:
    kind: str
    logical_id: str
    path: str
    identity: bool
    body: dict

    @property
    def actions(self) -> list[str]:
        a = self.body.get("Action", [])
        return [a] if isinstance(a, str) else a

    @property
    def resources(self) -> list:
        r = self.body.get("Resource", [])
        return [r] if isinstance(r, (str, dict)) else r


def statements(synth) -> list[Statement]:
    out = []
    for kind in KINDS:
        for logical_id, res in synth.templates[kind]["Resources"].items():
            path = res.get("Metadata", {}).get("aws:cdk:path", logical_id)
            docs = []
            if res["Type"] in IDENTITY:
                docs.append((True, res["Properties"][IDENTITY[res["Type"]]]))
            elif res["Type"] == "AWS::IAM::Role":
                docs += [(True, p["PolicyDocument"]) for p in res["Properties"].get("Policies", [])]
            elif res["Type"] in RESOURCE:
                docs.append((False, res["Properties"][RESOURCE[res["Type"]]]))
            for identity, doc in docs:
                out += [Statement(kind, logical_id, path, identity, s) for s in doc["Statement"]]
    return out


def acknowledged(synth, finding: str) -> set[str]:
    """Construct paths whose cdk-nag finding ``finding`` was acknowledged (with a reason)."""
    (report,) = [r for r in synth.report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    return {v["constructPath"] for s in report["suppressedViolations"] if s["ruleName"] == finding and s["reason"]
            for v in s["violatingConstructs"]}


def is_write(action: str) -> bool:
    verb = action.split(":", 1)[1]
    return not verb.startswith(READ_ONLY_VERBS)


def test_the_walker_sees_every_kind_of_policy(synth):
    found = statements(synth)
    assert len([s for s in found if s.identity]) > 100
    assert {s.kind for s in found} == set(KINDS)
    assert any(not s.identity and s.logical_id for s in found)


def test_no_action_is_a_full_wildcard(synth):
    for s in statements(synth):
        for action in s.actions:
            assert action != "*", s.path
            if s.identity:
                assert not action.endswith(":*"), (s.path, action)  # no service-wide grants to principals
            elif action.endswith(":*"):
                # Resource policies: only the key's own account-root administration and TLS-only denials.
                assert s.body["Effect"] == "Deny" or (action == "kms:*" and "root" in json.dumps(s.body["Principal"])), \
                    (s.path, action)


def test_star_resources_on_write_actions_are_acknowledged_for_that_policy(synth):
    justified = acknowledged(synth, "AwsSolutions-IAM5[Resource::*]")
    for s in statements(synth):
        if not s.identity or s.body["Effect"] != "Allow" or "*" not in s.resources:
            continue
        writes = [a for a in s.actions if is_write(a)]
        if writes:
            assert s.path in justified, f"{s.path}: {writes} on Resource '*' without a justified acknowledgement"


def test_every_wildcard_resource_pattern_is_acknowledged_for_that_policy(synth):
    """Narrower wildcards (``.../processing-job/mlops-dev-val-*``) need a reason too."""
    (report,) = [r for r in synth.report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    findings = {(v["constructPath"], s["ruleName"]) for s in report["suppressedViolations"]
                for v in s["violatingConstructs"] if s["ruleName"].startswith("AwsSolutions-IAM5[Resource::")}
    for s in statements(synth):
        if not s.identity or s.body["Effect"] != "Allow":
            continue
        for resource in s.resources:
            text = resource if isinstance(resource, str) else json.dumps(resource)
            if "*" in text:
                assert any(path == s.path for path, _ in findings), (s.path, text)


def test_put_metric_data_is_limited_to_a_namespace(synth):
    for s in statements(synth):
        if s.identity and "cloudwatch:PutMetricData" in s.actions:
            condition = json.dumps(s.body.get("Condition", {}))
            assert "cloudwatch:namespace" in condition, s.path


def passed_role(text: str, roles: dict[str, str]) -> str:
    """Which SageMaker role a PassRole resource names: the role itself (same stack) or its export (others),
    whose name embeds the logical id."""
    (kind,) = [k for k, role_id in roles.items() if re.search(rf'"{role_id}"|ExportsOutputFnGetAtt{role_id}Arn', text)]
    return kind


def test_pass_role_only_for_the_sagemaker_roles_and_only_to_sagemaker(synth):
    roles = sagemaker_roles(synth)
    passing = [s for s in statements(synth) if "iam:PassRole" in s.actions]
    assert len(passing) >= 7  # every job-starting or deploying function, one statement per role it passes
    for s in passing:
        assert s.actions == ["iam:PassRole"], s.path  # never bundled with other actions
        (resource,) = s.resources
        passed_role(json.dumps(resource), roles)
        assert s.body["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}, s.path


# Which execution roles each function may hand to SageMaker: only those of the work it starts.
PASSES = {"trigger": {"processing"}, "monitor-schedule": {"processing"}, "processing-done": {"training"},
          "retrain": {"training"}, "training-done": {"training", "model"}, "endpoint-state": {"model"},
          "provision": {"model"}}


def test_each_function_passes_only_the_roles_of_the_work_it_starts(synth):
    roles = sagemaker_roles(synth)
    prefix = synth.config.prefix
    by_role: dict[tuple[str, str], str] = {}
    for logical_id, (kind, fn) in synth.all_resources("AWS::Lambda::Function").items():
        name = fn["Properties"].get("FunctionName")
        if isinstance(name, str) and name.startswith(prefix + "-") and "Fn::GetAtt" in fn["Properties"]["Role"]:
            by_role[(kind, fn["Properties"]["Role"]["Fn::GetAtt"][0])] = name[len(prefix) + 1:]
    passed: dict[str, set[str]] = {}
    for s in statements(synth):
        if "iam:PassRole" not in s.actions:
            continue
        policy = synth.templates[s.kind]["Resources"][s.logical_id]["Properties"]
        for role in policy["Roles"]:
            function = by_role[(s.kind, role["Ref"])]
            passed.setdefault(function, set()).add(passed_role(json.dumps(s.resources[0]), roles))
    # Track jobs are started from the outbox every function sends: any function may start one.
    tracking = {"tracking"} if synth.config.mlflow_tracking else set()
    assert passed == {function: kinds | tracking for function, kinds in PASSES.items()}


def test_no_control_plane_role_can_delete_data(synth):
    """Nothing is lost: no function may delete objects or versions (the dev-only auto-delete of the bucket
    contents on stack delete is CDK's custom resource, granted in the bucket policy, and absent in prod)."""
    for s in statements(synth):
        if s.identity:
            for action in s.actions:
                assert not action.startswith("s3:Delete"), (s.path, action)


def test_prod_bucket_policies_grant_no_deletes(prod):
    for s in statements(prod):
        if not s.identity and s.body["Effect"] == "Allow":
            assert not any(a.startswith("s3:Delete") for a in s.actions), s.path
