"""train: our `train` entrypoint (the Kedro pipelines) vs a bare scikit-learn script, same data, same steps.

Wall time and peak memory of each child process. Data: generated, 1M rows × 20 columns (CSV); one more
point at 10M rows for memory only (full runs only; see bench/README.md for how long it takes).

Memory per million rows: the peak minus the peak of the same program on 5,000 rows (its start-up, imports and
compiled trees: what does not grow with the data), over the millions of rows. Set against the feature matrix as
float32 numbers + one-byte category codes (bench/data.py: 14 × 4 + 5 × 1 = 61 bytes a row), the smallest form
the data could take in memory.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from bench import common, data, model

BENCH = "train"
WALL_TARGET = 1.05  # × the bare script at 1M rows
MEMORY_TARGET_GIB = 0.4  # peak memory per million rows × 20 columns, above the fixed start-up footprint
MATRIX_TARGET = 3.0  # × the float32 + category-code feature matrix
FIXED_ROWS = 5_000


def matrix_mib(n_rows: int) -> float:
    """The feature matrix as float32 numbers + one-byte category codes (the target column not counted)."""
    return n_rows * (4 * len(data.NUMERIC) + len(data.CATEGORICAL)) / 2**20


def fixed_footprint(workdir: Path, timeout: float) -> tuple[common.Measured, common.Measured]:
    """Ours and the bare script on FIXED_ROWS rows: the memory that does not grow with the data."""
    ours, bare, _ = measure_pair(FIXED_ROWS, workdir, timeout=timeout, order="ours-first")
    return ours, bare


def per_million(peak_mib: float, fixed_mib: float, n_rows: int, fixed_rows: int = FIXED_ROWS) -> float:
    """GiB per million rows: the growth of the peak from `fixed_rows` to `n_rows` rows."""
    return (peak_mib - fixed_mib) / 1024 / ((n_rows - fixed_rows) / 1e6)


def memory_figures(label: str, n_rows: int, ours: common.Measured, bare: common.Measured,
                   fixed: tuple[common.Measured, common.Measured], fixed_rows: int = FIXED_ROWS) -> list[common.Figure]:
    """Peak memory per million rows (growth of the peak from `fixed_rows` rows) and that growth over the float32 +
    codes feature matrix of the added rows, ours and bare."""
    ours_gib = per_million(ours.peak_rss_mib, fixed[0].peak_rss_mib, n_rows, fixed_rows)
    bare_gib = per_million(bare.peak_rss_mib, fixed[1].peak_rss_mib, n_rows, fixed_rows)
    matrix = matrix_mib(n_rows - fixed_rows)
    ours_ratio = (ours.peak_rss_mib - fixed[0].peak_rss_mib) / matrix
    bare_ratio = (bare.peak_rss_mib - fixed[1].peak_rss_mib) / matrix
    how = (f"(peak − peak on {fixed_rows:,} rows) / millions of rows added; peaks ours {ours.peak_rss_mib:.0f} − "
           f"{fixed[0].peak_rss_mib:.0f} MiB, bare {bare.peak_rss_mib:.0f} − {fixed[1].peak_rss_mib:.0f} MiB")
    if fixed_rows == FIXED_ROWS:
        how += ("; the small run's peak holds the compiler's processes (compile_model), which the big run's peak "
                "(in train_model) does not: this overstates what does not grow, the 10M point's slope is the cleaner one")
    return [
        common.Figure(BENCH, f"{label}: peak memory per million rows × 20 columns", round(ours_gib, 3), "GiB",
                      round(bare_gib, 3), "bare scikit-learn script", common.ratio(ours_gib, bare_gib),
                      f"≤ {MEMORY_TARGET_GIB} GiB", ours_gib <= MEMORY_TARGET_GIB, how),
        common.Figure(BENCH, f"{label}: peak memory growth / float32 + codes feature matrix", round(ours_ratio, 2),
                      "×", round(bare_ratio, 2), "bare scikit-learn script", common.ratio(ours_ratio, bare_ratio),
                      f"≤ {MATRIX_TARGET:.0f}×", ours_ratio <= MATRIX_TARGET,
                      f"matrix of the added rows {matrix:.0f} MiB ({4 * len(data.NUMERIC) + len(data.CATEGORICAL)} bytes "
                      f"a row: {len(data.NUMERIC)} float32 + {len(data.CATEGORICAL)} one-byte codes)"),
    ]


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
            # The bare script's estimator settings (conf/base, early stopping "auto"): the same model, the same work.
            model.prepare_opt_ml(opt_ml, dataset, all_iterations=False)
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


def test_metrics(log: str) -> str:
    """The test metrics a run printed last ("test:roc_auc=0.818662" lines: both programs print them)."""
    found = dict(re.findall(r"^test:(\w+)=([0-9.]+)", log, re.M))
    return ", ".join(f"{k} {float(v):.6f}" for k, v in sorted(found.items())) or "not printed"


def run(*, smoke: bool, workdir: Path, big: bool = True, order: str = "abba") -> list[common.Figure]:
    if not model.TRAIN.exists():
        return [common.not_measured(BENCH, "1M rows × 20 columns", f"{model.TRAIN} does not exist yet",
                                    f"≤ {WALL_TARGET}× bare script")]
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
                      f"≤ {WALL_TARGET}× bare script", r is not None and r <= WALL_TARGET,
                      f"order {order}{' (sums of both runs of each side)' if order == 'abba' else ''}; CPU time ours {ours.cpu_s:.0f} s vs bare {bare.cpu_s:.0f} s "
                      f"(ratio {common.ratio(ours.cpu_s, bare.cpu_s) or 0:.2f}×); largest Kedro nodes: {top}"),
        common.Figure(BENCH, f"{label}: peak memory", ours.peak_rss_mib, "MiB", bare.peak_rss_mib,
                      "bare scikit-learn script", common.ratio(ours.peak_rss_mib, bare.peak_rss_mib), "", None,
                      f"largest single process (kernel max RSS): ours {ours.max_rss_mib:.0f} MiB, bare {bare.max_rss_mib:.0f} MiB; "
                      f"test metrics (same rows) ours {test_metrics(ours.output)}, bare {test_metrics(bare.output)}"),
    ]
    if not smoke:  # the smoke's 5,000 rows are the footprint these are measured above
        fixed = fixed_footprint(workdir, timeout=600)
        figures += memory_figures(label, n_rows, ours, bare, fixed)
    if not smoke and not big:
        figures.append(common.not_measured(BENCH, "10,000,000 rows × 20 columns: peak memory",
                                           "skipped in this run (--skip-10m); a full `make bench` runs it"))
    if not smoke and big:
        big_ours, big_bare, _ = measure_pair(10_000_000, workdir, timeout=7200)
        figures.append(common.Figure(
            BENCH, "10,000,000 rows × 20 columns: peak memory", big_ours.peak_rss_mib, "MiB", big_bare.peak_rss_mib,
            "bare scikit-learn script", common.ratio(big_ours.peak_rss_mib, big_bare.peak_rss_mib), "", None,
            f"memory point only; wall time ours {big_ours.wall_s:.0f} s, bare {big_bare.wall_s:.0f} s"))
        figures += memory_figures("10,000,000 rows × 20 columns (slope from 1M)", 10_000_000, big_ours, big_bare,
                                  (ours, bare), fixed_rows=n_rows)
    return figures
