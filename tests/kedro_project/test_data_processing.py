from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_pipeline.errors import ConfigError, DataError
from ml_pipeline.pipelines.data_processing import nodes
from ml_pipeline.schema import coerce_features, infer_task


def test_clean_data_drops_rows_without_target_and_turns_infinities_into_missing():
    raw = pd.DataFrame({"x": [1.0, np.inf, 3.0, 4.0], "c": ["a", "b", None, "a"], "y": ["p", "q", None, "p"]})
    cleaned, _ = nodes.clean_data(raw, "y")
    assert len(cleaned) == 3
    assert cleaned["x"].isna().sum() == 1


@pytest.mark.parametrize("raw, message", [
    (pd.DataFrame({"a": [1, 2]}), "target column 'y' not found; the columns are: a"),
    (pd.DataFrame({"a": [], "y": []}), "no rows"),
    (pd.DataFrame({"a": [1, 2], "y": [None, None]}), "no row has a value in the target column"),
])
def test_clean_data_says_what_is_wrong(raw, message):
    with pytest.raises(DataError, match=message):
        nodes.clean_data(raw, "y")


def test_task_inference():
    assert infer_task(pd.Series(["a", "b"]), "auto") == "classification"
    assert infer_task(pd.Series([0, 1, 1, 0]), "auto") == "classification"
    assert infer_task(pd.Series([0.5, 1.7, 2.2]), "auto") == "regression"
    assert infer_task(pd.Series(range(100)), "auto") == "regression"
    assert infer_task(pd.Series([0, 1, 1, 0]), "regression") == "regression"
    with pytest.raises(ConfigError):
        infer_task(pd.Series([1]), "clustering")


def test_infer_schema(processed):
    schema = processed["schema"]
    assert schema["task"] == "classification" and schema["classes"] == ["no", "yes"]
    kinds = {f["name"]: f["kind"] for f in schema["features"]}
    assert kinds["tenure_months"] == "numeric" and kinds["contract"] == "categorical"
    assert "churn" not in kinds


def test_infer_schema_rejects_a_single_class_and_a_text_regression_target():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"]})
    with pytest.raises(DataError, match="single class"):
        nodes.infer_schema(frame, "y", "auto")
    with pytest.raises(DataError, match="not numeric"):
        nodes.infer_schema(frame.assign(y=["a", "b", "c"]), "y", "regression")


def test_model_input_has_the_serving_representation(processed):
    model_input = processed["model_input"]
    assert model_input["tenure_months"].dtype == np.float64
    contract = model_input["contract"]
    # Categorical columns are `category` of str values (codes in memory): as an array, what serving builds.
    assert isinstance(contract.dtype, pd.CategoricalDtype) and contract.cat.categories.dtype == object
    assert all(isinstance(v, str) or v != v for v in np.asarray(contract, dtype=object))


def test_coerce_features_names_a_non_numeric_value():
    features = [{"name": "x", "kind": "numeric", "dtype": "float64"}]
    with pytest.raises(DataError, match="column 'x' must be numeric but holds e.g. \\['abc'\\]"):
        coerce_features(pd.DataFrame({"x": ["1", "abc"]}), features)


def test_split_is_seeded_70_20_10_and_disjoint(processed):
    model_input = processed["model_input"].assign(row=np.arange(len(processed["model_input"])))
    train, test, validation = nodes.split_data(model_input, {"train": 0.7, "test": 0.2, "validation": 0.1}, 42)
    assert (len(train), len(test), len(validation)) == (840, 240, 120)
    assert set(train["row"]).isdisjoint(test["row"]) and set(test["row"]).isdisjoint(validation["row"])
    assert len(set(train["row"]) | set(test["row"]) | set(validation["row"])) == len(model_input)
    again, _, _ = nodes.split_data(model_input, {"train": 0.7, "test": 0.2, "validation": 0.1}, 42)
    other, _, _ = nodes.split_data(model_input, {"train": 0.7, "test": 0.2, "validation": 0.1}, 43)
    assert list(again["row"]) == list(train["row"]) and list(other["row"]) != list(train["row"])
    assert list(train["row"][:20]) != list(range(20))  # shuffled


def test_split_rejects_bad_fractions_and_tiny_data(processed):
    with pytest.raises(ConfigError):
        nodes.split_data(processed["model_input"], {"train": 0.8, "test": 0.2, "validation": 0.1}, 1)
    with pytest.raises(DataError, match="at least 10"):
        nodes.split_data(processed["model_input"].iloc[:5], {"train": 0.7, "test": 0.2, "validation": 0.1}, 1)


def test_reference_profile(processed):
    profile = processed["profile"]
    age = profile["features"]["customer_age"]
    assert age["kind"] == "numeric" and 0.0 < age["null_fraction"] < 0.1
    assert abs(sum(age["bin_fractions"]) + age["null_fraction"] - 1.0) < 1e-9
    contract = profile["features"]["contract"]
    assert set(contract["frequencies"]) == {"month-to-month", "one-year", "two-year"}


def test_expectation_suite_covers_schema_types_nulls_ranges_and_sets(processed):
    suite = processed["suite"]
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    assert ("expect_table_columns_to_match_set", None) in kinds
    assert ("expect_column_to_exist", "churn") in kinds
    assert ("expect_column_values_to_be_in_type_list", "tenure_months") in kinds
    assert ("expect_column_values_to_be_between", "customer_age") in kinds
    assert ("expect_column_values_to_not_be_null", "customer_age") in kinds
    assert ("expect_column_values_to_be_in_set", "contract") in kinds
    age_range = next(e for e in suite["expectations"]
                     if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "customer_age")
    assert 0 <= age_range["kwargs"]["min_value"] <= 18 and 90 <= age_range["kwargs"]["max_value"] < 120
