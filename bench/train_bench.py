"""train: our `train` entrypoint (the Kedro pipelines) vs a bare scikit-learn script, same data, same steps.

Wall time and peak memory of each child process. Data: generated, 1M rows × 20 columns (CSV); one more
point at 10M rows for memory only (full runs only; see bench/README.md for how long it takes).
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from bench import common, data, model

BENCH = "train"


def measure_pair(n_rows: int, workdir: Path, timeout: float, order: str = "ours-first"
                 ) -> tuple[common.Measured, common.Measured, Path]:
    """Run ours and the bare script one after the other on the same file; `order` = ours-first | bare-first | abba.

    abba (ours, bare, bare, ours) cancels a background load that drifts linearly during the runs; the returned
    Measured are then the sums of wall/CPU time and the maxima of memory over both runs of each side.
    """
    dataset = data.write(n_rows, workdir / "data" / f"train-{n_rows}.csv", seed=1)
    sequence = {"ours-first": "ob", "bare-first": "bo", "abba": "obbo"}[order]
    runs: dict[str, list[common.Measured]] = {"o": [], "b": []}
    opt_ml = workdir / f"train-{n_rows}" / "opt_ml"
    for i, side in enumerate(sequence):
        log = workdir / f"train-{n_rows}" / f"{'ours' if side == 'o' else 'bare'}{'-' + str(i) if len(sequence) > 2 else ''}.log"
        if side == "o":
            model.prepare_opt_ml(opt_ml, dataset)
            m = common.run_measured(model.train_command(), env=common.child_env(OPT_ML_ROOT=str(opt_ml)), cwd=common.ROOT,
                                    log=log, timeout=timeout)
            if m.returncode != 0:
                raise RuntimeError(f"train on {n_rows} rows exited {m.returncode}: {model.failure_reason(opt_ml)}")
        else:
            m = common.run_measured([common.PY, "-m", "bench.bare_train", str(dataset), str(workdir / f"train-{n_rows}" / "bare")],
                                    env=common.child_env(), cwd=common.ROOT, log=log, timeout=timeout)
            if m.returncode != 0:
                raise RuntimeError(f"bare script on {n_rows} rows exited {m.returncode}: {m.output[-1500:]}")
        runs[side].append(m)

    def combine(ms: list[common.Measured]) -> common.Measured:
        return common.Measured(0, sum(m.wall_s for m in ms), max(m.peak_rss_mib for m in ms),
                               max(m.max_rss_mib for m in ms), ms[-1].output, sum(m.cpu_s for m in ms))

    return combine(runs["o"]), combine(runs["b"]), opt_ml


def node_seconds(log: str, wall_s: float) -> dict[str, float]:
    """Per-node durations from Kedro's "Completed node" log lines (the first also holds start-up + data load)."""
    stamps = [(dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"), m.group(2))
              for m in re.finditer(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) .*Completed node: (\S+)", log, re.M)]
    out: dict[str, float] = {}
    for (t0, _), (t1, name) in zip(stamps, stamps[1:]):
        out[name] = round((t1 - t0).total_seconds(), 1)
    if stamps:
        out[f"start-up + read + {stamps[0][1]} + exit"] = round(wall_s - sum(out.values()) - 0.0, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run(*, smoke: bool, workdir: Path, big: bool = True, order: str = "abba") -> list[common.Figure]:
    if not model.TRAIN.exists():
        return [common.not_measured(BENCH, "1M rows × 20 columns", f"{model.TRAIN} does not exist yet", "≤ 1.15× bare script")]
    workdir.mkdir(parents=True, exist_ok=True)
    n_rows = 5_000 if smoke else 1_000_000
    order = "ours-first" if smoke else order
    ours, bare, _ = measure_pair(n_rows, workdir, timeout=3600, order=order)
    label = f"{n_rows:,} rows × {len(data.FEATURES) + 1} columns"
    r = common.ratio(ours.wall_s, bare.wall_s)
    nodes = node_seconds(ours.output, ours.wall_s / (2 if order == "abba" else 1))  # last run of ours
    common.save_json(workdir / f"train-{n_rows}" / "breakdown.json",
                     {"ours_nodes_s": nodes, "bare_steps": re.findall(r"bare step .*", bare.output)})
    top = ", ".join(f"{k} {v:.0f} s" for k, v in list(nodes.items())[:4])
    figures = [
        common.Figure(BENCH, f"{label}: wall time", ours.wall_s, "s", bare.wall_s, "bare scikit-learn script", r,
                      "≤ 1.15× bare script", r is not None and r <= 1.15,
                      f"order {order}{' (sums of both runs of each side)' if order == 'abba' else ''}; CPU time ours {ours.cpu_s:.0f} s vs bare {bare.cpu_s:.0f} s "
                      f"(ratio {common.ratio(ours.cpu_s, bare.cpu_s) or 0:.2f}×); largest Kedro nodes: {top}"),
        common.Figure(BENCH, f"{label}: peak memory", ours.peak_rss_mib, "MiB", bare.peak_rss_mib,
                      "bare scikit-learn script", common.ratio(ours.peak_rss_mib, bare.peak_rss_mib), "", None,
                      f"largest single process (kernel max RSS): ours {ours.max_rss_mib:.0f} MiB, bare {bare.max_rss_mib:.0f} MiB"),
    ]
    if not smoke and not big:
        figures.append(common.not_measured(BENCH, "10,000,000 rows × 20 columns: peak memory",
                                           "skipped in this run (--skip-10m); a full `make bench` runs it"))
    if not smoke and big:
        big_ours, big_bare, _ = measure_pair(10_000_000, workdir, timeout=7200)
        figures.append(common.Figure(
            BENCH, "10,000,000 rows × 20 columns: peak memory", big_ours.peak_rss_mib, "MiB", big_bare.peak_rss_mib,
            "bare scikit-learn script", common.ratio(big_ours.peak_rss_mib, big_bare.peak_rss_mib), "", None,
            f"memory point only; wall time ours {big_ours.wall_s:.0f} s, bare {big_bare.wall_s:.0f} s"))
    return figures
