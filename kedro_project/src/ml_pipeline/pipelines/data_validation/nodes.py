"""Nodes of the data_validation pipeline."""

from __future__ import annotations

from pathlib import Path

from ml_pipeline import drift, expectations, schema, tabular, validation
from ml_pipeline.errors import DataError
from ml_pipeline.jsonutil import to_jsonable


def validate_new_data(new_data_files: list[str], production_model: dict | None, target_column: str, task: str,
                      expectation_settings: dict, profile_settings: dict, shift_policy: dict | None = None) -> dict:
    """report.json for the new data: against the production model, or against itself on the first run.

    Errors fail the file; shift fails it only in a strict column, unless a person accepted it (`shift_policy`).
    """
    policy = shift_policy or {}
    reference = "production-model" if production_model else "self"
    try:
        frame = tabular.read_tables([Path(p) for p in new_data_files])
    except DataError as exc:
        return to_jsonable(validation.unreadable_report("validation", str(exc), reference))
    if production_model:
        target = production_model.get("target", target_column)
        features = production_model["features"]
        suite = production_model["expectation_suite"]
        profile = production_model["reference_profile"]
        resolved_task = production_model["task"]
    else:
        target = target_column
        features = [{"name": c, "kind": "numeric" if schema.is_numeric(frame[c]) else "categorical"}
                    for c in frame.columns if c != target]
        resolved_task, classes = None, None
        if target in frame.columns and frame[target].notna().any():
            resolved_task = schema.infer_task(frame[target], task)
            classes = schema.class_labels(frame[target]) if resolved_task == "classification" else None
        suite = expectations.build_suite(frame, features, target, resolved_task or "regression", classes,
                                         expectation_settings, name="self")
        profile = drift.build_profile(frame, features, bins=int(profile_settings["bins"]),
                                      quantiles=int(profile_settings["quantiles"]),
                                      max_categories=int(profile_settings["max_categories"])) if len(frame) else None
    report = {"kind": "validation",
              **validation.check_frame(frame, suite, features, target, resolved_task, profile,
                                       strict_columns=policy.get("strict_columns") or (),
                                       accept_shift=bool(policy.get("accept_shift", False))),
              "reference": reference}
    report["summary"] = validation.summarise(report)
    return to_jsonable(report)


def render_validation_report(report: dict) -> str:
    """report.html."""
    return validation.render_html(report)
