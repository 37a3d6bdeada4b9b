"""Every benchmark runs (seconds-long smoke mode) and produces well-formed figures. Nothing here is timed."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALL = ["serve", "batch", "hostile", "explain", "mlflow", "train", "startup", "control", "loop", "toolchain"]
# What each benchmark needs before it can measure anything; until then it must say "not measured yet".
ENTRYPOINTS = Path(sys.executable).parent  # the image's console scripts in this virtualenv
PREREQUISITES = {
    "serve": [ENTRYPOINTS / "serve", ENTRYPOINTS / "train"],
    "batch": [ENTRYPOINTS / "serve", ENTRYPOINTS / "train"],
    "hostile": [ENTRYPOINTS / "serve", ENTRYPOINTS / "train"],
    "explain": [ENTRYPOINTS / "serve", ENTRYPOINTS / "train"],
    "mlflow": [ENTRYPOINTS / "serve", ENTRYPOINTS / "train", ENTRYPOINTS / "mlflow"],  # full mlflow: requirements-dev.txt
    "train": [ENTRYPOINTS / "train"],
    "startup": [ENTRYPOINTS / "train", ENTRYPOINTS / "validate"],
    "control": [ROOT / "bench" / "control_plane.py"],
    "loop": [ROOT / "local" / "__main__.py"],
    "toolchain": [ROOT / "app.py", ROOT / "cdk.json"],
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("bench")
    results = work / "results.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--workdir", str(work), "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert results.exists(), f"no results written:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return {"rc": proc.returncode, "out": proc.stdout + proc.stderr, "results": json.loads(results.read_text())}


def test_every_benchmark_ran_without_error(smoke: dict) -> None:
    benches = smoke["results"]["benchmarks"]
    assert sorted(benches) == sorted(ALL)
    errors = {name: b["error"] for name, b in benches.items() if b["error"]}
    assert not errors, f"{errors}\n{smoke['out'][-4000:]}"
    assert smoke["rc"] == 0


@pytest.mark.parametrize("name", ALL)
def test_figures_are_well_formed(smoke: dict, name: str) -> None:
    bench = smoke["results"]["benchmarks"][name]
    assert bench["smoke"] is True
    for key in ("date", "cores", "commit", "load"):
        assert bench["machine"][key] not in (None, "")
    figures = bench["figures"]
    assert figures, f"{name} produced no figures"
    ready = all(p.exists() for p in PREREQUISITES[name])
    for f in figures:
        assert f["bench"] == name and f["name"]
        note = f.get("note") or ""
        if f["value"] is None:
            # Only two honest reasons for a missing number: a prerequisite not built yet, or a skip by design.
            assert note.startswith("not measured yet") or "skipped in smoke mode" in note, f
            if note.startswith("not measured yet") and "does not exist" in note:
                assert not ready, f"{name}: its prerequisites exist, yet it reports {note!r}"
            continue
        assert isinstance(f["value"], (int, float)) and math.isfinite(f["value"]) and f["value"] > 0, f
        assert f["unit"], f
        if f.get("baseline") is not None:
            assert f["baseline"] > 0 and f["ratio"] == pytest.approx(f["value"] / f["baseline"]), f
        if f.get("target"):
            assert f["holds"] in (True, False), f"{name}: a figure with a target must say whether it holds: {f}"


@pytest.mark.parametrize("name", ["serve", "batch", "hostile", "explain", "mlflow", "train", "startup"])
def test_model_benchmarks_measure_once_the_container_exists(smoke: dict, name: str) -> None:
    if not all(p.exists() for p in PREREQUISITES[name]):
        pytest.skip(f"{name}: the container's entrypoints have not landed yet")
    figures = smoke["results"]["benchmarks"][name]["figures"]
    assert all(f["value"] is not None for f in figures), figures


def test_serve_smoke_compared_both_servers(smoke: dict) -> None:
    if not all(p.exists() for p in PREREQUISITES["serve"]):
        pytest.skip("serve: the container's entrypoints have not landed yet")
    names = {f["name"].split(" ")[0] for f in smoke["results"]["benchmarks"]["serve"]["figures"]}
    assert names == {"csv-1", "json-1", "csv-100"}
    if os.environ.get("CI") == "true":
        assert all(f["baseline"] for f in smoke["results"]["benchmarks"]["serve"]["figures"])


def test_mlflow_smoke_compared_both_servers(smoke: dict) -> None:
    if not all(p.exists() for p in PREREQUISITES["mlflow"]):
        pytest.skip("mlflow: the container's entrypoints or MLflow's server are not installed")
    figures = smoke["results"]["benchmarks"]["mlflow"]["figures"]
    names = [f["name"] for f in figures]
    for payload in ("csv-1", "json-1", "csv-100"):
        assert [n.split(" ", 2)[1] for n in names if n.split(" ")[0] == payload] == ["requests/s", "p50", "p99"], names
    assert any(n.startswith("1000-row CSV request") for n in names), names
    assert any(n.startswith("startup") for n in names) and any(n.startswith("memory") for n in names), names
    # Every figure is ours against MLflow's server, measured in the same run.
    assert all(f["baseline"] and f["baseline_name"] == "mlflow models serve" for f in figures), figures
