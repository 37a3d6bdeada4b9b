"""training: train split → fitted model + training summary."""

from kedro.pipeline import Node, Pipeline

from .nodes import train_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(train_model, ["train_set", "data_schema", "params:training", "params:seed"],
             ["model", "training_summary"], name="train_model"),
    ])
