"""Champion (the production model) vs challenger (the model just trained) on the same rows.

`comparison` in metadata.json (CONTRACTS.md): both models scored on the challenger's test split and on the rows of
that split read from files the champion was not trained on ("new" rows: their sha256 is not in the champion's
`lineage.files`). The deployer gates on these paired numbers, so a model is never judged against numbers measured
on other rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ml_pipeline import metrics as metric_functions
from ml_pipeline import schema

NO_CHAMPION = "no production model"
SHOWN_NAMES = 10


def champion_blocker(champion_metadata: dict, data_schema: dict) -> str | None:
    """Why the champion cannot score the new data's rows (a schema change), or None when it can.

    It can when every column it was trained on is present with the same kind, the task and target are the same
    and, for classification, it knows at least one of the classes. Columns it never saw are no obstacle: its
    pipeline selects its own columns, so it is scored without them (listed as `ignored_columns`) and the paired
    numbers show what the new columns are worth.
    """
    task, target = data_schema["task"], data_schema["target"]
    if champion_metadata.get("task") != task:
        return f"the task changed: the production model is a {champion_metadata.get('task')} model, the new data's is {task}"
    if champion_metadata.get("target") != target:
        return (f"the target changed: the production model predicts {champion_metadata.get('target')!r}, "
                f"the new data's target is {target!r}")
    kinds = {f["name"]: f["kind"] for f in data_schema["features"]}
    needed = champion_metadata.get("features") or []
    missing = [f["name"] for f in needed if f["name"] not in kinds]
    if missing:
        return f"the schema changed: the new data lacks {len(missing)} column(s) the production model needs: {_listed(missing)}"
    changed = [f"{f['name']} ({f['kind']} for the production model, {kinds[f['name']]} now)"
               for f in needed if kinds[f["name"]] != f["kind"]]
    if changed:
        return f"the schema changed: column kinds differ: {_listed(changed)}"
    if task == "classification":
        known = {str(c) for c in champion_metadata.get("classes") or []}
        if not known & {str(c) for c in data_schema.get("classes") or []}:
            return (f"the classes changed: the production model knows {sorted(known)}, the new data has "
                    f"{sorted(str(c) for c in data_schema.get('classes') or [])}")
    return None


def compare(challenger, champion: dict | None, test_set: pd.DataFrame, test_sources: pd.Series, data_schema: dict,
            lineage: dict, challenger_test_metrics: dict | None = None) -> dict:
    """The `comparison` object: both models' metrics on the test split and on its new rows.
    `challenger_test_metrics`: the challenger's metrics on this very test split when already computed (evaluation's)."""
    names = [f["name"] for f in data_schema["features"]]
    target, task = data_schema["target"], data_schema["task"]
    y = test_set[target]
    if challenger_test_metrics is None:
        challenger_test_metrics = metric_functions.compute_metrics(challenger, test_set[names], y, task)
    result: dict[str, Any] = {
        "champion": {"scored": False, "reason": NO_CHAMPION},
        "test": {"rows": int(len(test_set)), "challenger": dict(challenger_test_metrics)},
    }
    if champion is None:
        return result
    metadata = champion["metadata"]
    entry: dict[str, Any] = {"scored": False, "reason": None,
                             "training_job": (metadata.get("lineage") or {}).get("training_job"),
                             "sha256": champion["sha256"], "created_at": metadata.get("created_at")}
    result["champion"] = entry
    trained_on = {f.get("sha256") for f in (metadata.get("lineage") or {}).get("files") or []}
    new_files = sorted(f["file"] for f in lineage.get("files") or [] if f.get("sha256") not in trained_on)
    is_new = np.asarray(test_sources.isin(new_files), dtype=bool)
    if len(is_new) != len(test_set):  # sources unknown (rows not read from the channel): no row is known to be new
        is_new = np.zeros(len(test_set), dtype=bool)
    new_rows = test_set[is_new]
    result["new"] = {"rows": int(is_new.sum()),
                     "challenger": metric_functions.compute_metrics(challenger, new_rows[names], new_rows[target], task),
                     "files": new_files}
    reason = champion_blocker(metadata, data_schema)
    if reason is None:
        needed = metadata["features"]
        classes = list(challenger.classes_) if task == "classification" else None
        try:
            champion_x = schema.coerce_features(test_set, needed)
            scored = {part: metric_functions.compute_metrics(champion["pipeline"], champion_x[mask], y[mask], task,
                                                             classes=classes)
                      for part, mask in (("test", np.ones(len(test_set), dtype=bool)), ("new", is_new))}
        except Exception as exc:  # noqa: BLE001 — any failure of the old model is a reason, not a failed run
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"the production model could not predict the new data: {type(exc).__name__}: {text}"[:500]
        else:
            entry["scored"] = True
            result["test"]["champion"] = scored["test"]
            result["new"] = {**result["new"], "champion": scored["new"], "files": result["new"].pop("files")}
            ignored = [n for n in names if n not in {f["name"] for f in needed}]
            if ignored:
                entry["ignored_columns"] = ignored
    entry["reason"] = reason
    return result


def comparison_rows(comparison: dict, task: str) -> list[dict]:
    """One row per metric: test and new rows, challenger and champion side by side (for the report)."""
    rows = []
    for name in metric_functions.metric_names(task):
        row: dict[str, Any] = {"metric": name}
        for part in ("test", "new"):
            block = comparison.get(part) or {}
            for model in ("challenger", "champion"):
                row[f"{part}: {model}"] = (block.get(model) or {}).get(name)
        rows.append(row)
    return rows


def _listed(names: list[str]) -> str:
    more = len(names) - SHOWN_NAMES
    return ", ".join(names[:SHOWN_NAMES]) + (f" and {more} more" if more > 0 else "")
