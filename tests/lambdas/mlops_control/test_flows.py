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
            if not name.startswith("_") and name not in ("prepare", "after_restore")}


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


def test_prepare_registers_the_restore_hook_and_freezes_what_init_built(env, monkeypatch):
    import gc
    import types

    from mlops_control import flows

    registered = []
    runtime_hooks = types.ModuleType("snapshot_restore_py")  # what Lambda's managed runtime provides
    runtime_hooks.register_after_restore = registered.append
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime_hooks)
    gc.unfreeze()
    try:
        flows.prepare("trigger")
        assert registered == [flows.after_restore]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_prepare_works_without_the_lambda_runtime_hooks(env, monkeypatch):
    from mlops_control import flows

    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # makes the import raise ImportError
    flows.prepare("retrain")


def test_environments_restored_from_one_snapshot_draw_their_own_random_numbers():
    import random

    from mlops_control import flows

    snapshot = random.getstate()
    try:
        def first_draw(hook):
            random.setstate(snapshot)  # one more execution environment resumed from the same memory image
            hook()
            return [random.random() for _ in range(3)]

        # Without the hook every restored environment repeats the same "random" jitter...
        assert first_draw(lambda: None) == first_draw(lambda: None)
        # ...with it, each draws its own.
        assert first_draw(flows.after_restore) != first_draw(flows.after_restore)
    finally:
        random.seed()
