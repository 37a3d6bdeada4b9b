"""tests/container: a loud banner when the real-image (`docker`) tests did not run."""

from __future__ import annotations

import pytest


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
