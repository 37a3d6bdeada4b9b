"""Monitoring stack: alarms with the configured levels, drift -> retrain Lambda action + SNS, the other
alarms -> SNS and (endpoint health) the blue/green rollback list, a dashboard; autoscaling bounds."""

from __future__ import annotations

import json


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
                                  f"{p}-failed-jobs", f"{p}-dead-letters"}


def test_endpoint_alarms_watch_this_endpoint_with_configured_levels(synth):
    cfg, a = synth.config, alarms(synth)
    dims = [{"Name": "EndpointName", "Value": f"{cfg.prefix}-endpoint"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    errors = a[f"{cfg.prefix}-endpoint-5xx"]
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/SageMaker", "Invocation5XXErrors", "Sum")
    assert errors["Dimensions"] == dims and errors["Threshold"] == cfg.alarm_5xx_threshold
    assert errors["EvaluationPeriods"] == cfg.alarm_evaluation_periods
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
