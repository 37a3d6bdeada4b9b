"""python -m bench [--smoke] [--only serve,batch,hostile,explain,mlflow,train,startup,control,loop,toolchain]

A full run rewrites bench/results.json (the benchmarks it ran; the others keep their last figures) and
bench/RESULTS.md from it. --smoke runs every benchmark for seconds on tiny inputs and writes only under
the work directory (default bench/out/), so CI can check that every benchmark still runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from bench import common, report

ALL = ["serve", "batch", "hostile", "explain", "mlflow", "train", "startup", "control", "loop", "toolchain"]


def run_one(name: str, args: argparse.Namespace, workdir: Path) -> list[common.Figure]:
    model_root = Path(args.model_root).resolve() if args.model_root else None
    if name == "serve":
        from bench import serve_bench

        return serve_bench.run(smoke=args.smoke, workdir=workdir / "serve", model_root=model_root)
    if name == "batch":
        from bench import batch_bench

        return batch_bench.run(smoke=args.smoke, workdir=workdir / "serve", model_root=model_root)
    if name == "hostile":
        from bench import hostile_bench

        return hostile_bench.run(smoke=args.smoke, workdir=workdir / "serve", model_root=model_root)
    if name == "explain":
        from bench import explain_bench

        return explain_bench.run(smoke=args.smoke, workdir=workdir / "serve", model_root=model_root)
    if name == "mlflow":
        from bench import mlflow_bench

        # The serving benchmarks' model (cached under serve/), its MLflow copy and the servers' logs under mlflow/.
        return mlflow_bench.run(smoke=args.smoke, workdir=workdir / "mlflow", model_root=model_root,
                                model_cache=workdir / "serve")
    if name == "train":
        from bench import train_bench

        return train_bench.run(smoke=args.smoke, workdir=workdir / "train", big=not args.skip_10m, order=args.train_order)
    if name == "startup":
        from bench import startup_bench

        return startup_bench.run(smoke=args.smoke, workdir=workdir / "startup")
    if name == "control":
        from bench import control_bench

        return control_bench.run(smoke=args.smoke, workdir=workdir / "control")
    if name == "loop":
        from bench import loop_bench

        return loop_bench.run(smoke=args.smoke, workdir=workdir / "loop")
    if name == "toolchain":
        from bench import toolchain_bench

        return toolchain_bench.run(smoke=args.smoke, workdir=workdir / "toolchain")
    raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(ALL)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long run of every benchmark on tiny inputs")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--workdir", default=str(common.OUT), help="scratch space (data, models, logs)")
    parser.add_argument("--results", help="where to write the JSON results (default: bench/results.json, "
                                          "or WORKDIR/smoke-results.json with --smoke)")
    parser.add_argument("--model-root",
                        help="serve/batch/hostile/mlflow: an existing OPT_ML_ROOT to serve instead of training one")
    parser.add_argument("--skip-10m", action="store_true", help="train: skip the 10M-row memory point")
    parser.add_argument("--train-order", choices=["abba", "ours-first", "bare-first"], default="abba",
                        help="train: order of the runs (abba = ours, bare, bare, ours: cancels a drifting load)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    for n in names:
        if n not in ALL:
            parser.error(f"unknown benchmark {n!r}; choose from {', '.join(ALL)}")
    workdir = Path(args.workdir).resolve()
    results_path = Path(args.results) if args.results else (
        workdir / "smoke-results.json" if args.smoke else common.ROOT / "bench" / "results.json")
    previous = json.loads(results_path.read_text()) if results_path.exists() else {"benchmarks": {}}
    failed = []
    for name in names:
        print(f"== {name}{' (smoke)' if args.smoke else ''}: started, load {common.load()}", flush=True)
        before = common.machine()
        t0 = time.perf_counter()
        try:
            figures = [f.as_dict() for f in run_one(name, args, workdir)]
            error = None
        except Exception as e:  # recorded, so one broken benchmark does not hide the others' figures
            traceback.print_exc()
            figures, error = [], f"{type(e).__name__}: {e}"
            failed.append(name)
        previous["benchmarks"][name] = {"machine": {**before, "load_after": common.load()}, "smoke": args.smoke,
                                        "seconds": round(time.perf_counter() - t0, 1), "error": error,
                                        "figures": figures}
        for f in figures:
            print("   ", report.one_line(f), flush=True)
        if error:
            print(f"    FAILED: {error}", flush=True)
    common.save_json(results_path, previous)
    if not args.smoke and results_path == common.ROOT / "bench" / "results.json":
        (common.ROOT / "bench" / "RESULTS.md").write_text(report.markdown(previous))
        print(f"wrote {results_path} and bench/RESULTS.md")
    else:
        print(f"wrote {results_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
