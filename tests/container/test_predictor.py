"""Request parsing and the compiled fast path: same predictions as the Pipeline on the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from entrypoint_support import TARGET, write_model_dir
from ml_pipeline import sample_data
from ml_pipeline.schema import coerce_features
from ml_pipeline.serving.parsing import (PANDAS_THRESHOLD_ROWS, FeatureSchema, RequestError, parse_body, parse_csv,
                                         parse_json)
from ml_pipeline.serving.predictor import THREADED_MIN_ROWS, CompiledModel


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    frame = sample_data.generate(1500, seed=51)
    # A rare category: pooled as "infrequent" by the encoder, which the fast path must reproduce.
    frame.loc[:3, "region"] = "islands"
    return CompiledModel.load(write_model_dir(tmp_path_factory.mktemp("clf"), frame))


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    frame = sample_data.generate(800, seed=52)
    frame[TARGET] = frame["monthly_charges"].fillna(50) * 2 + frame["tenure_months"]
    return CompiledModel.load(write_model_dir(tmp_path_factory.mktemp("reg"), frame.drop(columns="monthly_charges")))


def _rows(model: CompiledModel, count: int, seed: int) -> pd.DataFrame:
    frame = sample_data.generate(count, seed=seed)
    if TARGET in frame and "monthly_charges" not in model.schema.names:
        frame = frame.drop(columns="monthly_charges")
    return frame[list(model.schema.names)]


def _csv(frame: pd.DataFrame, header: bool) -> bytes:
    return frame.to_csv(index=False, header=header).encode()


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    frame = sample_data.generate(900, seed=54).rename(columns={"contract": TARGET, TARGET: "churned"})
    return CompiledModel.load(write_model_dir(tmp_path_factory.mktemp("multi"), frame))


def test_fast_path_is_compiled_for_the_trained_pipeline(classifier, regressor, multiclass):
    for model in (classifier, regressor, multiclass):
        assert model.compiled and model.forest is not None, model.forest_reason


def test_compiled_trees_equal_the_estimator_for_three_classes(multiclass):
    rows = sample_data.generate(40, seed=55).rename(columns={"contract": TARGET, TARGET: "churned"})
    rows = rows[list(multiclass.schema.names)]
    for count in (1, 20):
        parsed = parse_csv(_csv(rows.head(count), header=False), multiclass.schema)
        fast = multiclass.predict(parsed, probabilities=True)
        expected = multiclass.pipeline.predict_proba(coerce_features(rows.head(count), multiclass.metadata["features"]))
        np.testing.assert_array_equal(fast.probabilities, expected)
        assert fast.probabilities.shape == (count, 3)


@pytest.mark.parametrize("count", [1, 7, PANDAS_THRESHOLD_ROWS + 100])
def test_fast_path_equals_pipeline_predict(classifier, count):
    rows = _rows(classifier, count, seed=53 + count)
    rows.loc[rows.index[:2], "contract"] = "never-seen-before"  # unknown category
    rows.loc[rows.index[-1:], "region"] = "islands"  # infrequent category
    parsed = parse_csv(_csv(rows, header=False), classifier.schema)
    fast = classifier.predict(parsed, probabilities=True)
    reference_input = coerce_features(pd.read_csv(pd.io.common.StringIO(_csv(rows, header=True).decode())),
                                      classifier.metadata["features"])
    np.testing.assert_array_equal(fast.probabilities, classifier.pipeline.predict_proba(reference_input))
    assert fast.labels == classifier.pipeline.predict(reference_input).tolist()
    np.testing.assert_array_equal(classifier.features(parsed),
                                  classifier.pipeline.steps[0][1].transform(reference_input))


@pytest.mark.parametrize("count", [1, 5, 200])
def test_fast_path_equals_pipeline_predict_for_regression(regressor, count):
    rows = _rows(regressor, count, seed=60)
    parsed = parse_csv(_csv(rows, header=True), regressor.schema)
    expected = regressor.pipeline.predict(coerce_features(rows, regressor.metadata["features"]))
    assert regressor.predict(parsed).labels == expected.tolist()


def test_small_batches_never_ask_for_threads(classifier):
    asked = []
    parsed = parse_csv(_csv(_rows(classifier, THREADED_MIN_ROWS - 1, seed=63), header=False), classifier.schema)
    classifier.predict(parsed, threads=lambda: asked.append(1) or 2)
    assert asked == []


def test_fallback_path_gives_the_same_predictions(classifier):
    rows = _rows(classifier, 30, seed=61)
    parsed = parse_csv(_csv(rows, header=False), classifier.schema)
    fast = classifier.predict(parsed, probabilities=True)
    slow_model = CompiledModel(classifier.pipeline, classifier.metadata)
    slow_model.compiled = False
    slow = slow_model.predict(parsed, probabilities=True)
    assert slow.labels == fast.labels
    np.testing.assert_array_equal(slow.probabilities, fast.probabilities)


def test_csv_header_is_optional_and_may_reorder_columns(classifier):
    rows = _rows(classifier, 5, seed=62)
    plain = parse_csv(_csv(rows, header=False), classifier.schema)
    reordered = rows[list(reversed(rows.columns))]
    with_header = parse_csv(_csv(reordered, header=True), classifier.schema)
    for name in classifier.schema.numeric_names:
        np.testing.assert_array_equal(plain.numeric[name], with_header.numeric[name])
    for name in classifier.schema.categorical_names:
        assert list(plain.categorical[name]) == list(with_header.categorical[name])


def test_json_forms_match_csv(classifier):
    rows = _rows(classifier, 4, seed=63)
    records = [{k: (None if (isinstance(v, float) and np.isnan(v)) else v) for k, v in r.items()}
               for r in rows.to_dict(orient="records")]
    csv_labels = classifier.predict(parse_csv(_csv(rows, header=False), classifier.schema)).labels
    for body in ({"instances": records}, records, {"instances": [list(r.values()) for r in records]}):
        assert classifier.predict(parse_json(json.dumps(body).encode(), classifier.schema)).labels == csv_labels
    single = parse_json(json.dumps(records[0]).encode(), classifier.schema)
    assert classifier.predict(single).labels == csv_labels[:1]


def test_missing_value_tokens_match_pandas(classifier):
    schema = classifier.schema
    values = {n: ("NA" if i % 3 == 0 else "") for i, n in enumerate(schema.names)}
    parsed = parse_csv((",".join(values[n] for n in schema.names) + "\n").encode(), schema)
    assert all(np.isnan(parsed.numeric[n][0]) for n in schema.numeric_names)
    assert all(parsed.categorical[n][0] is None for n in schema.categorical_names)
    quoted = parse_csv(b'"1","2","3","4","5","6","7","a, b","x","y","z","w","v"\n', schema)
    assert quoted.categorical["contract"][0] == "a, b" and quoted.numeric["customer_age"][0] == 1.0


@pytest.mark.parametrize("content_type, body, status, message", [
    ("application/xml", b"<a/>", 415, "unsupported content type application/xml"),
    ("", b"1,2", 415, "unsupported content type (none)"),
    ("text/csv", b"", 400, "empty CSV body"),
    ("text/csv", b"1,2,3\n", 400, "CSV line 1 has 3 fields, expected 13"),
    ("text/csv", "customer_age,contract,extra\n1,a,b\n".encode(), 400, "missing columns: tenure_months"),
    ("text/csv", "customer_age,contract,extra\n1,a,b\n".encode(), 400, "unexpected columns: extra"),
    ("text/csv", b"\xff\xfe\x00", 400, "not UTF-8"),
    ("application/json", b"{not json", 400, "not valid JSON"),
    ("application/json", b"[]", 400, "nothing to score"),
    ("application/json", b'{"instances": [{"customer_age": 1}]}', 400, "missing columns: tenure_months"),
    ("application/json", b'{"instances": [[1, 2]]}', 400, "instance 1 has 2 values, expected 13"),
    ("application/json", b'{"instances": [{"a": 1}, [1]]}', 400, "all be records"),
])
def test_bad_requests_are_client_errors_that_say_why(classifier, content_type, body, status, message):
    with pytest.raises(RequestError) as error:
        parse_body(body, content_type, classifier.schema)
    assert error.value.status == status and message in error.value.message


def test_non_numeric_value_is_named_in_small_and_large_requests(classifier):
    rows = _rows(classifier, PANDAS_THRESHOLD_ROWS + 10, seed=64).astype(object)
    rows.iloc[3, 1] = "abc"
    for frame in (rows.iloc[:5], rows):
        with pytest.raises(RequestError, match=r"column 'tenure_months' \(row 4\): 'abc' is not a number"):
            parse_csv(_csv(frame, header=False), classifier.schema)


def test_rows_with_too_few_or_too_many_fields_are_refused_in_large_requests(classifier):
    lines = _csv(_rows(classifier, PANDAS_THRESHOLD_ROWS + 10, seed=66), header=False).decode().splitlines()
    short = lines.copy()
    short[5] = short[5].rsplit(",", 2)[0]
    with pytest.raises(RequestError, match="CSV line 6 has 11 fields, expected 13"):
        parse_csv("\n".join(short).encode(), classifier.schema)
    long = lines.copy()
    long[5] += ",1,2"
    with pytest.raises(RequestError, match="CSV line 6 has 15 fields, expected 13"):
        parse_csv("\n".join(long).encode(), classifier.schema)


def test_an_integer_too_large_for_a_float_is_a_client_error(classifier):
    record = {name: 1 for name in classifier.schema.names}
    record["customer_age"] = 10 ** 400
    with pytest.raises(RequestError):
        parse_json(json.dumps({"instances": [record]}).encode(), classifier.schema)


def test_target_column_in_a_header_is_refused_with_a_hint(classifier):
    rows = sample_data.generate(2, seed=65)[[*classifier.schema.names, TARGET]]
    with pytest.raises(RequestError, match="the target column must not be sent"):
        parse_csv(_csv(rows, header=True), classifier.schema)


def test_schema_from_metadata(classifier):
    schema = FeatureSchema.from_metadata(classifier.metadata)
    assert schema.target == TARGET and "contract" in schema.categorical_names
