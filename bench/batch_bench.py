"""batch: one 10k-row CSV request through our `serve` vs bare in-process `predict` on the same rows."""
from __future__ import annotations

import io
import os
import statistics
import time
from pathlib import Path

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from bench import common, data, model
from bench.serve_bench import Server, predictions

BENCH = "batch"


def run(*, smoke: bool, workdir: Path, model_root: Path | None = None) -> list[common.Figure]:
    if not model.SERVE.exists():
        return [common.not_measured(BENCH, "10k-row request", f"{model.SERVE} does not exist yet", "≤ 1.5× bare predict")]
    workdir.mkdir(parents=True, exist_ok=True)
    opt_ml = model.ensure(2000 if smoke else 50_000, workdir, model_root)
    columns = model.features(opt_ml)
    n_rows, repeats = (1000, 2) if smoke else (10_000, 15)
    body = data.frame(n_rows, seed=123)[columns].to_csv(header=False, index=False)
    rows = pd.read_csv(io.StringIO(body), header=None, names=columns)  # exactly what the server parses

    # Bare predict: a plain process (this one) with the model loaded and the rows in memory, at its best of
    # default OpenMP threads and one thread (serve runs one per worker; on a busy 2-core machine either can win).
    pipeline = joblib.load(opt_ml / "model" / "model.joblib")
    expected = [str(p) for p in pipeline.predict(rows)]
    timings: dict[str, list[float]] = {"default threads": [], "1 thread": []}
    t = time.perf_counter()
    pipeline.predict(pd.read_csv(io.StringIO(body), header=None, names=columns))
    parse_and_predict = time.perf_counter() - t

    cores = str(os.cpu_count() or 1)
    servers = {}
    for setting in ("auto", "1"):  # as shipped, and every request on one thread (SERVE_BATCH_THREADS=1)
        port = common.free_port()
        env = common.child_env(OPT_ML_ROOT=str(opt_ml), SAGEMAKER_BIND_TO_PORT=str(port), SERVE_BATCH_THREADS=setting,
                               SAGEMAKER_MODEL_SERVER_WORKERS=cores, MODEL_SERVER_WORKERS=cores)
        servers[setting] = Server(f"serve (SERVE_BATCH_THREADS={setting})", model.entrypoint(model.SERVE), port, env,
                                  workdir / f"batch-serve-threads-{setting}.log")
    served: dict[str, list[float]] = {setting: [] for setting in servers}
    together: dict[str, list[float]] = {setting: [] for setting in servers}
    with servers["auto"], servers["1"]:  # both up at once: an idle server costs nothing
        for server in servers.values():
            status, text = server.post(body, "text/csv")  # also warms a worker up
            if status != 200:
                raise RuntimeError(f"serve answered {status} to a {n_rows}-row CSV: {text[:300]}")
            if predictions(text) != expected:
                raise RuntimeError("serve's predictions differ from the bare pipeline's on the same rows")
            for _ in range(2 * int(cores) - 1):  # every worker has had a large request before any is timed
                server.post(body, "text/csv")
        # Interleaved (bare, bare on one thread, each server): this machine's speed drifts by ±20% within a
        # minute (shared host), and each round then meets the same speed on all of them.
        for _ in range(repeats):
            for setting, samples in timings.items():
                with threadpool_limits(limits=1 if setting == "1 thread" else None):
                    t = time.perf_counter()
                    pipeline.predict(rows)
                    samples.append(time.perf_counter() - t)
            for setting, server in servers.items():
                served[setting].append(_timed_post(server, body))
        # Two clients at once, so every worker is computing: lending cores must then cost nothing.
        for _ in range(max(2, repeats // 3)):
            for setting, server in servers.items():
                together[setting].extend(_concurrent_posts(server, body, int(cores)))
    best_setting = min(timings, key=lambda k: statistics.median(timings[k]))
    bare = timings[best_setting]
    s, b = statistics.median(served["auto"]) * 1000, statistics.median(bare) * 1000
    one = statistics.median(timings["1 thread"]) * 1000
    s1 = statistics.median(served["1"]) * 1000
    c, c1 = statistics.median(together["auto"]) * 1000, statistics.median(together["1"]) * 1000
    r = common.ratio(s, b)
    return [common.Figure(BENCH, f"{n_rows}-row CSV request, median of {repeats}", s, "ms", b, "bare predict in-process",
                          r, "≤ 1.5× bare predict", r is not None and r <= 1.5,
                          f"bare predict with {best_setting} (median default {statistics.median(timings['default threads']) * 1000:.0f} ms, "
                          f"1 thread {one:.0f} ms); "
                          f"bare read_csv+predict {parse_and_predict * 1000:.0f} ms; request body {len(body) / 1e6:.1f} MB; "
                          f"served min {min(served['auto']) * 1000:.0f} ms, bare min {min(bare) * 1000:.0f} ms; "
                          "the other workers idle, so the request borrows their cores (SERVE_BATCH_THREADS=auto)"),
            # Equal cores: every request on one thread, against bare predict on one thread.
            common.Figure(BENCH, f"{n_rows}-row CSV request on one thread (SERVE_BATCH_THREADS=1) vs bare predict on one thread",
                          s1, "ms", one, "bare predict in-process, 1 thread", common.ratio(s1, one), "", None,
                          f"served min {min(served['1']) * 1000:.0f} ms; same rounds as the row above"),
            common.Figure(BENCH, f"{cores} concurrent {n_rows}-row CSV requests (every worker computing), median per request",
                          c, "ms", c1, "same server with SERVE_BATCH_THREADS=1", common.ratio(c, c1), "", None,
                          f"{len(together['auto'])} requests each; max {max(together['auto']) * 1000:.0f} vs "
                          f"{max(together['1']) * 1000:.0f} ms; borrowing must cost nothing when no core is idle")]


def _timed_post(server: Server, body: str) -> float:
    t = time.perf_counter()
    status, _ = server.post(body, "text/csv")
    elapsed = time.perf_counter() - t
    if status != 200:
        raise RuntimeError(f"{server.name} answered {status}")
    return elapsed


def _concurrent_posts(server: Server, body: str, clients: int) -> list[float]:
    """`clients` requests released at the same moment; each one's own latency."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    start = Barrier(clients)

    def one(_: int) -> float:
        start.wait()
        return _timed_post(server, body)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(one, range(clients)))
