"""training: train split → the model's input → fitted model + training summary, and the model's trees compiled for
serving."""

from kedro.pipeline import Node, Pipeline

from .nodes import finish_compiling, fit_model, prepare_training, start_compiling


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(prepare_training, ["train_set", "data_schema", "params:training", "params:seed"], "training_input",
             name="prepare_training"),
        Node(fit_model, ["training_input", "data_schema", "params:training", "params:seed"],
             ["model", "training_summary"], name="train_model"),
        # Named to run first among the nodes that read the model (Kedro orders those by name): the compiler then
        # works beside the evaluation nodes; its result is saved once the next level of nodes is reached.
        Node(start_compiling, "model", "forest_build", name="compile_model"),
        Node(finish_compiling, "forest_build", "compiled_model", name="save_compiled_model"),
    ])
