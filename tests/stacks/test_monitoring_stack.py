"""Monitoring stack: alarms with the configured levels, drift -> retrain Lambda action + SNS, the other
alarms -> SNS and (endpoint health) the blue/green rollback list, a dashboard; autoscaling bounds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stacks.config import ALARM_EVALUATION_DELAY_SECONDS

ROOT = Path(__file__).resolve().parents[2]
STAGES = list(json.loads((ROOT / "cdk.json").read_text())["context"]["stages"])


def alarms(synth):
    return {a["Properties"]["AlarmName"]: a["Properties"]
            for a in synth.resources("Monitoring", "AWS::CloudWatch::Alarm").values()}


def topic_ref(synth):
    (topic_id,) = synth.resources("Pipeline", "AWS::SNS::Topic")
    return topic_id


def is_topic(action, synth) -> bool:
    return "Fn::ImportValue" in action and topic_ref(synth) in action["Fn::ImportValue"]


def test_all_alarms_exist_with_deterministic_names(synth):
    p = synth.config.prefix
    assert set(alarms(synth)) == {f"{p}-endpoint-5xx", f"{p}-model-latency", f"{p}-data-drift",
                                  f"{p}-model-quality", f"{p}-failed-jobs", f"{p}-dead-letters"}


def test_endpoint_alarms_watch_this_endpoint_with_configured_levels(synth):
    cfg, a = synth.config, alarms(synth)
    dims = [{"Name": "EndpointName", "Value": f"{cfg.prefix}-endpoint"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    errors = a[f"{cfg.prefix}-endpoint-5xx"]
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/SageMaker", "Invocation5XXErrors", "Sum")
    assert errors["Dimensions"] == dims and errors["Threshold"] == cfg.alarm_5xx_threshold
    assert errors["EvaluationPeriods"] == cfg.alarm_evaluation_periods
    assert errors["DatapointsToAlarm"] == cfg.alarm_datapoints_to_alarm
    assert errors["Period"] == cfg.alarm_period_seconds
    latency = a[f"{cfg.prefix}-model-latency"]
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("ModelLatency", "p90")
    assert latency["Dimensions"] == dims
    assert latency["Threshold"] == cfg.alarm_latency_ms * 1000  # ModelLatency is reported in microseconds


def test_drift_alarm_reads_the_custom_metric_and_invokes_retrain_and_notifies(synth):
    cfg = synth.config
    drift = alarms(synth)[f"{cfg.prefix}-data-drift"]
    assert (drift["Namespace"], drift["MetricName"]) == (cfg.metric_namespace, "DataDrift")
    assert drift["Dimensions"] == [{"Name": "Pipeline", "Value": cfg.prefix}]
    assert drift["Threshold"] == cfg.drift_threshold
    assert drift["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert drift["TreatMissingData"] == "notBreaching"

    retrain_id = next(k for k, r in synth.resources("Monitoring", "AWS::Lambda::Function").items()
                      if r["Properties"]["Handler"] == "handlers.retrain.handler")
    actions = drift["AlarmActions"]
    (live,) = [a for a in actions if "Ref" in a]
    assert synth.invoked_function("Monitoring", live) == retrain_id
    assert any(is_topic(a, synth) for a in actions)
    # The Lambda action only works with a permission for CloudWatch alarms, scoped to this alarm.
    permissions = [p["Properties"] for p in synth.resources("Monitoring", "AWS::Lambda::Permission").values()]
    assert any(p["Principal"] == "lambda.alarms.cloudwatch.amazonaws.com"
               and p["FunctionName"] == live
               and "SourceArn" in p for p in permissions)


def test_model_quality_alarm_retrains_when_labels_show_the_model_falling_below_the_threshold(synth):
    """Issue 14: ground-truth jobs publish ModelQuality (the gate metric on labeled requests); below the threshold
    the alarm invokes retrain, which by then has the labeled rows as new data."""
    cfg = synth.config
    quality = alarms(synth)[f"{cfg.prefix}-model-quality"]
    assert (quality["Namespace"], quality["MetricName"], quality["Statistic"]) == (
        cfg.metric_namespace, "ModelQuality", "Minimum")
    assert quality["Threshold"] == cfg.model_quality_threshold
    assert quality["ComparisonOperator"] == "LessThanThreshold" and quality["TreatMissingData"] == "notBreaching"
    (live,) = [a for a in quality["AlarmActions"] if "Ref" in a]
    drift_live = [a for a in alarms(synth)[f"{cfg.prefix}-data-drift"]["AlarmActions"] if "Ref" in a]
    assert [live] == drift_live and any(is_topic(a, synth) for a in quality["AlarmActions"])
    permissions = [p["Properties"] for p in synth.resources("Monitoring", "AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] == "lambda.alarms.cloudwatch.amazonaws.com"]
    assert len(permissions) == 2  # one per alarm, each scoped to its alarm


def test_other_alarms_notify_sns_only(synth):
    p = synth.config.prefix
    for name in (f"{p}-endpoint-5xx", f"{p}-model-latency", f"{p}-failed-jobs", f"{p}-dead-letters"):
        (action,) = alarms(synth)[name]["AlarmActions"]
        assert is_topic(action, synth), name


def test_rollback_alarm_names_in_the_deployer_exist_in_the_monitoring_stack(synth):
    names = set(alarms(synth))
    for _, fn in synth.all_resources("AWS::Lambda::Function").values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        if "ROLLBACK_ALARM_NAMES" in env:
            rollback = env["ROLLBACK_ALARM_NAMES"].split(",")
            assert rollback and set(rollback) <= names
            assert f"{synth.config.prefix}-data-drift" not in rollback  # drift retrains, it never rolls back


def test_failed_jobs_alarm_counts_the_failed_jobs_rule(synth):
    p = synth.config.prefix
    failed = alarms(synth)[f"{p}-failed-jobs"]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/Events", "TriggeredRules")
    assert failed["Dimensions"] == [{"Name": "RuleName", "Value": f"{p}-failed-jobs"}]
    rule_names = {r["Properties"]["Name"] for r in synth.resources("Pipeline", "AWS::Events::Rule").values()}
    assert f"{p}-failed-jobs" in rule_names


def test_dashboard_shows_every_alarm(synth):
    (dashboard,) = synth.resources("Monitoring", "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"{synth.config.prefix}-overview"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for alarm_id in synth.resources("Monitoring", "AWS::CloudWatch::Alarm"):
        assert alarm_id in body
    for metric in ("Invocation5XXErrors", "ModelLatency", "DataDrift", "RowsRejected", "TriggeredRules"):
        assert metric in body


def test_autoscaling_bounds_reach_the_deployer(synth):
    """The endpoint may not exist at deploy time (no model yet), so the deployer (endpoint_state) registers
    the scalable target once it is InService: it needs the bounds and the IAM to do so."""
    cfg = synth.config
    (endpoint_state,) = [(k, r) for k, (_, r) in synth.all_resources("AWS::Lambda::Function").items()
                         if r["Properties"].get("Handler") == "handlers.endpoint_state.handler"]
    logical_id, fn = endpoint_state
    env = fn["Properties"]["Environment"]["Variables"]
    assert int(env["SERVING_MIN_INSTANCES"]) == cfg.serving_min_instances
    assert int(env["SERVING_MAX_INSTANCES"]) == cfg.serving_max_instances
    assert int(env["SCALING_TARGET_INVOCATIONS"]) == cfg.scaling_target_invocations
    if cfg.stage == "prod":
        assert cfg.serving_min_instances >= 2
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    actions = {a for p in synth.resources("Pipeline", "AWS::IAM::Policy").values()
               if {"Ref": role_id} in p["Properties"]["Roles"]
               for s in p["Properties"]["PolicyDocument"]["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {"application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
            "application-autoscaling:DeregisterScalableTarget", "iam:CreateServiceLinkedRole"} <= actions
    # CloudFormation registers no scalable target itself: the variant may not exist yet.
    assert not synth.all_resources("AWS::ApplicationAutoScaling::ScalableTarget")


@pytest.fixture(scope="module", params=STAGES)
def each_stage(request, tmp_path_factory):
    """Every stage of cdk.json, synthesized (the session fixtures where they exist)."""
    if request.param in ("dev", "prod"):
        return request.getfixturevalue(request.param)
    from stack_synth import synthesize
    return synthesize(tmp_path_factory.mktemp(f"cdk-{request.param}"), {"stage": request.param})


def test_rollback_alarms_can_fire_within_the_bake_time(each_stage):
    """Blue/green: SageMaker watches the rollback alarms only while the old fleet is kept (the bake,
    TerminationWaitInSeconds = DEPLOY_BAKE_SECONDS). Worst case from the first bad request to ALARM: one period
    until a whole period starts, DatapointsToAlarm breaching periods, then CloudWatch's delivery/evaluation
    delay (assumed ALARM_EVALUATION_DELAY_SECONDS, about 2 minutes). That must end inside the bake."""
    synth = each_stage
    a = alarms(synth)
    bakes = set()
    for _, fn in synth.all_resources("AWS::Lambda::Function").values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        if "ROLLBACK_ALARM_NAMES" in env:
            bakes.add(int(env["DEPLOY_BAKE_SECONDS"]))
            rollback = env["ROLLBACK_ALARM_NAMES"].split(",")
    (bake,) = bakes
    assert bake == synth.config.deploy_bake_seconds
    assert len(rollback) == 2
    for name in rollback:
        alarm = a[name]
        period = alarm["Period"]
        assert period % 60 == 0, name  # SageMaker publishes Invocation5XXErrors / ModelLatency per minute
        datapoints = alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"])
        assert datapoints <= alarm["EvaluationPeriods"]
        worst_case = period * (datapoints + 1) + ALARM_EVALUATION_DELAY_SECONDS
        assert worst_case <= bake, f"{name}: can fire only after {worst_case} s, the bake ends after {bake} s"
        # Minutes without requests publish nothing: they must neither hold the alarm nor keep it undecided.
        assert alarm["TreatMissingData"] == "notBreaching", name
