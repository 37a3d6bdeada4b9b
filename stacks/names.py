"""Every physical name the system uses, derived from the name prefix ``P`` (CONTRACTS.md, "Names").

Names are deterministic so that stacks can refer to each other's resources without cross-stack
references where those would create cycles (alarm names in Lambda environments, the endpoint name in
IAM policies), and so that the Lambdas and the local stack agree with the templates.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws

VARIANT_NAME = "AllTraffic"
# The one function that copies uploads into validated/ (after their validation passed): the data bucket's
# policy lets only its role write there.
VALIDATED_WRITER = "processing-done"
# Where MLflow keeps run and model artifacts in the artifacts bucket (the MLflow App's artifact store).
MLFLOW_ARTIFACTS_PREFIX = "mlflow/"


@dataclass(frozen=True)
class Names:
    prefix: str

    def bucket(self, purpose: str) -> str:
        """``P-<purpose>-<account>-<region>``: globally unique without a random suffix."""
        return f"{self.prefix}-{purpose}-{Aws.ACCOUNT_ID}-{Aws.REGION}"

    @property
    def data_bucket(self) -> str:
        return self.bucket("data")

    @property
    def artifacts_bucket(self) -> str:
        return self.bucket("artifacts")

    @property
    def logs_bucket(self) -> str:
        return self.bucket("logs")

    @property
    def ledger_table(self) -> str:
        return f"{self.prefix}-ledger"

    @property
    def key_alias(self) -> str:
        return f"alias/{self.prefix}"

    @property
    def endpoint(self) -> str:
        return f"{self.prefix}-endpoint"

    @property
    def model_package_group(self) -> str:
        return f"{self.prefix}-models"

    # SageMaker resource name prefixes (CONTRACTS.md); EventBridge rules and IAM policies use them.
    @property
    def validation_job_prefix(self) -> str:
        return f"{self.prefix}-val-"

    @property
    def training_job_prefix(self) -> str:
        return f"{self.prefix}-train-"

    @property
    def monitor_job_prefix(self) -> str:
        return f"{self.prefix}-mon-"

    @property
    def ground_truth_job_prefix(self) -> str:
        return f"{self.prefix}-gt-"

    @property
    def tracking_job_prefix(self) -> str:
        """`track` processing jobs: log a training run (and its model) to MLflow."""
        return f"{self.prefix}-trk-"

    @property
    def endpoint_config_prefix(self) -> str:
        return f"{self.prefix}-cfg-"

    @property
    def model_prefix(self) -> str:
        return f"{self.prefix}-model-"

    # MLflow (SageMaker's managed MLflow App): one app per stage, one experiment, one registered model.
    @property
    def mlflow_app(self) -> str:
        return f"{self.prefix}-mlflow"

    @property
    def mlflow_experiment(self) -> str:
        return self.prefix

    @property
    def registered_model(self) -> str:
        """The MLflow registered model every tracked run's model becomes a version of (the gate-approved SageMaker
        model package group, ``model_package_group``, stays what deploys)."""
        return f"{self.prefix}-model"

    @property
    def mlflow_artifact_store(self) -> str:
        return f"s3://{self.artifacts_bucket}/{MLFLOW_ARTIFACTS_PREFIX}"

    @property
    def topic(self) -> str:
        return f"{self.prefix}-notifications"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}-dead-letters"

    def function(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def function_role(self, short: str) -> str:
        """A function role with a name other stacks can build an ARN from (IAM names are account-wide, hence
        the region): at most 24 + 1 + len(short) + 1 + 14 characters."""
        return f"{self.prefix}-{short}-{Aws.REGION}"

    @property
    def validated_writer_role(self) -> str:
        """The only role the data bucket lets write under validated/. Named, not referenced: the storage stack
        deploys before the pipeline stack and must not depend on it."""
        return self.function_role(VALIDATED_WRITER)

    def rule(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    # Alarms: named here so the deployer (pipeline stack) can list them before the monitoring stack exists.
    @property
    def alarm_5xx(self) -> str:
        return f"{self.prefix}-endpoint-5xx"

    @property
    def alarm_latency(self) -> str:
        return f"{self.prefix}-model-latency"

    @property
    def alarm_drift(self) -> str:
        return f"{self.prefix}-data-drift"

    @property
    def alarm_model_quality(self) -> str:
        return f"{self.prefix}-model-quality"

    @property
    def alarm_failed_jobs(self) -> str:
        return f"{self.prefix}-failed-jobs"

    @property
    def alarm_dead_letters(self) -> str:
        return f"{self.prefix}-dead-letters"

    @property
    def rollback_alarms(self) -> tuple[str, ...]:
        """Alarms SageMaker watches during a blue/green update: endpoint health only, never drift or jobs."""
        return (self.alarm_5xx, self.alarm_latency)

    @property
    def failed_jobs_rule(self) -> str:
        return self.rule("failed-jobs")

    @property
    def api(self) -> str:
        return f"{self.prefix}-api"

    @property
    def dashboard(self) -> str:
        return f"{self.prefix}-overview"
