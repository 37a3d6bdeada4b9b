"""`serve` as a real process on a free port: the SageMaker serving contract over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from entrypoint_support import TARGET, write_model_dir
from ml_pipeline import sample_data
from ml_pipeline.serving.parsing import FeatureSchema, parse_csv
from ml_pipeline.serving.predictor import THREADED_MIN_ROWS, CompiledModel
from serve_support import Server

@pytest.fixture(scope="module")
def model_rows(tmp_path_factory):
    opt_ml = tmp_path_factory.mktemp("serve") / "opt_ml"
    write_model_dir(opt_ml / "model", sample_data.generate(900, seed=71))
    rows = sample_data.generate(20, seed=72).drop(columns=TARGET)
    return opt_ml, rows


@pytest.fixture(scope="module")
def server(model_rows):
    running = Server(model_rows[0], workers=2)
    running.wait_until_listening()
    yield running
    running.stop()


def _csv(rows, header=False) -> bytes:
    return rows.to_csv(index=False, header=header).encode()


def test_ping_is_200_once_the_model_is_loaded(server):
    status, content_type, body = server.request("GET", "/ping")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_csv_in_csv_out(server, model_rows):
    status, content_type, body = server.request("POST", "/invocations", _csv(model_rows[1].head(1)),
                                                {"Content-Type": "text/csv"})
    assert status == 200 and content_type == "text/csv"
    assert body.decode().strip() in ("yes", "no")


def test_csv_batch_with_header_answers_json_when_accept_asks(server, model_rows):
    status, content_type, body = server.request("POST", "/invocations", _csv(model_rows[1], header=True),
                                                {"Content-Type": "text/csv", "Accept": "application/json"})
    assert status == 200 and content_type == "application/json"
    predictions = json.loads(body)["predictions"]
    assert len(predictions) == 20 and set(predictions) <= {"yes", "no"}


def test_json_instances_with_probabilities(server, model_rows):
    records = json.loads(model_rows[1].head(3).to_json(orient="records"))
    status, _, body = server.request("POST", "/invocations", json.dumps({"instances": records}).encode(),
                                     {"Content-Type": "application/json",
                                      "X-Amzn-SageMaker-Custom-Attributes": "probabilities=true"})
    answer = json.loads(body)
    assert status == 200 and answer["classes"] == ["no", "yes"] and len(answer["probabilities"]) == 3
    for label, probabilities in zip(answer["predictions"], answer["probabilities"]):
        assert abs(sum(probabilities) - 1) < 1e-9
        assert label == answer["classes"][probabilities.index(max(probabilities))]


def test_csv_probabilities_by_query_flag(server, model_rows):
    status, _, body = server.request("POST", "/invocations?probabilities=true", _csv(model_rows[1].head(2)),
                                     {"Content-Type": "text/csv", "Accept": "text/csv"})
    lines = body.decode().strip().splitlines()
    assert status == 200 and len(lines) == 2
    label, p_no, p_yes = lines[0].split(",")
    assert label in ("no", "yes") and abs(float(p_no) + float(p_yes) - 1) < 1e-9


@pytest.mark.parametrize("method, path, body, headers, status, needle", [
    ("POST", "/invocations", b"<x/>", {"Content-Type": "application/xml"}, 415, "unsupported content type"),
    ("POST", "/invocations", b"1,2\n", {"Content-Type": "text/csv"}, 400, "expected 13"),
    ("POST", "/invocations", b"\xff\xfe", {"Content-Type": "text/csv"}, 400, "not UTF-8"),
    ("POST", "/invocations", b'{"instances": [', {"Content-Type": "application/json"}, 400, "not valid JSON"),
    ("POST", "/invocations", b'{"instances": [{"customer_age": 1, "shoe_size": 4}]}',
     {"Content-Type": "application/json"}, 400, "unexpected columns: shoe_size"),
    ("POST", "/invocations", b'{"instances": [{"customer_age": 1}]}', {"Content-Type": "application/json"}, 400,
     "missing columns: tenure_months"),
    ("POST", "/invocations", b"1", {"Content-Type": "text/csv", "Accept": "image/png"}, 406, "cannot answer"),
    ("GET", "/invocations", None, {}, 405, "use POST"),
    ("GET", "/nowhere", None, {}, 404, "no route"),
])
def test_client_mistakes_get_4xx_with_a_json_reason(server, method, path, body, headers, status, needle):
    got, content_type, answer = server.request(method, path, body, headers)
    assert got == status, answer
    assert content_type == "application/json" and needle in json.loads(answer)["error"]


def test_a_non_numeric_value_is_named(server, model_rows):
    row = model_rows[1].head(1).astype(object)
    row.iloc[0, 1] = "soon"
    status, _, answer = server.request("POST", "/invocations", _csv(row), {"Content-Type": "text/csv"})
    assert status == 400 and "'tenure_months'" in json.loads(answer)["error"]


def test_over_6_mb_is_413(server):
    status, content_type, answer = server.request("POST", "/invocations", b"1" * (6 * 1024 * 1024 + 1),
                                                  {"Content-Type": "text/csv"})
    assert status == 413 and "limit" in json.loads(answer)["error"]


def test_still_serving_after_the_bad_requests(server, model_rows):
    for _ in range(3):
        assert server.request("GET", "/ping")[0] == 200
        assert server.request("POST", "/invocations", _csv(model_rows[1].head(1)), {"Content-Type": "text/csv"})[0] == 200


def test_sigterm_stops_gracefully(model_rows):
    running = Server(model_rows[0], workers=1)
    running.wait_until_listening()
    started = time.monotonic()
    code = running.stop()
    # uvicorn finishes in-flight requests, runs the shutdown, then re-raises the signal it caught.
    assert code in (0, -signal.SIGTERM), code
    assert time.monotonic() - started < 15
    assert "Application shutdown complete" in running.process.stdout.read()


def test_ping_is_503_with_the_reason_when_there_is_no_model(tmp_path):
    running = Server(tmp_path / "empty_opt_ml", workers=1)
    try:
        running.wait_until_listening()
        status, _, body = running.request("GET", "/ping")
        assert status == 503 and "model could not be loaded" in json.loads(body)["error"]
        status, _, body = running.request("POST", "/invocations", b"1", {"Content-Type": "text/csv"})
        assert status == 503
    finally:
        running.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_large_batches_share_cores_through_a_file_removed_at_stop(model_rows, tmp_path, workers):
    opt_ml, _ = model_rows
    running = Server(opt_ml, workers=workers, TMPDIR=str(tmp_path))
    try:
        running.wait_until_listening()
        shares = list(tmp_path.glob("serve-cores-*"))
        assert len(shares) == 1 and shares[0].stat().st_size == 2 * workers  # room for restarted workers
        rows = sample_data.generate(THREADED_MIN_ROWS + 10, seed=73).drop(columns=TARGET)
        expected = CompiledModel.load(opt_ml / "model").predict(parse_csv(_csv(rows), FeatureSchema.from_metadata(
            json.loads((opt_ml / "model" / "metadata.json").read_text())))).labels
        status, _, body = running.request("POST", "/invocations", _csv(rows), {"Content-Type": "text/csv"})
        assert status == 200 and body.decode().split() == expected
    finally:
        running.stop()
    assert not list(tmp_path.glob("serve-cores-*"))  # gone whether uvicorn re-raised SIGTERM (1 worker) or not


def test_a_bad_batch_thread_setting_stops_serve_with_the_reason(model_rows):
    running = Server(model_rows[0], workers=1, SERVE_BATCH_THREADS="many")
    assert running.process.wait(timeout=60) == 2
    assert "SERVE_BATCH_THREADS must be 'auto' or a whole number" in running.process.stdout.read()


def test_a_worker_keeps_freed_request_memory_instead_of_faulting_it_in_again():
    # In a fresh interpreter: mallopt changes the whole process. 20 rounds of ≈ 16 MB in 8 buffers, as a 10k-row
    # request allocates; glibc's defaults give it back and fault it in again every round.
    script = """
import resource, sys
import numpy as np
from ml_pipeline.allocator import keep_freed_memory
kept = len(sys.argv) > 1 and keep_freed_memory()
def request():  # buffers of a few MB each, all alive at once, then all freed
    buffers = [np.ones(256 * 1024 + 1000 * i) for i in range(8)]
    return sum(b.sum() for b in buffers)
request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    request()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    import sys

    runs = {}
    for setting in ([], ["keep"]):
        result = subprocess.run([sys.executable, "-c", script, *setting], capture_output=True, text=True, timeout=120,
                                check=True)
        kept, faults = result.stdout.split()
        runs[bool(setting)] = (kept == "True", int(faults))
    assert runs[True][0], "mallopt refused (not glibc?)"
    assert runs[False][1] > 20 * 3000  # the defaults fault every page in again
    assert runs[True][1] < 1000

