"""evaluation: model + splits (+ the production model) → metrics, champion vs challenger, importance, bias metrics,
SHAP explanations, model card, HTML report, metadata.json."""

from kedro.pipeline import Node, Pipeline

from .nodes import (assemble_metadata, build_evaluation_report, build_model_card, compare_with_champion, compute_bias,
                    compute_importance, describe_model_input, evaluate_model, explain_model,
                    select_bias_columns)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(evaluate_model, ["model", "test_set", "validation_set", "data_schema"], "model_metrics",
             name="evaluate_model"),
        Node(compare_with_champion, ["model", "champion_model", "test_set", "test_sources", "data_schema",
                                     "params:lineage", "model_metrics"], "comparison", name="compare_with_champion"),
        Node(compute_importance, ["model", "validation_set", "data_schema", "params:evaluation"], "feature_importance",
             name="compute_importance"),
        Node(select_bias_columns, ["train_set", "data_schema", "params:responsible_ml"], "bias_training_columns",
             name="select_bias_columns"),
        Node(compute_bias, ["model", "bias_training_columns", "test_set", "data_schema", "params:responsible_ml"],
             "bias_report", name="compute_bias"),
        Node(explain_model, ["model", "test_set", "data_schema", "params:evaluation"], "explainability",
             name="explain_model"),
        Node(build_model_card, ["data_schema", "model_metrics", "training_summary", "params:lineage", "bias_report",
                                "explainability", "params:responsible_ml", "test_set"], "model_card",
             name="build_model_card"),
        Node(describe_model_input, ["model_input", "data_schema", "params:evaluation"], "input_description",
             name="describe_model_input"),
        Node(build_evaluation_report, ["model", "input_description", "test_set", "data_schema", "model_metrics",
                                       "feature_importance", "training_summary", "params:evaluation", "comparison",
                                       "bias_report", "explainability", "model_card"],
             "evaluation_report", name="build_evaluation_report"),
        Node(assemble_metadata, ["data_schema", "model_metrics", "reference_profile", "expectation_suite",
                                 "feature_importance", "training_summary", "params:lineage", "comparison",
                                 "bias_report", "explainability", "model_card"],
             "model_metadata", name="assemble_metadata"),
    ])
