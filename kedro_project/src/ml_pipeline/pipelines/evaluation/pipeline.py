"""evaluation: model + splits → metrics, importance, HTML report, metadata.json."""

from kedro.pipeline import Node, Pipeline

from .nodes import assemble_metadata, build_evaluation_report, compute_importance, evaluate_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(evaluate_model, ["model", "test_set", "validation_set", "data_schema"], "model_metrics",
             name="evaluate_model"),
        Node(compute_importance, ["model", "validation_set", "data_schema", "params:evaluation"], "feature_importance",
             name="compute_importance"),
        Node(build_evaluation_report, ["model", "model_input", "test_set", "data_schema", "model_metrics",
                                       "feature_importance", "training_summary", "params:evaluation"],
             "evaluation_report", name="build_evaluation_report"),
        Node(assemble_metadata, ["data_schema", "model_metrics", "reference_profile", "expectation_suite",
                                 "feature_importance", "training_summary", "params:lineage"], "model_metadata",
             name="assemble_metadata"),
    ])
