"""Project hooks (registered in settings.py)."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from ml_pipeline.allocator import give_back_freed_memory


class GiveBackFreedMemory:
    """Kedro hook: before each node, after Kedro released the datasets the previous node was the last to read."""

    @hook_impl
    def before_node_run(self) -> None:
        give_back_freed_memory()
