"""training: train split → the model's input → fitted model + training summary, and the model's trees compiled for
serving."""

from kedro.pipeline import Node, Pipeline

from .nodes import compile_model, fit_model, prepare_training


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(prepare_training, ["train_set", "data_schema", "params:training", "params:seed"], "training_input",
             name="prepare_training"),
        Node(fit_model, ["training_input", "data_schema", "params:training", "params:seed"],
             ["model", "training_summary"], name="train_model"),
        Node(compile_model, "model", "compiled_model", name="compile_model"),
    ])
