"""ml_pipeline.tracking: what a training job's MLflow run holds (pure functions, checked against metadata.json's
numbers) and how `track` keeps one run and at most one model version per training job (SQLite tracking store)."""

from __future__ import annotations

import re

import copy
import io
import json
import math
import tarfile

import joblib
import pandas as pd
import pytest

from ml_pipeline import comparison as champion_comparison
from ml_pipeline import sample_data, tracking
from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.metrics import metric_names
from ml_pipeline.pipelines.training import nodes as training

JOB = "mlops-dev-train-0123456789abcdef0123"
FILES = [{"file": "2026/05/01/churn.csv", "bytes": 1234, "sha256": "a" * 64},
         {"file": "2026/05/02/new.csv", "bytes": 99, "sha256": "b" * 64}]
INPUTS = [{"uri": "s3://data/validated/2026/05/01/churn.csv", "version": "v1"},
          {"uri": "s3://data/validated/2026/05/02/new.csv", "version": "v7"}]
HYPERPARAMETERS = {"target_column": "churn", "task": "auto", "tuning_iterations": "0", "cv_folds": "5", "seed": "42",
                   "max_iter": "60", "lineage_inputs": json.dumps(INPUTS), "image_uri": "example/image:1",
                   "champion_sha256": "c" * 64, "sagemaker_region": "eu-west-1"}
ENV = {"MLFLOW_TRACKING_URI": "http://mlflow.example:5000", "MLFLOW_EXPERIMENT_NAME": "mlops-dev",
       "TRACK_REGISTERED_MODEL": "mlops-dev-model", "TRACK_PHASE": "trained", "TRACK_TRAINING_JOB": JOB,
       "TRACK_DECISION": "gate_passed", "TRACK_REASON": "roc_auc=0.85 meets the threshold",
       "TRACK_IMAGE": "123.dkr.ecr.eu-west-1.amazonaws.com/mlops:abc",
       "TRACK_MODEL_DATA_URL": f"s3://artifacts/models/{JOB}/output/model.tar.gz", "TARGET_COLUMN": "churn",
       "TASK": "auto"}


@pytest.fixture(scope="module")
def metadata(processed, fitted, production_metadata):
    """metadata.json as training writes it after a run that had a champion: lineage with files and S3 versions,
    and the paired comparison computed by the project's own code (the champion: a smaller model)."""
    model, _ = fitted
    champion_model, _ = training.train_model(processed["train"].head(300), processed["schema"],
                                             {**_small_training(), "estimator": {"max_iter": 10}}, 5)
    lineage = {"inputs": INPUTS, "files": FILES, "training_job": JOB, "image": "example/image:1",
               "hyperparameters": HYPERPARAMETERS}
    test = processed["test"]
    sources = pd.Series(["2026/05/02/new.csv" if i % 3 == 0 else "2026/05/01/churn.csv" for i in range(len(test))])
    champion_lineage = {**production_metadata, "lineage": {"files": [FILES[0]], "training_job": "mlops-dev-train-old"}}
    comparison = champion_comparison.compare(model, {"pipeline": champion_model, "metadata": champion_lineage,
                                                     "sha256": "d" * 64},
                                             test, sources, processed["schema"], lineage)
    document = copy.deepcopy(production_metadata)
    document.update({"lineage": lineage, "comparison": comparison})
    return json.loads(json.dumps(to_jsonable(document), allow_nan=False))


def _small_training() -> dict:
    from kedro_test_params import TRAINING

    return copy.deepcopy(TRAINING)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fitted, metadata):
    """A model directory as `train` leaves it: model.joblib, metadata.json, report/index.html."""
    directory = tmp_path_factory.mktemp("tracked") / "model"
    (directory / "report").mkdir(parents=True)
    joblib.dump(fitted[0], directory / "model.joblib")
    (directory / "metadata.json").write_text(json.dumps(metadata))
    (directory / "report" / "index.html").write_text("<html><body>report</body></html>")
    return directory


# ---------------------------------------------------------------------------------------------------------
# The request
# ---------------------------------------------------------------------------------------------------------
def test_request_reads_the_contract_environment():
    request = tracking.request_from_env(ENV)
    assert (request.tracking_uri, request.experiment, request.registered_model) == (
        "http://mlflow.example:5000", "mlops-dev", "mlops-dev-model")
    assert (request.phase, request.decision, request.training_job) == ("trained", "gate_passed", JOB)
    assert request.registers and request.package_arn is None and request.model_sha256 is None
    gated = tracking.request_from_env({**ENV, "TRACK_DECISION": "gated_out"})
    assert not gated.registers
    deployed = tracking.request_from_env({**ENV, "TRACK_PHASE": "deployed", "TRACK_DECISION": "",
                                          "TRACK_PACKAGE_ARN": "arn:aws:sagemaker:eu-west-1:1:model-package/g/3"})
    assert deployed.registers and deployed.decision is None and deployed.package_arn.endswith("/g/3")


@pytest.mark.parametrize("change, message", [
    ({"MLFLOW_TRACKING_URI": ""}, "MLFLOW_TRACKING_URI is not set"),
    ({"MLFLOW_EXPERIMENT_NAME": " "}, "MLFLOW_EXPERIMENT_NAME is not set"),
    ({"TRACK_PHASE": "served"}, "TRACK_PHASE must be one of trained, deployed, rolled_back"),
    ({"TRACK_DECISION": ""}, "TRACK_DECISION must be gate_passed or gated_out"),
    ({"TRACK_TRAINING_JOB": "job'; drop"}, "is not a SageMaker training job name"),
    ({"TRACK_REGISTERED_MODEL": "it's"}, "must not contain a single quote"),
    ({"MODEL_SHA256": "abc"}, "MODEL_SHA256 is not a sha256 hex digest"),
])
def test_request_names_what_is_wrong(change, message):
    with pytest.raises(ConfigError, match=message):
        tracking.request_from_env({**ENV, **change})


# ---------------------------------------------------------------------------------------------------------
# What the run holds
# ---------------------------------------------------------------------------------------------------------
def test_metrics_are_metadata_numbers_under_split_and_role_prefixes(metadata):
    logged = tracking.run_metrics(metadata)
    names = metric_names("classification")
    expected = {f"{split}_{name}": metadata["metrics"][split][name]
                for split in ("test", "validation") for name in names}
    comparison = metadata["comparison"]
    assert comparison["champion"]["scored"] is True and 0 < comparison["new"]["rows"] < comparison["test"]["rows"]
    for part, infix in (("test", ""), ("new", "new_")):
        expected[f"comparison_{infix}rows"] = comparison[part]["rows"]
        for role in ("champion", "challenger"):
            expected.update({f"{role}_{infix}{name}": comparison[part][role][name] for name in names})
    expected.update({"train_rows": metadata["training"]["train_rows"],
                     "fit_seconds": metadata["training"]["fit_seconds"]})
    assert logged == pytest.approx(expected, rel=0, abs=0)
    assert logged["test_roc_auc"] != logged["champion_roc_auc"]  # the two models really were scored apart


def test_bias_metrics_are_logged_per_facet_under_names_mlflow_accepts():
    bias = {"configured": True, "facets": [
        {"column": "region", "values": ["south", "north/east"], "pre_training": {"CI": 0.5, "DPL": 0.2},
         "post_training": {"DI": 0.6, "TE": None}},
        {"column": "customer age", "threshold": 60, "pre_training": {"CI": -0.1}, "post_training": {}}]}
    logged = tracking.run_metrics({"task": "classification", "bias": bias})
    assert logged == {"bias_region_south-north_east_CI": 0.5, "bias_region_south-north_east_DPL": 0.2,
                      "bias_region_south-north_east_DI": 0.6, "bias_customer_age_gt60_CI": -0.1}
    assert all(re.fullmatch(r"[A-Za-z0-9_.\- /]+", name) for name in logged)  # MLflow's metric-name characters


def test_metrics_of_a_first_model_and_of_regression(metadata):
    first = {**metadata, "comparison": {"champion": {"scored": False, "reason": "no production model"},
                                        "test": {"rows": 240, "challenger": metadata["metrics"]["test"]}}}
    assert not [name for name in tracking.run_metrics(first) if name.startswith(("champion_", "challenger_"))]
    regression = {"task": "regression",
                  "metrics": {"test": {"rmse": 1.5, "mae": 1.0, "r2": None}, "train": {"r2": 0.9}},
                  "training": {"train_rows": 10, "tuning_iterations": 4, "best_score": -1.25}}
    assert tracking.run_metrics(regression) == {"test_rmse": 1.5, "test_mae": 1.0, "train_r2": 0.9, "train_rows": 10.0,
                                                "tuning_best_score": -1.25}


def test_params_are_the_training_settings_with_the_fitted_values(metadata, fitted):
    fitted_settings = tracking.fitted_settings(fitted[0])
    estimator = fitted[0].steps[-1][1]
    assert fitted_settings["max_iter"] == estimator.max_iter == 60 and fitted_settings["seed"] == 42
    params = tracking.run_params(metadata, fitted_settings)
    assert params["target_column"] == "churn" and params["task"] == "classification"  # the resolved task, not "auto"
    assert params["tuning_iterations"] == "0" and params["cv_folds"] == "5" and params["seed"] == "42"
    assert params["learning_rate"] == str(estimator.learning_rate) and params["max_leaf_nodes"] == "15"
    for lineage_only in ("lineage_inputs", "image_uri", "champion_sha256", "sagemaker_region"):
        assert lineage_only not in params
    tuned = {**metadata, "training": {"tuning_iterations": 8, "cv_folds": 3, "scoring": "roc_auc",
                                      "best_params": {"max_iter": 200}}}
    params = tracking.run_params(tuned, {**fitted_settings, "max_iter": 200})
    assert params["max_iter"] == "200" and params["cv_folds"] == "3" and params["tuning_scoring"] == "roc_auc"


def test_tags_record_the_lineage(metadata):
    request = tracking.request_from_env(ENV)
    tags = tracking.run_tags(metadata, request, "e" * 64)
    assert tags["training_job"] == JOB and tags["image"] == "example/image:1"  # the image that trained the model
    assert tags["model_data_url"] == ENV["TRACK_MODEL_DATA_URL"] and tags["model_sha256"] == "e" * 64
    assert json.loads(tags["data_inputs"]) == sorted(INPUTS, key=lambda i: i["uri"]) and tags["data_files"] == "2"
    assert tags["champion_training_job"] == "mlops-dev-train-old" and tags["champion_sha256"] == "d" * 64
    assert tags["created_at"] == metadata["created_at"] and "data_fingerprint" not in tags
    reordered = {**metadata, "lineage": {**metadata["lineage"], "files": FILES[::-1], "fingerprint": "f" * 64}}
    again = tracking.run_tags(reordered, request, None)
    assert again["data_files_sha256"] == tags["data_files_sha256"] and again["data_fingerprint"] == "f" * 64
    assert "model_sha256" not in again
    bare = tracking.run_tags({**metadata, "lineage": {}}, request, None)
    assert bare["image"] == ENV["TRACK_IMAGE"] and "data_inputs" not in bare and "data_files_sha256" not in bare
    # The control plane's fingerprint of the window (keys + S3 versions) comes with the request.
    given = tracking.request_from_env({**ENV, "TRACK_DATA_FINGERPRINT": "a" * 64})
    assert tracking.run_tags(metadata, given, None)["data_fingerprint"] == "a" * 64


@pytest.mark.parametrize("env, run_tags, version_tags", [
    ({}, {"gate": "gate_passed", "gate_reason": ENV["TRACK_REASON"]}, {"training_job": JOB}),
    ({"TRACK_DECISION": "gated_out", "TRACK_REASON": "worse than production"},
     {"gate": "gated_out", "gate_reason": "worse than production"}, {}),
    ({"TRACK_PHASE": "deployed", "TRACK_PACKAGE_ARN": "arn:p/1"}, {},
     {"training_job": JOB, "deployed": "true", "sagemaker_model_package_arn": "arn:p/1"}),
    ({"TRACK_PHASE": "rolled_back", "TRACK_REASON": "alarm mlops-dev-endpoint-5xx", "TRACK_PACKAGE_ARN": "arn:p/1"},
     {}, {"training_job": JOB, "rolled_back": "alarm mlops-dev-endpoint-5xx",
          "sagemaker_model_package_arn": "arn:p/1"}),
    ({"TRACK_PHASE": "rolled_back", "TRACK_REASON": ""}, {}, {"training_job": JOB, "rolled_back": "true"}),
])
def test_phase_tags(env, run_tags, version_tags):
    assert tracking.phase_tags(tracking.request_from_env({**ENV, **env})) == (run_tags, version_tags)


def test_input_example_is_feature_rows_the_model_predicts(metadata, fitted):
    example = tracking.input_example(metadata)
    assert list(example.columns) == [f["name"] for f in metadata["features"]] and len(example) == tracking.EXAMPLE_ROWS
    for feature in metadata["features"]:
        column = example[feature["name"]]
        if feature["kind"] == "numeric":
            profile = metadata["reference_profile"]["features"][feature["name"]]
            assert column.dtype == "float64" and column.between(profile["min"], profile["max"]).all()
        else:
            assert column.dtype == object
            assert set(column) <= set(metadata["reference_profile"]["features"][feature["name"]]["frequencies"])
    assert set(fitted[0].predict(example)) <= {"no", "yes"}


def test_input_example_without_a_profile_still_gives_a_signature(metadata, fitted):
    from mlflow.models import infer_signature

    example = tracking.input_example({**metadata, "reference_profile": {}})
    assert example["contract"].tolist() == ["__missing__"] * tracking.EXAMPLE_ROWS
    assert example["tenure_months"].isna().all()
    signature = infer_signature(example, pd.Series(fitted[0].predict(example), name="churn"))
    assert signature.inputs.input_names() == list(example.columns)


def test_model_directory_from_the_tarball_and_its_pin(tmp_path, model_dir):
    from ml_pipeline.serving.integrity import model_digest

    inputs = tmp_path / "input"
    inputs.mkdir()
    with tarfile.open(inputs / "model.tar.gz", "w:gz") as archive:  # as SageMaker packs /opt/ml/model
        for path in sorted(model_dir.iterdir()):
            archive.add(path, arcname=path.name)
    pin = model_digest(model_dir)
    directory, digest = tracking.model_directory(inputs, tmp_path / "x", pin)
    assert digest == pin and (directory / "report" / "index.html").is_file()
    with pytest.raises(DataError, match="does not match MODEL_SHA256"):
        tracking.model_directory(inputs, tmp_path / "y", "0" * 64)
    with pytest.raises(DataError, match="no model.tar.gz"):
        tracking.model_directory(tmp_path / "missing", tmp_path / "z")
    (inputs / "model.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a usable model archive"):
        tracking.model_directory(inputs, tmp_path / "w")


# ---------------------------------------------------------------------------------------------------------
# MLflow (a SQLite store in a temporary directory; one experiment and registered model per test)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite tracking store for the module (creating its schema costs seconds); artifacts under its folder."""
    mlflow = pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    yield {"uri": f"sqlite:///{root / 'mlflow.db'}", "root": root}
    mlflow.set_tracking_uri(previous)
    mlflow.set_registry_uri(None)


@pytest.fixture()
def names(request, store, monkeypatch):
    """Experiment and registered model names of this test; experiments it creates keep artifacts under the store."""
    monkeypatch.chdir(store["root"])
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    slug = request.node.name.replace("[", "-").replace("]", "")[:60]
    return {"experiment": f"exp-{slug}", "model": f"model-{slug}"}


def _request(store, names, job: str = JOB, **env) -> tracking.TrackRequest:
    return tracking.request_from_env({**ENV, "MLFLOW_TRACKING_URI": store["uri"],
                                      "MLFLOW_EXPERIMENT_NAME": names["experiment"],
                                      "TRACK_REGISTERED_MODEL": names["model"], "TRACK_TRAINING_JOB": job, **env})


def _client(store):
    from mlflow import MlflowClient

    return MlflowClient(store["uri"], store["uri"])


def _runs(store, names, job: str = JOB) -> list:
    client = _client(store)
    experiment = client.get_experiment_by_name(names["experiment"])
    return client.search_runs([experiment.experiment_id], f"tags.training_job = '{job}'")


def _versions(store, names) -> list:
    return _client(store).search_model_versions(f"name = '{names['model']}'")


DEPLOYED = {"TRACK_PHASE": "deployed", "TRACK_DECISION": "", "TRACK_REASON": "",
            "TRACK_PACKAGE_ARN": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/mlops-dev-models/1"}


def test_trained_then_deployed_logs_the_run_and_moves_the_alias(store, names, model_dir, metadata):
    import mlflow

    from ml_pipeline.serving.parsing import parse_body
    from ml_pipeline.serving.predictor import CompiledModel

    trained = tracking.track(_request(store, names), model_dir, "e" * 64)
    assert trained["model_version"] == "1" and trained["alias_moved"] is False and trained["run_logged"] is True
    assert trained["tags_set"]["run"]["gate"] == "gate_passed" and trained["tags_set"]["model_version"] == {
        "training_job": JOB}
    deployed = tracking.track(_request(store, names, **DEPLOYED), model_dir, "e" * 64)
    assert deployed["run_id"] == trained["run_id"] and deployed["model_version"] == "1"
    assert deployed["alias_moved"] is True and deployed["run_logged"] is False
    assert deployed["experiment_id"] == trained["experiment_id"] and deployed["experiment_name"] == names["experiment"]

    client = _client(store)
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == JOB
    assert run.data.metrics == tracking.run_metrics(metadata)
    assert run.data.metrics["test_roc_auc"] == metadata["metrics"]["test"]["roc_auc"]
    assert run.data.metrics["validation_f1"] == metadata["metrics"]["validation"]["f1"]
    assert run.data.metrics["champion_new_roc_auc"] == metadata["comparison"]["new"]["champion"]["roc_auc"]
    assert run.data.metrics["comparison_new_rows"] == metadata["comparison"]["new"]["rows"]
    assert run.data.params["max_iter"] == "60" and run.data.params["task"] == "classification"
    tags = run.data.tags
    assert tags["training_job"] == JOB and tags["model_sha256"] == "e" * 64 and tags["gate"] == "gate_passed"
    assert tags["model_data_url"] == ENV["TRACK_MODEL_DATA_URL"]
    assert json.loads(tags["data_inputs"])[1]["version"] == "v7"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metadata.json", "lineage.json", "report"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == ["report/index.html"]
    lineage = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/lineage.json")
    assert lineage["inputs"] == INPUTS and lineage["files"] == FILES

    version = client.get_model_version_by_alias(names["model"], "champion")
    assert str(version.version) == "1" and version.run_id == run.info.run_id and version.status == "READY"
    assert version.tags == {"training_job": JOB, "deployed": "true",
                            "sagemaker_model_package_arn": DEPLOYED["TRACK_PACKAGE_ARN"]}

    # The registered model answers exactly what `serve` answers for the same rows.
    rows = sample_data.generate(100, seed=23).drop(columns="churn")
    body = rows.to_csv(index=False).encode()
    served = CompiledModel(*_model_files(model_dir))
    expected = served.predict(parse_body(body, "text/csv", served.schema)).labels
    pyfunc = mlflow.pyfunc.load_model(f"models:/{names['model']}@champion")
    predicted = pyfunc.predict(pd.read_csv(io.BytesIO(body)))
    assert list(predicted) == expected and set(expected) == {"no", "yes"}
    assert pyfunc.metadata.get_input_schema().input_names() == [f["name"] for f in metadata["features"]]


def _model_files(model_dir):
    from ml_pipeline.serving.predictor import load_model_files

    return load_model_files(model_dir)


def test_the_same_request_twice_is_one_run_and_one_version(store, names, model_dir):
    first = tracking.track(_request(store, names), model_dir)
    second = tracking.track(_request(store, names), model_dir)
    assert second["run_id"] == first["run_id"] and second["model_version"] == first["model_version"] == "1"
    assert second["run_logged"] is False
    assert len(_runs(store, names)) == 1 and len(_versions(store, names)) == 1
    history = _client(store).get_metric_history(first["run_id"], "test_accuracy")
    assert len(history) == 1


def test_deployed_before_trained_is_still_one_run(store, names, model_dir):
    deployed = tracking.track(_request(store, names, **DEPLOYED), model_dir)
    assert deployed["run_logged"] is True and deployed["alias_moved"] is True
    trained = tracking.track(_request(store, names), model_dir)
    assert trained["run_id"] == deployed["run_id"] and trained["model_version"] == "1" and not trained["run_logged"]
    assert len(_runs(store, names)) == 1 and len(_versions(store, names)) == 1
    run = _client(store).get_run(deployed["run_id"])
    assert run.data.tags["gate"] == "gate_passed" and run.data.metrics == tracking.run_metrics(
        json.loads((model_dir / "metadata.json").read_text()))
    assert str(_client(store).get_model_version_by_alias(names["model"], "champion").version) == "1"


def test_rolled_back_tags_its_version_and_leaves_the_alias(store, names, model_dir):
    newer = "mlops-dev-train-newer"
    tracking.track(_request(store, names, **DEPLOYED), model_dir)
    rolled = tracking.track(_request(store, names, newer, TRACK_PHASE="rolled_back", TRACK_DECISION="",
                                     TRACK_REASON="alarm mlops-dev-endpoint-5xx fired in the bake",
                                     TRACK_PACKAGE_ARN="arn:aws:sagemaker:eu-west-1:1:model-package/g/2"),
                            model_dir)
    assert rolled["model_version"] == "2" and rolled["alias_moved"] is False
    client = _client(store)
    assert str(client.get_model_version_by_alias(names["model"], "champion").version) == "1"
    version = client.get_model_version(names["model"], "2")
    assert version.tags == {"training_job": newer, "rolled_back": "alarm mlops-dev-endpoint-5xx fired in the bake",
                            "sagemaker_model_package_arn": "arn:aws:sagemaker:eu-west-1:1:model-package/g/2"}
    assert len(_runs(store, names, newer)) == 1 and len(_runs(store, names)) == 1


def test_the_alias_follows_the_newest_verified_deploy_whatever_order_the_jobs_finish(store, names, model_dir):
    """Two deploys verified one after the other; the newer one's `track` job finishes first."""
    newer = "mlops-dev-train-newer"
    first = tracking.track(_request(store, names, newer, **DEPLOYED, TRACK_DEPLOYED_AT="2026-12-05T10:00:02.000000Z"),
                           model_dir)
    late = tracking.track(_request(store, names, **DEPLOYED, TRACK_DEPLOYED_AT="2026-12-05T10:00:01.000000Z"),
                          model_dir)
    assert first["alias_moved"] is True and late["alias_moved"] is False
    champion = _client(store).get_model_version_by_alias(names["model"], "champion")
    assert champion.tags["training_job"] == newer and champion.tags["deployed_at"] == "2026-12-05T10:00:02.000000Z"


def test_gated_out_has_no_version_and_says_why_on_the_run(store, names, model_dir):
    result = tracking.track(_request(store, names, TRACK_DECISION="gated_out",
                                     TRACK_REASON="roc_auc=0.61 misses the threshold (>= 0.7)"), model_dir)
    assert result["model_version"] is None and result["alias_moved"] is False
    assert result["tags_set"]["model_version"] == {}
    tags = _client(store).get_run(result["run_id"]).data.tags
    assert tags["gate"] == "gated_out" and tags["gate_reason"] == "roc_auc=0.61 misses the threshold (>= 0.7)"
    assert _versions(store, names) == []


def test_an_attempt_that_died_is_completed_by_the_next(store, names, model_dir, monkeypatch):
    import mlflow.sklearn

    def broken(*args, **kwargs):
        raise ConnectionError("the tracking server went away")

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.sklearn, "log_model", broken)
        with pytest.raises(ConnectionError):
            tracking.track(_request(store, names), model_dir)
    [run] = _runs(store, names)
    assert run.info.status == "FAILED"
    result = tracking.track(_request(store, names), model_dir)
    assert result["run_id"] == run.info.run_id and result["run_logged"] is True and result["model_version"] == "1"
    client = _client(store)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "test_roc_auc")) == 1


def test_two_runs_of_one_job_converge_on_the_oldest(store, names, model_dir):
    """Two jobs that both found no run and both created one: every later request uses the oldest."""
    from mlflow import MlflowClient

    client: MlflowClient = _client(store)
    experiment_id = client.create_experiment(names["experiment"])
    older = client.create_run(experiment_id, start_time=1_000, run_name=JOB, tags={"training_job": JOB})
    client.create_run(experiment_id, start_time=2_000, run_name=JOB, tags={"training_job": JOB})
    result = tracking.track(_request(store, names), model_dir)
    assert result["run_id"] == older.info.run_id and len(_runs(store, names)) == 2
    assert math.isclose(client.get_run(older.info.run_id).data.metrics["train_rows"],
                        json.loads((model_dir / "metadata.json").read_text())["training"]["train_rows"])
