"""Probe: where a single-row prediction's time goes in `serve`, and what flattening the trees would save.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.probe_trees OPT_ML_ROOT [ROWS]

Evidence for the serving findings in RESULTS.md, not part of serving. It times our serve's own steps
(parse → compiled preprocessing → HistGradientBoosting predict_proba) on one row, then a numpy evaluation
of the same fitted trees flattened into arrays (all trees stepped together, one level per numpy pass), and
checks that the flattened evaluation gives bit-identical raw scores and the same labels on ROWS generated rows.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


class FlatTrees:
    """Every tree of a fitted binary HistGradientBoostingClassifier / regressor as one set of node arrays."""

    def __init__(self, estimator) -> None:
        predictors = [p for per_iteration in estimator._predictors for p in per_iteration]
        if any(len(per_iteration) != 1 for per_iteration in estimator._predictors):
            raise ValueError("multiclass: one tree per class per iteration; not handled by this probe")
        offsets = np.cumsum([0] + [len(p.nodes) for p in predictors[:-1]])
        nodes = np.concatenate([p.nodes for p in predictors])
        if nodes["is_categorical"].any():
            raise ValueError("native categorical splits are not handled by this probe")
        self.roots = offsets.astype(np.intp)
        shift = np.repeat(offsets, [len(p.nodes) for p in predictors])
        self.feature = nodes["feature_idx"].astype(np.intp)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.left = np.where(nodes["is_leaf"], np.arange(len(nodes)), nodes["left"] + shift).astype(np.intp)
        self.right = np.where(nodes["is_leaf"], np.arange(len(nodes)), nodes["right"] + shift).astype(np.intp)
        self.value = nodes["value"].astype(np.float64)
        self.depth = int(nodes["depth"].max())
        self.baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])

    def raw(self, x: np.ndarray) -> np.ndarray:
        rows = np.arange(len(x))[:, None]
        idx = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        for _ in range(self.depth):
            v = x[rows, self.feature[idx]]
            go_left = np.where(np.isnan(v), self.missing_left[idx], v <= self.threshold[idx])
            idx = np.where(go_left, self.left[idx], self.right[idx])  # leaves point at themselves
        leaf_values = self.value[idx]
        # sklearn adds tree after tree onto the baseline; cumsum adds in the same order, so bits match.
        return np.cumsum(np.hstack([np.full((len(x), 1), self.baseline), leaf_values]), axis=1)[:, -1]


def timed(fn, n: int = 300) -> float:
    for _ in range(10):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main(opt_ml: str, n_rows: int = 2000) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import data
    from ml_pipeline.serving.parsing import parse_body
    from ml_pipeline.serving.predictor import CompiledModel

    model = CompiledModel.load(Path(opt_ml) / "model")
    est = model.estimator
    names = list(model.schema.names)
    rows = data.frame(n_rows, seed=99)[names]
    line = rows.dropna().iloc[:1].to_csv(header=False, index=False).encode()
    parsed = parse_body(line, "text/csv", model.schema)
    x1 = model.features(parsed)
    flat = FlatTrees(est)
    print(f"model: {est.n_iter_} trees, max depth {flat.depth}, {len(flat.value)} nodes; compiled preprocessing: {model.compiled}")
    print(f"one row  parse_body (CSV)          {timed(lambda: parse_body(line, 'text/csv', model.schema)):8.3f} ms")
    print(f"one row  compiled preprocessing     {timed(lambda: model.features(parsed)):8.3f} ms")
    print(f"one row  estimator.predict_proba    {timed(lambda: est.predict_proba(x1)):8.3f} ms")
    print(f"one row  flattened trees (numpy)    {timed(lambda: flat.raw(x1)):8.3f} ms")
    print(f"one row  whole CompiledModel.predict {timed(lambda: model.predict(parsed)):7.3f} ms")
    body = rows.to_csv(header=False, index=False).encode()
    x = model.features(parse_body(body, "text/csv", model.schema))
    ours, theirs = flat.raw(x), est._raw_predict(x)[:, 0]
    same_bits = bool(np.array_equal(ours, theirs))
    labels_flat = np.asarray(est.classes_)[(ours > 0).astype(int)] if hasattr(est, "classes_") else ours
    labels_est = est.predict(x)
    print(f"{n_rows} rows: raw scores bit-identical: {same_bits}; max |diff| {np.max(np.abs(ours - theirs)):.3g}; "
          f"labels identical: {bool(np.array_equal(labels_flat, labels_est))}")
    print(f"{len(x)} rows  estimator.predict_proba {timed(lambda: est.predict_proba(x), 5):8.1f} ms; "
          f"flattened {timed(lambda: flat.raw(x), 5):8.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
