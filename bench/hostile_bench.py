"""hostile: what serve-hostile requests cost our `serve`, next to a one-row request in the same run.

One `serve` worker (so every request lands on the same event loop), keep-alive connections on loopback, each
request timed from sending to the last byte of the answer. Requests are interleaved round by round, so that a
drifting machine load hits all of them alike; medians are reported. The hostile requests are refused (400) and
their answers are checked before anything is timed. Last, /ping is polled while one 6 MB CSV batch is parsed and
predicted: it must keep answering (the batch runs off the event loop).
"""
from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from pathlib import Path

from bench import common, data, model
from bench.serve_bench import Server

BENCH = "hostile"
EXTRA_COLUMNS = 12_000
JSON_KEYS = 8_000


class Client:
    """One keep-alive connection; `timed` returns (status, body, seconds)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def timed(self, method: str, path: str, body: bytes | None = None,
              content_type: str | None = None) -> tuple[int, bytes, float]:
        headers = {"Content-Type": content_type, "Accept": "application/json"} if content_type else {}
        started = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        return response.status, answer, time.perf_counter() - started

    def close(self) -> None:
        self.connection.close()


def payloads(columns: list[str]) -> dict[str, tuple[bytes, str, int, str]]:
    """name → (body, content type, expected status, a phrase the answer must contain)."""
    one = data.frame(50, seed=5)[columns].dropna().iloc[:1]
    row_csv = one.to_csv(header=False, index=False)
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in one.iloc[0].items()}
    header = ",".join([*columns, *(f"extra{i}" for i in range(EXTRA_COLUMNS))])
    keys = {**record, **{f"key{i}": i for i in range(JSON_KEYS)}}
    return {
        "csv-1": (row_csv.encode(), "text/csv", 200, "predictions"),
        "csv-header-12000-extra": ((header + "\n" + row_csv).encode(), "text/csv", 400,
                                   f"and {EXTRA_COLUMNS - 10} more"),
        "json-1": (json.dumps(record).encode(), "application/json", 200, "predictions"),
        "json-record-8000-keys": (json.dumps(keys).encode(), "application/json", 400, f"and {JSON_KEYS - 10} more"),
    }


def ping_during_batch(port: int, body: bytes, rounds: int) -> dict[str, float]:
    """/ping latencies on a second connection while one large batch runs; and the batch's own time."""
    pings: list[float] = []
    batch_seconds: list[float] = []
    for _ in range(rounds):
        done = threading.Event()
        batch = Client(port)
        result: dict[str, float] = {}

        def send_batch() -> None:
            status, answer, seconds = batch.timed("POST", "/invocations", body, "text/csv")
            if status != 200:
                result["error"] = status
            result["seconds"] = seconds
            done.set()

        worker = threading.Thread(target=send_batch)
        pinger = Client(port)
        worker.start()
        while not done.is_set():
            status, _, seconds = pinger.timed("GET", "/ping")
            if status != 200:
                raise RuntimeError(f"/ping answered {status} during the batch")
            pings.append(seconds)
        worker.join()
        pinger.close()
        batch.close()
        if "error" in result:
            raise RuntimeError(f"the {len(body) / 1e6:.1f} MB batch answered {result['error']}")
        batch_seconds.append(result["seconds"])
    return {"ping_max_ms": max(pings) * 1000, "ping_median_ms": statistics.median(pings) * 1000,
            "pings": len(pings), "batch_median_ms": statistics.median(batch_seconds) * 1000}


def run(*, smoke: bool, workdir: Path, model_root: Path | None = None) -> list[common.Figure]:
    if not model.SERVE.exists():
        return [common.not_measured(BENCH, "all", f"{model.SERVE} does not exist yet")]
    workdir.mkdir(parents=True, exist_ok=True)
    opt_ml = model.ensure(2000, workdir, model_root)  # column checks do not depend on the model's size
    columns = model.features(opt_ml)
    repeats, batch_rounds = (3, 1) if smoke else (25, 3)
    port = common.free_port()
    env = common.child_env(OPT_ML_ROOT=str(opt_ml), SAGEMAKER_BIND_TO_PORT=str(port),
                           SAGEMAKER_MODEL_SERVER_WORKERS="1", MODEL_SERVER_WORKERS="1")
    server = Server("serve (1 worker)", model.entrypoint(model.SERVE), port, env, workdir / "hostile-serve.log")
    bodies = payloads(columns)
    rows = data.frame(2000, seed=9)[columns].to_csv(header=False, index=False)
    batch = (rows * (5_800_000 // len(rows) + 1))[:5_800_000]
    batch = batch[:batch.rfind("\n") + 1].encode()  # whole lines, just under SageMaker's 6 MB
    times: dict[str, list[float]] = {name: [] for name in bodies}
    with server:
        client = Client(port)
        for name, (body, content_type, expected, phrase) in bodies.items():  # correctness first, and a warm-up
            status, answer, _ = client.timed("POST", "/invocations", body, content_type)
            if status != expected or phrase not in answer.decode(errors="replace"):
                raise RuntimeError(f"{name}: expected {expected} with {phrase!r}, got {status} {answer[:300]!r}")
        for _ in range(repeats):
            for name, (body, content_type, _, _) in bodies.items():
                times[name].append(client.timed("POST", "/invocations", body, content_type)[2])
        client.close()
        during = ping_during_batch(port, batch, batch_rounds)
    median = {name: statistics.median(samples) * 1000 for name, samples in times.items()}
    size = {name: len(body) for name, (body, *_) in bodies.items()}
    figures = []
    for hostile, plain in (("csv-header-12000-extra", "csv-1"), ("json-record-8000-keys", "json-1")):
        figures.append(common.Figure(
            BENCH, f"{hostile} ({size[hostile] / 1000:.0f} KB) answered 400, median of {repeats}", median[hostile], "ms",
            median[plain], f"{plain}, one-row request (200)", common.ratio(median[hostile], median[plain]), "", None,
            f"max {max(times[hostile]) * 1000:.1f} ms; one-row max {max(times[plain]) * 1000:.1f} ms; 1 worker, "
            "keep-alive, loopback; the answer lists 10 names and how many more"))
    figures.append(common.Figure(
        BENCH, f"/ping while a {len(batch) / 1e6:.1f} MB CSV batch is parsed and predicted: slowest answer",
        during["ping_max_ms"], "ms", during["batch_median_ms"], "the batch request itself (median)",
        common.ratio(during["ping_max_ms"], during["batch_median_ms"]), "", None,
        f"{during['pings']} pings over {batch_rounds} batch(es), median {during['ping_median_ms']:.2f} ms; same worker; "
        "a ping that waited for the batch would take as long as the batch"))
    common.save_json(workdir / "hostile.json", {"times_ms": {k: [t * 1000 for t in v] for k, v in times.items()},
                                                 "sizes": size, "during_batch": during})
    return figures
