"""training: train split → fitted model + training summary, and the model's trees compiled for serving."""

from kedro.pipeline import Node, Pipeline

from .nodes import compile_model, train_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_model, ["train_set", "data_schema", "params:training", "params:seed"],
             ["model", "training_summary"], name="train_model"),
        Node(compile_model, "model", "compiled_model", name="compile_model"),
    ])
