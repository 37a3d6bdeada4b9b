"""The real image, run the way SageMaker runs it.

`MLOPS_IMAGE` names the image (`.ci/run` builds it with scripts/build_image.sh). Training runs as
`docker run <image> train` with /opt/ml mounted (no network: SageMaker's network isolation), serving as
`docker run -p ...:8080 <image> serve` with the model directory mounted, validation as a Processing job
with `ContainerEntrypoint=["validate"]`. Without an engine or an image these tests skip loudly; with
CI=true they fail instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.docker

TARGET = "churn"
RUN_TIMEOUT = 600  # seconds for one `docker run` (training on 2 shared cores, cold caches)
READY_TIMEOUT = 90  # seconds for `serve` to answer /ping
CONTAINER_LABEL = "mlops-test=test_image"
# CONTRACTS.md: MetricDefinitions regexes the Lambda (and SageMaker) apply to the training output.
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: the real-image tests must run in CI, never skip", pytrace=False)
    pytest.skip(f"REAL IMAGE NOT TESTED: {reason}")


def _docker(*args: str, timeout: float = RUN_TIMEOUT, check: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("docker") is None:
        _unavailable("no docker client on PATH (bash scripts/docker_engine.sh installs an engine)")
    try:
        info = _docker("info", timeout=30)
    except subprocess.TimeoutExpired:
        _unavailable("'docker info' did not answer within 30s")
    if info.returncode != 0:
        _unavailable("no Docker engine answers 'docker info' (bash scripts/docker_engine.sh starts one)")
    name = os.environ.get("MLOPS_IMAGE", "").strip()
    if not name:
        _unavailable('MLOPS_IMAGE is not set (export MLOPS_IMAGE="$(bash scripts/build_image.sh)")')
    if _docker("image", "inspect", name, timeout=30).returncode != 0:
        _unavailable(f"MLOPS_IMAGE={name} is not an image this engine has (build it with scripts/build_image.sh)")
    return name


class Containers:
    """Names every container a test starts, and removes them all afterwards, whatever happened."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def new_name(self, role: str) -> str:
        name = f"mlops-test-{role}-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def remove_all(self) -> None:
        for name in self.names:
            subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def containers():
    tracker = Containers()
    yield tracker
    tracker.remove_all()


def _sample_data(out: Path, rows: int, seed: int, drift: bool = False) -> Path:
    command = [sys.executable, "-m", "ml_pipeline.sample_data", "--rows", str(rows), "--seed", str(seed),
               "--out", str(out)]
    if drift:
        command.append("--drift")
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return out


def _opt_ml(root: Path, data_files: dict[str, bytes | Path], hyperparameters: dict[str, str]) -> Path:
    """A SageMaker training layout: input/data/train/*, input/config/*.json, empty model/ and output/."""
    opt_ml = root / "opt" / "ml"
    train = opt_ml / "input" / "data" / "train"
    config = opt_ml / "input" / "config"
    for directory in (train, config, opt_ml / "model", opt_ml / "output"):
        directory.mkdir(parents=True, exist_ok=True)
    for name, content in data_files.items():
        target = train / name
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "inputdataconfig.json").write_text(json.dumps(
        {"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    _world_writable(opt_ml)
    return opt_ml


def _world_writable(root: Path) -> None:
    # The image may run as a non-root USER; SageMaker's own mounts are writable for it.
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


HYPERPARAMETERS = {"target_column": TARGET, "task": "auto", "tuning_iterations": "0", "cv_folds": "3", "seed": "7"}


def _train(image: str, containers: Containers, opt_ml: Path) -> subprocess.CompletedProcess:
    return _docker("run", "--rm", "--name", containers.new_name("train"), "--label", CONTAINER_LABEL,
                   "--network", "none", "-v", f"{opt_ml}:/opt/ml", image, "train")


@pytest.fixture(scope="module")
def trained(image, containers, tmp_path_factory):
    """One real training run; the model directory is shared by the serving and validation tests."""
    root = tmp_path_factory.mktemp("train")
    data = _sample_data(root / "churn.csv", rows=1500, seed=7)
    opt_ml = _opt_ml(root, {"churn.csv": data}, HYPERPARAMETERS)
    started = time.monotonic()
    result = _train(image, containers, opt_ml)
    elapsed = time.monotonic() - started
    failure = opt_ml / "output" / "failure"
    assert result.returncode == 0, (
        f"train exited {result.returncode}\nfailure file: {failure.read_text() if failure.exists() else '(none)'}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")
    return {"opt_ml": opt_ml, "model": opt_ml / "model", "data": data, "result": result, "seconds": elapsed}


def test_entrypoints_are_on_path(image):
    result = _docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                     "for c in train serve validate monitor join-labels track; do command -v $c || exit 1; done", timeout=120)
    assert result.returncode == 0, f"not every entrypoint is on PATH:\n{result.stdout}{result.stderr}"
    assert len(result.stdout.split()) == 6


def test_train_writes_the_model_directory(trained):
    model = trained["model"]
    assert (model / "model.joblib").stat().st_size > 0
    metadata = json.loads((model / "metadata.json").read_text())
    assert metadata["format_version"] == 1
    assert metadata["target"] == TARGET
    assert metadata["task"] == "classification"
    assert sorted(metadata["classes"]) == ["no", "yes"]
    feature_names = {feature["name"] for feature in metadata["features"]}
    assert "tenure_months" in feature_names and "contract" in feature_names and TARGET not in feature_names
    assert (model / "report" / "index.html").stat().st_size > 0
    assert not (trained["opt_ml"] / "output" / "failure").exists()


def test_train_prints_metrics_sagemaker_can_parse(trained):
    output = trained["result"].stdout + trained["result"].stderr
    metrics = {}
    for name in CLASSIFICATION_METRICS:
        # The exact MetricDefinitions regex from CONTRACTS.md.
        found = re.findall(rf"test:{name}=([-+0-9.eE]+)", output)
        assert found, f"no 'test:{name}=<value>' line in the training output"
        metrics[name] = float(found[-1])
    # The sample data has a real signal: a model that learned nothing scores ~0.5.
    assert 0.6 < metrics["roc_auc"] <= 1.0, metrics
    assert all(0.0 <= value <= 1.0 for value in metrics.values()), metrics


def test_model_loads_as_a_sklearn_pipeline(trained):
    joblib = pytest.importorskip("joblib")
    sklearn_pipeline = pytest.importorskip("sklearn.pipeline")
    model = joblib.load(trained["model"] / "model.joblib")
    assert isinstance(model, sklearn_pipeline.Pipeline)


@pytest.mark.parametrize(
    "case, files, hyperparameters, reason_pattern",
    [
        ("missing-target", {"data.csv": b"a,b\n1,2\n3,4\n"}, HYPERPARAMETERS, TARGET),
        ("empty-channel", {}, HYPERPARAMETERS, r"(?i)no .*(data|file)|empty"),
        ("header-only", {"data.csv": b"customer_age,churn\n"}, HYPERPARAMETERS, r"(?i)empty|no rows|0 rows"),
    ],
)
def test_train_rejects_a_bad_dataset(image, containers, tmp_path, case, files, hyperparameters, reason_pattern):
    opt_ml = _opt_ml(tmp_path, files, hyperparameters)
    result = _train(image, containers, opt_ml)
    assert result.returncode != 0, f"{case}: train succeeded on a bad dataset"
    failure = opt_ml / "output" / "failure"
    assert failure.exists(), f"{case}: no /opt/ml/output/failure\nstderr:\n{result.stderr[-2000:]}"
    reason = failure.read_text()
    assert re.search(reason_pattern, reason), f"{case}: the failure reason does not say what is wrong: {reason!r}"
    assert "Traceback" not in reason, f"{case}: the failure reason is a traceback, not a readable reason"
    assert not (opt_ml / "model" / "model.joblib").exists()


def test_train_scores_the_pinned_champion_channel(image, containers, tmp_path, trained):
    """The training job as the Lambda starts it after the first model: ManifestFile keys under the train channel,
    the production model.tar.gz as channel `champion`, its pin as hyperparameter champion_sha256."""
    from ml_pipeline.serving.integrity import model_digest

    pin = model_digest(trained["model"])
    new = _sample_data(tmp_path / "new.csv", rows=600, seed=16, drift=True)
    opt_ml = _opt_ml(tmp_path, {}, {**HYPERPARAMETERS, "champion_sha256": pin})
    train = opt_ml / "input" / "data" / "train"
    for key, source in (("2026/05/01/churn.csv", trained["data"]), ("2026/05/02/new.csv", new)):
        (train / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, train / key)
    champion = opt_ml / "input" / "data" / "champion"
    champion.mkdir()
    with tarfile.open(champion / "model.tar.gz", "w:gz") as archive:
        for path in sorted(trained["model"].iterdir()):
            archive.add(path, arcname=path.name)
    _world_writable(opt_ml)
    result = _train(image, containers, opt_ml)
    failure = opt_ml / "output" / "failure"
    assert result.returncode == 0, (failure.read_text() if failure.exists() else "") + result.stderr[-3000:]
    comparison = json.loads((opt_ml / "model" / "metadata.json").read_text())["comparison"]
    assert comparison["champion"]["scored"] is True and comparison["champion"]["sha256"] == pin
    assert comparison["new"]["files"] == ["2026/05/02/new.csv"] and 0 < comparison["new"]["rows"] < 420
    assert re.search(rf"comparison:new_rows={comparison['new']['rows']}\b", result.stdout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def _running(name: str) -> bool:
    result = _docker("inspect", "-f", "{{.State.Running}}", name, timeout=30)
    return result.returncode == 0 and result.stdout.strip() == "true"


@pytest.fixture(scope="module")
def endpoint(image, containers, trained):
    """`serve` as a SageMaker endpoint runs it: port 8080 published, the model at /opt/ml/model."""
    name = containers.new_name("serve")
    port = _free_port()
    _docker("run", "-d", "--name", name, "--label", CONTAINER_LABEL, "-p", f"127.0.0.1:{port}:8080",
            "-v", f"{trained['model']}:/opt/ml/model", image, "serve", check=True, timeout=120)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        if not _running(name):
            logs = _docker("logs", name, timeout=30)
            pytest.fail(f"serve exited before answering /ping:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
        try:
            status, _, _ = _request(f"{base}/ping")
        except (OSError, urllib.error.URLError):
            status = None
        if status == 200:
            break
        time.sleep(0.5)
    if status != 200:
        logs = _docker("logs", name, timeout=30)
        pytest.fail(f"/ping did not answer 200 within {READY_TIMEOUT}s (last: {status}):\n{logs.stderr[-3000:]}")
    return {"name": name, "url": base}


def _feature_rows(data: Path, count: int) -> tuple[list[str], list[list[str]]]:
    with data.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for _, row in zip(range(count), reader)]
    target_index = header.index(TARGET)
    return ([c for i, c in enumerate(header) if i != target_index],
            [[v for i, v in enumerate(row) if i != target_index] for row in rows])


def _csv_line(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode()


def test_serve_predicts_a_csv_row(endpoint, trained):
    classes = json.loads((trained["model"] / "metadata.json").read_text())["classes"]
    _, rows = _feature_rows(trained["data"], 1)
    status, content_type, body = _request(f"{endpoint['url']}/invocations", _csv_line(rows[0]),
                                          {"Content-Type": "text/csv", "Accept": "text/csv"})
    assert status == 200, body[:500]
    assert content_type.startswith("text/csv"), content_type
    prediction = body.decode().strip().splitlines()
    assert len(prediction) == 1, body
    assert prediction[0].split(",")[0].strip().strip('"') in classes, body


def test_train_compiles_the_trees_and_serve_predicts_with_them(endpoint, trained):
    """The image has the compiler: training builds forest/forest.so, and serve in the same image loads it."""
    record = json.loads((trained["model"] / "forest" / "forest.json").read_text())
    assert record["compiled"] is True, record.get("reason")
    assert (trained["model"] / "forest" / "forest.so").stat().st_size > 0
    logs = _docker("logs", endpoint["name"], timeout=30)
    assert "fast path: numpy preprocessing + compiled trees" in logs.stdout + logs.stderr, logs.stderr[-3000:]


def test_serve_predicts_json_instances(endpoint, trained):
    classes = json.loads((trained["model"] / "metadata.json").read_text())["classes"]
    header, rows = _feature_rows(trained["data"], 3)
    records = [{column: (None if value == "" else value) for column, value in zip(header, row)} for row in rows]
    for record in records:
        for column, value in record.items():
            try:
                record[column] = float(value) if value is not None else None
            except ValueError:
                pass
    status, content_type, body = _request(f"{endpoint['url']}/invocations", json.dumps({"instances": records}).encode(),
                                          {"Content-Type": "application/json", "Accept": "application/json"})
    assert status == 200, body[:500]
    assert content_type.startswith("application/json"), content_type
    answer = json.loads(body)
    predictions = answer["predictions"] if isinstance(answer, dict) else answer
    assert len(predictions) == 3, answer
    for prediction in predictions:
        label = prediction.get("label", prediction.get("prediction")) if isinstance(prediction, dict) else prediction
        assert label in classes, answer


def test_serve_rejects_bad_requests_and_keeps_serving(endpoint):
    url = f"{endpoint['url']}/invocations"
    status, content_type, body = _request(url, b"<x/>", {"Content-Type": "application/xml"})
    assert status == 415 and "json" in content_type, (status, body[:300])
    assert json.loads(body)  # a JSON reason, not an HTML error page
    status, _, body = _request(url, b"1,2\n", {"Content-Type": "text/csv"})
    assert 400 <= status < 500, (status, body[:300])
    status, _, _ = _request(f"{endpoint['url']}/ping")
    assert status == 200 and _running(endpoint["name"])


def test_serve_stops_gracefully_on_sigterm(endpoint):
    # SageMaker stops an endpoint's container with SIGTERM; a server that ignores it (e.g. a shell
    # entrypoint that does not forward signals) is killed after the grace period (exit 137).
    started = time.monotonic()
    _docker("stop", "-t", "20", endpoint["name"], check=True, timeout=60)
    elapsed = time.monotonic() - started
    exit_code = int(_docker("inspect", "-f", "{{.State.ExitCode}}", endpoint["name"], check=True, timeout=30).stdout)
    assert exit_code != 137 and elapsed < 20, f"serve ignored SIGTERM: exit {exit_code} after {elapsed:.1f}s"


def _processing(image: str, containers: Containers, root: Path, data: Path, model_tarball: Path | None,
                env: dict[str, str] | None = None) -> tuple:
    """A validation Processing job: ContainerEntrypoint=["validate"], inputs and output mounted."""
    processing = root / "opt" / "ml" / "processing"
    data_dir = processing / "input" / "data"
    report_dir = processing / "output" / "report"
    output_dir = root / "opt" / "ml" / "output"
    for directory in (data_dir, report_dir, output_dir):
        directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, data_dir / data.name)
    mounts = ["-v", f"{data_dir}:/opt/ml/processing/input/data", "-v", f"{report_dir}:/opt/ml/processing/output/report",
              "-v", f"{output_dir}:/opt/ml/output"]
    if model_tarball is not None:
        model_dir = processing / "input" / "model"
        model_dir.mkdir(parents=True)
        shutil.copyfile(model_tarball, model_dir / "model.tar.gz")
        mounts += ["-v", f"{model_dir}:/opt/ml/processing/input/model"]
    _world_writable(root / "opt")
    result = _docker("run", "--rm", "--name", containers.new_name("validate"), "--label", CONTAINER_LABEL,
                     "--network", "none", "--entrypoint", "validate",
                     "-e", f"TARGET_COLUMN={TARGET}", "-e", "TASK=auto",
                     *[f"--env={name}={value}" for name, value in (env or {}).items()], *mounts, image)
    message = output_dir / "message"
    assert result.returncode == 0, (
        f"validate exited {result.returncode}\nmessage: {message.read_text() if message.exists() else '(none)'}\n"
        f"stderr:\n{result.stderr[-3000:]}")
    report = json.loads((report_dir / "report.json").read_text())
    assert (report_dir / "report.html").stat().st_size > 0
    return report, result


@pytest.fixture(scope="module")
def model_tarball(trained, tmp_path_factory) -> Path:
    """The production model as SageMaker stores it: model.tar.gz of the model directory's contents."""
    tarball = tmp_path_factory.mktemp("artifacts") / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for path in sorted(trained["model"].iterdir()):
            archive.add(path, arcname=path.name)
    return tarball


def test_validate_passes_fresh_data_against_the_production_model(image, containers, tmp_path, model_tarball):
    data = _sample_data(tmp_path / "fresh.csv", rows=800, seed=11)
    report, _ = _processing(image, containers, tmp_path, data, model_tarball)
    assert report["kind"] == "validation"
    assert report["passed"] is True, report.get("summary")
    assert report["rows"] == 800
    assert report["reference"] == "production-model"
    assert report["failures"] == []
    assert math.isfinite(report["drift"]["score"])


def test_validate_reports_drift(image, containers, tmp_path, model_tarball):
    fresh, _ = _processing(image, containers, tmp_path / "fresh",
                           _sample_data(tmp_path / "fresh.csv", rows=800, seed=12), model_tarball)
    drifted, _ = _processing(image, containers, tmp_path / "drifted",
                             _sample_data(tmp_path / "drifted.csv", rows=800, seed=13, drift=True), model_tarball)
    assert drifted["drift"]["score"] > fresh["drift"]["score"], (fresh["drift"], drifted["drift"])
    assert set(drifted["drift"]["features"]) >= {"tenure_months", "contract"}


def test_validate_reports_shift_fails_strict_columns_and_exit_zero(image, containers, tmp_path, model_tarball):
    data = _sample_data(tmp_path / "clean.csv", rows=400, seed=14)
    lines = data.read_text().splitlines()
    header = lines[0].split(",")
    age, contract = header.index("customer_age"), header.index("contract")
    corrupted = [lines[0]]
    for number, line in enumerate(lines[1:]):
        values = line.split(",")
        if number % 10 == 0:
            values[age] = "400"  # outside any range the reference data has
            values[contract] = "lifetime"  # a category the model has never seen
        corrupted.append(",".join(values))
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("\n".join(corrupted) + "\n")
    report, _ = _processing(image, containers, tmp_path / "default", shifted, model_tarball)
    assert report["passed"] is True, report.get("summary")  # shift is data, reported
    assert {shift["column"] for shift in report["shifts"]} >= {"customer_age", "contract"}, report["shifts"]
    report, _ = _processing(image, containers, tmp_path / "strict", shifted, model_tarball,
                            {"STRICT_COLUMNS": "customer_age,contract", "ACCEPT_SHIFT": "0"})
    assert report["passed"] is False, report.get("summary")
    failed_columns = {failure["column"] for failure in report["failures"]}
    assert {"customer_age", "contract"} <= failed_columns, report["failures"]
    assert report["summary"]


def _capture_line(event_id: str, body: str, inference_id: str | None) -> str:
    metadata = {"eventId": event_id, "inferenceTime": "2026-05-01T10:00:00Z"}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return json.dumps({"captureData": {
        "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body, "encoding": "CSV"},
        "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "no\n", "encoding": "CSV"}},
        "eventMetadata": metadata, "eventVersion": "0"}) + "\n"


def test_join_labels_as_a_ground_truth_processing_job(image, containers, tmp_path, trained, model_tarball):
    """ContainerEntrypoint=["join-labels"]: labels + captures + the pinned model → labeled.csv and the report."""
    data = _sample_data(tmp_path / "captured.csv", rows=60, seed=15)
    header, rows = _feature_rows(data, 60)
    with data.open(newline="") as handle:
        truth = [row[TARGET] for row in csv.DictReader(handle)]
    processing = tmp_path / "opt" / "ml" / "processing"
    inputs = {name: processing / "input" / name for name in ("labels", "capture", "model")}
    outputs = {name: processing / "output" / name for name in ("joined", "report")}
    output_dir = tmp_path / "opt" / "ml" / "output"
    for directory in (*inputs.values(), *outputs.values(), output_dir):
        directory.mkdir(parents=True, exist_ok=True)
    # 30 requests of two rows; odd ones carry the caller's inference id, even ones are joined on the eventId
    captured = [_capture_line(f"evt-{i}", _csv_line(rows[2 * i]).decode() + _csv_line(rows[2 * i + 1]).decode(),
                              f"inf-{i}" if i % 2 else None) for i in range(30)]
    (inputs["capture"] / "capture.jsonl").write_text("".join(captured))
    labels = ["inference_id,row,churn"] + [f"{'inf' if (i // 2) % 2 else 'evt'}-{i // 2},{i % 2},{truth[i]}"
                                           for i in range(60)] + ["unknown,0,yes"]
    (inputs["labels"] / "labels.csv").write_text("\n".join(labels) + "\n")
    shutil.copyfile(model_tarball, inputs["model"] / "model.tar.gz")
    _world_writable(tmp_path / "opt")
    from ml_pipeline.serving.integrity import model_digest

    mounts = [arg for name, path in {**inputs, **outputs}.items()
              for arg in ("-v", f"{path}:/opt/ml/processing/{'input' if name in inputs else 'output'}/{name}")]
    result = _docker("run", "--rm", "--name", containers.new_name("join-labels"), "--label", CONTAINER_LABEL,
                     "--network", "none", "--entrypoint", "join-labels", "-e", f"TARGET_COLUMN={TARGET}",
                     "-e", "TASK=auto", "-e", "GATE_METRIC=roc_auc", "-e", f"MODEL_SHA256={model_digest(trained['model'])}",
                     *mounts, "-v", f"{output_dir}:/opt/ml/output", image)
    message = output_dir / "message"
    assert result.returncode == 0, (
        f"join-labels exited {result.returncode}\nmessage: {message.read_text() if message.exists() else '(none)'}\n"
        f"stderr:\n{result.stderr[-3000:]}")
    report = json.loads((outputs["report"] / "report.json").read_text())
    assert (report["kind"], report["passed"], report["labels"], report["matched"], report["unmatched"]) == (
        "ground_truth", True, 61, 60, 1)
    assert report["model_quality"]["metric"] == "roc_auc" and report["model_quality"]["rows"] == 60
    # the production model's own score on these rows, computed here from its predictions
    joblib = pytest.importorskip("joblib")
    metrics = pytest.importorskip("sklearn.metrics")
    from ml_pipeline import schema, tabular

    metadata = json.loads((trained["model"] / "metadata.json").read_text())
    x = schema.coerce_features(tabular.read_table(data), metadata["features"])
    proba = joblib.load(trained["model"] / "model.joblib").predict_proba(x)[:, 1]
    expected = metrics.roc_auc_score([label == "yes" for label in truth], proba)
    assert report["model_quality"]["value"] == pytest.approx(expected)
    with (outputs["joined"] / "labeled.csv").open(newline="") as handle:
        joined = list(csv.DictReader(handle))
    assert len(joined) == 60 and [row[TARGET] for row in joined] == truth
