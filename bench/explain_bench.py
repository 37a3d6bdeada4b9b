"""explain: what a per-request explanation (CustomAttributes explain=true) costs next to the same request without it.

Both through `serve`'s own ASGI app in this process (no sockets: the difference is the explanation, not the network),
on the serving benchmarks' binary model, one row and 100 rows per request, alternating the two kinds of request so
that a drifting machine load hits both alike. Also the first explained request of a worker, which imports shap and
builds the TreeSHAP explainer."""
from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import common, data, model

BENCH = "explain"
HEADERS = [(b"content-type", b"text/csv"), (b"accept", b"application/json")]
EXPLAIN = [*HEADERS, (b"x-amzn-sagemaker-custom-attributes", b"explain=true")]


async def _request(app, body: bytes, headers: list) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "path": "/invocations", "raw_path": b"/invocations", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080), "scheme": "http"}
    pieces = [body]
    status = []

    async def receive():
        return {"type": "http.request", "body": pieces.pop(0) if pieces else b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def _timed(app, body: bytes, headers: list, repeats: int) -> list[float]:
    loop = asyncio.new_event_loop()
    try:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            if loop.run_until_complete(_request(app, body, headers)) != 200:
                raise RuntimeError("the request failed")
            times.append(time.perf_counter() - started)
        return times
    finally:
        loop.close()


FIRST_REQUEST = """
import asyncio, sys, time
from bench.explain_bench import EXPLAIN, _request
from ml_pipeline.serving import app as serving
from ml_pipeline.serving.predictor import CompiledModel
serving.state.model = CompiledModel.load(sys.argv[1])
body = open(sys.argv[2], "rb").read()
started = time.perf_counter()
assert asyncio.run(_request(serving.app, body, EXPLAIN)) == 200
print(time.perf_counter() - started)
"""


def run(*, smoke: bool, workdir: Path, model_root: Path | None = None) -> list[common.Figure]:
    if not model.SERVE.exists():
        return [common.not_measured(BENCH, "explained request", f"{model.SERVE} does not exist yet")]
    from ml_pipeline.serving import app as serving
    from ml_pipeline.serving.predictor import CompiledModel

    workdir.mkdir(parents=True, exist_ok=True)
    opt_ml = model.ensure(2000 if smoke else 50_000, workdir, model_root)
    columns = model.features(opt_ml)
    serving.state.model, serving.state.explainer = CompiledModel.load(opt_ml / "model"), None
    serving.state.cores = None
    figures = []
    one_row = data.frame(1, seed=11)[columns].to_csv(index=False).encode()
    first_file = workdir / "explain-one-row.csv"
    first_file.write_bytes(one_row)
    first = subprocess.run([sys.executable, "-c", FIRST_REQUEST, str(opt_ml / "model"), str(first_file)],
                           cwd=common.ROOT, capture_output=True, text=True, timeout=600)
    if first.returncode == 0:
        figures.append(common.Figure(BENCH, "first explained request of a worker (imports shap, builds the "
                                            "explainer)", float(first.stdout.split()[-1]) * 1000, "ms"))
    repeats = 5 if smoke else 300
    for rows in (1, 100):
        body = data.frame(rows, seed=12 + rows)[columns].to_csv(index=False).encode()
        _timed(serving.app, body, EXPLAIN, 3)  # the explainer is built, both paths are warm
        plain, explained = [], []
        for _ in range(repeats // 10 or 1):  # alternate in blocks: a load change hits both
            plain += _timed(serving.app, body, HEADERS, 10)
            explained += _timed(serving.app, body, EXPLAIN, 10)
        base, value = statistics.median(plain) * 1e6, statistics.median(explained) * 1e6
        figures.append(common.Figure(
            BENCH, f"{rows}-row request with explain=true (median)", value, "µs", baseline=base,
            baseline_name=f"the same {rows}-row request without it", ratio=common.ratio(value, base),
            note=f"{len(plain)} requests of each kind, in process (no HTTP), 1 thread"))
    serving.state.model = serving.state.explainer = None
    return figures
