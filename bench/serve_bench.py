"""serve: our `serve` vs the SageMaker bring-your-own stack (nginx + gunicorn sync + Flask), same model, same cores,
and vs the HTTP floor: a do-nothing ASGI app on serve's own server stack (uvicorn + uvloop + httptools).

Two models, both from our `train` with 200 iterations: binary (generated data) and multiclass (scikit-learn's wine
data, 3 classes). All servers run at once (an idle one costs no CPU) and every measurement alternates between them
per payload, so the machine's background load hits them alike. Load comes from a separate process on loopback:
wrk for throughput at saturation (best of a few connection counts), then our open-loop fixed-rate client
(`bench.loadgen`, wrk2's latency model) at half of the baseline's saturation rate for p50/p99.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from bench import common, data, model

BENCH = "serve"


async def floor_app(scope, receive, send) -> None:
    """The HTTP floor: reads the request's body and answers one CSV line, doing nothing else."""
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/csv"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"0\n"})


def floor_command(port: int, workers: int) -> list[str]:
    """uvicorn as `serve` runs it (uvloop, serve's httptools protocol, no access log), with `floor_app`."""
    return [common.PY, "-m", "uvicorn", "bench.serve_bench:floor_app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", "ml_pipeline.serving.protocol:HeaderTimeoutProtocol",
            "--lifespan", "off", "--no-access-log", "--backlog", "2048", "--log-level", "warning"]


def payloads(columns: list[str], kind: str = "binary") -> dict[str, dict[str, str]]:
    if kind == "multiclass":
        from sklearn.datasets import load_wine

        one = load_wine(as_frame=True).frame[columns].iloc[:1]
        record = {k: float(v) for k, v in one.iloc[0].items()}
        return {"csv-1": {"body": one.to_csv(header=False, index=False), "content_type": "text/csv"},
                "json-1": {"body": json.dumps({"instances": [record]}), "content_type": "application/json"}}
    rows = data.frame(2000, seed=99)[columns]
    complete = rows.dropna().reset_index(drop=True)
    one = complete.iloc[:1]
    record = {k: (v.item() if hasattr(v, "item") else v) for k, v in one.iloc[0].items()}
    return {
        "csv-1": {"body": one.to_csv(header=False, index=False), "content_type": "text/csv"},
        "json-1": {"body": json.dumps({"instances": [record]}), "content_type": "application/json"},
        "csv-100": {"body": rows.iloc[:100].to_csv(header=False, index=False), "content_type": "text/csv"},
    }


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.name, self.cmd, self.port, self.env, self.log = name, cmd, port, env, log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Server":
        self.proc = common.start(self.cmd, self.log, env=self.env, cwd=common.ROOT)
        try:
            common.wait_http(f"http://127.0.0.1:{self.port}/ping", 120, self.proc)
        except Exception as e:
            common.stop(self.proc)
            raise RuntimeError(f"{self.name} did not start: {e}; log {self.log}:\n{self.log.read_text()[-2000:]}") from e
        return self

    def __exit__(self, *exc: Any) -> None:
        common.stop(self.proc)

    def warm(self, payload: dict[str, str], workers: int) -> None:
        """Concurrent requests so every worker has loaded the model (the example loads it lazily, per worker)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers * 2) as pool:
            list(pool.map(lambda _: self.post(payload["body"], payload["content_type"]), range(workers * 6)))

    def post(self, body: str, content_type: str) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/invocations", data=body.encode(), method="POST",
                                     headers={"Content-Type": content_type, "Accept": "text/csv"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


def predictions(text: str) -> list[str]:
    """The predicted labels from a CSV answer (first column; a header row, if any, dropped)."""
    lines = [ln.split(",")[0].strip().strip('"') for ln in text.strip().splitlines() if ln.strip()]
    return lines[1:] if lines and lines[0].lower() in ("results", "prediction", "predictions", "label") else lines


def wrk(url: str, payload: dict[str, str], connections: int, duration: float, workdir: Path,
        accept: str = "text/csv") -> dict[str, Any]:
    key = abs(hash((payload["body"], payload["content_type"], accept)))
    body = workdir / f"body-{key}.bin"
    body.write_text(payload["body"])
    script = workdir / f"wrk-{key}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{payload["content_type"]}"\n'
        f'wrk.headers["Accept"] = "{accept}"\n'
        f'local f = io.open("{body}", "rb"); wrk.body = f:read("*a"); f:close()\n')
    wrk_bin = common.ensure_debian_tool("wrk", "wrk")
    out = subprocess.run([wrk_bin, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                          "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True, timeout=duration + 60)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)

    def lat(p: str) -> float | None:
        m = re.search(rf"\s{p}%\s+([0-9.]+)(us|ms|s)", text)
        return None if not m else float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return {"tool": "wrk", "connections": connections, "rps": float(rps.group(1)) if rps else 0.0,
            "requests": int(total.group(1)) if total else 0, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0,
            "p50_ms": lat("50"), "p99_ms": lat("99"), "raw": text if out.returncode == 0 else out.stderr}


def loadgen(spec: dict[str, Any], workdir: Path) -> dict[str, Any]:
    path = workdir / "loadgen-spec.json"
    path.write_text(json.dumps(spec))
    out = subprocess.run([common.PY, "-m", "bench.loadgen", str(path)], capture_output=True, text=True,
                         cwd=common.ROOT, timeout=spec["duration"] + spec.get("warmup", 1) + 120)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def saturate(server: Server, payload: dict[str, str], conns: list[int], duration: float, workdir: Path) -> dict[str, Any]:
    runs = []
    for c in conns:
        if common.ensure_debian_tool("wrk", "wrk"):
            runs.append(wrk(f"http://127.0.0.1:{server.port}/invocations", payload, c, duration, workdir))
        else:  # no wrk and no way to install it: the same closed-loop model in Python
            r = loadgen({"mode": "closed", "host": "127.0.0.1", "port": server.port, "path": "/invocations",
                         "accept": "text/csv", "connections": c, "duration": duration, "warmup": 1, **payload}, workdir)
            runs.append({"tool": "bench.loadgen (closed loop)", **r, "non_2xx": r["errors"]})
    best = max(runs, key=lambda r: r["rps"])
    return {**{k: v for k, v in best.items() if k != "raw"}, "sweep": {r["connections"]: r["rps"] for r in runs}}


def run(*, smoke: bool, workdir: Path, model_root: Path | None = None) -> list[common.Figure]:
    workdir.mkdir(parents=True, exist_ok=True)
    nginx = common.ensure_debian_tool("nginx", "nginx")
    if not nginx:
        return [common.not_measured(BENCH, "all", "nginx is not installed and cannot be installed here")]
    if not model.SERVE.exists():
        return [common.not_measured(BENCH, "all", f"{model.SERVE} does not exist yet")]
    kinds = ["given"] if model_root is not None else ["binary", "multiclass"]
    cores = os.cpu_count() or 1
    floor_port = common.free_port()
    floor = Server("do-nothing ASGI app (uvicorn + uvloop + httptools)", floor_command(floor_port, cores), floor_port,
                   common.child_env(), workdir / "floor-serve.log")
    figures: list[common.Figure] = []
    detail: dict[str, Any] = {"workers": cores, "models": {}}
    with floor:
        for kind in kinds:
            opt_ml = model.ensure(2000 if smoke else 50_000, workdir, model_root,
                                  kind="binary" if kind == "given" else kind)
            detail["models"][kind] = {}
            figures += _serve_model(kind, opt_ml, floor, nginx, cores, smoke, workdir, detail["models"][kind])
    common.save_json(workdir / "serve.json", detail)
    return figures


def _serve_model(kind: str, opt_ml: Path, floor: Server, nginx: str, cores: int, smoke: bool, workdir: Path,
                 detail: dict[str, Any]) -> list[common.Figure]:
    columns = model.features(opt_ml)
    duration, rate_duration = (2.0, 2.0) if smoke else (8.0, 20.0)
    conns = [4] if smoke else [4, 16, 64]

    run_dir = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    base_port, our_port = common.free_port(), common.free_port()
    env = common.child_env(OPT_ML_ROOT=str(opt_ml), MODEL_SERVER_WORKERS=str(cores))
    # Our serve runs one OpenMP thread per worker; the baseline gets the same setting, so the ratio compares
    # the serving stacks, not an oversubscription the example would suffer with HistGradientBoosting (measured
    # apart below as "the example as shipped").
    baseline = Server("baseline (nginx + gunicorn sync + Flask)",
                      [common.PY, str(common.ROOT / "bench" / "baseline" / "serve.py"), str(base_port), str(run_dir), nginx],
                      base_port, {**env, "OMP_NUM_THREADS": "1"}, workdir / f"baseline-serve-{kind}.log")
    shipped_port = common.free_port()
    shipped = Server("baseline as shipped (no thread limit)",
                     [common.PY, str(common.ROOT / "bench" / "baseline" / "serve.py"), str(shipped_port),
                      str(Path(tempfile.mkdtemp(prefix="bench-baseline-shipped-"))), nginx],
                     shipped_port, {k: v for k, v in env.items() if k != "OMP_NUM_THREADS"},
                     workdir / f"baseline-shipped-serve-{kind}.log")
    ours = Server("serve", model.entrypoint(model.SERVE), our_port,
                  {**env, "SAGEMAKER_BIND_TO_PORT": str(our_port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(cores)},
                  workdir / f"our-serve-{kind}.log")
    figures: list[common.Figure] = []
    detail["payloads"] = {}
    with baseline, ours, shipped:
        for name, payload in payloads(columns, "multiclass" if kind == "multiclass" else "binary").items():
            # Same answers first: a fast wrong server, or one answering 4xx, must not count.
            sb, tb = baseline.post(payload["body"], payload["content_type"])
            so, to = ours.post(payload["body"], payload["content_type"])
            if sb != 200 or so != 200 or predictions(tb) != predictions(to):
                raise RuntimeError(f"{kind} {name}: servers disagree or fail: baseline {sb} {tb[:200]!r}, "
                                   f"ours {so} {to[:200]!r}")
            for server in (baseline, ours, shipped, floor):
                server.warm(payload, cores)
            b_sat = saturate(baseline, payload, conns, duration, workdir)
            o_sat = saturate(ours, payload, conns, duration, workdir)
            f_sat = saturate(floor, payload, conns, duration, workdir)
            s_sat = saturate(shipped, payload, [b_sat["connections"]], duration, workdir)
            if not (b_sat["rps"] > 0 and o_sat["rps"] > 0 and f_sat["rps"] > 0):
                raise RuntimeError(f"{kind} {name}: a server completed no request in {duration:.0f} s "
                                   f"(baseline {b_sat['rps']}, ours {o_sat['rps']}, floor {f_sat['rps']}); see {workdir}")
            half = max(1.0, b_sat["rps"] / 2)
            spec = {"mode": "rate", "host": "127.0.0.1", "path": "/invocations", "accept": "text/csv",
                    "rate": half, "duration": rate_duration, "warmup": 0.5 if smoke else 2, **payload}
            b_lat = loadgen({**spec, "port": baseline.port}, workdir)
            o_lat = loadgen({**spec, "port": ours.port}, workdir)
            detail["payloads"][name] = {"baseline": {"saturation": b_sat, "half_load": b_lat},
                                        "baseline_as_shipped": {"saturation": s_sat},
                                        "floor": {"saturation": f_sat},
                                        "ours": {"saturation": o_sat, "half_load": o_lat}}
            bad = [f"{who} {what}: {r.get('non_2xx', 0) or r.get('errors', 0)} failed requests"
                   for who, what, r in (("baseline", "saturation", b_sat), ("ours", "saturation", o_sat),
                                        ("floor", "saturation", f_sat),
                                        ("baseline", "half load", b_lat), ("ours", "half load", o_lat))
                   if (r.get("non_2xx", 0) or r.get("errors", 0) or r.get("socket_errors", 0))]
            single = name.endswith("-1")
            label = f"{name} {kind}"  # the payload first: tests/bench groups the figures by it
            r = common.ratio(o_sat["rps"], b_sat["rps"])
            figures.append(common.Figure(
                BENCH, f"{label} requests/s at saturation", o_sat["rps"], "req/s", b_sat["rps"], "nginx+gunicorn+Flask",
                r, "≥ 3× baseline" if single else "", (r is not None and r >= 3) if single else None,
                f"best of connections {sorted(o_sat['sweep'])} (ours {o_sat['connections']}, baseline {b_sat['connections']}); "
                f"{o_sat['tool']}; the example as shipped (no OMP_NUM_THREADS) {s_sat['rps']:.0f} req/s"
                + (f"; {'; '.join(bad)}" if bad else "")))
            rf = common.ratio(o_sat["rps"], f_sat["rps"])
            figures.append(common.Figure(
                BENCH, f"{label} requests/s vs the HTTP floor", o_sat["rps"], "req/s", f_sat["rps"],
                "do-nothing ASGI app, same uvicorn + uvloop + httptools", rf,
                "≥ 0.5× the floor" if single else "", (rf is not None and rf >= 0.5) if single else None,
                f"{cores} workers each; best of connections {sorted(f_sat['sweep'])} (ours {o_sat['connections']}, "
                f"floor {f_sat['connections']}); the floor reads the body and answers one CSV line"))
            figures.append(common.Figure(
                BENCH, f"{label} p99 at half baseline load ({half:.0f} req/s)", o_lat.get("p99_ms"), "ms",
                b_lat.get("p99_ms"), "nginx+gunicorn+Flask", common.ratio(o_lat.get("p99_ms"), b_lat.get("p99_ms")),
                "≤ 2 ms" if single else "", (o_lat.get("p99_ms") is not None and o_lat["p99_ms"] <= 2) if single else None,
                f"p50 ours {o_lat.get('p50_ms', float('nan')):.2f} ms vs baseline {b_lat.get('p50_ms', float('nan')):.2f} ms; "
                f"{o_lat['requests']} vs {b_lat['requests']} requests, open loop; achieved {o_lat['achieved_rps']:.0f} vs "
                f"{b_lat['achieved_rps']:.0f} req/s"))
    return figures
