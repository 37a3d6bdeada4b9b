"""Probe: serve's CSV parsing of a large request, and a read_csv-native alternative with the same result.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.probe_parse OPT_ML_ROOT [ROWS]

Evidence for the batch finding in RESULTS.md, not part of serving. Serve's large-request path reads every
column as text and converts numerics in Python-level passes (`str.strip` + `isin` + object→float64). The
alternative lets pandas' C parser convert numeric columns itself — which is also exactly how `train` read
the data (`pd.read_csv` defaults, the same NA tokens) — and falls back to the existing path only when that
raises (a non-number in a numeric column), so error messages stay as they are. The probe checks that both
give the same columns (numbers bit-identical, NaN in the same places, categoricals equal) and the same
predictions, and times both.
"""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np


def fast_parse_csv(body: bytes, schema):
    import pandas as pd
    from ml_pipeline.serving.parsing import Columns

    kinds = dict(zip(schema.names, schema.kinds, strict=True))
    order = list(schema.names)  # headerless, as the benchmark sends; a header would be detected as now
    dtypes = {n: (np.float64 if kinds[n] == "numeric" else object) for n in order}
    frame = pd.read_csv(io.BytesIO(body), header=None, names=order, dtype=dtypes, engine="c")
    numeric, categorical = {}, {}
    for name in order:
        if kinds[name] == "numeric":
            values = frame[name].to_numpy(dtype=np.float64, copy=True)
            values[~np.isfinite(values)] = np.nan
            numeric[name] = values
        else:
            values = frame[name].to_numpy(dtype=object, copy=True)
            missing = pd.isna(values)  # read_csv already mapped pandas' NA tokens (the same NA_TOKENS) to NaN
            values[missing] = None
            categorical[name] = values
    return Columns(len(frame), numeric, categorical)


def timed(fn, n: int = 5) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def main(opt_ml: str, n_rows: int = 10_000) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import data
    from ml_pipeline.serving.parsing import parse_body
    from ml_pipeline.serving.predictor import CompiledModel

    model = CompiledModel.load(Path(opt_ml) / "model")
    body = data.frame(n_rows, seed=123)[list(model.schema.names)].to_csv(header=False, index=False).encode()
    theirs, ours = parse_body(body, "text/csv", model.schema), fast_parse_csv(body, model.schema)
    same = theirs.rows == ours.rows
    for name, values in theirs.numeric.items():
        same &= np.array_equal(values, ours.numeric[name], equal_nan=True)
    for name, values in theirs.categorical.items():
        same &= list(values) == list(ours.categorical[name])
    labels_same = model.predict(theirs).labels == model.predict(ours).labels
    print(f"{n_rows} rows ({len(body) / 1e6:.1f} MB): columns identical: {bool(same)}; predictions identical: {labels_same}")
    print(f"serve's parse_body (text/csv)       {timed(lambda: parse_body(body, 'text/csv', model.schema)):8.0f} ms")
    print(f"read_csv-native parse               {timed(lambda: fast_parse_csv(body, model.schema)):8.0f} ms")
    print(f"compiled preprocessing              {timed(lambda: model.features(ours)):8.0f} ms")
    print(f"CompiledModel.predict (after parse) {timed(lambda: model.predict(ours)):8.0f} ms")

    # The whole in-process request path, today vs with the read_csv-native parse and a label lookup for the
    # CSV answer, against bare predict on rows already in a DataFrame; one OpenMP thread everywhere (serve's
    # setting; on a busy 2-core machine two threads made predict several times slower, not faster).
    import pandas as pd
    from threadpoolctl import threadpool_limits
    from ml_pipeline.serving.app import render_csv

    rows = pd.read_csv(io.BytesIO(body), header=None, names=list(model.schema.names))
    escaped = {c: str(c) for c in (model.classes or [])}

    def today() -> bytes:
        return render_csv(model.predict(parse_body(body, "text/csv", model.schema)))

    def fixed() -> bytes:
        labels = model.predict(fast_parse_csv(body, model.schema)).labels
        return ("\n".join(escaped[label] for label in labels) + "\n").encode()

    with threadpool_limits(1):
        print(f"answers identical: {today() == fixed()}")
        print(f"request path today (parse+predict+render)   {timed(today):8.0f} ms")
        print(f"request path with the parse + render fixes  {timed(fixed):8.0f} ms")
        print(f"bare pipeline.predict on a DataFrame         {timed(lambda: model.pipeline.predict(rows)):8.0f} ms")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
