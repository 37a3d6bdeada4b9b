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

        invocations = cw.Metric(namespace="AWS/SageMaker", metric_name="Invocations", dimensions_map=endpoint_dims,
                                statistic="Sum", period=five_minutes)
        errors_5xx = cw.Metric(namespace="AWS/SageMaker", metric_name="Invocation5XXErrors",
                               dimensions_map=endpoint_dims, statistic="Sum", period=five_minutes)
        latency = cw.Metric(namespace="AWS/SageMaker", metric_name="ModelLatency", dimensions_map=endpoint_dims,
                            statistic="p90", period=five_minutes)
        drift = cw.Metric(namespace=config.metric_namespace, metric_name="DataDrift",
                          dimensions_map={"Pipeline": names.prefix}, statistic="Maximum", period=Duration.hours(1))
        rows_rejected = cw.Metric(namespace=config.metric_namespace, metric_name="RowsRejected",
                                  dimensions_map={"Pipeline": names.prefix}, statistic="Sum", period=Duration.hours(1))
        failed_jobs = cw.Metric(namespace="AWS/Events", metric_name="TriggeredRules",
                                dimensions_map={"RuleName": names.failed_jobs_rule}, statistic="Sum",
                                period=five_minutes)
        dead_letter_depth = dead_letters.metric_approximate_number_of_messages_visible(
            statistic="Maximum", period=five_minutes)

        self.alarm_5xx = cw.Alarm(
            self, "Endpoint5xx", alarm_name=names.alarm_5xx, metric=errors_5xx,
            alarm_description="Endpoint returns server errors (also rolls a blue/green update back)",
            threshold=config.alarm_5xx_threshold, evaluation_periods=config.alarm_evaluation_periods,
            datapoints_to_alarm=min(2, config.alarm_evaluation_periods),
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_latency = cw.Alarm(
            self, "ModelLatency", alarm_name=names.alarm_latency, metric=latency,
            alarm_description=f"p90 model latency above {config.alarm_latency_ms} ms (ModelLatency is in us)",
            threshold=config.alarm_latency_ms * 1000, evaluation_periods=config.alarm_evaluation_periods,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_drift = cw.Alarm(
            self, "DataDrift", alarm_name=names.alarm_drift, metric=drift,
            alarm_description="Data drift above threshold -> retrain (the function enforces the cooldown)",
            threshold=config.drift_threshold, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_failed_jobs = cw.Alarm(
            self, "FailedJobs", alarm_name=names.alarm_failed_jobs, metric=failed_jobs,
            alarm_description="A validation, monitor or training job failed",
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)
        self.alarm_dead_letters = cw.Alarm(
            self, "DeadLetters", alarm_name=names.alarm_dead_letters, metric=dead_letter_depth,
            alarm_description="An event could not be processed after all retries; see the dead-letter queue",
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING)

        self.alarm_drift.add_alarm_action(cw_actions.LambdaAction(self.retrain.target), notify)
        for alarm in (self.alarm_5xx, self.alarm_latency, self.alarm_failed_jobs, self.alarm_dead_letters):
            alarm.add_alarm_action(notify)

        all_functions = [*functions, self.retrain]
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=names.dashboard,
                                      default_interval=Duration.days(1))
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", width=24, alarms=[
                self.alarm_5xx, self.alarm_latency, self.alarm_drift, self.alarm_failed_jobs, self.alarm_dead_letters]))
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
