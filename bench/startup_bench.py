"""startup: what every job pays before its data — the `validate` Processing job on one uploaded 1,000-row file
against a bare pandas script reading the same file, and the imports of the `train`, `validate` and `serve`
commands against `import pandas`.

Each child runs through bench/startup_probe.py (standard library only until the job starts): `validate` exactly
as its console script calls it, with an audit hook that notes the wall-clock time of the first `open` of the
data file. Ours and bare alternate (ours first on even rounds, bare first on odd ones), medians reported.
"""
from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

from bench import common, data, model

BENCH = "startup"
ROWS = 1_000
TRAIN_ROWS = 2_000  # the production model the file is validated against: its size does not matter here
VALIDATE = model.TRAIN.parent / "validate"
TARGET_S = 1.5
COMMANDS = ("train", "validate", "serve")


def _env(opt_ml: Path | None = None) -> dict[str, str]:
    # As in the image, whose packages are installed with their bytecode compiled: the warm-up run writes
    # the caches of anything the editable install has not compiled yet, the measured runs read them.
    env = common.child_env(**({"OPT_ML_ROOT": str(opt_ml)} if opt_ml else {}), TARGET_COLUMN=data.TARGET)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _production_model(workdir: Path) -> Path:
    """model.tar.gz of a model our `train` makes, as the validation job's `model` input receives it."""
    dataset = data.write(TRAIN_ROWS, workdir / "data" / f"train-{TRAIN_ROWS}.csv", seed=1)
    opt_ml = model.prepare_opt_ml(workdir / "train" / "opt_ml", dataset)
    m = common.run_measured(model.train_command(), env=_env(opt_ml), cwd=common.ROOT,
                            log=workdir / "train" / "train.log", timeout=900)
    if m.returncode != 0:
        raise RuntimeError(f"train exited {m.returncode}: {model.failure_reason(opt_ml)}")
    import tarfile

    archive = workdir / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # as SageMaker packs /opt/ml/model
        for path in sorted((opt_ml / "model").iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def _processing_layout(workdir: Path, new_file: Path, archive: Path) -> Path:
    opt_ml = workdir / "validate" / "opt_ml"
    if opt_ml.exists():
        shutil.rmtree(opt_ml)
    for name, source in (("data", new_file), ("model", archive)):
        (opt_ml / "processing" / "input" / name).mkdir(parents=True)
        shutil.copyfile(source, opt_ml / "processing" / "input" / name / source.name)
    (opt_ml / "processing" / "output" / "report").mkdir(parents=True)
    return opt_ml


def _read_run(command: str, data_file: Path, env: dict[str, str], log: Path) -> tuple[float, float, list[str]]:
    """(seconds from process start to the first read of data_file, wall seconds, heavy libraries loaded by then)."""
    mark = log.with_suffix(".mark.json")
    mark.unlink(missing_ok=True)
    started = time.time()  # the parent's clock just before the child is spawned: interpreter start-up included
    m = common.run_measured([common.PY, "-m", "bench.startup_probe", "read", str(mark), str(data_file), command],
                            env=env, cwd=common.ROOT, log=log, timeout=600)
    if m.returncode != 0:
        raise RuntimeError(f"{command} exited {m.returncode}: {m.output[-1500:]}")
    if not mark.exists():
        raise RuntimeError(f"{command} never opened {data_file}: {m.output[-1500:]}")
    seen = json.loads(mark.read_text())
    return seen["first_read"] - started, m.wall_s, seen["loaded"]


def _import_run(command: str, env: dict[str, str], log: Path) -> tuple[float, list[str]]:
    m = common.run_measured([common.PY, "-m", "bench.startup_probe", "import", command], env=env, cwd=common.ROOT,
                            log=log, timeout=300)
    if m.returncode != 0:
        raise RuntimeError(f"importing {command} exited {m.returncode}: {m.output[-1500:]}")
    last = [line for line in m.output.splitlines() if line.startswith('{"loaded"')][-1]
    return m.wall_s, json.loads(last)["loaded"]


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s over {len(values)} runs" if len(values) > 1 else "1 run"


def run(*, smoke: bool, workdir: Path) -> list[common.Figure]:
    if not model.TRAIN.exists() or not VALIDATE.exists():
        why = f"{model.TRAIN if not model.TRAIN.exists() else VALIDATE} does not exist yet"
        return [common.not_measured(BENCH, f"validate, {ROWS:,} rows: start-up to first row read", why,
                                    f"≤ {TARGET_S} s")]
    workdir.mkdir(parents=True, exist_ok=True)
    rounds = 1 if smoke else 7
    new_file = data.write(ROWS, workdir / "data" / f"new-{ROWS}.csv", seed=3)
    opt_ml = _processing_layout(workdir, new_file, _production_model(workdir))
    watched = opt_ml / "processing" / "input" / "data" / new_file.name
    env = _env(opt_ml)
    logs = workdir / "logs"

    sides = {"ours": "validate", "bare": "bare"}
    for side, command in sides.items():  # warm-up: bytecode caches, the page cache
        _read_run(command, watched, env, logs / f"warm-{side}.log")
    reads: dict[str, list[tuple[float, float, list[str]]]] = {"ours": [], "bare": []}
    for i in range(rounds):
        for side in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
            reads[side].append(_read_run(sides[side], watched, env, logs / f"{side}-{i}.log"))
    report = json.loads((opt_ml / "processing" / "output" / "report" / "report.json").read_text())
    if not report.get("passed"):
        raise RuntimeError(f"validation did not pass the generated file: {report.get('summary')}")

    first = {side: [r[0] for r in runs] for side, runs in reads.items()}
    wall = {side: [r[1] for r in runs] for side, runs in reads.items()}
    ours_first, bare_first = statistics.median(first["ours"]), statistics.median(first["bare"])
    ours_wall, bare_wall = statistics.median(wall["ours"]), statistics.median(wall["bare"])
    loaded_at_read = reads["ours"][-1][2]
    label = f"validate, {ROWS:,} rows"
    figures = [
        common.Figure(BENCH, f"{label}: start-up to first row read", ours_first, "s", bare_first,
                      "bare script (python, import pandas, read_csv)", common.ratio(ours_first, bare_first),
                      f"≤ {TARGET_S} s", ours_first <= TARGET_S,
                      f"median, {_spread(first['ours'])}; libraries imported by then: {', '.join(loaded_at_read)}"),
        common.Figure(BENCH, f"{label}: wall time", ours_wall, "s", bare_wall,
                      "bare script (python, import pandas, read_csv)", common.ratio(ours_wall, bare_wall), "", None,
                      f"median, {_spread(wall['ours'])}; after the first read ours takes "
                      f"{ours_wall - ours_first:.2f} s (Great Expectations import and suite, drift, report, exit), "
                      f"bare {bare_wall - bare_first:.2f} s"),
    ]

    imports: dict[str, list[float]] = {name: [] for name in (*COMMANDS, "bare")}
    loaded: dict[str, list[str]] = {}
    for name in imports:  # warm-up
        _import_run(name, env, logs / f"import-warm-{name}.log")
    for i in range(1 if smoke else 5):
        order = [*COMMANDS, "bare"] if i % 2 == 0 else ["bare", *reversed(COMMANDS)]
        for name in order:
            seconds, loaded[name] = _import_run(name, env, logs / f"import-{name}-{i}.log")
            imports[name].append(seconds)
    bare_import = statistics.median(imports["bare"])
    for name in COMMANDS:
        value = statistics.median(imports[name])
        figures.append(common.Figure(
            BENCH, f"`{name}` imports", value, "s", bare_import, "python -c 'import pandas'",
            common.ratio(value, bare_import), "", None,
            f"median, {_spread(imports[name])}; process start to exit, after importing what `{name}` loads before "
            f"its data; heavy libraries: {', '.join(loaded[name]) or 'none'}"))
    return figures
