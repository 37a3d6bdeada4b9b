"""The IAM coverage analyzer on a tiny made-up function and stack: it finds a missing action, a condition that
does not match the request, an unused grant, honours an acknowledgement and reports a stale one; its messages say
where and what to change; values are followed per call path."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest

from iam_coverage import ACK_METADATA, coverage, glob_covers, glob_overlaps, WILD

HANDLER = "from mlops_control import flows\n\n\ndef handler(event, context):\n    return flows.run(event)\n"
CLIENTS = """\
_clients = {}


def get(service):
    client = _clients.get(service)
    if client is None:
        import botocore.session
        client = _clients[service] = botocore.session.get_session().create_client(service)
    return client
"""
FLOWS = """\
import os

from . import clients


def run(event):
    listing = clients.get("s3").list_objects_v2(Bucket=os.environ["DATA_BUCKET"], Prefix="incoming/")
    notify(clients.get("sns"), "listed")
    return listing


def notify(sns, message):
    sns.publish(TopicArn=os.environ["TOPIC_ARN"], Message=message)
"""
TOPIC = "arn:aws:sns:eu-west-1:123456789012:made-up"
LOGS = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/made-up:*"


def statement(actions, resource, condition=None):
    body = {"Effect": "Allow", "Action": actions, "Resource": resource}
    return {**body, "Condition": condition} if condition else body


def template(statements):
    return {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Metadata": {"aws:cdk:path": "S/Fn/Role/Resource"},
                 "Properties": {"AssumeRolePolicyDocument": {}, "RoleName": "made-up-role"}},
        "Policy": {"Type": "AWS::IAM::Policy", "Metadata": {"aws:cdk:path": "S/Fn/Role/DefaultPolicy/Resource"},
                   "Properties": {"PolicyDocument": {"Statement": statements}, "Roles": [{"Ref": "Role"}]}},
        "Fn": {"Type": "AWS::Lambda::Function", "Metadata": {"aws:cdk:path": "S/Fn/Resource"},
               "Properties": {"FunctionName": "made-up", "Handler": "handlers.work.handler",
                              "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                              "Environment": {"Variables": {"DATA_BUCKET": "made-up-data", "TOPIC_ARN": TOPIC}}}},
    }}


GOOD = [statement(["logs:CreateLogStream", "logs:PutLogEvents"], LOGS),
        statement("s3:ListBucket", "arn:aws:s3:::made-up-data", {"StringLike": {"s3:prefix": "incoming/*"}}),
        statement("sns:Publish", TOPIC)]


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample") / "lambda"
    for relative, text in {"handlers/__init__.py": "", "handlers/work.py": HANDLER, "mlops_control/__init__.py": "",
                           "mlops_control/clients.py": CLIENTS, "mlops_control/flows.py": FLOWS}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))
    return root


def run(code: Path, statements, metadata=None):
    return coverage({"S": template(statements)}, {"S": metadata or {}}, code)


def test_a_policy_that_covers_exactly_the_calls_is_clean(code):
    report = run(code, GOOD)
    assert report.problems() == []
    assert {c.name for c in report.calls["made-up"]} == {"s3.ListObjectsV2", "sns.Publish"}


def test_a_missing_action_names_the_call_action_resource_and_line(code):
    (problem,) = run(code, GOOD[:2]).problems()
    assert problem.startswith("MISSING sns.Publish needs sns:Publish on " + TOPIC)
    assert "lambda/mlops_control/flows.py:13" in problem  # the call, reached through a client passed as argument
    assert "as function made-up (role S/Fn/Role/Resource)" in problem and "grant it to that role" in problem


def test_a_condition_that_does_not_match_the_request_is_missing(code):
    wrong_prefix = statement("s3:ListBucket", "arn:aws:s3:::made-up-data", {"StringLike": {"s3:prefix": "other/*"}})
    problems = run(code, [GOOD[0], wrong_prefix, GOOD[2]]).problems()
    assert any(p.startswith("MISSING s3.ListObjectsV2 needs s3:ListBucket on arn:aws:s3:::made-up-data")
               and "flows.py:7" in p for p in problems), problems
    assert any(p.startswith("UNUSED") and "s3:ListBucket" in p for p in problems)  # and the grant is dead


def test_an_unused_grant_fails_unless_acknowledged_and_a_stale_acknowledgement_fails(code):
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/made-up"
    extra = [*GOOD, statement("dynamodb:GetItem", table)]
    (problem,) = run(code, extra).problems()
    assert problem.startswith("UNUSED") and "dynamodb:GetItem on " + table in problem
    assert "granted to function made-up" in problem and "by S/Fn/Role/DefaultPolicy/Resource" in problem
    assert "why_unused" in problem  # how to keep it
    ack = {"type": ACK_METADATA, "data": {"actions": ["dynamodb:GetItem"], "resources": [table],
                                         "reason": "kept for a reader that is about to land"}}
    report = run(code, extra, {"/S/Fn/Role": [ack]})
    assert report.problems() == [] and len(report.acknowledged) == 1
    stale = run(code, GOOD, {"/S/Fn/Role": [copy.deepcopy(ack)]}).problems()
    assert len(stale) == 1 and stale[0].startswith("STALE")


def test_request_patterns_are_allowed_only_when_every_instance_is():
    assert glob_covers("arn:aws:s3:::b/incoming/*", f"arn:aws:s3:::b/incoming/{WILD}.csv")
    assert not glob_covers("arn:aws:s3:::b/incoming/*.csv", f"arn:aws:s3:::b/incoming/{WILD}")
    assert not glob_covers("models/*/output/model.tar.gz", f"models/{WILD}/output/model.tar.gz{WILD}")
    assert glob_overlaps("arn:aws:s3:::b/validated/*", f"arn:aws:s3:::b/{WILD}")
    assert not glob_overlaps("arn:aws:s3:::b/validated/*", f"arn:aws:s3:::b/incoming/{WILD}")


PATHS = """\
import os

from . import clients


def run(event):
    stage(os.environ["DATA_BUCKET"], "incoming/")
    stage(os.environ["OTHER_BUCKET"], "other/" if event else "spare/")


def stage(bucket, prefix):
    listing(bucket, prefix)


def listing(bucket, prefix):
    return clients.get("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
"""


def test_values_are_followed_per_call_path(tmp_path):
    """Two callers pass different buckets two calls deep: each bucket is checked with its own prefixes, never
    with the other caller's (a context-insensitive analysis would ask for data/other/ and other/incoming/)."""
    root = tmp_path / "lambda"
    for relative, text in {"handlers/__init__.py": "", "handlers/work.py": HANDLER, "mlops_control/__init__.py": "",
                           "mlops_control/clients.py": CLIENTS, "mlops_control/flows.py": PATHS}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    stack = template([GOOD[0],
                      statement("s3:ListBucket", "arn:aws:s3:::made-up-data",
                                {"StringEquals": {"s3:prefix": "incoming/"}}),
                      statement("s3:ListBucket", "arn:aws:s3:::made-up-other",
                                {"StringEquals": {"s3:prefix": ["other/", "spare/"]}})])
    stack["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]["OTHER_BUCKET"] = "made-up-other"
    report = coverage({"S": stack}, {"S": {}}, root)
    assert report.problems() == []
    listed = {(r.resource, r.context_value("s3:prefix")) for r in report.requests if r.action == "s3:ListBucket"}
    assert listed == {("arn:aws:s3:::made-up-data", ("incoming/",)),
                      ("arn:aws:s3:::made-up-other", ("other/", "spare/"))}


SWITCHED = """\
import os

from . import clients


def run(event):
    clients.get("sns").publish(TopicArn=os.environ["TOPIC_ARN"], Message="ran")
    if os.environ["FEATURE"]:
        later(event)
    maybe(event)


def maybe(event):
    if not os.environ["FEATURE"]:
        return None
    return clients.get("s3").list_objects_v2(Bucket=os.environ["DATA_BUCKET"], Prefix="feature/")


def later(event):
    return deeper(event)


def deeper(event):
    return clients.get("s3").list_objects_v2(Bucket=os.environ["DATA_BUCKET"], Prefix="deeper/")
"""


@pytest.mark.parametrize("feature", ["", "on"])
def test_code_the_configuration_switches_off_needs_no_grant(tmp_path, feature):
    """A feature off in the function's environment (an early return, a branch) makes no calls: neither the ones after
    the return, nor those of functions only the ruled-out branch calls (they are not analysed without a context)."""
    root = tmp_path / "lambda"
    for relative, text in {"handlers/__init__.py": "", "handlers/work.py": HANDLER, "mlops_control/__init__.py": "",
                           "mlops_control/clients.py": CLIENTS, "mlops_control/flows.py": SWITCHED}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    stack = template([GOOD[0], GOOD[2]])
    stack["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]["FEATURE"] = feature
    report = coverage({"S": stack}, {"S": {}}, root)
    listed = {r.context_value("s3:prefix") for r in report.requests if r.action == "s3:ListBucket"}
    if feature:
        assert listed == {("feature/",), ("deeper/",)}
        assert sum(p.startswith("MISSING s3.ListObjectsV2") for p in report.problems()) == 2
    else:
        assert listed == set() and report.problems() == []
