"""The MLflow UI in a real headless browser (Debian's Chromium, `chromium --headless`): the experiment's runs table
lists every run of the loop's training jobs, under the job's name, with its test metrics exactly as the tracking
server holds them. The page is kept as a screenshot: test-artifacts/mlflow-ui.png.

The runs table shows only the columns a view selects (by default no metric at all). The test selects the test
metrics with a shared view, the UI's own "share" link: an experiment tag `mlflow.sharedViewState.<key>` holding
the view, opened with `?viewStateShareKey=<key>`. The tag is removed again afterwards.

Without Chromium the test skips, unless CI=true: then it fails (.ci/run installs Chromium).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import warnings
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_e2e_mlflow import _judged, mlflow_client  # noqa: F401  (a fixture; tests/local is on sys.path)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-artifacts" / "mlflow-ui.png"
VIEW_KEY = "e2e-test-metrics"
WIDTH = 1920  # px: the five (or three) test metric columns fit beside the app's side panels
ROW_HEIGHT = 32  # px, a row of the runs table


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; asked for before the stack, so that a machine without it skips without starting one."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but `chromium` is not on PATH: the MLflow UI would not be checked in a real browser "
                    "(.ci/run installs it: apt-get install chromium)")
    pytest.skip("`chromium` is not installed (Debian: apt-get install chromium): the MLflow UI is not checked")


def _render(browser: str, url: str, screenshot: Path, profile: Path, height: int, budget_ms: int) -> str:
    """The page's DOM once the app has rendered (`budget_ms` of virtual time: timers run as fast as the page
    lets them, and network fetches in flight hold the clock), and its screenshot, from one headless Chromium."""
    shutil.rmtree(profile, ignore_errors=True)
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
               f"--virtual-time-budget={budget_ms}", f"--screenshot={screenshot}", "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120 + budget_ms / 1000)
    assert done.returncode == 0, f"chromium exited with {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


class _RunsTable(HTMLParser):
    """The runs table (ag-grid) of a DOM dump: per row (its row-id is the run's id), each cell's text by column
    id, and the row's links (href → text). The table's pinned and scrolled parts are one row each: merged."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__()
        self.cells: dict[str, dict[str, str]] = {}
        self.links: dict[str, dict[str, str]] = {}
        self._open: list[tuple[str, str | None, str | None, str | None]] = []  # tag, row, column, href

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        a = dict(attrs)
        self._open.append((tag, a.get("row-id"), a.get("col-id") if a.get("role") == "gridcell" else None,
                           a.get("href") if tag == "a" else None))

    def handle_endtag(self, tag):
        while self._open and self._open.pop()[0] != tag:
            pass

    def handle_data(self, data):
        row = next((r for _, r, _, _ in reversed(self._open) if r), None)
        if row is None:
            return
        column = next((c for _, _, c, _ in reversed(self._open) if c), None)
        href = next((h for _, _, _, h in reversed(self._open) if h), None)
        if column:
            cells = self.cells.setdefault(row, {})
            cells[column] = cells.get(column, "") + data
        if href:
            links = self.links.setdefault(row, {})
            links[href] = links.get(href, "") + data


def _js_number(value: float) -> str:
    """JavaScript's String(value), as the runs table prints a metric: the shortest digits that read back as the
    same double (Python's repr too), without ".0", and in exponent form only below 1e-6 or from 1e21."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    if -7 < int(exponent) < 21:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if int(exponent) > 0 else '-'}{abs(int(exponent))}"


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_js_number_is_javascripts_string_of_a_double():
    for value, text in ((0.8123, "0.8123"), (1.0, "1"), (0.0, "0"), (-0.0, "0"), (1200.0, "1200"),
                        (0.1 + 0.2, "0.30000000000000004"), (1.5e-5, "0.000015"), (1.5e-7, "1.5e-7"),
                        (2.5e21, "2.5e+21"), (123.456, "123.456")):
        assert _js_number(value) == text, value


def test_the_mlflow_ui_lists_every_run_with_its_test_metrics(chromium, stack, mlflow_client, tmp_path):  # noqa: F811
    uri = stack.output("MlflowTrackingUri")
    experiment = mlflow_client.get_experiment_by_name(stack.env["TRACKING_EXPERIMENT"])
    assert experiment is not None
    runs = mlflow_client.search_runs([experiment.experiment_id], max_results=1000)
    jobs = {run.data.tags["training_job"] for run in runs}
    judged = _judged(stack)
    assert len(judged) >= 2 and set(judged) <= jobs, (sorted(judged), sorted(jobs))
    metrics = sorted({name for run in runs for name in run.data.metrics if name.startswith("test_")})
    assert metrics and all(any(m in run.data.metrics for m in metrics) for run in runs), metrics

    tag = f"mlflow.sharedViewState.{VIEW_KEY}"
    view = {"selectedColumns": [f"metrics.`{m}`" for m in metrics]}  # the run's name is always shown
    url = f"{uri}/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey={VIEW_KEY}"
    height = max(1000, 480 + ROW_HEIGHT * len(runs))  # every row inside the window: the table renders no other
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    mlflow_client.set_experiment_tag(experiment.experiment_id, tag, json.dumps(view))
    try:
        # A second, longer look only when the first found a run missing from the table (reported below).
        for attempt, budget_ms in enumerate((20_000, 60_000), start=1):
            dom = _render(chromium, url, SCREENSHOT, tmp_path / "chromium-profile", height, budget_ms)
            (tmp_path / f"mlflow-ui-{attempt}.html").write_text(dom)
            table = _RunsTable()
            table.feed(dom)
            if all(run.info.run_id in table.cells for run in runs):
                break
    finally:
        mlflow_client.delete_experiment_tag(experiment.experiment_id, tag)

    where = f"(DOM: {tmp_path}/mlflow-ui-{attempt}.html, screenshot: {SCREENSHOT})"
    assert f">{len(runs)}</strong> matching run" in dom, f"the table does not count {len(runs)} runs {where}"
    for run in runs:
        run_id, name = run.info.run_id, run.info.run_name
        assert name == run.data.tags["training_job"]
        assert run_id in table.cells, f"run {name} ({run_id}) is not in the runs table {where}"
        cells = table.cells[run_id]
        # The name links to the run's own page.
        assert table.links.get(run_id, {}).get(f"#/experiments/{experiment.experiment_id}/runs/{run_id}") == name, (
            f"{name}: {table.links.get(run_id)} {where}")
        for metric in metrics:
            if metric in run.data.metrics:
                shown = cells.get(f"metrics.`{metric}`")
                assert shown == _js_number(run.data.metrics[metric]), (
                    f"{name}: {metric} shows {shown!r}, the server holds {run.data.metrics[metric]!r} {where}")
    if attempt > 1:
        warnings.warn(f"the MLflow runs table was complete only on look {attempt} (virtual time {budget_ms} ms)",
                      stacklevel=1)

    assert _png_size(SCREENSHOT) == (WIDTH, height)
    # A blank or error page compresses to a few KB; the table with its rows and the app's frame does not.
    assert SCREENSHOT.stat().st_size > 40_000, SCREENSHOT.stat().st_size
