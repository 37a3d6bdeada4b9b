"""flows.prepare: what a handler does at init, so that a SnapStart snapshot holds it."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from ..helpers import LAMBDA_DIR  # noqa: F401 - importing helpers puts lambda/ on sys.path

FLOWS = Path(__file__).resolve().parents[3] / "lambda" / "mlops_control" / "flows.py"


def lazy_imports() -> dict[str, set[str]]:
    """For each public flow in flows.py, the mlops_control modules it (or a private helper it calls) imports."""
    tree = ast.parse(FLOWS.read_text())
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}

    def imported(fn: ast.FunctionDef, seen: set[str]) -> set[str]:
        out: set[str] = set()
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                out |= {node.module} if node.module else {alias.name for alias in node.names}
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions \
                    and node.func.id.startswith("_") and node.func.id not in seen:
                out |= imported(functions[node.func.id], seen | {node.func.id})
        return out

    return {name: imported(fn, {name}) - {"clients"} for name, fn in functions.items()
            if not name.startswith("_") and name != "prepare"}


def test_every_flow_is_prepared_with_every_module_it_imports():
    from mlops_control import flows

    found = lazy_imports()
    assert set(found) == set(flows._PREPARE) and "trigger" in found
    for name, modules in found.items():
        assert modules and modules <= set(flows._PREPARE[name][0]), name


@pytest.mark.parametrize("flow", ["trigger", "training_done", "retrain"])
def test_prepare_imports_the_flows_modules_and_creates_its_clients(env, flow):
    from mlops_control import clients, flows

    modules, services = flows._PREPARE[flow]
    for module in modules:
        sys.modules.pop(f"mlops_control.{module}", None)
    flows.prepare(flow)
    assert all(f"mlops_control.{m}" in sys.modules for m in modules)
    assert all(s in clients._clients for s in services)


def test_every_handler_prepares_its_own_flow():
    handlers = FLOWS.parents[1] / "handlers"
    for path in sorted(handlers.glob("[a-z]*.py")):
        source = path.read_text()
        assert f'flows.prepare("{path.stem}")' in source and f'runtime.run("{path.stem}"' in source, path.name
