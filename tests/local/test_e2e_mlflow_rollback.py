"""A rolled-back deploy in MLflow, end to end, on a stack of its own (the session stack's other tests rely on what
serves there): the endpoint's 5xx alarm is in ALARM when a better model deploys, SageMaker's blue/green update is
rolled back, and the `champion` alias stays on the model that serves while the new version says why it is not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from test_e2e_retraining import _decisions, _settle  # tests/local is on sys.path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack(stack_starter, tmp_path_factory):
    # The training window holds the newest 3000 rows: the second upload alone (as in test_e2e_retraining).
    with stack_starter(tmp_path_factory.mktemp("rollback"), "training_window_max_rows=3000") as running:
        yield running


def _alarm_5xx(stack, endpoint: str, now: datetime) -> None:
    """Five minutes of server errors, as SageMaker would publish them for the endpoint; then one evaluation tick."""
    stack.client("cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocation5XXErrors", "Value": 50.0, "Unit": "Count", "Timestamp": now - timedelta(minutes=m),
         "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]}
        for m in range(5)])
    states = stack.control("POST", "alarms/evaluate", {"at": now.isoformat()})["alarms"]
    assert states[f"{stack.env['NAME_PREFIX']}-endpoint-5xx"] == "ALARM", states


def test_a_rolled_back_model_never_becomes_champion(own_stack, sample, tmp_path):
    from mlflow import MlflowClient

    stack, target = own_stack, own_stack.env["TARGET_COLUMN"]
    bucket, endpoint = stack.output("DataBucketName"), stack.output("EndpointName")
    uri, name = stack.output("MlflowTrackingUri"), stack.env["REGISTERED_MODEL_NAME"]
    client = MlflowClient(uri, registry_uri=uri)  # explicit: mlflow's process-wide URIs may be another test's
    stack.client("s3").upload_file(str(sample(tmp_path / "a.csv", 1200, seed=7, target=target)), bucket,
                                   "incoming/a.csv")
    first = stack.wait_for("the first model serving", stack.live_config, timeout=300)
    _settle(stack)
    champion = client.get_model_version_by_alias(name, "champion")
    serving_job = champion.tags["training_job"]

    _alarm_5xx(stack, endpoint, datetime.now(timezone.utc))
    # Labeled rows where the features mean the opposite: the new model beats the serving one on them (its gate).
    stack.client("s3").upload_file(str(sample(tmp_path / "b.csv", 3000, seed=21, target=target, concept_shift=True)),
                                   bucket, "incoming/b.csv")
    rolled = stack.wait_for("the deploy rolled back", lambda: _decisions(stack, "rolled_back"), timeout=420)
    _settle(stack)
    new_job = rolled[0]["job"]
    assert new_job != serving_job and stack.live_config() == first
    assert [r["job"] for r in _decisions(stack, "gate_passed")].count(new_job) == 1

    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["training_job"] == serving_job  # the alias did not move
    (version,) = client.search_model_versions(f"name = '{name}' and tags.training_job = '{new_job}'")
    assert "rolled back" in version.tags["rolled_back"] and "champion" not in (version.aliases or [])
    assert version.tags["sagemaker_model_package_arn"] == rolled[0]["model"]
    assert version.tags.get("deployed") is None
    tracked = {r["details"]["tracking_job"]: r for r in _decisions(stack, "tracked") if r["job"] == new_job}
    assert len(tracked) == 2  # trained, rolled back
    package = stack.client("sagemaker").describe_model_package(ModelPackageName=rolled[0]["model"])
    assert package["CustomerMetadataProperties"]["mlflow_model_version"] == version.version
