"""Start-up of the `validate` job: it opens its data file before it imports Great Expectations, a validation never
imports the libraries of other jobs (plotting, SHAP, MLflow, scikit-learn), and once done the job freezes its heap.
The job runs as SageMaker runs it, in a fresh interpreter, with an audit hook noting the modules loaded when the
data file is first opened. Nothing here is timed: bench/startup_bench.py measures the seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from entrypoint_support import TARGET, model_tarball, process_env, processing_layout, write_model_dir
from ml_pipeline import entrypoints, pipeline_registry, sample_data

PROBE = """
import gc, json, os, sys
data, out = os.path.realpath(sys.argv[1]), sys.argv[2]
state = {}

def hook(event, args):
    if "first_read" in state or event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    if os.path.realpath(os.fsdecode(args[0])) == data:
        state["first_read"] = sorted(sys.modules)

sys.addaudithook(hook)
from ml_pipeline.entrypoints import validate
code = validate()
state["exit"] = sorted(sys.modules)
state["frozen"] = gc.get_freeze_count()
with open(out, "w") as handle:
    json.dump(state, handle)
sys.exit(code)
"""
OTHER_JOBS = {"matplotlib", "shap", "mlflow", "sklearn"}


def _packages(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.fixture(scope="module")
def production_tarball(tmp_path_factory):
    root = tmp_path_factory.mktemp("production")
    model_dir = write_model_dir(root / "model", sample_data.generate(400, seed=5), compiled=False)
    return model_tarball(model_dir, root / "model.tar.gz")


@pytest.mark.parametrize("with_model", [True, False], ids=["against-production-model", "first-run"])
def test_validate_reads_its_file_before_importing_great_expectations(tmp_path, production_tarball, with_model):
    inputs = {"data": {"new.csv": sample_data.generate(300, seed=8).to_csv(index=False).encode()}}
    if with_model:
        inputs["model"] = {"model.tar.gz": production_tarball}
    opt_ml = processing_layout(tmp_path, inputs)
    data = opt_ml / "processing" / "input" / "data" / "new.csv"
    out = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", PROBE, str(data), str(out)],
                            env=process_env(opt_ml, TARGET_COLUMN=TARGET, TASK="auto"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((opt_ml / "processing" / "output" / "report" / "report.json").read_text())
    assert report["passed"] is True and report["reference"] == ("production-model" if with_model else "self")
    state = json.loads(out.read_text())
    at_read = _packages(state["first_read"])
    assert "pandas" in at_read  # the read itself
    assert not at_read & {"great_expectations", "scipy", *OTHER_JOBS}, sorted(at_read)
    others = {f"ml_pipeline.pipelines.{name}" for name in pipeline_registry.PIPELINES if name != "data_validation"}
    assert not others & set(state["first_read"])
    at_exit = _packages(state["exit"])
    assert "great_expectations" in at_exit  # the suite did run, after the read
    assert not at_exit & OTHER_JOBS, sorted(at_exit & OTHER_JOBS)
    # The job froze its heap once done, so that shutdown skips collecting it (entrypoints._job).
    assert state["frozen"] > 0


def test_the_job_names_its_pipelines_to_the_registry_during_its_session(monkeypatch):
    """_run_kedro sets ML_PIPELINE_PIPELINES while the session runs and restores the caller's value after."""
    import kedro.framework.project
    import kedro.framework.session

    seen = []

    class Session:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def run(self, pipeline_names):
            seen.append((pipeline_names, os.environ.get(pipeline_registry.PIPELINES_VARIABLE)))

    monkeypatch.setattr(kedro.framework.project, "configure_project", lambda name: None)
    monkeypatch.setattr(kedro.framework.session.KedroSession, "create", classmethod(lambda cls, **kw: Session()))
    monkeypatch.setenv(pipeline_registry.PIPELINES_VARIABLE, "monitoring")
    for job in ("train", "validate"):
        entrypoints._run_kedro(list(entrypoints.JOB_PIPELINES[job]), {})
    assert seen == [(["data_processing", "training", "evaluation"], "data_processing,training,evaluation"),
                    (["data_validation"], "data_validation")]
    assert os.environ[pipeline_registry.PIPELINES_VARIABLE] == "monitoring"
