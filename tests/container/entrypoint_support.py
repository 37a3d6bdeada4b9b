"""Helpers for the entrypoint contract tests: the /opt/ml layout, processes, a model directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The image's commands are kedro_project's console scripts ([project.scripts]); the image installs the package, and
# so does `make install` into this virtualenv: the same commands, run here as processes.
COMMANDS = Path(sys.executable).parent
TARGET = "churn"


def process_env(opt_ml: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OPT_ML_ROOT": str(opt_ml), "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1",
                **extra})
    return env


def run(command: str, opt_ml: Path, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    """Run the image command `command` as SageMaker would (as a process), /opt/ml rooted at `opt_ml`."""
    return subprocess.run([str(COMMANDS / command)], env=process_env(opt_ml, **extra), capture_output=True,
                          text=True, timeout=timeout)


def training_layout(root: Path, files: dict[str, bytes | Path], hyperparameters: dict[str, str] | None) -> Path:
    opt_ml = root / "opt_ml"
    train = opt_ml / "input" / "data" / "train"
    train.mkdir(parents=True)
    (opt_ml / "input" / "config").mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, Path):
            shutil.copyfile(content, train / name)
        else:
            (train / name).write_bytes(content)
    if hyperparameters is not None:
        (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    return opt_ml


def processing_layout(root: Path, inputs: dict[str, dict[str, bytes | Path]]) -> Path:
    """/opt/ml/processing/input/<name>/<file> for each input; the report output directory exists."""
    opt_ml = root / "opt_ml"
    for name, files in inputs.items():
        directory = opt_ml / "processing" / "input" / name
        directory.mkdir(parents=True)
        for file_name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, directory / file_name)
            else:
                (directory / file_name).write_bytes(content)
    (opt_ml / "processing" / "output" / "report").mkdir(parents=True)
    return opt_ml


def model_tarball(model_dir: Path, out: Path) -> Path:
    """model.tar.gz as SageMaker packs /opt/ml/model (the embedded stack's packing, local/channels.py)."""
    from local.channels import tar_directory

    return tar_directory(model_dir, out)


def write_model_dir(directory: Path, frame, target: str = TARGET, task: str = "auto", max_iter: int = 40,
                    compiled: bool = True) -> Path:
    """A model directory built in-process with the project's nodes (faster than a `train` process).

    `compiled`: with the trees compiled for serving (forest/), as `train` writes them.
    """
    import joblib

    from ml_pipeline.jsonutil import to_jsonable
    from ml_pipeline.serving.forest import CompiledForestDataset
    from ml_pipeline.pipelines.data_processing import nodes as processing
    from ml_pipeline.pipelines.evaluation import nodes as evaluation
    from ml_pipeline.pipelines.training import nodes as training

    cleaned, _ = processing.clean_data(frame, target)
    schema = processing.infer_schema(cleaned, target, task)
    model_input = processing.prepare_model_input(cleaned, schema)
    train, test, validation = processing.split_data(model_input, {"train": 0.7, "test": 0.2, "validation": 0.1}, 1)
    model, summary = training.train_model(train, schema, {"tuning_iterations": 0, "max_categories": 32,
                                                          "estimator": {"max_iter": max_iter}}, 1)
    metrics = evaluation.evaluate_model(model, test, validation, schema)
    profile = processing.build_reference_profile(model_input, schema, {"bins": 10, "quantiles": 101,
                                                                       "max_categories": 200})
    suite = processing.build_expectation_suite(cleaned, schema, {})
    metadata = evaluation.assemble_metadata(schema, metrics, profile, suite, [], summary,
                                            {"inputs": [], "training_job": None, "image": None, "hyperparameters": {}})
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / "model.joblib")
    (directory / "metadata.json").write_text(json.dumps(to_jsonable(metadata)))
    if compiled:
        CompiledForestDataset(str(directory / "forest")).save(training.compile_model(model))
    return directory
