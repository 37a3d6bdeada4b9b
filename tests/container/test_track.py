"""`track` as a process, as the control plane starts it (a Processing job with ContainerEntrypoint ["track"]): against a
SQLite store, against an `mlflow server` (how the embedded stack and SageMaker's managed MLflow are reached), with an
unreachable server, and in the real image (`docker`)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from entrypoint_support import COMMANDS, TARGET, model_tarball, process_env, processing_layout, run, training_layout
from ml_pipeline import sample_data
from test_image import CONTAINER_LABEL, _docker, _world_writable, containers, image  # noqa: F401 (fixtures)

JOB = "mlops-dev-train-track0123456789abcd"
INPUTS = [{"uri": "s3://data/validated/churn.csv", "version": "3HL4kqtJlcpXroDTDmJ"}]
HYPERPARAMETERS = {"target_column": TARGET, "task": "auto", "tuning_iterations": "0", "cv_folds": "3", "seed": "7",
                   "max_iter": "40", "lineage_inputs": json.dumps(INPUTS), "image_uri": "example/image:1"}
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/mlops-dev-models/1"
SERVER_READY_SECONDS = 180  # `mlflow server` on 2 shared cores: imports, schema migration, workers


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real `train` run and its model.tar.gz (lineage with the channel's files, report/, metadata.json)."""
    root = tmp_path_factory.mktemp("train")
    data = root / "churn.csv"
    sample_data.generate(700, seed=31).to_csv(data, index=False)
    opt_ml = training_layout(root, {"churn.csv": data}, HYPERPARAMETERS)
    result = run("train", opt_ml, TRAINING_JOB_NAME=JOB)
    failure = opt_ml / "output" / "failure"
    assert result.returncode == 0, (failure.read_text() if failure.exists() else "") + result.stderr[-3000:]
    tarball = model_tarball(opt_ml / "model", root / "model.tar.gz")
    metadata = json.loads((opt_ml / "model" / "metadata.json").read_text())
    return {"model": opt_ml / "model", "tarball": tarball, "metadata": metadata}


def _environment(uri: str, experiment: str, model: str, phase: str, **extra: str) -> dict[str, str]:
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": experiment, "TRACK_REGISTERED_MODEL": model,
           "TRACK_PHASE": phase, "TRACK_TRAINING_JOB": JOB, "TRACK_IMAGE": "123.dkr.ecr.eu-west-1.amazonaws.com/m:1",
           "TRACK_MODEL_DATA_URL": f"s3://artifacts/models/{JOB}/output/model.tar.gz", "TARGET_COLUMN": TARGET,
           "TASK": "auto", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if phase == "trained":
        env.update({"TRACK_DECISION": "gate_passed", "TRACK_REASON": "roc_auc meets the threshold"})
    else:
        env["TRACK_PACKAGE_ARN"] = PACKAGE
    return {**env, **extra}


def _track(root: Path, tarball: Path | None, env: dict[str, str], timeout: float = 300):
    """One `track` job in a fresh /opt/ml layout; (opt_ml, completed process, seconds)."""
    inputs = {"model": {"model.tar.gz": tarball}} if tarball is not None else {}
    root.mkdir(parents=True, exist_ok=True)
    opt_ml = processing_layout(root, inputs)
    started = time.monotonic()
    result = subprocess.run([str(COMMANDS / "track")], env=process_env(opt_ml, **env), cwd=root, capture_output=True,
                            text=True, timeout=timeout)
    return opt_ml, result, time.monotonic() - started


def _outcome(opt_ml: Path, result) -> dict:
    message = opt_ml / "output" / "message"
    assert result.returncode == 0, (message.read_text() if message.exists() else "") + result.stderr[-4000:]
    assert not message.exists()
    return json.loads((opt_ml / "processing" / "output" / "report" / "tracking.json").read_text())


def _served_predictions(model_dir: Path, body: bytes) -> list:
    from ml_pipeline.serving.parsing import parse_body
    from ml_pipeline.serving.predictor import CompiledModel

    served = CompiledModel.load(model_dir)
    return served.predict(parse_body(body, "text/csv", served.schema)).labels


def test_track_logs_one_run_per_training_job_as_a_process(tmp_path, trained):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opt_ml, result, _ = _track(tmp_path / "a", trained["tarball"], _environment(uri, "mlops-dev", "mlops-dev-model",
                                                                                 "trained"))
    first = _outcome(opt_ml, result)
    assert set(first) == {"training_job", "phase", "run_id", "experiment_id", "experiment_name", "registered_model",
                          "model_version", "alias_moved", "run_logged", "tags_set"}
    assert (first["training_job"], first["phase"], first["experiment_name"], first["registered_model"]) == (
        JOB, "trained", "mlops-dev", "mlops-dev-model")
    assert first["model_version"] == "1" and first["alias_moved"] is False
    assert first["tags_set"]["run"]["gate"] == "gate_passed"
    assert f"run {first['run_id']}" in result.stdout and "mlops-dev-model version 1" in result.stdout
    for attempt in ("b", "c"):  # the same request again (a redelivered event), then the deployment
        phase = "trained" if attempt == "b" else "deployed"
        opt_ml, result, _ = _track(tmp_path / attempt, trained["tarball"],
                                   _environment(uri, "mlops-dev", "mlops-dev-model", phase))
        again = _outcome(opt_ml, result)
        assert again["run_id"] == first["run_id"] and again["model_version"] == "1" and not again["run_logged"]
    assert again["alias_moved"] is True and again["tags_set"]["model_version"]["sagemaker_model_package_arn"] == PACKAGE

    from mlflow import MlflowClient

    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("mlops-dev")
    [run_] = client.search_runs([experiment.experiment_id], f"tags.training_job = '{JOB}'")
    assert len(client.search_model_versions("name = 'mlops-dev-model'")) == 1
    metrics = trained["metadata"]["metrics"]
    assert run_.data.metrics["test_roc_auc"] == metrics["test"]["roc_auc"]
    assert run_.data.metrics["validation_accuracy"] == metrics["validation"]["accuracy"]
    assert run_.data.params["max_iter"] == "40" and run_.data.params["seed"] == "7"
    lineage = trained["metadata"]["lineage"]
    assert run_.data.tags["data_files"] == "1" and json.loads(run_.data.tags["data_inputs"]) == INPUTS
    assert lineage["files"][0]["file"] == "churn.csv"
    from ml_pipeline.serving.integrity import model_digest

    assert run_.data.tags["model_sha256"] == model_digest(trained["model"])


@pytest.mark.parametrize("case, env, tarball, reason", [
    ("no phase", {"TRACK_PHASE": ""}, True, "tracking failed: TRACK_PHASE is not set"),
    ("no decision", {"TRACK_DECISION": ""}, True, "TRACK_DECISION must be gate_passed or gated_out"),
    ("no model", {}, False, "no model.tar.gz under"),
])
def test_a_bad_request_fails_with_a_readable_reason(tmp_path, trained, case, env, tarball, reason):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    opt_ml, result, _ = _track(tmp_path / "job", trained["tarball"] if tarball else None,
                               _environment(uri, "e", "m", "trained", **env))
    assert result.returncode != 0, case
    message = (opt_ml / "output" / "message").read_text()
    assert reason in message and "Traceback" not in message, (case, message)
    assert not (opt_ml / "processing" / "output" / "report" / "tracking.json").exists()


def test_an_unreachable_tracking_server_fails_within_seconds(tmp_path, trained):
    opt_ml, result, seconds = _track(tmp_path / "job", trained["tarball"],
                                     _environment("http://127.0.0.1:9", "e", "m", "deployed",
                                                  MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                                                  MLFLOW_HTTP_REQUEST_TIMEOUT="3"), timeout=120)
    assert result.returncode == 1
    message = (opt_ml / "output" / "message").read_text()
    assert message.startswith("tracking failed: ") and "127.0.0.1" in message and "Traceback" not in message
    assert seconds < 30, f"track took {seconds:.1f}s to give up on an unreachable server"


def test_serve_and_the_other_commands_never_import_mlflow():
    code = ("import sys, ml_pipeline.entrypoints, ml_pipeline.serving.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sagemaker_mlflow')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------
# Against a tracking server
# ---------------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback: SQLite backend, artifacts proxied by the server (as the embedded stack runs it)."""
    executable = Path(sys.executable).parent / "mlflow"
    if not executable.exists():
        pytest.skip("full mlflow (the server) is not installed in this environment")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    # No job runner: it starts a handful of consumer processes this test never uses, on 2 shared cores.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        [str(executable), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_READY_SECONDS
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited {server.returncode}:\n{(root / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy in {SERVER_READY_SECONDS}s:\n"
                            f"{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "root": root}
    finally:
        # Its workers are in the session it leads: stop that group, the processes this fixture started.
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()


def _check_server_state(url: str, experiment: str, model: str, trained: dict) -> None:
    import mlflow
    from mlflow import MlflowClient

    # sagemaker-mlflow's header provider fails on every request to a URL that is no ARN (as track itself says).
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    client = MlflowClient(url, url)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], f"tags.training_job = '{JOB}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    metadata = trained["metadata"]
    for split in ("test", "validation"):
        for name, value in metadata["metrics"][split].items():
            assert runs[0].data.metrics[f"{split}_{name}"] == value, (split, name)
    versions = client.search_model_versions(f"name = '{model}'")
    assert len(versions) == 1 and str(versions[0].version) == "1" and versions[0].status == "READY"
    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.run_id == runs[0].info.run_id
    assert champion.tags["deployed"] == "true" and champion.tags["sagemaker_model_package_arn"] == PACKAGE
    artifacts = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"metadata.json", "lineage.json", "report"} <= artifacts

    body = sample_data.generate(100, seed=41).drop(columns=TARGET).to_csv(index=False).encode()
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert list(pyfunc.predict(pd.read_csv(io.BytesIO(body)))) == _served_predictions(trained["model"], body)


def test_track_against_a_tracking_server(tmp_path, trained, mlflow_server):
    url = mlflow_server["url"]
    times = {}
    for phase in ("deployed", "trained"):  # the deployment's job first: the order must not matter
        opt_ml, result, times[phase] = _track(tmp_path / phase, trained["tarball"],
                                              _environment(url, "mlops-dev", "mlops-dev-model", phase))
        outcome = _outcome(opt_ml, result)
        assert outcome["model_version"] == "1" and outcome["run_logged"] is (phase == "deployed")
    print(f"track against {url}: deployed (logs the run) {times['deployed']:.1f}s, trained {times['trained']:.1f}s")
    _check_server_state(url, "mlops-dev", "mlops-dev-model", trained)


# ---------------------------------------------------------------------------------------------------------
# The real image
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.docker
def test_track_in_the_image_against_a_tracking_server(image, containers, tmp_path, trained,  # noqa: F811
                                                      mlflow_server):
    """ContainerEntrypoint ["track"], network not isolated: the host's, where the server listens on loopback."""
    url = mlflow_server["url"]
    for phase in ("trained", "deployed"):
        root = tmp_path / phase
        opt_ml = processing_layout(root, {"model": {"model.tar.gz": trained["tarball"]}})
        (opt_ml / "output").mkdir(parents=True, exist_ok=True)
        _world_writable(opt_ml)
        env = _environment(url, "image-dev", "image-dev-model", phase)
        started = time.monotonic()
        result = _docker("run", "--rm", "--name", containers.new_name("track"), "--label", CONTAINER_LABEL,
                         "--network", "host", "--entrypoint", "track", "-v", f"{opt_ml}:/opt/ml",
                         *[f"--env={name}={value}" for name, value in env.items()], image)
        seconds = time.monotonic() - started
        message = opt_ml / "output" / "message"
        assert result.returncode == 0, (f"track exited {result.returncode}\n"
                                        f"message: {message.read_text() if message.exists() else '(none)'}\n"
                                        f"stderr:\n{result.stderr[-4000:]}")
        outcome = json.loads((opt_ml / "processing" / "output" / "report" / "tracking.json").read_text())
        assert outcome["model_version"] == "1" and outcome["run_logged"] is (phase == "trained")
        print(f"track in the image ({phase}): {seconds:.1f}s")
    _check_server_state(url, "image-dev", "image-dev-model", trained)
