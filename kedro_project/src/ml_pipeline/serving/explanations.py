"""Per-request explanations: `X-Amzn-SageMaker-Custom-Attributes: explain=true` (InvokeEndpoint's CustomAttributes)
answers, next to the predictions, each row's SHAP contribution per input column and the base value, so that base
value + Σ contributions = the model's raw output for that row (log-odds of the positive class, the predicted class's
raw margin, or the predicted value: ml_pipeline/explainability.py, the same explainer training uses).

Off the fast path: nothing here is imported or built until a request asks, and such a request is computed on the
worker's compute thread (the first one also pays shap's import, ≈ 0.75 s). Explaining costs far more than
predicting (bench/RESULTS.md, "explain"), so a request may ask for at most MAX_ROWS rows.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ml_pipeline.serving.parsing import Columns, RequestError

MAX_ROWS = int(os.environ.get("SERVE_EXPLAIN_MAX_ROWS", 100))


class RequestExplainer:
    """The TreeSHAP explainer of one loaded model, made on first use and then reused by the worker."""

    def __init__(self, model) -> None:
        self.model = model
        self._explainer = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._explainer is None:
                from ml_pipeline.explainability import Explainer

                self._explainer = Explainer(self.model.pipeline, list(self.model.schema.names))
            return self._explainer

    @staticmethod
    def admit(parsed: Columns) -> None:
        """Refuse (413) a request with more rows than one may have explained, before any work is done for it."""
        if parsed.rows > MAX_ROWS:
            raise RequestError(413, f"explanations are computed for at most {MAX_ROWS} rows per request; this one "
                                    f"has {parsed.rows}: split it, or ask without explain=true")

    def explain(self, parsed: Columns, labels: list) -> list[dict]:
        """One explanation per row: {"base_value", "contributions": {column: value}} (+ "class" for a multiclass
        model: the predicted class's raw margin is explained)."""
        self.admit(parsed)
        explainer = self._get()
        contributions, base = explainer.by_column(self.model.frame(parsed))
        columns = explainer.features
        if contributions.ndim == 2:
            base_value = float(base)
            return [{"base_value": base_value, "contributions": dict(zip(columns, row.tolist(), strict=True))}
                    for row in contributions]
        classes = [str(c) for c in self.model.classes]
        explained = []
        for i, label in enumerate(labels):
            k = classes.index(str(label))
            explained.append({"class": label, "base_value": float(np.asarray(base)[k]),
                              "contributions": dict(zip(columns, contributions[i, :, k].tolist(), strict=True))})
        return explained
