"""Every AWS call the deployed code and the services acting for the stack make is allowed, and every grant is
needed (tests/stacks/iam_coverage/ says how, and what it cannot see). A failure names the call, the IAM action, the
resource, the source line and the principal, and says what to change; an unused grant names the statement that
holds it."""

from __future__ import annotations

import pytest

from iam_coverage import WILD, App, coverage, sar
from stack_synth import KINDS, ROOT

HOW_TO_READ = ("\n(tests/stacks/iam_coverage/: each line is one request or grant; its docstring lists what the "
               "analysis models and its limits)\n")


_reports: dict[int, object] = {}


def report_of(synth):
    """The analysis of one synthesized stage (a dozen seconds: once per stage and session)."""
    if id(synth) not in _reports:
        templates = {synth.stack_names[k]: synth.templates[k] for k in KINDS}
        metadata = {synth.stack_names[k]: synth.metadata[k] for k in KINDS}
        _reports[id(synth)] = coverage(templates, metadata, ROOT / "lambda")
    return _reports[id(synth)]


@pytest.fixture(scope="module", params=["dev", "prod"])
def stage(request):
    """Both stages in cdk.json: their functions and grants differ only in numbers, but that is the claim tested."""
    synth = request.getfixturevalue(request.param)
    return synth, report_of(synth)


def problems(report, kind: str) -> list[str]:
    return [line for line in report.problems() if line.startswith(kind)]


def test_every_call_the_code_and_the_services_make_is_allowed(stage):
    _, report = stage
    missing = problems(report, "MISSING")
    assert not missing, HOW_TO_READ + "\n".join(missing)


def test_every_grant_is_needed_or_acknowledged_with_a_reason(stage):
    _, report = stage
    unused = problems(report, "UNUSED")
    assert not unused, HOW_TO_READ + "\n".join(unused)
    assert all(len(ack.reason) >= 40 for _, ack in report.acknowledged)


def test_every_acknowledgement_still_matches_an_unused_grant(stage):
    _, report = stage
    stale = problems(report, "STALE")
    assert not stale, HOW_TO_READ + "\n".join(stale)


def test_every_fact_the_analysis_is_told_is_used(stage):
    """A documented fact about data the code reads back (facts.py) that no analysis applies is out of date."""
    _, report = stage
    stale = report.stale_facts()
    assert not stale, HOW_TO_READ + "\n".join(stale)


def test_the_analysis_resolves_every_client_call(stage):
    _, report = stage
    assert not report.gaps, HOW_TO_READ + "\n".join(problems(report, "GAP"))


def test_the_analysis_reaches_the_calls_each_function_is_for(stage):
    """A guard against an analysis that silently finds nothing: each function's defining calls are seen, with the
    source line of each."""
    synth, report = stage
    expected = {"trigger": {"s3.HeadObject", "s3.CopyObject", "sagemaker.CreateProcessingJob"},
                "processing-done": {"s3.CopyObject", "s3.GetObject", "cloudwatch.PutMetricData",
                                    "sagemaker.CreateTrainingJob", "s3.ListObjectVersions"},
                "training-done": {"sagemaker.CreateModel", "sagemaker.CreateModelPackage", "sagemaker.UpdateEndpoint",
                                  "application-autoscaling.RegisterScalableTarget"},
                "endpoint-state": {"application-autoscaling.RegisterScalableTarget", "sagemaker.DeleteModel"},
                "monitor-schedule": {"sagemaker.CreateProcessingJob", "s3.ListObjectsV2"},
                "retrain": {"sagemaker.CreateTrainingJob", "s3.ListObjectVersions"},
                "provision": {"sagemaker.DeleteEndpoint", "sagemaker.ListModelPackages",
                              "application-autoscaling.DeregisterScalableTarget"}}
    prefix = synth.config.prefix
    seen = {name.removeprefix(prefix + "-"): {c.name for c in calls} for name, calls in report.calls.items()}
    assert set(seen) == set(expected)
    for function, calls in expected.items():
        assert calls <= seen[function], (function, calls - seen[function])
    assert {"sagemaker.UpdateModelPackage", "sagemaker.DescribeProcessingJob"} <= seen["processing-done"]  # track jobs
    for calls in report.calls.values():  # every function records its decisions, sends its outbox and notifies
        # (the outbox also holds track requests: every function may start a track job)
        outbox = {"dynamodb.UpdateItem", "dynamodb.Query", "dynamodb.DeleteItem", "sns.Publish",
                  "sagemaker.CreateProcessingJob"}
        assert outbox <= {c.name for c in calls}
        assert all(c.location.startswith("lambda/") and c.location.rsplit(":", 1)[1].isdigit() for c in calls)


def test_every_role_is_analysed_or_listed_with_a_reason(dev):
    app = App({dev.stack_names[k]: dev.templates[k] for k in KINDS})
    analysed = {f.role_arn for f in app.functions} | {r.principal for r in report_of(dev).requests}
    for role, path in app.policies.role_paths.items():
        assert role in analysed or role in app.unanalysed_roles, f"{path}: no request models this role's work"
    assert all(len(reason) > 40 for reason in app.unanalysed_roles.values())


def test_the_reference_data_is_the_pinned_dataset():
    assert sar().exists("sagemaker:CreateModelPackage") and not sar().exists("dynamodb:TransactWriteItems")
    # Warm pools (KeepAlivePeriodInSeconds) are a condition key of CreateTrainingJob, not an action of their own.
    assert "sagemaker:KeepAlivePeriod" in sar().privilege("sagemaker:CreateTrainingJob")["resource_types"][""][
        "condition_keys"]


def test_track_jobs_and_the_mlflow_app_are_analysed_as_their_roles(stage):
    """The track job's role: SageMaker reads the model input and writes the report, the image's `track` calls the
    MLflow App and uploads MLflow's artifacts; the app's own role reads and writes its artifact store."""
    synth, report = stage
    app = App({synth.stack_names[k]: synth.templates[k] for k in KINDS})
    ((app_arn, (store, app_role)),) = app.mlflow_apps.items()
    assert store.endswith("/mlflow/")
    tracking_roles = {arn for arn, path in app.policies.role_paths.items() if "/SageMakerTracking/" in path}
    assert len(tracking_roles) == 1
    by_role = {}
    for r in report.requests:
        by_role.setdefault(r.principal, set()).add((r.action, r.resource))
    (tracking,) = tracking_roles
    bucket = store.removeprefix("s3://").split("/")[0]
    assert {("sagemaker:CallMlflowAppApi", app_arn), ("s3:PutObject", f"arn:aws:s3:::{bucket}/mlflow/{WILD}")} <= \
        by_role[tracking]
    reports = f"/reports/tracking/{synth.config.prefix}-trk-"
    assert any(a == "s3:PutObject" and reports in r for a, r in by_role[tracking])
    assert any(a == "s3:GetObject" and "/output/model.tar.gz" in r for a, r in by_role[tracking])
    assert {a for a, _ in by_role[app_role]} == {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:Decrypt",
                                                  "kms:GenerateDataKey"}


def test_without_tracking_no_call_needs_a_tracking_grant(dev_no_tracking):
    synth = dev_no_tracking
    templates = {synth.stack_names[k]: synth.templates[k] for k in KINDS}
    metadata = {synth.stack_names[k]: synth.metadata[k] for k in KINDS}
    report = coverage(templates, metadata, ROOT / "lambda")
    assert report.problems() == []
    assert not any("-trk-" in r.resource for r in report.requests)
