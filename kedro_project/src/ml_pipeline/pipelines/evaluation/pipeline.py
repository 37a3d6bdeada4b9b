"""evaluation: model + splits (+ the production model) → metrics, champion vs challenger, importance, HTML report,
metadata.json."""

from kedro.pipeline import Node, Pipeline

from .nodes import (assemble_metadata, build_evaluation_report, compare_with_champion, compute_importance,
                    evaluate_model)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(evaluate_model, ["model", "test_set", "validation_set", "data_schema"], "model_metrics",
             name="evaluate_model"),
        Node(compare_with_champion, ["model", "champion_model", "test_set", "test_sources", "data_schema",
                                     "params:lineage"], "comparison", name="compare_with_champion"),
        Node(compute_importance, ["model", "validation_set", "data_schema", "params:evaluation"], "feature_importance",
             name="compute_importance"),
        Node(build_evaluation_report, ["model", "model_input", "test_set", "data_schema", "model_metrics",
                                       "feature_importance", "training_summary", "params:evaluation", "comparison"],
             "evaluation_report", name="build_evaluation_report"),
        Node(assemble_metadata, ["data_schema", "model_metrics", "reference_profile", "expectation_suite",
                                 "feature_importance", "training_summary", "params:lineage", "comparison"],
             "model_metadata", name="assemble_metadata"),
    ])
