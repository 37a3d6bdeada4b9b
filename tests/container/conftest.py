"""tests/container: a served model for in-process tests of the app; a loud banner when the real-image
(`docker`) tests did not run."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory):
    """A small real model directory (churn classifier), trained once per session."""
    from entrypoint_support import write_model_dir
    from ml_pipeline import sample_data

    return write_model_dir(tmp_path_factory.mktemp("served") / "model", sample_data.generate(900, seed=71))


@pytest.fixture(scope="session")
def served_model(served_model_dir):
    from ml_pipeline.serving.predictor import CompiledModel

    return CompiledModel.load(served_model_dir)


@pytest.fixture(scope="session")
def task_model_dirs(tmp_path_factory):
    """One small model directory per task kind (model_support.KINDS), compiled trees included, trained once."""
    from entrypoint_support import write_model_dir
    from model_support import KINDS, frame_for

    return {kind: write_model_dir(tmp_path_factory.mktemp(kind) / "model", frame_for(kind, 900, seed=81), max_iter=60)
            for kind in KINDS}


@pytest.fixture(scope="session")
def task_models(task_model_dirs):
    from ml_pipeline.serving.predictor import CompiledModel

    return {kind: CompiledModel.load(directory) for kind, directory in task_model_dirs.items()}


@pytest.fixture()
def serving_app(served_model):
    """The serving module with the model loaded as a worker loads it; its state is restored afterwards."""
    from ml_pipeline.serving import app as serving

    saved = (serving.state.model, serving.state.error, serving.state.cores)
    serving.state.model, serving.state.error, serving.state.cores = served_model, None, None
    yield serving
    serving.state.model, serving.state.error, serving.state.cores = saved


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """A skipped `docker` test is easy to miss in `-ra` output: say it in a box after the summary."""
    # Outermost wrapper: everything after `yield` prints after pytest's own short test summary.
    result = yield
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "docker" in getattr(report, "keywords", {})
    ]
    if not skipped:
        return result
    reasons = sorted({_skip_reason(report) for report in skipped})
    terminalreporter.write_sep("!", "THE REAL CONTAINER IMAGE WAS NOT TESTED", red=True, bold=True)
    terminalreporter.write_line(
        f"{len(skipped)} test(s) marked 'docker' were SKIPPED, so nothing here shows that the image "
        "builds, trains, serves or validates.",
        red=True,
        bold=True,
    )
    for reason in reasons:
        terminalreporter.write_line(f"  reason: {reason}", red=True)
    terminalreporter.write_line(
        "To run them: bash scripts/docker_engine.sh && "
        'export MLOPS_IMAGE="$(bash scripts/build_image.sh)" && make test   '
        "(or bash .ci/run, where CI=true makes them fail instead of skip).",
        bold=True,
    )
    terminalreporter.write_sep("!", red=True, bold=True)
    return result


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
