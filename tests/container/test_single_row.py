"""One-row requests (the single-row path: parsing.Columns.single, CompiledModel._predict_row, Forest.row_*): the very
labels and probabilities scikit-learn gives, on random rows, any feature values, near-ties and the values TL2cgen
would read as missing; and the array path whenever the single-row path cannot answer or disagrees at load."""

from __future__ import annotations

import math
from array import array

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_support import KINDS, pipeline_answers, random_rows
from ml_pipeline.serving import predictor
from ml_pipeline.serving.parsing import NA_TOKENS, RequestError, parse_csv, parse_json
from ml_pipeline.serving.predictor import CompiledModel


def _one_row_bodies(rows: pd.DataFrame):
    """Each row as a one-line CSV body and as a JSON record (missing values as null)."""
    lines = rows.to_csv(index=False, header=False).splitlines()
    for i, line in enumerate(lines):
        record = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                  for k, v in rows.iloc[i].items()}
        yield i, (line + "\n").encode(), orjson.dumps({"instances": [record]}, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.parametrize("kind", KINDS)
def test_one_row_requests_give_scikit_learns_labels_and_probabilities(task_models, kind):
    model = task_models[kind]
    assert model.single_row, model.single_row_reason
    rows = random_rows(model, 300, seed=11)
    labels, proba = pipeline_answers(model, rows)
    for i, csv_body, json_body in _one_row_bodies(rows):
        for parsed in (parse_csv(csv_body, model.schema), parse_json(json_body, model.schema)):
            assert parsed.row is not None  # the single-row path, not the column arrays
            label_only = model.predict(parsed)
            with_probabilities = model.predict(parsed, probabilities=True)
            assert label_only.labels == with_probabilities.labels == [labels[i]], i
            if proba is not None:
                assert label_only.probabilities is None
                np.testing.assert_array_equal(with_probabilities.probabilities, proba[i:i + 1])


@pytest.mark.parametrize("kind", KINDS)
def test_the_compiled_trees_take_one_row_exactly_on_any_feature_values(task_models, kind):
    model = task_models[kind]
    rng = np.random.default_rng(12)
    width = model.forest._feature_count
    x = rng.normal(0, 3, size=(1000, width))
    x[:5, 0] = [np.inf, -np.inf, 0.0, -0.0, 1e300]
    for i, row in enumerate(array("d", r) for r in x.tolist()):
        if model.task == "classification":
            expected = model.estimator.predict_proba(x[i:i + 1])[0]
            np.testing.assert_array_equal(model.forest.row_proba(row), expected)
            assert model.forest.row_label(row) == int(np.argmax(expected))
        else:
            assert model.forest.row_raw(row)[0] == model.estimator.predict(x[i:i + 1])[0]


def _near_ties(outputs: int) -> list[list[float]]:
    """Raw scores whose probabilities tie or nearly tie: the order of the raw scores is not enough there."""
    rng = np.random.default_rng(13)
    cases = []
    for base in (0.0, 1.5, -40.0, 700.0):
        for gap in (0.0, 1e-17, 1e-15, 1e-12, 5e-10, 1e-9, 2e-9, 1e-6, math.ulp(base or 1.0)):
            for order in range(outputs):
                raw = list(rng.normal(base - 5, 1, outputs))
                raw[order] = base
                raw[(order + 1) % outputs] = base + gap
                cases.append(raw)
                cases.append([v - gap for v in raw[::-1]])
    return cases


def test_near_ties_between_classes_are_decided_as_predict_proba_decides_them(task_models):
    forest = task_models["multiclass"].forest
    decided_by_probabilities = 0
    for raw in _near_ties(3):
        expected = int(np.argmax(forest.predict_proba_raw(np.array([raw]))[0]))
        top = int(np.argmax(raw))
        decided_by_probabilities += expected != top
        assert forest.label_from_raw(raw) == expected, raw
    assert decided_by_probabilities > 0  # some ties are decided against the larger raw score, and were caught


def test_the_positive_class_needs_a_probability_above_one_half(task_models):
    forest = task_models["binary"].forest
    for raw in (0.0, -0.0, 1e-300, -1e-300, 5e-17, -5e-17, 1e-9, -1e-9, 36.8, -36.8, 800.0, -800.0):
        expected = int(np.argmax(forest.predict_proba_raw(np.array([[raw]]))[0]))
        assert forest.label_from_raw([raw]) == expected, raw


def _value_read_as_missing(model: CompiledModel) -> tuple[str, float]:
    """A numeric input value whose scaled feature has all-ones low 32 bits (TL2cgen's "missing" marker)."""
    block = next(b for b in model.blocks if isinstance(b, predictor._NumericBlock))
    position, _, mean, scale = block.row_plan[0]
    rng = np.random.default_rng(14)
    for _ in range(10_000):
        wanted = np.array([rng.normal()]).view(np.uint64) | np.uint64(0xFFFFFFFF)
        feature = float(wanted.view(np.float64)[0])
        value = feature * scale + mean
        if (value - mean) / scale == feature:
            return model.schema.names[position], value
    raise AssertionError("no input value maps to such a feature")


@pytest.mark.parametrize("kind", KINDS)
def test_a_row_the_trees_would_misread_is_predicted_by_the_array_path(task_models, kind, monkeypatch):
    model = task_models[kind]
    name, value = _value_read_as_missing(model)
    rows = random_rows(model, 20, seed=15)
    rows[name] = value
    labels, proba = pipeline_answers(model, rows)
    declined = []
    row_raw = model.forest.row_raw
    monkeypatch.setattr(model.forest, "row_raw", lambda features: declined.append(row_raw(features)) or declined[-1])
    for i, csv_body, _ in _one_row_bodies(rows):
        served = model.predict(parse_csv(csv_body, model.schema), probabilities=True)
        assert declined[-1] is None  # the single-row path declined the row ...
        assert served.labels == [labels[i]]  # ... and the array path answered it exactly
        if proba is not None:
            np.testing.assert_array_equal(served.probabilities, proba[i:i + 1])


def test_a_single_row_path_that_disagrees_at_load_is_not_used(task_model_dirs, monkeypatch):
    extend_row = predictor._NumericBlock.extend_row

    def off_by_a_little(self, row, features):
        extend_row(self, row, features)
        features[-1] = features[-1] * (1 + 1e-6) + 1e-3

    monkeypatch.setattr(predictor._NumericBlock, "extend_row", off_by_a_little)
    model = CompiledModel.load(task_model_dirs["binary"])
    assert not model.single_row and "differ from the array path's on probe row" in model.single_row_reason
    assert "single-row path not used" in model.fast_path
    rows = random_rows(model, 40, seed=16)
    labels, proba = pipeline_answers(model, rows)
    for i, csv_body, _ in _one_row_bodies(rows):
        served = model.predict(parse_csv(csv_body, model.schema), probabilities=True)
        assert served.labels == [labels[i]]
        np.testing.assert_array_equal(served.probabilities, proba[i:i + 1])


# --- parsing: one row read by the single-row path = the same row read by the column path -------------------------

NUMBER_TOKENS = [*sorted(NA_TOKENS), "inf", "-Infinity", "1e400", "1_000", " 1.5", " NA ", "\t7", "1 000", "0x10",
                 "--1", "+3", ".5", "5.", "-0", "True", "x", "２"]
CATEGORY_TOKENS = [*sorted(NA_TOKENS), " NA", "nan ", "martian", "1.0", "None", "é"]
JSON_SCALARS = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(allow_nan=False))
# Mostly values a row may hold, so that about a quarter of the records are read by the single-row path.
JSON_NUMBERS = st.one_of(*[JSON_SCALARS] * 12, st.sampled_from(NUMBER_TOKENS), st.booleans(), st.just([1]))
JSON_CATEGORIES = st.one_of(*[st.sampled_from(CATEGORY_TOKENS)] * 6, JSON_SCALARS, st.booleans(), st.just({"a": 1}))


def _outcome(parse, body: bytes, schema):
    """The first row's values (numbers as their bits, so that NaN equals NaN), or the error a client gets."""
    try:
        parsed = parse(body, schema)
    except RequestError as error:
        return ("error", error.status, error.message)
    numeric = {n: np.asarray(v[:1], dtype=np.float64).view(np.uint64).tolist() for n, v in parsed.numeric.items()}
    categorical = {n: [type(v[0]), v[0]] for n, v in parsed.categorical.items()}
    dtypes = {n: v.dtype.str for n, v in {**parsed.numeric, **parsed.categorical}.items()}
    return numeric, categorical, dtypes


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_csv_row_reads_the_same_alone_as_among_others(task_models, data):
    schema = task_models["binary"].schema
    fields = [data.draw(st.one_of(st.sampled_from(NUMBER_TOKENS), st.floats().map(repr)) if numeric
                        else st.sampled_from(CATEGORY_TOKENS))
              for numeric in schema.numeric_flags]
    line = ",".join(fields)
    alone = _outcome(parse_csv, (line + "\n").encode(), schema)
    among_others = _outcome(parse_csv, (line + "\n" + line + "\n").encode(), schema)
    assert alone == among_others


@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=st.data())
def test_a_json_record_reads_the_same_alone_as_among_others(task_models, data):
    schema = task_models["binary"].schema
    record = {name: data.draw(JSON_NUMBERS if numeric else JSON_CATEGORIES)
              for name, numeric in zip(schema.names, schema.numeric_flags, strict=True)}
    one, two = orjson.dumps({"instances": [record]}), orjson.dumps({"instances": [record, record]})
    assert _outcome(parse_json, one, schema) == _outcome(parse_json, two, schema)
