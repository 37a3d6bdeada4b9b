"""mlflow: our `serve` vs MLflow's own scoring server (`mlflow models serve`), same model, same cores.

What a user of MLflow would run instead: the very pipeline our `train` fitted, saved in MLflow's scikit-learn
flavor exactly as our `track` command logs it (signature and input example from ml_pipeline.tracking's own helpers,
cloudpickle), served by `mlflow models serve --env-manager local`. Both servers get one worker per core and
OMP_NUM_THREADS=1 (MLflow as users start it, without a thread limit, is measured apart and shown in the notes).
Both run at once (an idle one costs no CPU) and every measurement alternates between them, so the machine's
background load hits both alike. Load comes from a separate process on loopback, with the serve benchmark's
machinery: wrk for throughput at saturation (best of a few connection counts), `bench.loadgen` open loop at half
of MLflow's saturation rate for p50/p99. Then one large CSV request at a time, interleaved.

`python -m bench.mlflow_bench save MODEL_DIR DEST` writes the MLflow model (run in a child process, so the
benchmark's own process never imports MLflow).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench import common, data, model, serve_bench

BENCH = "mlflow"
MLFLOW = Path(sys.executable).parent / "mlflow"  # the venv's console script
TRACKING = common.ROOT / "kedro_project" / "src" / "ml_pipeline" / "tracking.py"
JSON = "application/json"
# Both answer JSON: MLflow's server answers nothing else ({"predictions": [...]}), ours does when asked.
ACCEPT = JSON
MLFLOW_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


# ---------------------------------------------------------------------------------------------------------
# The MLflow model: what `track` logs, saved to a directory
# ---------------------------------------------------------------------------------------------------------
def save(model_dir: Path, dest: Path) -> None:
    """The fitted pipeline of `model_dir` in MLflow's scikit-learn flavor, with the arguments `track` logs it with
    (ml_pipeline/tracking.py `_log_run`): signature inferred from tracking's input example and its predictions,
    that input example, cloudpickle serialization, the flavor's default pip requirements with cloudpickle."""
    import shutil

    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    from ml_pipeline import tracking
    from ml_pipeline.serving.predictor import load_model_files

    pipeline, metadata = load_model_files(model_dir)
    example = tracking.input_example(metadata)
    predicted = pd.Series(pipeline.predict(example), name=metadata.get("target"))
    if dest.exists():
        shutil.rmtree(dest)
    mlflow.sklearn.save_model(
        pipeline, str(dest), signature=infer_signature(example, predicted), input_example=example,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True))


def ensure_mlflow_model(opt_ml: Path, workdir: Path) -> Path:
    """The MLflow model directory for the model in `opt_ml` (cached while newer than the model and tracking.py)."""
    joblib_file = opt_ml / "model" / "model.joblib"
    dest = workdir / f"mlflow-model-{opt_ml.parent.name}"
    mlmodel = dest / "MLmodel"
    if mlmodel.exists() and mlmodel.stat().st_mtime > max(joblib_file.stat().st_mtime, TRACKING.stat().st_mtime):
        return dest
    log = workdir / "mlflow-save.log"
    run = common.run_measured([common.PY, "-m", "bench.mlflow_bench", "save", str(opt_ml / "model"), str(dest)],
                              env=common.child_env(**MLFLOW_ENV), cwd=common.ROOT, log=log, timeout=600)
    if run.returncode != 0 or not mlmodel.exists():
        raise RuntimeError(f"saving the MLflow model failed ({run.returncode}); log {log}:\n{run.output[-2000:]}")
    return dest


# ---------------------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------------------
class Server(serve_bench.Server):
    """serve_bench's server, asking for JSON answers, timed until every worker has started, and weighed."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], log: Path, workers: int) -> None:
        super().__init__(name, cmd, port, env, log)
        self.workers = workers
        self.startup_s: float | None = None

    def __enter__(self) -> "Server":
        t0 = time.perf_counter()
        super().__enter__()
        # uvicorn logs "Application startup complete." per worker once it has loaded the app (both load the model
        # at import): the server is ready when all of its workers are, not when the first answers /ping.
        deadline = time.monotonic() + 180
        while self.log.read_text(errors="replace").count("Application startup complete") < self.workers:
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"{self.name}: not all {self.workers} workers started in 180 s; log {self.log}")
            time.sleep(0.05)
        self.startup_s = time.perf_counter() - t0
        return self

    def post(self, body: str, content_type: str) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=body.encode(), method="POST",
                                     headers={"Content-Type": content_type, "Accept": ACCEPT})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def memory(self) -> dict[str, Any]:
        """RSS and PSS (shared pages split between the processes that map them) of every process of the server."""
        import psutil

        procs = []
        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {"processes": [], "rss_mib": None, "pss_mib": None}
        for p in tree:
            try:
                info = p.memory_full_info()
                procs.append({"pid": p.pid, "cmd": " ".join(p.cmdline()[:6])[:160],
                              "rss_mib": round(info.rss / 2**20, 1), "pss_mib": round(getattr(info, "pss", 0) / 2**20, 1)})
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return {"processes": procs, "rss_mib": round(sum(p["rss_mib"] for p in procs), 1),
                "pss_mib": round(sum(p["pss_mib"] for p in procs), 1)}


def mlflow_server(name: str, model_uri: Path, port: int, workers: int, env: dict[str, str], log: Path) -> Server:
    return Server(name, [str(MLFLOW), "models", "serve", "-m", str(model_uri), "--env-manager", "local",
                         "-p", str(port), "-w", str(workers), "--host", "127.0.0.1"], port, env, log, workers)


def predictions(text: str) -> list[str]:
    """The labels of a JSON answer ({"predictions": [...]} from both servers), as text."""
    document = json.loads(text)
    labels = document["predictions"] if isinstance(document, dict) else document
    return [str(v) for v in labels]


# ---------------------------------------------------------------------------------------------------------
# Payloads: the same rows to both, each in the server's native shape
# ---------------------------------------------------------------------------------------------------------
def payloads(columns: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """name → {"ours": payload, "mlflow": payload}. The rows are the serve benchmark's (seed 99). CSV carries a
    header row for both (MLflow's CSV reader requires one; ours takes it), so both receive the same bytes."""
    rows = data.frame(2000, seed=99)[columns]
    one = rows.dropna().reset_index(drop=True).iloc[:1]
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in one.iloc[0].items()}
    csv1 = {"body": one.to_csv(index=False), "content_type": "text/csv"}
    csv100 = {"body": rows.iloc[:100].to_csv(index=False), "content_type": "text/csv"}
    return {
        "csv-1": {"ours": csv1, "mlflow": csv1},
        "json-1": {"ours": {"body": json.dumps({"instances": [record]}), "content_type": JSON},
                   "mlflow": {"body": json.dumps({"dataframe_records": [record]}), "content_type": JSON}},
        "csv-100": {"ours": csv100, "mlflow": csv100},
    }


# ---------------------------------------------------------------------------------------------------------
# Load (serve_bench's wrk run, with the Accept header both servers answer JSON to)
# ---------------------------------------------------------------------------------------------------------
def wrk(url: str, payload: dict[str, str], connections: int, duration: float, workdir: Path) -> dict[str, Any]:
    return serve_bench.wrk(url, payload, connections, duration, workdir, accept=ACCEPT)


def one_run(server: Server, payload: dict[str, str], connections: int, duration: float, workdir: Path) -> dict[str, Any]:
    if common.ensure_debian_tool("wrk", "wrk"):
        return wrk(f"http://127.0.0.1:{server.port}/invocations", payload, connections, duration, workdir)
    # no wrk and no way to install it: the same closed-loop model in Python
    r = serve_bench.loadgen({"mode": "closed", "host": "127.0.0.1", "port": server.port, "path": "/invocations",
                             "accept": ACCEPT, "connections": connections, "duration": duration, "warmup": 1, **payload},
                            workdir)
    return {"tool": "bench.loadgen (closed loop)", **r, "non_2xx": r["errors"]}


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    top = max(runs, key=lambda r: r["rps"])
    return {**{k: v for k, v in top.items() if k != "raw"}, "sweep": {r["connections"]: r["rps"] for r in runs}}


def timed_post(server: Server, body: str, content_type: str) -> float:
    t = time.perf_counter()
    status, text = server.post(body, content_type)
    elapsed = time.perf_counter() - t
    if status != 200:
        raise RuntimeError(f"{server.name} answered {status}: {text[:300]}")
    return elapsed


def failures(*named: tuple[str, dict[str, Any]]) -> list[str]:
    return [f"{who}: {r.get('non_2xx', 0) or r.get('errors', 0) or r.get('socket_errors', 0)} failed requests"
            for who, r in named if r.get("non_2xx", 0) or r.get("errors", 0) or r.get("socket_errors", 0)]


# ---------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------
def run(*, smoke: bool, workdir: Path, model_root: Path | None = None, model_cache: Path | None = None) -> list[common.Figure]:
    workdir.mkdir(parents=True, exist_ok=True)
    for needed in (model.SERVE, model.TRAIN, MLFLOW):
        if not needed.exists():
            return [common.not_measured(BENCH, "all", f"{needed} does not exist yet")]
    opt_ml = model.ensure(2000 if smoke else 50_000, model_cache or workdir, model_root)
    columns = model.features(opt_ml)
    mlflow_model = ensure_mlflow_model(opt_ml, workdir)
    cores = os.cpu_count() or 1
    duration, rate_duration = (2.0, 2.0) if smoke else (8.0, 20.0)
    conns = [4] if smoke else [4, 16, 64]
    batch_rows, repeats = (1000, 2) if smoke else (10_000, 15)

    base_env = common.child_env(**MLFLOW_ENV)
    limited = {**base_env, "OMP_NUM_THREADS": "1"}
    shipped_env = {k: v for k, v in base_env.items() if k != "OMP_NUM_THREADS"}

    def ours_server(name: str, log: str = "our-serve.log", **extra: str) -> Server:
        port = common.free_port()
        env = {**limited, "OPT_ML_ROOT": str(opt_ml), "SAGEMAKER_BIND_TO_PORT": str(port), "SERVE_HOST": "127.0.0.1",
               "SAGEMAKER_MODEL_SERVER_WORKERS": str(cores), "MODEL_SERVER_WORKERS": str(cores), **extra}
        return Server(name, model.entrypoint(model.SERVE), port, env, workdir / log, cores)

    mlflow = mlflow_server("mlflow models serve", mlflow_model, common.free_port(), cores, limited,
                           workdir / "mlflow-serve.log")
    # `mlflow models serve` as users start it: no thread limit (HistGradientBoosting then opens OpenMP regions
    # over every core per predict). Shown in the notes only; the ratio is at equal threads.
    mlflow_shipped = mlflow_server("mlflow models serve (no OMP_NUM_THREADS)", mlflow_model, common.free_port(), cores,
                                   shipped_env, workdir / "mlflow-shipped-serve.log")
    ours = ours_server("serve")
    ours_one = ours_server("serve (SERVE_BATCH_THREADS=1)", "our-serve-batch-threads-1.log", SERVE_BATCH_THREADS="1")

    figures: list[common.Figure] = []
    detail: dict[str, Any] = {"workers": cores, "mlflow_model": str(mlflow_model), "payloads": {}}
    with mlflow, ours, mlflow_shipped, ours_one:
        detail["startup_s"] = {s.name: s.startup_s for s in (mlflow, ours, mlflow_shipped, ours_one)}
        for name, pair in payloads(columns).items():
            # Same answers first: a fast wrong server, or one answering 4xx, must not count.
            sm, tm = mlflow.post(pair["mlflow"]["body"], pair["mlflow"]["content_type"])
            so, to = ours.post(pair["ours"]["body"], pair["ours"]["content_type"])
            if sm != 200 or so != 200 or predictions(tm) != predictions(to):
                raise RuntimeError(f"{name}: servers disagree or fail: mlflow {sm} {tm[:300]!r}, ours {so} {to[:300]!r}")
            for server, side in ((mlflow, "mlflow"), (ours, "ours"), (mlflow_shipped, "mlflow")):
                server.warm(pair[side], cores)
            # Alternating per connection count, so a load that drifts during the sweep hits both alike.
            runs: dict[str, list[dict[str, Any]]] = {"mlflow": [], "ours": []}
            for c in conns:
                runs["mlflow"].append(one_run(mlflow, pair["mlflow"], c, duration, workdir))
                runs["ours"].append(one_run(ours, pair["ours"], c, duration, workdir))
            m_sat, o_sat = best(runs["mlflow"]), best(runs["ours"])
            s_sat = best([one_run(mlflow_shipped, pair["mlflow"], m_sat["connections"], duration, workdir)])
            if not (m_sat["rps"] > 0 and o_sat["rps"] > 0):
                raise RuntimeError(f"{name}: a server completed no request in {duration:.0f} s "
                                   f"(mlflow {m_sat['rps']}, ours {o_sat['rps']}); see {workdir}")
            half = max(1.0, m_sat["rps"] / 2)
            spec = {"mode": "rate", "host": "127.0.0.1", "path": "/invocations", "accept": ACCEPT,
                    "rate": half, "duration": rate_duration, "warmup": 0.5 if smoke else 2}
            m_lat = serve_bench.loadgen({**spec, **pair["mlflow"], "port": mlflow.port}, workdir)
            o_lat = serve_bench.loadgen({**spec, **pair["ours"], "port": ours.port}, workdir)
            detail["payloads"][name] = {"mlflow": {"saturation": m_sat, "half_load": m_lat},
                                        "mlflow_no_thread_limit": {"saturation": s_sat},
                                        "ours": {"saturation": o_sat, "half_load": o_lat}}
            bad = failures(("mlflow saturation", m_sat), ("ours saturation", o_sat),
                           ("mlflow no thread limit", s_sat), ("mlflow half load", m_lat), ("ours half load", o_lat))
            shape = ('ours {"instances": [record]}, MLflow {"dataframe_records": [record]}' if name.startswith("json")
                     else "CSV with a header row, the same bytes to both")
            figures.append(common.Figure(
                BENCH, f"{name} requests/s at saturation", o_sat["rps"], "req/s", m_sat["rps"], "mlflow models serve",
                common.ratio(o_sat["rps"], m_sat["rps"]), "", None,
                f"{shape}; best of connections {sorted(o_sat['sweep'])} (ours {o_sat['connections']}, MLflow "
                f"{m_sat['connections']}); {o_sat['tool']}; MLflow without OMP_NUM_THREADS {s_sat['rps']:.0f} req/s"
                + (f"; {'; '.join(bad)}" if bad else "")))
            for q in ("p50", "p99"):
                figures.append(common.Figure(
                    BENCH, f"{name} {q} at half MLflow's saturation ({half:.0f} req/s)", o_lat.get(f"{q}_ms"), "ms",
                    m_lat.get(f"{q}_ms"), "mlflow models serve", common.ratio(o_lat.get(f"{q}_ms"), m_lat.get(f"{q}_ms")),
                    "", None,
                    f"open loop, latency from when each request was due; {o_lat['requests']} vs {m_lat['requests']} "
                    f"requests, achieved {o_lat['achieved_rps']:.0f} vs {m_lat['achieved_rps']:.0f} req/s"
                    + ("" if q == "p50" else f"; max {o_lat.get('max_ms', float('nan')):.1f} vs "
                                             f"{m_lat.get('max_ms', float('nan')):.1f} ms")))

        # One large CSV request at a time, interleaved round by round across the four servers.
        body = data.frame(batch_rows, seed=123)[columns].to_csv(index=False)
        servers = {"ours": ours, "ours_one": ours_one, "mlflow": mlflow, "mlflow_shipped": mlflow_shipped}
        answers = {}
        for key, server in servers.items():
            status, text = server.post(body, "text/csv")  # also warms a worker up
            if status != 200:
                raise RuntimeError(f"{server.name} answered {status} to a {batch_rows}-row CSV: {text[:300]}")
            answers[key] = predictions(text)
            for _ in range(2 * cores - 1):  # every worker has had a large request before any is timed
                server.post(body, "text/csv")
        if any(a != answers["mlflow"] for a in answers.values()) or len(answers["ours"]) != batch_rows:
            raise RuntimeError(f"{batch_rows}-row CSV: the servers' predictions differ")
        times: dict[str, list[float]] = {key: [] for key in servers}
        for _ in range(repeats):
            for key, server in servers.items():
                times[key].append(timed_post(server, body, "text/csv"))
        med = {key: statistics.median(v) * 1000 for key, v in times.items()}
        worst = {key: max(v) * 1000 for key, v in times.items()}
        detail["batch"] = {"rows": batch_rows, "body_bytes": len(body), "seconds": times}
        figures.append(common.Figure(
            BENCH, f"{batch_rows}-row CSV request, median of {repeats}", med["ours"], "ms", med["mlflow"],
            "mlflow models serve", common.ratio(med["ours"], med["mlflow"]), "", None,
            f"one request at a time (other workers idle: ours as shipped lends their cores to the request, "
            f"SERVE_BATCH_THREADS=auto); max {worst['ours']:.0f} vs {worst['mlflow']:.0f} ms; body "
            f"{len(body) / 1e6:.1f} MB with a header row; MLflow without OMP_NUM_THREADS median "
            f"{med['mlflow_shipped']:.0f} ms, max {worst['mlflow_shipped']:.0f} ms"))
        figures.append(common.Figure(
            BENCH, f"{batch_rows}-row CSV request on one thread (SERVE_BATCH_THREADS=1), median of {repeats}",
            med["ours_one"], "ms", med["mlflow"], "mlflow models serve", common.ratio(med["ours_one"], med["mlflow"]),
            "", None, f"equal threads: one per request on both; max {worst['ours_one']:.0f} vs {worst['mlflow']:.0f} ms; "
                      "same rounds as the row above"))

        detail["memory"] = {s.name: s.memory() for s in (mlflow, ours, mlflow_shipped, ours_one)}
    mem_o, mem_m = detail["memory"][ours.name], detail["memory"][mlflow.name]

    # Startup on its own: each server started alone, alternately (the first starts above overlapped nothing but
    # met a cold page cache; these all meet a warm one), median per server.
    starts: dict[str, list[float]] = {"ours": [], "mlflow": []}
    for i in range(1 if smoke else 3):
        for key in ("mlflow", "ours") if i % 2 == 0 else ("ours", "mlflow"):
            server = (mlflow_server("mlflow models serve", mlflow_model, common.free_port(), cores, limited,
                                    workdir / "mlflow-startup.log") if key == "mlflow"
                      else ours_server("serve", "our-startup.log"))
            with server:
                starts[key].append(server.startup_s)
    detail["startup_s"] = {"first start, in the run": detail["startup_s"], "alone": starts}
    up_o, up_m = statistics.median(starts["ours"]), statistics.median(starts["mlflow"])

    def per_process(mem: dict[str, Any]) -> str:
        return " + ".join(f"{p['rss_mib']:.0f}" for p in mem["processes"])

    figures.append(common.Figure(
        BENCH, f"startup until all {cores} workers are ready, median of {len(starts['ours'])}", up_o, "s", up_m,
        "mlflow models serve", common.ratio(up_o, up_m), "", None,
        "from starting the command to every worker's 'Application startup complete' (uvicorn; both load the model "
        f"before it); started alone, alternately: ours {', '.join(f'{t:.1f}' for t in starts['ours'])} s, MLflow "
        f"{', '.join(f'{t:.1f}' for t in starts['mlflow'])} s; MLflow's CLI process imports MLflow, then stays the "
        f"parent of `uvicorn --workers {cores}`, whose workers each import MLflow again"))
    figures.append(common.Figure(
        BENCH, "memory of the whole server after the run (PSS)", mem_o["pss_mib"], "MiB", mem_m["pss_mib"],
        "mlflow models serve", common.ratio(mem_o["pss_mib"], mem_m["pss_mib"]), "", None,
        f"{len(mem_o['processes'])} vs {len(mem_m['processes'])} processes; RSS per process ours {per_process(mem_o)} MiB, "
        f"MLflow {per_process(mem_m)} MiB (PSS splits shared pages between the processes mapping them)"))
    common.save_json(workdir / "mlflow.json", detail)
    return figures


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "save":
        raise SystemExit("usage: python -m bench.mlflow_bench save MODEL_DIR DEST")
    save(Path(sys.argv[2]), Path(sys.argv[3]))
