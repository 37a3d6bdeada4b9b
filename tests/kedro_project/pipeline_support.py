"""Running the project's pipelines with Kedro's runner on in-memory data (tests of whole pipelines)."""

from __future__ import annotations

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ml_pipeline import paths


def project_parameters() -> dict:
    """conf/base parameters, with a smaller model and report so that a run takes seconds."""
    loader = OmegaConfigLoader(str(paths.project_path() / "conf"), base_env="base", default_run_env="local")
    params = loader["parameters"]
    params["training"]["estimator"]["max_iter"] = 40
    params["evaluation"].update({"importance_repeats": 2, "plot_max_rows": 500})
    return params


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can inspect intermediate results."""

    def _release(self) -> None:
        pass


def catalog_with(parameters: dict, **datasets) -> DataCatalog:
    catalog = DataCatalog({name: KeptDataset(value) for name, value in datasets.items()})
    for key, value in parameters.items():
        catalog[f"params:{key}"] = value
    return catalog


def run(pipeline, catalog: DataCatalog) -> DataCatalog:
    for name in pipeline.datasets():
        if name not in catalog and not name.startswith("params:"):
            catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipeline, catalog)
    return catalog


def responsible_outputs(fitted, processed, config: dict, lineage: dict, evaluation: dict) -> dict:
    """metrics, bias, explainability and model card of a fitted model, as the evaluation pipeline's nodes make them."""
    from ml_pipeline.pipelines.evaluation import nodes

    model, summary = fitted
    schema = processed["schema"]
    metrics = nodes.evaluate_model(model, processed["test"], processed["validation"], schema)
    bias = nodes.compute_bias(model, processed["train"], processed["test"], schema, config)
    explanations = nodes.explain_model(model, processed["test"], schema, evaluation)
    card = nodes.build_model_card(schema, metrics, summary, lineage, bias, explanations, config, processed["test"])
    return {"metrics": metrics, "bias": bias, "explainability": explanations, "model_card": card}
