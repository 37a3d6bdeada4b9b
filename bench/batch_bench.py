"""batch: one 10k-row CSV request through our `serve` vs bare in-process `predict` on the same rows; model load time
and model directory size with and without the compiled trees."""
from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from bench import common, data, model
from bench.serve_bench import Server, predictions

BENCH = "batch"


def run(*, smoke: bool, workdir: Path, model_root: Path | None = None) -> list[common.Figure]:
    if not model.SERVE.exists():
        return [common.not_measured(BENCH, "10k-row request", f"{model.SERVE} does not exist yet", "≤ 1.1× bare predict")]
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
    loads = []
    for kind in (["given"] if model_root is not None else ["binary", "multiclass"]):
        root = opt_ml if kind != "multiclass" else model.ensure(0, workdir, None, kind="multiclass")
        loads += _load_figures(kind, load_times(root, workdir, repeats=1 if smoke else 3))
    return [common.Figure(BENCH, f"{n_rows}-row CSV request, median of {repeats}", s, "ms", b, "bare predict in-process",
                          r, "≤ 1.1× bare predict", r is not None and r <= 1.1,
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
                          f"{max(together['1']) * 1000:.0f} ms; borrowing must cost nothing when no core is idle"),
            *loads]


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


def load_times(opt_ml: Path, workdir: Path, repeats: int) -> dict[str, Any]:
    """Model load as a serve worker does it (after its imports), in fresh processes, with and without forest/.

    Without forest/ is a model directory from before the compiled trees: the estimator serves. Alternated, medians.
    """
    bare = workdir / "model-without-forest" / opt_ml.parent.name
    if bare.exists():
        shutil.rmtree(bare)
    shutil.copytree(opt_ml / "model", bare, ignore=shutil.ignore_patterns("forest"))
    script = ("import sys, time, json; import ml_pipeline.serving.app\n"
              "from ml_pipeline.serving.predictor import CompiledModel\n"
              "t = time.perf_counter(); m = CompiledModel.load(sys.argv[1])\n"
              "print(json.dumps({'seconds': time.perf_counter() - t, 'fast_path': m.fast_path}))")
    runs: dict[str, list[float]] = {"with": [], "without": []}
    paths = {}
    for _ in range(repeats):
        for which, directory in (("with", opt_ml / "model"), ("without", bare)):
            out = subprocess.run([common.PY, "-c", script, str(directory)], capture_output=True, text=True,
                                 env=common.child_env(OMP_NUM_THREADS="1"), cwd=common.ROOT, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"loading {directory} failed: {out.stderr[-2000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[which].append(result["seconds"])
            paths[which] = result["fast_path"]
    size = {which: sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
            for which, directory in (("with", opt_ml / "model"), ("without", bare))}
    record_path = opt_ml / "model" / "forest" / "forest.json"
    forest_record = json.loads(record_path.read_text()) if record_path.exists() else {"reason": "no forest/forest.json"}
    return {"seconds": {k: statistics.median(v) for k, v in runs.items()}, "runs": runs, "fast_path": paths,
            "bytes": size, "forest": {k: forest_record.get(k) for k in ("compiled", "trees", "compile_seconds", "reason")}}


def _load_figures(kind: str, load: dict[str, Any]) -> list[common.Figure]:
    seconds, size, record = load["seconds"], load["bytes"], load["forest"]
    return [
        common.Figure(BENCH, f"{kind} model load (one worker, after its imports), median of {len(load['runs']['with'])}",
                      seconds["with"], "s", seconds["without"], "same model without forest/ (the estimator serves)",
                      common.ratio(seconds["with"], seconds["without"]), "", None,
                      f"fresh processes, alternated; with: {load['fast_path']['with']}; the load includes importing "
                      f"TL2cgen and checking the compiled trees on probe rows"),
        common.Figure(BENCH, f"{kind} model directory size", size["with"] / 1e6, "MB", size["without"] / 1e6,
                      "without forest/", common.ratio(size["with"], size["without"]), "", None,
                      f"{record.get('trees')} trees compiled at training in {record.get('compile_seconds')} s"
                      if record.get("compiled") else f"not compiled: {record.get('reason')}"),
    ]
