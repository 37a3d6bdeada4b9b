"""ml_pipeline/hooks.py: before each node, freed memory goes back to the system, after Kedro released the datasets
the previous node was the last to read (what makes the train split's memory available to the fit)."""

from __future__ import annotations

import weakref

from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from ml_pipeline import hooks, settings


class Split:
    """Stands for the train split: only weak references are kept to it here."""


def test_freed_memory_is_given_back_before_each_node_once_the_last_reader_has_released_its_data(monkeypatch):
    made: list[weakref.ref] = []
    alive_at_each_call: list[bool | None] = []
    monkeypatch.setattr(hooks, "give_back_freed_memory",
                        lambda: alive_at_each_call.append(made[0]() is not None if made else None) or True)

    def split() -> Split:
        made.append(weakref.ref(result := Split()))
        return result

    pipeline = Pipeline([
        Node(split, None, "train_set", name="split"),
        Node(lambda train_set: 1, "train_set", "training_input", name="prepare"),
        Node(lambda training_input: 2, "training_input", "model", name="fit"),
    ])
    catalog = DataCatalog({name: MemoryDataset(copy_mode="assign") for name in ("train_set", "training_input")})
    manager = _create_hook_manager()
    manager.register(hooks.GiveBackFreedMemory())
    SequentialRunner().run(pipeline, catalog, hook_manager=manager)
    # before split: nothing made yet; before prepare: the split is its input; before fit: released, then trimmed
    assert alive_at_each_call == [None, True, False]


def test_every_kedro_session_of_the_project_registers_the_hook():
    assert [type(hook) for hook in settings.HOOKS] == [hooks.GiveBackFreedMemory]
