"""Generated tabular data for the benchmarks: 19 features (14 numeric, 5 categorical) + a binary target.

20 columns in all, missing values in both kinds of feature, a real (non-linear) signal; seeded, vectorised,
written with pyarrow so that making 10M rows takes seconds, not minutes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "churn"
NUMERIC = [f"num_{i:02d}" for i in range(14)]
CATEGORICAL = {
    "plan": ["basic", "standard", "premium", "enterprise"],
    "region": ["north", "south", "east", "west", "central"],
    "channel": ["web", "store", "phone", "partner"],
    "device": ["ios", "android", "desktop"],
    "segment": [f"s{i}" for i in range(12)],
}
FEATURES = NUMERIC + list(CATEGORICAL)


def frame(n_rows: int, seed: int = 7, missing: float = 0.02) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    x = rng.normal(size=(n_rows, len(NUMERIC))).astype(np.float64)
    x[:, 1] = np.abs(x[:, 1]) * 30 + 18  # an age-like column
    x[:, 2] = np.exp(x[:, 2]) * 50  # a skewed, spend-like column
    for i, name in enumerate(NUMERIC):
        cols[name] = x[:, i]
    codes = {}
    for name, levels in CATEGORICAL.items():
        codes[name] = rng.integers(0, len(levels), size=n_rows)
        cols[name] = np.asarray(levels, dtype=object)[codes[name]]
    logit = (
        1.2 * x[:, 0]
        - 0.04 * (x[:, 1] - 40)
        + 0.6 * np.sin(x[:, 3] * 2)
        + 0.5 * x[:, 4] * x[:, 5]
        + 0.8 * (codes["plan"] == 0)
        - 0.6 * (codes["channel"] == 2)
        + 0.3 * np.log1p(x[:, 2]) - 1.0
    )
    y = rng.random(n_rows) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(cols)
    for name in FEATURES:  # holes, so imputation has work to do
        holes = rng.random(n_rows) < missing
        if name in CATEGORICAL:
            df[name] = df[name].where(~holes, None)
        else:
            df.loc[holes, name] = np.nan
    df[TARGET] = np.where(y, "yes", "no")
    return df


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), path)
    return path


def write(n_rows: int, path: Path, seed: int = 7, chunk: int = 1_000_000) -> Path:
    """Write n_rows to a CSV in chunks (bounded memory for the 10M-row point)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.with_suffix(".rows").exists() and path.with_suffix(".rows").read_text() == f"{n_rows}:{seed}":
        return path
    writer = None
    try:
        for i, start in enumerate(range(0, n_rows, chunk)):
            table = pa.Table.from_pandas(frame(min(chunk, n_rows - start), seed=seed + i), preserve_index=False)
            if writer is None:
                writer = pacsv.CSVWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    path.with_suffix(".rows").write_text(f"{n_rows}:{seed}")
    return path
