"""cdk-nag AwsSolutions on every stack: zero unacknowledged findings, and every acknowledgement names one
resource and one finding, has a reason, and is actually needed."""

from __future__ import annotations

import re

import pytest

from stack_synth import KINDS


def plugin_report(synth):
    (report,) = [r for r in synth.report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    return report


def test_aws_solutions_pack_ran_with_zero_unacknowledged_findings(synth):
    report = plugin_report(synth)
    assert report["conclusion"] == "success"
    assert report.get("violations", []) == []
    # The pack did evaluate the app: some findings exist and are acknowledged one by one.
    assert len(report["suppressedViolations"]) > 20


def test_the_pack_covers_every_stack(synth):
    """The plugin is registered on the App, so it evaluates every stack; Storage has no finding but its MLflow App
    role's one prefix wildcard, the others carry acknowledged ones (which proves they were evaluated)."""
    checked = {v["constructPath"].split("/")[0] for s in plugin_report(synth)["suppressedViolations"]
               for v in s["violatingConstructs"]}
    assert {synth.stack_names[k] for k in ("Pipeline", "Serving", "Monitoring")} <= checked


def test_acknowledgements_name_one_resource_and_one_finding_with_a_reason(synth):
    stacks = set(synth.stack_names.values())
    for suppressed in plugin_report(synth)["suppressedViolations"]:
        rule, where, reason = suppressed["ruleName"], suppressed["acknowledgedAt"], suppressed["reason"]
        assert where not in stacks and "/" in where, f"{rule} acknowledged on a whole stack: {where}"
        assert suppressed["acknowledgedId"] == f"AwsSolutions::{rule}"
        if rule.startswith(("AwsSolutions-IAM5", "AwsSolutions-IAM4")):
            assert re.fullmatch(r"AwsSolutions-IAM[45]\[(Resource|Action|Policy)::.+\]", rule), rule
        assert len(reason) >= 20, (rule, where)
        for violation in suppressed["violatingConstructs"]:
            # The acknowledgement sits on the resource or its owning construct (e.g. a role for its policy).
            assert violation["constructPath"].startswith(where + "/") or violation["constructPath"] == where


def test_no_acknowledgement_is_stale(synth):
    used = {(s["acknowledgedAt"], s["acknowledgedId"]) for s in plugin_report(synth)["suppressedViolations"]}
    made = set()
    for kind in KINDS:
        for path, entries in synth.metadata[kind].items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    made |= {(path.lstrip("/"), rule_id) for rule_id in entry["data"]
                             if rule_id.startswith("AwsSolutions::")}
    assert made, "acknowledgements are recorded in the assembly metadata"
    assert made - used == set(), "acknowledged but never reported: remove these"


def test_an_unacknowledged_finding_in_any_stack_fails_synthesis(tmp_path):
    """The check can fail: a plain bucket added to the (finding-free) storage stack stops synthesis."""
    from aws_cdk import aws_s3 as s3

    import app as cdk_app

    application, config = cdk_app.build_app(context={"stage": "dev"}, outdir=str(tmp_path))
    storage = application.node.find_child(f"{config.project}-{config.stage}".title().replace("-", "") + "Storage")
    s3.Bucket(storage, "Unprotected")
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        application.synth()
    report = (tmp_path / "validation-report.json").read_text()
    assert "Unprotected" in report and "AwsSolutions-S1" in report and "AwsSolutions-S10" in report
