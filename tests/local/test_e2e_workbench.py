"""The data scientist's path through the embedded stack (workbench/, docs/experimenting.md), as a user runs it:
`python -m workbench` trains the production image through the SageMaker SDK v3's ModelTrainer in local-container
mode (docker compose), on a production run's exact data, logs the run to the stack's MLflow beside production's,
and `reproduce` trains a registered model again and finds it identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_e2e_retraining import _settle  # tests/local is on sys.path (rootdir conftest)

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
REPO = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: the workbench must be tested in CI, never skipped", pytrace=False)
    pytest.skip(f"WORKBENCH NOT TESTED: {reason}")


@pytest.fixture(scope="module")
def image() -> str:
    from workbench.container import compose_available

    name = os.environ.get("MLOPS_IMAGE", "").strip()
    if not name:
        _unavailable('MLOPS_IMAGE is not set (export MLOPS_IMAGE="$(bash scripts/build_image.sh)")')
    problem = compose_available()
    if problem:
        _unavailable(problem)
    if subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode != 0:
        _unavailable(f"no Docker engine has {name}")
    return name


@pytest.fixture(scope="module")
def production(stack, sample, tmp_path_factory):
    """A model in production, its package and its training job; the `track` jobs settled."""
    if stack.live_config() is None:
        data = sample(tmp_path_factory.mktemp("workbench") / "base.csv", 1200, seed=7, target=stack.env["TARGET_COLUMN"])
        stack.client("s3").upload_file(str(data), stack.output("DataBucketName"), "incoming/workbench-base.csv")
        stack.wait_for("a model serving", stack.live_config, timeout=300)
    _settle(stack)
    sm = stack.client("sagemaker")
    packages = sm.list_model_packages(ModelPackageGroupName=stack.output("ModelPackageGroupName"),
                                      SortBy="CreationTime", SortOrder="Descending")["ModelPackageSummaryList"]
    assert packages, "a model serves, so a gate-approved package exists"
    arn = packages[0]["ModelPackageArn"]
    job = sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]["training_job"]
    return {"arn": arn, "job": job}


def _workbench(stack, image, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    result = subprocess.run([sys.executable, "-m", "workbench", "--outputs", str(stack.state_dir / "outputs.json"),
                             "--image", image, "--workdir", str(workdir), *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return result


def test_reproduce_trains_a_registered_model_again_to_the_same_metrics_and_predictions(stack, image, production,
                                                                                       tmp_path):
    result = _workbench(stack, image, tmp_path, "reproduce", production["arn"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report_file, = tmp_path.glob("reproduce-*/reproduction.json")
    verdict = json.loads(report_file.read_text())
    assert verdict["identical"] is True
    assert verdict["training_job"] == production["job"] and verdict["package_arn"] == production["arn"]
    # The numbers the comparison stood on: every metric of the model (test, validation, the paired comparison)
    # and every row of the recorded training window.
    assert verdict["metrics_compared"] >= 10
    assert verdict["rows_compared"] >= 1000
    assert verdict["metric_differences"] == [] and verdict["prediction_differences"] == 0
    assert f"REPRODUCED {production['arn']}" in result.stdout


def test_an_experiment_runs_the_production_image_on_productions_data_and_lands_in_mlflow_beside_it(
        stack, image, production, tmp_path):
    from mlflow import MlflowClient

    uri = stack.output("MlflowTrackingUri")
    client = MlflowClient(uri, registry_uri=uri)
    name = stack.output("MlflowRegisteredModelName")
    versions_before = {v.version for v in client.search_model_versions(f"name='{name}'")}
    champion_before = client.get_model_version_by_alias(name, "champion").version

    result = _workbench(stack, image, tmp_path, "train", "--from-job", production["job"],
                        "--set", "learning_rate=0.2", "--set", "max_iter=40", "--name", "lr-sweep")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    plan_file, = tmp_path.glob("lr-sweep-*/plan.json")
    plan = json.loads(plan_file.read_text())
    model_dir = plan_file.parent / "model-extracted"
    metadata = json.loads((model_dir / "metadata.json").read_text())

    experiment = client.get_experiment_by_name(stack.output("MlflowExperimentName"))
    runs = client.search_runs([experiment.experiment_id], f"tags.training_job = '{plan['job']}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["gate"] == "experiment" and run.data.tags["image"] == image
    assert float(run.data.params["learning_rate"]) == 0.2 and int(run.data.params["max_iter"]) == 40
    for metric, value in metadata["metrics"]["test"].items():
        assert run.data.metrics[f"test_{metric}"] == pytest.approx(value, rel=1e-12)
    # The same data as production's run: the same S3 versions (the control plane's fingerprint) and the same bytes
    # (the digest of the files the image hashed as it read them).
    production_run, = client.search_runs([experiment.experiment_id], f"tags.training_job = '{production['job']}'")
    assert run.data.tags["data_fingerprint"] == production_run.data.tags["data_fingerprint"]
    assert run.data.tags["data_files_sha256"] == production_run.data.tags["data_files_sha256"]
    # The recorded production run had other settings: the experiment changed the model, not only its name.
    assert production_run.data.params.get("learning_rate") != run.data.params["learning_rate"]
    # An experiment is never a model version and never moves the champion.
    assert {v.version for v in client.search_model_versions(f"name='{name}'")} == versions_before
    assert client.get_model_version_by_alias(name, "champion").version == champion_before


def test_the_workbench_says_what_is_missing_instead_of_failing_later(stack, image, tmp_path):
    result = _workbench(stack, image, tmp_path, "train", "--from-job", "no-such-training-job")
    assert result.returncode == 2 and "no training job no-such-training-job" in result.stderr
    bad = tmp_path / "notes.txt"
    bad.write_text("not a table")
    result = _workbench(stack, image, tmp_path, "train", "--data", str(bad), "--target", "churn")
    assert result.returncode == 2 and "expected CSV or Parquet" in result.stderr
