"""data_processing: raw training data → schema, model input, splits (+ the test rows' source files), reference
profile, expectation suite."""

from kedro.pipeline import Node, Pipeline

from .nodes import (build_expectation_suite, build_reference_profile, clean_data, infer_schema,
                    prepare_model_input, split_data, split_sources)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(clean_data, ["raw_data", "params:target_column"], ["cleaned_data", "row_sources"], name="clean_data"),
        Node(infer_schema, ["cleaned_data", "params:target_column", "params:task"], "data_schema",
             name="infer_schema"),
        Node(prepare_model_input, ["cleaned_data", "data_schema"], "model_input", name="prepare_model_input"),
        Node(split_data, ["model_input", "params:split", "params:seed"], ["train_set", "test_set", "validation_set"],
             name="split_data"),
        Node(split_sources, ["row_sources", "params:split", "params:seed"], "test_sources", name="split_sources"),
        Node(build_reference_profile, ["model_input", "data_schema", "params:profile"], "reference_profile",
             name="build_reference_profile"),
        Node(build_expectation_suite, ["cleaned_data", "data_schema", "params:expectations"], "expectation_suite",
             name="build_expectation_suite"),
    ])
