"""Per-request explanations (serving/explanations.py): `explain=true` answers each row's SHAP contributions per
input column, additive to the model's raw output (computed here with scikit-learn), for all three task kinds; the
refusals are 4xx; a request that does not ask never loads shap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from asgi_support import call

from entrypoint_support import TARGET, write_model_dir
from ml_pipeline import sample_data
from ml_pipeline.serving.parsing import parse_body

EXPLAIN = {"Content-Type": "text/csv", "X-Amzn-SageMaker-Custom-Attributes": "explain=true"}


@pytest.fixture()
def serve_model():
    """Installs a model into the serving module for one test, restoring what was there."""
    from ml_pipeline.serving import app as serving

    saved = (serving.state.model, serving.state.error, serving.state.cores, serving.state.explainer)

    def install(directory):
        from ml_pipeline.serving.predictor import CompiledModel

        model = CompiledModel.load(directory)
        serving.state.model, serving.state.error = model, None
        serving.state.cores = serving.state.explainer = None
        return model

    yield install
    serving.state.model, serving.state.error, serving.state.cores, serving.state.explainer = saved


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    frame = sample_data.generate(900, seed=71)
    root = tmp_path_factory.mktemp("explain")
    return {
        "binary": write_model_dir(root / "binary", frame),
        "multiclass": write_model_dir(root / "multiclass", frame.drop(columns=TARGET), target="contract"),
        "regression": write_model_dir(root / "regression", frame.drop(columns=TARGET), target="monthly_charges",
                                      task="regression"),
    }


def _rows(model, n: int, seed: int):
    frame = sample_data.generate(n, seed=seed)
    return frame[list(model.schema.names)]


def _raw(pipeline, frame) -> np.ndarray:
    estimator = pipeline.steps[-1][1]
    transformed = pipeline[:-1].transform(frame)
    return (estimator.decision_function(transformed) if hasattr(estimator, "decision_function")
            else estimator.predict(transformed))


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_each_rows_contributions_add_up_to_the_models_raw_output(models, serve_model, kind):
    from ml_pipeline.serving import app as serving

    model = serve_model(models[kind])
    rows = _rows(model, 12, seed=5)
    rows.iloc[0, 0] = np.nan  # a missing value is explained too
    body = rows.to_csv(index=False).encode()
    answer = call(serving.app, "POST", "/invocations", body, EXPLAIN)
    assert answer.status == 200, answer.body
    document = answer.json()
    plain = call(serving.app, "POST", "/invocations", body, {"Content-Type": "text/csv", "Accept": "application/json"})
    assert document["predictions"] == plain.json()["predictions"] and "explanations" not in plain.json()
    frame = model.frame(parse_body(body, "text/csv", model.schema))
    raw = _raw(model.pipeline, frame)
    classes = [str(c) for c in (model.classes or [])]
    assert len(document["explanations"]) == len(rows)
    for i, explained in enumerate(document["explanations"]):
        assert list(explained["contributions"]) == list(model.schema.names)
        total = explained["base_value"] + sum(explained["contributions"].values())
        if kind == "multiclass":
            assert explained["class"] == document["predictions"][i]
            expected = raw[i, classes.index(str(explained["class"]))]
        else:
            expected = raw[i]
        assert total == pytest.approx(float(expected), abs=1e-9)


def test_explanations_are_json_only_and_bounded_in_rows(models, serve_model):
    from ml_pipeline.serving import app as serving
    from ml_pipeline.serving.explanations import MAX_ROWS

    model = serve_model(models["binary"])
    one = _rows(model, 1, seed=6).to_csv(index=False).encode()
    refused = call(serving.app, "POST", "/invocations", one, {**EXPLAIN, "Accept": "text/csv"})
    assert refused.status == 406 and "application/json only" in refused.error
    many = _rows(model, MAX_ROWS + 1, seed=7).to_csv(index=False).encode()
    too_many = call(serving.app, "POST", "/invocations", many, EXPLAIN)
    assert too_many.status == 413 and f"at most {MAX_ROWS} rows" in too_many.error
    assert call(serving.app, "POST", "/invocations", one, EXPLAIN).status == 200  # still serving


def test_a_request_that_does_not_ask_never_loads_shap(models):
    """The fast path stays as it was: a plain request (in a fresh interpreter) imports neither shap nor the
    explainer; asking once loads them."""
    script = f"""
import sys
from asgi_support import call
from ml_pipeline import sample_data
from ml_pipeline.serving import app as serving
from ml_pipeline.serving.predictor import CompiledModel
serving.state.model = CompiledModel.load({str(models['binary'])!r})
body = sample_data.generate(3, seed=8).drop(columns=['{TARGET}']).to_csv(index=False).encode()
assert call(serving.app, "POST", "/invocations", body, {{"Content-Type": "text/csv"}}).status == 200
print("plain", "shap" in sys.modules, "ml_pipeline.serving.explanations" in sys.modules)
answer = call(serving.app, "POST", "/invocations", body, {EXPLAIN!r})
print("explained", answer.status, "shap" in sys.modules)
"""
    here = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=here,
                         env={**os.environ, "PYTHONPATH": str(here)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines() == ["plain False False", "explained 200 True"]
