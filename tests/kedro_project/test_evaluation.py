from __future__ import annotations

import json
import re

from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.pipelines.evaluation import nodes

EVALUATION = {"importance_max_rows": 200, "importance_repeats": 2, "plot_max_rows": 500, "seed": 1}


def test_metrics_on_test_and_validation(fitted, processed):
    metrics = nodes.evaluate_model(fitted[0], processed["test"], processed["validation"], processed["schema"])
    assert set(metrics) == {"test", "validation"}
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())


def test_permutation_importance_ranks_real_signal_above_noise(fitted, processed):
    importance = nodes.compute_importance(fitted[0], processed["validation"], processed["schema"], EVALUATION)
    ranking = [row["feature"] for row in importance]
    assert len(ranking) == len(processed["schema"]["features"])
    # region and plan carry no signal in the generator; contract and tenure do.
    assert min(ranking.index("contract"), ranking.index("tenure_months")) < ranking.index("region")


def test_report_has_every_section_with_embedded_pngs(fitted, processed):
    model, summary = fitted
    metrics = nodes.evaluate_model(model, processed["test"], processed["validation"], processed["schema"])
    importance = nodes.compute_importance(model, processed["validation"], processed["schema"], EVALUATION)
    html = nodes.build_evaluation_report(model, processed["model_input"], processed["test"], processed["schema"],
                                         metrics, importance, summary, EVALUATION)
    for section in ("Metrics", "Summary statistics", "Distributions", "Two most important features",
                    "Confusion matrix", "ROC curve", "Permutation importance"):
        assert section in html, section
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', html)) >= 5


def test_metadata_follows_the_contract(production_metadata):
    document = json.loads(json.dumps(to_jsonable(production_metadata), allow_nan=False))
    for key in ("format_version", "task", "target", "features", "classes", "metrics", "reference_profile",
                "expectation_suite", "lineage", "created_at"):
        assert key in document, key
    assert document["format_version"] == 1 and document["target"] == "churn"
    assert {"name": "contract", "kind": "categorical", "dtype": "object"} in document["features"]
    assert set(document["lineage"]) >= {"inputs", "training_job", "image", "hyperparameters"}
