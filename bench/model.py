"""The model every serving benchmark uses: produced by OUR `train` entrypoint on generated data.

`train` runs exactly as SageMaker runs it (the /opt/ml contract under a temporary OPT_ML_ROOT): data in
`input/data/train/`, hyperparameters in `input/config/hyperparameters.json`, model out in `model/`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from bench import common, data

# The image's console scripts, as installed in this virtualenv (`make install`).
TRAIN = Path(sys.executable).parent / "train"
SERVE = Path(sys.executable).parent / "serve"


# The models the serving benchmarks serve: the generated binary data (50,000 rows) and scikit-learn's wine data
# (178 rows, 3 classes). Early stopping off, so that both have max_iter = 200 iterations (conf/base) whatever the
# data: the per-row cost of a model grows with its trees.
WINE_TARGET = "cultivar"


def hyperparameters(seed: int = 42, target: str = data.TARGET, all_iterations: bool = True) -> dict[str, str]:
    """`all_iterations=False`: conf/base's estimator settings unchanged (early stopping "auto"), as the bare
    training script reads them."""
    chosen = {"target_column": target, "task": "classification", "tuning_iterations": "0", "cv_folds": "3",
              "seed": str(seed)}
    return {**chosen, "early_stopping": "false"} if all_iterations else chosen


def write_wine(path: Path) -> Path:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.rename(columns={"target": WINE_TARGET})
    frame[WINE_TARGET] = frame[WINE_TARGET].map(lambda k: f"class_{k}")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def prepare_opt_ml(root: Path, dataset: Path, seed: int = 42, target_column: str = data.TARGET,
                   all_iterations: bool = True) -> Path:
    """An /opt/ml layout with one training channel holding `dataset` (hard-linked when possible)."""
    if root.exists():
        shutil.rmtree(root)
    channel = root / "input" / "data" / "train"
    channel.mkdir(parents=True)
    (root / "input" / "config").mkdir(parents=True)
    (root / "model").mkdir()
    (root / "output").mkdir()
    target = channel / dataset.name
    try:
        os.link(dataset, target)
    except OSError:
        shutil.copy(dataset, target)
    (root / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps(hyperparameters(seed, target_column, all_iterations)))
    (root / "input" / "config" / "inputdataconfig.json").write_text(
        json.dumps({"train": {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}}))
    (root / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    return root


def entrypoint(path: Path) -> list[str]:
    """How to run one of the container's executables from the repo with the venv's interpreter."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist yet (the container issue has not landed)")
    first = path.read_text(errors="ignore").split("\n", 1)[0]
    return [common.PY, str(path)] if "python" in first or not first.startswith("#!") else [str(path)]


def train_command() -> list[str]:
    return entrypoint(TRAIN)


def failure_reason(opt_ml: Path) -> str:
    failure = opt_ml / "output" / "failure"
    return failure.read_text()[:2000] if failure.exists() else "no output/failure written"


def ensure(n_rows: int, workdir: Path, override: Path | None = None, kind: str = "binary") -> Path:
    """Return an OPT_ML_ROOT whose model/ holds a model from our `train` (cached per kind and size).

    kind "binary": the generated data, n_rows rows; "multiclass": scikit-learn's wine data (n_rows ignored).
    """
    if override is not None:
        return override
    opt_ml = workdir / (f"serve-model-{n_rows}" if kind == "binary" else f"serve-model-{kind}") / "opt_ml"
    trained = opt_ml / "model" / "model.joblib"
    sources = [p.stat().st_mtime for p in (common.ROOT / "kedro_project").rglob("*") if p.suffix in (".py", ".yml")]
    sources.append(Path(__file__).stat().st_mtime)
    if trained.exists() and trained.stat().st_mtime > max(sources, default=0):
        return opt_ml  # still what today's `train` would produce
    if kind == "binary":
        prepare_opt_ml(opt_ml, data.write(n_rows, workdir / "data" / f"train-{n_rows}.csv", seed=11))
    elif kind == "multiclass":
        prepare_opt_ml(opt_ml, write_wine(workdir / "data" / "wine.csv"), target_column=WINE_TARGET)
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    run = common.run_measured(train_command(), env=common.child_env(OPT_ML_ROOT=str(opt_ml)),
                              cwd=common.ROOT, log=opt_ml.parent / "train.log", timeout=1800)
    if run.returncode != 0 or not (opt_ml / "model" / "model.joblib").exists():
        raise RuntimeError(f"train exited {run.returncode}: {failure_reason(opt_ml)}; log {opt_ml.parent / 'train.log'}")
    return opt_ml


def features(opt_ml: Path) -> list[str]:
    meta = json.loads((opt_ml / "model" / "metadata.json").read_text())
    return [f["name"] for f in meta["features"]]
