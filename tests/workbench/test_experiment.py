"""workbench.experiment's plans: what a local run gets, and the refusals that come before any container starts."""

from __future__ import annotations

import pytest

from workbench.container import JOB_NAME, job_name
from workbench.experiment import ExperimentError, parse_overrides, plan_from_files, tracking_target
from workbench.records import Stack


def test_overrides_are_key_value_strings_and_anything_else_is_refused():
    assert parse_overrides(["learning_rate=0.2", "note=a=b"]) == {"learning_rate": "0.2", "note": "a=b"}
    with pytest.raises(ExperimentError, match="expected key=value"):
        parse_overrides(["learning_rate"])


def test_own_data_is_laid_out_as_the_train_channel_with_the_target_named(tmp_path):
    data = tmp_path / "data"
    (data / "2026").mkdir(parents=True)
    (data / "2026" / "a.csv").write_text("x,y\n1,2\n")
    (data / "b.parquet").write_bytes(b"PAR1")
    plan = plan_from_files(data, "img", "exp-1", tmp_path / "run", "y", {"max_iter": "50"})
    assert plan.hyperparameters == {"target_column": "y", "max_iter": "50"}
    train = plan.channels["train"]
    assert (train / "2026" / "a.csv").read_text() == "x,y\n1,2\n" and (train / "b.parquet").is_file()


def test_own_data_without_a_target_or_tables_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no table")
    with pytest.raises(ExperimentError, match="expected CSV or Parquet"):
        plan_from_files(tmp_path / "notes.txt", "img", "exp-1", tmp_path / "run", "y", {})
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    with pytest.raises(ExperimentError, match="--target"):
        plan_from_files(tmp_path / "a.csv", "img", "exp-1", tmp_path / "run", None, {})
    with pytest.raises(ExperimentError, match="does not exist"):
        plan_from_files(tmp_path / "nothing", "img", "exp-1", tmp_path / "run", "y", {})


def test_the_stacks_mlflow_is_the_default_target_and_an_explicit_one_wins(tmp_path):
    embedded = Stack({"MlflowTrackingUri": "http://127.0.0.1:5000", "MlflowExperimentName": "mlops-dev"}, tmp_path)
    assert tracking_target(embedded, None, None) == ("http://127.0.0.1:5000", "mlops-dev")
    assert tracking_target(embedded, "http://other", "mine") == ("http://other", "mine")
    deployed = Stack({"MlflowAppArn": "arn:aws:sagemaker:eu-west-1:1:mlflow-app/x"}, tmp_path)
    with pytest.raises(ExperimentError, match="--experiment"):
        tracking_target(deployed, None, None)
    assert tracking_target(Stack({}, tmp_path), None, None) is None


def test_run_names_are_valid_training_job_names():
    assert JOB_NAME.fullmatch(job_name("lr-sweep"))
    assert len(job_name("x" * 80)) <= 63
