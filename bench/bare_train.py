"""The bare scikit-learn script the training pipeline is measured against: the same steps, no framework.

Usage: python -m bench.bare_train DATA.csv OUT_DIR

What a data scientist would write to get the same deliverables from the same data: read, clean (±inf → NaN,
drop rows without a target or without any feature), coerce types, seeded shuffle + 70/20/10 split, fit the
same Pipeline (median impute + scale, constant impute + one-hot, HistGradientBoosting with the same
parameters), metrics on test and validation, permutation importance on the same validation sample, the
report's plots as PNGs in an HTML page, a per-feature reference profile (deciles, quantiles, category
counts), and model.joblib + metadata.json. Parameters are read from kedro_project/conf/base so the two
stay in step. Not done here: the Great Expectations suite (no bare equivalent; the pipeline's cost for it
shows in the per-node breakdown in bench/README.md).
"""
from __future__ import annotations

import base64
import io
import json
import sys
import time
from pathlib import Path

import joblib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from sklearn import metrics as skm  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

CONF = Path(__file__).resolve().parent.parent / "kedro_project" / "conf" / "base"


def params() -> dict:
    merged: dict = {}
    for name in ("parameters.yml", "parameters_training.yml", "parameters_evaluation.yml"):
        path = CONF / name
        if path.exists():
            merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def main(src: str, out: str) -> None:
    p = params()
    target, seed = p.get("target_column", "churn"), int(p.get("seed", 42))
    training, evaluation = p.get("training", {}), p.get("evaluation", {})
    split = p.get("split", {"train": 0.7, "test": 0.2, "validation": 0.1})
    t0 = time.perf_counter()
    last = [t0]

    def mark(step: str) -> None:  # step timings, comparable with Kedro's per-node log lines
        now = time.perf_counter()
        print(f"bare step {step}: {now - last[0]:.1f} s", flush=True)
        last[0] = now

    df = pd.read_csv(src, low_memory=False)
    mark("read")
    df = df.replace([np.inf, -np.inf], np.nan)
    df = df[df[target].notna()]
    features = [c for c in df.columns if c != target]
    df = df[df[features].notna().any(axis=1)].reset_index(drop=True)
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(df[c])]
    categorical = [c for c in features if c not in numeric]
    x = pd.DataFrame({c: df[c].astype("float64").to_numpy() for c in numeric}
                     | {c: np.where(df[c].notna(), df[c].astype(str), np.nan).astype(object) for c in categorical})[features]
    y = df[target].astype(str).astype(object)

    order = np.random.default_rng(seed).permutation(len(df))
    n_train, n_test = round(len(df) * split["train"]), round(len(df) * split["test"])
    tr, te, va = order[:n_train], order[n_train:n_train + n_test], order[n_train + n_test:]
    mark("clean + coerce + split")

    pre = ColumnTransformer([
        ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                              ("scale", StandardScaler())]), numeric),
        ("categorical", Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="__missing__",
                                                           keep_empty_features=True)),
                                  ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                                           max_categories=int(training.get("max_categories", 32)),
                                                           sparse_output=False, dtype=np.float64))]), categorical),
    ], remainder="drop", sparse_threshold=0.0)
    estimator = {k: v for k, v in (training.get("estimator") or {}).items() if v is not None}
    pipe = Pipeline([("preprocess", pre), ("model", HistGradientBoostingClassifier(random_state=seed, **estimator))])
    pipe.fit(x.iloc[tr], y.iloc[tr])
    t_fit = time.perf_counter()
    mark("fit")

    pos = pipe.classes_[1]
    metrics = {}
    for name, idx in (("test", te), ("validation", va)):
        proba, pred, truth = pipe.predict_proba(x.iloc[idx])[:, 1], pipe.predict(x.iloc[idx]), y.iloc[idx]
        metrics[name] = {"accuracy": skm.accuracy_score(truth, pred),
                         "precision": skm.precision_score(truth, pred, pos_label=pos, zero_division=0),
                         "recall": skm.recall_score(truth, pred, pos_label=pos, zero_division=0),
                         "f1": skm.f1_score(truth, pred, pos_label=pos, zero_division=0),
                         "roc_auc": skm.roc_auc_score(truth == pos, proba)}
    mark("metrics (test + validation)")
    sample = va if len(va) <= int(evaluation.get("importance_max_rows", 2000)) else \
        np.random.default_rng(seed).choice(va, int(evaluation.get("importance_max_rows", 2000)), replace=False)
    imp = permutation_importance(pipe, x.iloc[sample], y.iloc[sample], scoring="roc_auc",
                                 n_repeats=int(evaluation.get("importance_repeats", 5)), random_state=seed, n_jobs=1)
    mark("permutation importance")
    ranked = sorted(zip(features, imp.importances_mean), key=lambda t: -t[1])

    limit = int(evaluation.get("plot_max_rows", 5000))
    plot_rows = np.random.default_rng(seed).choice(len(x), min(limit, len(x)), replace=False)
    fig, axes = plt.subplots(int(np.ceil(len(features) / 4)), 4, figsize=(16, 2.8 * np.ceil(len(features) / 4)), squeeze=False)
    for ax, c in zip(axes.ravel(), features):
        col = x[c].iloc[plot_rows].dropna()
        if c in numeric:
            ax.hist(col.to_numpy(dtype=float), bins=30)
        else:
            counts = col.value_counts().iloc[:15]
            ax.bar(range(len(counts)), counts.to_numpy())
        ax.set_title(c)
    parts = [png(fig)]
    fig, ax = plt.subplots()
    a, b = (x[f].iloc[plot_rows] for f in (ranked[0][0], ranked[1][0]))
    ax.scatter(pd.factorize(a)[0] if a.dtype == object else a, pd.factorize(b)[0] if b.dtype == object else b, s=6)
    parts.append(png(fig))
    test_rows = te[:limit]
    fig, ax = plt.subplots()
    ax.imshow(skm.confusion_matrix(y.iloc[test_rows], pipe.predict(x.iloc[test_rows])))
    parts.append(png(fig))
    fig, ax = plt.subplots()
    fpr, tpr, _ = skm.roc_curve(y.iloc[test_rows] == pos, pipe.predict_proba(x.iloc[test_rows])[:, 1])
    ax.plot(fpr, tpr)
    parts.append(png(fig))

    mark("plots")
    profile = {}
    for c in features:
        if c in numeric:
            v = x[c].to_numpy()
            v = v[~np.isnan(v)]
            profile[c] = {"deciles": np.quantile(v, np.linspace(0, 1, 11)).tolist(),
                          "quantiles": np.quantile(v, np.linspace(0, 1, 201)).tolist(), "missing": float(x[c].isna().mean())}
        else:
            profile[c] = {"counts": x[c].value_counts().iloc[:200].to_dict(), "missing": float(x[c].isna().mean())}

    mark("reference profile")
    model_dir = Path(out)
    (model_dir / "report").mkdir(parents=True, exist_ok=True)
    joblib.dump(pipe, model_dir / "model.joblib")
    (model_dir / "report" / "index.html").write_text("<html><body>" + "".join(parts) + "</body></html>")
    (model_dir / "metadata.json").write_text(json.dumps({"features": features, "metrics": metrics, "profile": profile,
                                                         "importance": ranked}, default=float))
    mark("save")
    for k, v in metrics["test"].items():
        print(f"test:{k}={v:.6f}")
    print(f"bare_train_seconds={time.perf_counter() - t0:.2f} fit_done_at={t_fit - t0:.2f} rows={len(df)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
