"""Models of the three task kinds and random request rows for them (compiled-tree and single-row tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from entrypoint_support import TARGET
from ml_pipeline import sample_data
from ml_pipeline.schema import coerce_features
from ml_pipeline.serving.predictor import CompiledModel

KINDS = ["binary", "multiclass", "regression"]


def frame_for(kind: str, rows: int, seed: int) -> pd.DataFrame:
    """Training data for a binary, a three-class (the contract column as target) or a regression model."""
    frame = sample_data.generate(rows, seed=seed)
    if kind == "multiclass":
        return frame.rename(columns={"contract": TARGET, TARGET: "churned"})
    if kind == "regression":
        frame[TARGET] = frame["monthly_charges"].fillna(50) * 2 + frame["tenure_months"]
        return frame.drop(columns="monthly_charges")
    return frame


def random_rows(model: CompiledModel, count: int, seed: int) -> pd.DataFrame:
    """Rows over and beyond the training ranges, a fifth of the values missing, unseen categories among the seen."""
    rng = np.random.default_rng(seed)
    profile = model.metadata["reference_profile"]["features"]
    columns = {}
    for name, kind in zip(model.schema.names, model.schema.kinds, strict=True):
        if kind == "numeric":
            low, high = profile[name]["quantiles"][0], profile[name]["quantiles"][-1]
            span = (high - low) or 1.0
            values = rng.uniform(low - span, high + span, count).astype(object)
        else:
            seen = list(profile[name]["frequencies"])
            values = np.array(rng.choice(seen + ["never-seen", "also-unseen"], count), dtype=object)
        values[rng.random(count) < 0.2] = None
        columns[name] = values
    return pd.DataFrame(columns)


def pipeline_answers(model: CompiledModel, rows: pd.DataFrame) -> tuple[list, np.ndarray | None]:
    """(labels, probabilities or None) of the fitted Pipeline on `rows`, read as `train` reads data."""
    frame = coerce_features(pd.read_csv(pd.io.common.StringIO(rows.to_csv(index=False))), model.metadata["features"])
    proba = model.pipeline.predict_proba(frame) if model.task == "classification" else None
    return model.pipeline.predict(frame).tolist(), proba
