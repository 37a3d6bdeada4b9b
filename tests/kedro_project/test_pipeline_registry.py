"""Per-job pipeline registration: a job's session registers the pipelines it runs and nothing else, so it imports
only their nodes and libraries; with nothing narrowing it, `kedro run` / `kedro registry list` see all six.

Imports are checked in fresh interpreters (this process has imported everything already)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.project import configure_project

from ml_pipeline import pipeline_registry
from ml_pipeline.entrypoints import JOB_PIPELINES

PROJECT = Path(pipeline_registry.__file__).resolve().parents[2]
# Never needed to build a pipeline: plotting, Great Expectations, SHAP and MLflow are imported by the code that
# uses them, when it runs.
NEVER_AT_REGISTRATION = {"matplotlib", "great_expectations", "shap", "mlflow"}
# The processing jobs fit nothing: scikit-learn and scipy wait until a model is unpickled or drift is measured.
PROCESSING_JOBS = ("validate", "monitor", "join-labels")
REGISTER = """
import json, sys
from kedro.framework.project import configure_project, pipelines
configure_project("ml_pipeline")
registered = sorted(pipelines.keys())
print(json.dumps({"registered": registered, "modules": sorted(sys.modules)}))
"""


def _register_in_fresh_interpreter(variable: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != pipeline_registry.PIPELINES_VARIABLE}
    env["KEDRO_DISABLE_TELEMETRY"] = "true"
    if variable is not None:
        env[pipeline_registry.PIPELINES_VARIABLE] = variable
    result = subprocess.run([sys.executable, "-c", REGISTER], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _top_level(modules: list[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def _node_modules(modules: list[str]) -> set[str]:
    prefix = "ml_pipeline.pipelines."
    return {name[len(prefix):].split(".")[0] for name in modules if name.startswith(prefix) and name.endswith(".nodes")}


@pytest.mark.parametrize("job", sorted(JOB_PIPELINES))
def test_a_job_registers_and_imports_only_the_pipelines_it_runs(job):
    runs = JOB_PIPELINES[job]
    found = _register_in_fresh_interpreter(",".join(runs))
    expected = set(runs) | ({pipeline_registry.DEFAULT} if set(runs) == set(pipeline_registry.TRAINING_RUN) else set())
    assert set(found["registered"]) == expected
    assert _node_modules(found["modules"]) == set(runs)
    forbidden = NEVER_AT_REGISTRATION | ({"scipy", "sklearn"} if job in PROCESSING_JOBS else set())
    assert not _top_level(found["modules"]) & forbidden, sorted(_top_level(found["modules"]) & forbidden)


def test_without_a_request_every_pipeline_is_registered_and_default_is_the_training_run():
    found = _register_in_fresh_interpreter(None)
    assert set(found["registered"]) == {*pipeline_registry.PIPELINES, pipeline_registry.DEFAULT}
    assert _node_modules(found["modules"]) == set(pipeline_registry.PIPELINES)
    # Building all six still imports no plotting, Great Expectations, SHAP or MLflow.
    assert not _top_level(found["modules"]) & NEVER_AT_REGISTRATION


def test_default_is_processing_training_evaluation(monkeypatch):
    monkeypatch.delenv(pipeline_registry.PIPELINES_VARIABLE, raising=False)
    configure_project("ml_pipeline")
    registered = pipeline_registry.register_pipelines()
    training_run = [registered[name] for name in pipeline_registry.TRAINING_RUN]
    expected = {node.name for pipeline in training_run for node in pipeline.nodes}
    assert {node.name for node in registered[pipeline_registry.DEFAULT].nodes} == expected


def test_every_pipeline_is_run_by_exactly_one_job():
    names = [name for runs in JOB_PIPELINES.values() for name in runs]
    assert sorted(names) == sorted(pipeline_registry.PIPELINES)
    assert tuple(JOB_PIPELINES["train"]) == pipeline_registry.TRAINING_RUN


@pytest.mark.parametrize(("value", "expected"), [
    ("", None), (" , ", None), ("data_validation", ["data_validation"]),
    ("data_processing, training,evaluation", ["data_processing", "training", "evaluation"]),
])
def test_the_variable_names_the_pipelines(value, expected):
    assert pipeline_registry.requested({pipeline_registry.PIPELINES_VARIABLE: value}) == expected
    assert pipeline_registry.requested({}) is None


def test_an_unknown_pipeline_in_the_variable_is_refused():
    with pytest.raises(ValueError, match=r"unknown pipelines \['validation'\]"):
        pipeline_registry.requested({pipeline_registry.PIPELINES_VARIABLE: "data_processing,validation"})


def test_kedro_registry_list_shows_every_pipeline():
    env = {k: v for k, v in os.environ.items() if k != pipeline_registry.PIPELINES_VARIABLE}
    env["KEDRO_DISABLE_TELEMETRY"] = "true"
    result = subprocess.run([str(Path(sys.executable).parent / "kedro"), "registry", "list"], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = {line.strip()[2:] for line in result.stdout.splitlines() if line.strip().startswith("- ")}
    assert listed == {*pipeline_registry.PIPELINES, pipeline_registry.DEFAULT}
