"""MLflow through the embedded stack: every training job of the loop is one run (logged by the image's `track` job
after the decision, off the deploy path), its numbers are the ledger's and the model's, and the `champion` alias
is the model the endpoint serves — loaded with mlflow.pyfunc, it answers what the endpoint answers."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from test_e2e_retraining import _csv, _decisions, _rows, _settle  # tests/local is on sys.path (rootdir conftest)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def mlflow_client(stack, sample, tmp_path_factory):
    """The loop has trained at least twice (test_e2e.py has usually trained several models by now)."""
    from mlflow import MlflowClient

    uri = stack.output("MlflowTrackingUri")
    assert uri == stack.state["mlflow_url"] and uri.startswith("http://127.0.0.1:")
    target, work = stack.env["TARGET_COLUMN"], tmp_path_factory.mktemp("mlflow")
    if stack.live_config() is None:
        data = sample(work / "base.csv", 1200, seed=7, target=target)
        stack.client("s3").upload_file(str(data), stack.output("DataBucketName"), "incoming/mlflow-base.csv")
        stack.wait_for("a model serving", stack.live_config, timeout=300)
    _settle(stack)
    if len(_judged(stack)) < 2:
        more = sample(work / "more.csv", 600, seed=99, target=target)
        stack.client("s3").upload_file(str(more), stack.output("DataBucketName"), "incoming/mlflow-more.csv")
        stack.wait_for("a second model judged", lambda: len(_judged(stack)) >= 2, timeout=420)
    _settle(stack)  # the `track` jobs of the last decisions, and their completion
    return MlflowClient(uri, registry_uri=uri)  # explicit: mlflow's process-wide URIs may be another test's


def _judged(stack) -> dict[str, dict]:
    """Training job → its gate record (gate_passed or gated_out, with the test metrics the gate read)."""
    return {r["job"]: r for r in _decisions(stack, "gate_passed") + _decisions(stack, "gated_out")}


def _model_metadata(stack, job) -> dict:
    bucket = stack.output("ArtifactsBucketName")
    body = stack.client("s3").get_object(Bucket=bucket, Key=f"models/{job}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return json.load(archive.extractfile("metadata.json"))


def test_every_judged_training_job_is_one_run_with_the_ledgers_and_the_models_numbers(stack, mlflow_client):
    experiment = mlflow_client.get_experiment_by_name(stack.env["TRACKING_EXPERIMENT"])
    assert experiment is not None
    runs = mlflow_client.search_runs([experiment.experiment_id], max_results=1000)
    by_job: dict[str, list] = {}
    for run in runs:
        by_job.setdefault(run.data.tags["training_job"], []).append(run)
    judged = _judged(stack)
    assert len(judged) >= 2
    for job, record in judged.items():
        assert len(by_job.get(job, [])) == 1, f"{job}: {len(by_job.get(job, []))} runs"
        (run,) = by_job[job]
        assert run.data.tags["gate"] == record["decision"]
        metadata = _model_metadata(stack, job)
        for name, value in metadata["metrics"]["test"].items():
            assert run.data.metrics[f"test_{name}"] == value, (job, name)  # the model's own numbers, exactly
        for name, value in record["details"]["metrics"].items():
            # the gate read them from the job's `test:<m>=<value:.6f>` lines
            assert run.data.metrics[f"test_{name}"] == pytest.approx(value, abs=5e-7), (job, name)
        tracked = [r for r in _decisions(stack, "tracked") if r["job"] == job]
        assert tracked and {t["details"]["run_id"] for t in tracked} == {run.info.run_id}


def test_the_champion_alias_is_the_served_model_and_predicts_what_the_endpoint_answers(stack, mlflow_client, sample,
                                                                                       tmp_path):
    import mlflow

    name = stack.env["REGISTERED_MODEL_NAME"]
    production = max(_decisions(stack, "deployed"), key=lambda r: r["at"])
    champion = mlflow_client.get_model_version_by_alias(name, "champion")
    assert champion.tags["training_job"] == production["job"]
    package = stack.client("sagemaker").describe_model_package(ModelPackageName=production["model"])
    props = package["CustomerMetadataProperties"]
    assert (props["mlflow_model_version"], props["mlflow_run_id"]) == (champion.version, champion.run_id)
    assert champion.tags["sagemaker_model_package_arn"] == production["model"]
    # Only versions whose deploy was verified ever carried the alias: every other one is untagged or rolled back.
    for version in mlflow_client.search_model_versions(f"name = '{name}'"):
        if version.version != champion.version:
            assert "champion" not in (version.aliases or [])

    target = stack.env["TARGET_COLUMN"]
    rows = _rows(sample(tmp_path / "probe.csv", 100, seed=4242, target=target))
    features = [c for c in rows[0] if c != target]
    response = stack.runtime().invoke_endpoint(EndpointName=stack.output("EndpointName"), ContentType="text/csv",
                                               Accept="application/json", Body=_csv(rows, features))
    served = json.loads(response["Body"].read())["predictions"]
    uri = stack.output("MlflowTrackingUri")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    import pandas as pd

    frame = pd.read_csv(io.BytesIO(_csv(rows, features)))
    predicted = [str(p) for p in model.predict(frame)]
    assert len(served) == len(predicted) == 100
    assert [str(p) for p in served] == predicted
