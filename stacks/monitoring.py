"""Monitoring: alarms, the drift -> retrain loop, and one dashboard.

The retrain function lives here, next to the drift alarm that invokes it: a Lambda alarm action adds a
permission on the function that names the alarm, so alarm and function must share a stack (no cycle).
Alarm names come from ``Names`` so the deployer can list the rollback alarms without a reference here.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Environment, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks.control_plane import Capabilities, ControlPlaneFunction, ControlPlaneProps
from stacks.names import VARIANT_NAME


class MonitoringStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, props: ControlPlaneProps,
                 capabilities: Capabilities, topic: sns.ITopic, dead_letters: sqs.IQueue,
                 functions: list[ControlPlaneFunction], api_name: str,
                 env: Environment | None = None, description: str | None = None) -> None:
        super().__init__(scope, construct_id, env=env, description=description)
        config, names = props.config, props.names
        self.retrain = ControlPlaneFunction(
            self, "Retrain", props=props, short_name="retrain", handler="handlers.retrain.handler",
            description="Drift alarm or manual request: start a training run (with cooldown)",
            reserved_concurrency=1)
        capabilities.start_training(self.retrain.policy)

        notify = cw_actions.SnsAction(topic)
        endpoint_dims = {"EndpointName": names.endpoint, "VariantName": VARIANT_NAME}
        five_minutes = Duration.minutes(5)
        # The endpoint alarms are the blue/green auto-rollback alarms: their period and datapoints are chosen
        # with the bake time (config validates that they can fire inside it). SageMaker publishes these metrics
        # per minute.
        rollback_period = Duration.seconds(config.alarm_period_seconds)

        invocations = cw.Metric(namespace="AWS/SageMaker", metric_name="Invocations", dimensions_map=endpoint_dims,
                                statistic="Sum", period=rollback_period)
        errors_5xx = cw.Metric(namespace="AWS/SageMaker", metric_name="Invocation5XXErrors",
                               dimensions_map=endpoint_dims, statistic="Sum", period=rollback_period)
        latency = cw.Metric(namespace="AWS/SageMaker", metric_name="ModelLatency", dimensions_map=endpoint_dims,
                            statistic="p90", period=rollback_period)
        drift = cw.Metric(namespace=config.metric_namespace, metric_name="DataDrift",
                          dimensions_map={"Pipeline": names.prefix}, statistic="Maximum", period=Duration.hours(1))
        # The production model on labeled captures (ground-truth jobs): published when labels arrive.
        model_quality = cw.Metric(namespace=config.metric_namespace, metric_name="ModelQuality",
                                  dimensions_map={"Pipeline": names.prefix}, statistic="Minimum", period=Duration.hours(1))
        rows_rejected = cw.Metric(namespace=config.metric_namespace, metric_name="RowsRejected",
                                  dimensions_map={"Pipeline": names.prefix}, statistic="Sum", period=Duration.hours(1))
        failed_jobs = cw.Metric(namespace="AWS/Events", metric_name="TriggeredRules",
                                dimensions_map={"RuleName": names.failed_jobs_rule}, statistic="Sum",
                                period=five_minutes)
        dead_letter_depth = dead_letters.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=five_minutes)

        # A minute without requests publishes no datapoint: it counts as good (notBreaching), so an idle
        # endpoint neither holds an alarm in ALARM nor leaves it INSUFFICIENT_DATA during a bake.
        self.alarm_5xx = cw.Alarm(
            self, "Endpoint5xx", alarm_name=names.alarm_5xx, metric=errors_5xx,
            alarm_description=f"Endpoint returns server errors: at least {config.alarm_5xx_threshold} per "
                              f"{config.alarm_period_seconds} s in {config.alarm_datapoints_to_alarm} of "
                              f"{config.alarm_evaluation_periods} periods (also rolls a blue/green update back)",
            threshold=config.alarm_5xx_threshold, evaluation_periods=config.alarm_evaluation_periods,
            datapoints_to_alarm=config.alarm_datapoints_to_alarm,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_latency = cw.Alarm(
            self, "ModelLatency", alarm_name=names.alarm_latency, metric=latency,
            alarm_description=f"p90 model latency above {config.alarm_latency_ms} ms (ModelLatency is in us) in "
                              f"{config.alarm_datapoints_to_alarm} of {config.alarm_evaluation_periods} periods of "
                              f"{config.alarm_period_seconds} s (also rolls a blue/green update back)",
            threshold=config.alarm_latency_ms * 1000, evaluation_periods=config.alarm_evaluation_periods,
            datapoints_to_alarm=config.alarm_datapoints_to_alarm,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_drift = cw.Alarm(
            self, "DataDrift", alarm_name=names.alarm_drift, metric=drift,
            alarm_description="Data drift above threshold -> retrain (the function enforces the cooldown)",
            threshold=config.drift_threshold, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        # Worse than the threshold: below it for the higher-is-better metrics, above it for rmse/mae. Only
        # labels publish this metric, so an hour without them is not evidence either way.
        lower_is_better = config.model_quality_lower_is_better
        self.alarm_model_quality = cw.Alarm(
            self, "ModelQuality", alarm_name=names.alarm_model_quality,
            metric=model_quality.with_(statistic="Maximum" if lower_is_better else "Minimum"),
            alarm_description="The production model's quality on labeled requests (ground truth) is below the "
                              "threshold -> retrain on the labeled data (the function skips a retrain without it)",
            threshold=config.model_quality_threshold, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD if lower_is_better
            else cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_failed_jobs = cw.Alarm(
            self, "FailedJobs", alarm_name=names.alarm_failed_jobs, metric=failed_jobs,
            alarm_description="A validation, monitor, ground-truth, track or training job failed",
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_dead_letters = cw.Alarm(
            self, "DeadLetters", alarm_name=names.alarm_dead_letters, metric=dead_letter_depth,
            alarm_description="An event could not be processed after all retries; see the dead-letter queue",
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)

        for alarm in (self.alarm_drift, self.alarm_model_quality):
            alarm.add_alarm_action(cw_actions.LambdaAction(self.retrain.target, use_unique_permission_id=True), notify)
        for alarm in (self.alarm_5xx, self.alarm_latency, self.alarm_failed_jobs, self.alarm_dead_letters):
            alarm.add_alarm_action(notify)

        all_functions = [*functions, self.retrain]
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=names.dashboard,
                                      default_interval=Duration.days(1))
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", width=24, alarms=[
                self.alarm_5xx, self.alarm_latency, self.alarm_drift, self.alarm_model_quality, self.alarm_failed_jobs,
                self.alarm_dead_letters]))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Endpoint invocations and 5XX", width=8, left=[invocations, errors_5xx]),
            cw.GraphWidget(title="Model latency p90 (us)", width=8, left=[latency],
                           left_annotations=[cw.HorizontalAnnotation(value=config.alarm_latency_ms * 1000)]),
            cw.GraphWidget(title="API Gateway requests / errors", width=8, left=[
                cw.Metric(namespace="AWS/ApiGateway", metric_name=m, dimensions_map={"ApiName": api_name},
                          statistic="Sum", period=five_minutes) for m in ("Count", "4XXError", "5XXError")]))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Data drift (max)", width=8, left=[drift],
                           left_annotations=[cw.HorizontalAnnotation(value=config.drift_threshold)]),
            cw.GraphWidget(title="Rows rejected by validation", width=8, left=[rows_rejected]),
            cw.GraphWidget(title="Model quality on labeled requests", width=8, left=[model_quality],
                           left_annotations=[cw.HorizontalAnnotation(value=config.model_quality_threshold,
                                                                     label="retrain below")]),
            cw.GraphWidget(title="Failed jobs / dead letters", width=8, left=[failed_jobs, dead_letter_depth]))
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Control-plane errors", width=12,
                           left=[f.function.metric_errors(period=five_minutes) for f in all_functions]),
            cw.GraphWidget(title="Control-plane throttles", width=12,
                           left=[f.function.metric_throttles(period=five_minutes) for f in all_functions]))
        CfnOutput(self, "DashboardName", value=names.dashboard)
        CfnOutput(self, "RetrainFunctionName", value=self.retrain.function_name,
                  description="Manual retrain: aws lambda invoke --function-name <this> --cli-binary-format "
                              "raw-in-base64-out --payload '{\"reason\": \"manual\"}' out.json")
