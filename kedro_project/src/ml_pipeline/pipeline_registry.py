"""Project pipelines, registered per job.

Building a pipeline imports its nodes and every library they import, so a job registers only the pipelines it
runs: `validate` does not pay for the training run's libraries, nor `train` for validation's. The entry point
names its pipelines in ML_PIPELINE_PIPELINES before its session starts (entrypoints.py). Kedro's own request
(`kedro run --pipelines ...`, `KedroSession.run(pipeline_names=...)`) narrows the registration the same way and
wins over the variable; the variable keeps a job narrow whatever Kedro's version does with its request.
With neither (`kedro run`, `kedro registry list`) all six are registered, and `__default__` is the training run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

PIPELINES = ("data_processing", "training", "evaluation", "data_validation", "monitoring", "ground_truth")
TRAINING_RUN = ("data_processing", "training", "evaluation")
DEFAULT = "__default__"
PIPELINES_VARIABLE = "ML_PIPELINE_PIPELINES"


def requested(environ: Mapping[str, str]) -> list[str] | None:
    """The pipelines ML_PIPELINE_PIPELINES (comma list) asks for; None when unset or empty: all of them (as does
    `__default__` among them: Kedro's find_pipelines then loads every pipeline)."""
    names = [name.strip() for name in environ.get(PIPELINES_VARIABLE, "").split(",") if name.strip()]
    unknown = sorted(set(names) - {*PIPELINES, DEFAULT})
    if unknown:
        raise ValueError(f"{PIPELINES_VARIABLE} names unknown pipelines {unknown}; known: {', '.join(PIPELINES)}")
    return names or None


def register_pipelines() -> dict[str, Pipeline]:
    """The requested pipelines (all six when nothing narrows them); `__default__` (plain `kedro run`) is the
    training run processing → training → evaluation, registered whenever those three are."""
    pipelines = find_pipelines(raise_errors=True, pipelines_to_find=requested(os.environ))
    if all(name in pipelines for name in TRAINING_RUN):
        pipelines[DEFAULT] = sum((pipelines[name] for name in TRAINING_RUN), Pipeline([]))
    return pipelines
