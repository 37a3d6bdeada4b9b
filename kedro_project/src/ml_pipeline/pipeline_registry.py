"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

TRAINING_RUN = ("data_processing", "training", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    """The six pipelines; `__default__` (plain `kedro run`) is the training run: processing → training → evaluation."""
    pipelines = find_pipelines(raise_errors=True)
    if all(name in pipelines for name in TRAINING_RUN):
        pipelines["__default__"] = sum((pipelines[name] for name in TRAINING_RUN), Pipeline([]))
    return pipelines
