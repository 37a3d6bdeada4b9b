"""Bias metrics (ml_pipeline/bias.py): Clarify's definitions checked against hand computation on a ten-row table,
against fairlearn where it has the same quantity, and end to end on synthetic data with and without an injected
bias against one facet value."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                               equalized_odds_difference, selection_rate, true_negative_rate)
from sklearn.metrics import accuracy_score, precision_score, recall_score

from ml_pipeline import bias
from ml_pipeline.entrypoints import training_runtime_params
from ml_pipeline.errors import ConfigError
from ml_pipeline.pipelines.data_processing import nodes as processing
from ml_pipeline.pipelines.evaluation import nodes
from ml_pipeline.pipelines.training import nodes as training

from kedro_test_params import SPLIT, TRAINING

# Ten rows: facet d = the first four. Columns: facet, group, observed label y, predicted label ŷ (1 = positive).
TINY = pd.DataFrame({
    "facet": ["d", "d", "d", "d", "a", "a", "a", "a", "a", "a"],
    "group": ["g1", "g1", "g2", "g2", "g1", "g1", "g1", "g2", "g2", "g2"],
    "y": [1, 0, 0, 0, 1, 1, 0, 1, 0, 0],
    "y_hat": [1, 0, 1, 1, 1, 0, 0, 1, 1, 0],
})
D = (TINY["facet"] == "d").to_numpy()
Y = TINY["y"].to_numpy() == 1
Y_HAT = TINY["y_hat"].to_numpy() == 1
GROUPS = TINY["group"].to_numpy(dtype=object)


def test_pre_training_metrics_equal_hand_computation():
    got = bias.pre_training_metrics(D, TINY["y"].to_numpy(dtype=object), Y, GROUPS)
    # n_a = 6, n_d = 4; q_a = 3/6, q_d = 1/4; P_a = (½, ½), P_d = (¾, ¼) over (negative, positive)
    p_a, p_d = np.array([0.5, 0.5]), np.array([0.75, 0.25])
    mixture = (p_a + p_d) / 2
    expected = {
        "CI": (6 - 4) / 10,
        "DPL": 3 / 6 - 1 / 4,
        "KL": 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25),
        "JS": 0.5 * (sum(p_a * np.log(p_a / mixture)) + sum(p_d * np.log(p_d / mixture))),
        "LP": math.sqrt(0.25 ** 2 + 0.25 ** 2),
        "TVD": 0.5 * (0.25 + 0.25),
        "KS": 0.25,
        # g1 (5 rows): d has 1 of 2 rejected, 1 of 3 accepted → ½ − ⅓; g2 (5 rows): 2 of 4 rejected, 0 of 1
        # accepted → ½ − 0
        "CDDL": (5 * (1 / 2 - 1 / 3) + 5 * (2 / 4 - 0)) / 10,
    }
    assert got == pytest.approx(expected, abs=1e-12)
    assert expected["KL"] == pytest.approx(0.5 * math.log(4 / 3))


def test_post_training_metrics_equal_hand_computation():
    got = bias.post_training_metrics(D, Y, Y_HAT, GROUPS)
    # a: TP 2, FP 1, FN 1, TN 2 (n 6, n1 3, n0 3, n̂1 3, n̂0 3)
    # d: TP 1, FP 2, FN 0, TN 1 (n 4, n1 1, n0 3, n̂1 3, n̂0 1)
    expected = {
        "DPPL": 3 / 6 - 3 / 4,
        "DI": (3 / 4) / (3 / 6),
        "DCAcc": 3 / 3 - 1 / 3,
        "DCR": 3 / 1 - 3 / 3,
        "RD": 2 / 3 - 1 / 1,
        "SD": 1 / 3 - 2 / 3,
        "DAR": 2 / 3 - 1 / 3,
        "DRR": 1 / 1 - 2 / 3,
        "AD": 4 / 6 - 2 / 4,
        "TE": 0 / 2 - 1 / 1,
        # predicted: g1 d has 1 of 3 rejected, 1 of 2 accepted; g2 d has 0 of 1 rejected, 2 of 4 accepted
        "CDDPL": (5 * (1 / 3 - 1 / 2) + 5 * (0 - 2 / 4)) / 10,
    }
    assert got == pytest.approx(expected, abs=1e-12)


def _fairlearn_frame(y, y_hat, d):
    return MetricFrame(metrics={"selection": selection_rate, "recall": recall_score, "tnr": true_negative_rate,
                                "accuracy": accuracy_score, "precision": precision_score},
                       y_true=y, y_pred=y_hat, sensitive_features=np.where(d, "d", "a")).by_group


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_post_training_metrics_agree_with_fairlearn(seed):
    rng = np.random.default_rng(seed)
    d = rng.random(400) < 0.3
    y = rng.random(400) < np.where(d, 0.3, 0.5)
    y_hat = np.where(rng.random(400) < 0.8, y, ~y) & (rng.random(400) < np.where(d, 0.7, 1.0))
    got = bias.post_training_metrics(d, y, y_hat, None)
    by_group = _fairlearn_frame(y, y_hat, d)
    assert abs(got["DPPL"]) == pytest.approx(demographic_parity_difference(y, y_hat, sensitive_features=d))
    assert min(got["DI"], 1 / got["DI"]) == pytest.approx(demographic_parity_ratio(y, y_hat, sensitive_features=d))
    assert got["DPPL"] == pytest.approx(by_group.loc["a", "selection"] - by_group.loc["d", "selection"])
    assert got["RD"] == pytest.approx(by_group.loc["a", "recall"] - by_group.loc["d", "recall"])
    assert got["SD"] == pytest.approx(by_group.loc["d", "tnr"] - by_group.loc["a", "tnr"])
    assert got["AD"] == pytest.approx(by_group.loc["a", "accuracy"] - by_group.loc["d", "accuracy"])
    assert got["DAR"] == pytest.approx(by_group.loc["a", "precision"] - by_group.loc["d", "precision"])
    # equalized odds = the larger gap of TPR and FPR; FPR = 1 − TNR, so its gap is |SD|
    assert max(abs(got["RD"]), abs(got["SD"])) == pytest.approx(
        equalized_odds_difference(y, y_hat, sensitive_features=d))


def test_pre_training_dpl_is_fairlearns_demographic_parity_of_the_labels():
    # DPL is DPPL with the labels in place of predictions: fairlearn's selection-rate gap of y "predicted" as y
    assert bias.pre_training_metrics(D, TINY["y"].to_numpy(dtype=object), Y, None)["DPL"] == pytest.approx(
        demographic_parity_difference(Y, Y, sensitive_features=D))


def test_clarify_conventions_for_empty_denominators():
    d = np.array([True, True, False, False])
    y = np.array([True, False, True, False])
    nobody_predicted_positive = np.zeros(4, dtype=bool)
    got = bias.post_training_metrics(d, y, nobody_predicted_positive, None)
    # q̂_a = q̂_d = 0: DI = 0/0 = 0 (Clarify's divide); both acceptance ratios are x/0 = ∞, their difference 0
    assert got["DI"] == 0.0 and got["DPPL"] == 0.0 and got["DCAcc"] == 0.0
    # TE: FN/FP = 1/0 in both facets → ∞ − ∞ = 0 as in Clarify
    assert got["TE"] == 0.0
    assert math.isnan(got["CDDPL"])  # no group column


def _frame(rows: int, seed: int, injected: bool) -> pd.DataFrame:
    """A facet `region` (north = sensitive), two real signals and a noise column; with `injected`, north's label
    is pushed towards the unfavourable class whatever its signals say."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south", "east"], size=rows, p=[0.3, 0.35, 0.35])
    income = rng.normal(50, 15, rows)
    tenure = rng.integers(0, 60, rows).astype(float)
    score = 0.08 * (income - 50) + 0.05 * (tenure - 30) + rng.normal(0, 1, rows)
    if injected:
        score = score - 2.5 * (region == "north")
    return pd.DataFrame({"region": region, "income": income, "tenure": tenure, "noise": rng.normal(0, 1, rows),
                         "approved": np.where(score > 0, "yes", "no")})


def _run(frame: pd.DataFrame, responsible_ml) -> tuple[dict, dict]:
    cleaned, _ = processing.clean_data(frame, "approved")
    schema = processing.infer_schema(cleaned, "approved", "auto")
    train, test, _ = processing.split_data(processing.prepare_model_input(cleaned, schema), SPLIT, 42)
    model, _ = training.train_model(train, schema, TRAINING, 42)
    report = nodes.compute_bias(model, train, test, schema, responsible_ml)
    north_train, north_test = train["region"] == "north", test["region"] == "north"
    predicted_yes = pd.Series(model.predict(test[[f["name"] for f in schema["features"]]]) == "yes", index=test.index)
    expected = {  # the same figures by hand, with pandas
        "CI": (int((~north_train).sum()) - int(north_train.sum())) / len(train),
        "DPL": ((train.loc[~north_train, "approved"] == "yes").mean()
                - (train.loc[north_train, "approved"] == "yes").mean()),
        "DPPL": predicted_yes[~north_test].mean() - predicted_yes[north_test].mean(),
        "DI": predicted_yes[north_test].mean() / predicted_yes[~north_test].mean(),
    }
    return report, expected


CONFIG = json.dumps({"facets": [{"column": "region", "values": ["north"]}], "positive_label": "yes"})


def test_injected_bias_against_one_facet_value_is_flagged_with_the_hand_computed_values():
    report, expected = _run(_frame(3000, 5, injected=True), CONFIG)
    facet = report["facets"][0]
    assert report["configured"] is True and report["positive_label"] == "yes" and facet["label"] == "region in {north}"
    assert facet["pre_training"]["CI"] == pytest.approx(expected["CI"])
    assert facet["pre_training"]["DPL"] == pytest.approx(expected["DPL"])
    assert facet["post_training"]["DPPL"] == pytest.approx(expected["DPPL"])
    assert facet["post_training"]["DI"] == pytest.approx(expected["DI"])
    # flagged: the labels favour the rest by > 0.3 and the model's DI is far outside the four-fifths rule
    assert facet["pre_training"]["DPL"] > 0.3 and facet["post_training"]["DI"] < 0.8
    assert json.loads(json.dumps(report, allow_nan=False)) == report


def test_unbiased_data_passes():
    report, expected = _run(_frame(3000, 6, injected=False), CONFIG)
    facet = report["facets"][0]
    assert facet["pre_training"]["DPL"] == pytest.approx(expected["DPL"])
    assert facet["post_training"]["DI"] == pytest.approx(expected["DI"])
    assert abs(facet["pre_training"]["DPL"]) < 0.05 and 0.8 <= facet["post_training"]["DI"] <= 1.25
    assert facet["pre_training"]["KL"] < 0.01 and report["reason"] is None
    assert facet["reason"] == "CDDL: no group_column configured; CDDPL: no group_column configured"


def test_numeric_facet_threshold_group_column_and_skips_with_reasons(processed, fitted):
    model = fitted[0]
    config = {"facets": [{"column": "customer_age", "threshold": 40}], "group_column": "plan"}
    report = nodes.compute_bias(model, processed["train"], processed["test"], processed["schema"], config)
    facet = report["facets"][0]
    assert report["positive_label"] == "yes"  # binary default: the second sorted class
    assert facet["n_d"] == int((processed["train"]["customer_age"] > 40).sum())
    assert facet["n_d"] + facet["n_a"] == len(processed["train"])
    assert set(facet["pre_training"]) == set(bias.PRE_TRAINING)
    assert set(facet["post_training"]) == set(bias.POST_TRAINING)
    assert facet["pre_training"]["CDDL"] is not None and facet["post_training"]["CDDPL"] is not None
    # without a group column CDDL/CDDPL are null and the facet says why
    plain = nodes.compute_bias(model, processed["train"], processed["test"], processed["schema"],
                               {"facets": [{"column": "contract", "values": ["two-year"]}]})["facets"][0]
    assert plain["pre_training"]["CDDL"] is None and "CDDL: no group_column configured" in plain["reason"]


def test_the_columns_taken_before_training_give_the_same_report(processed, fitted):
    """select_bias_columns runs before the fit, so that the train split is released first: the report from its
    columns is the report from the whole split."""
    model = fitted[0]
    config = {"facets": [{"column": "customer_age", "threshold": 40}, {"column": "contract", "values": ["two-year"]}],
              "group_column": "plan"}
    taken = nodes.select_bias_columns(processed["train"], processed["schema"], config)
    assert list(taken.columns) == ["customer_age", "contract", "plan", "churn"]
    assert not np.shares_memory(taken["customer_age"].to_numpy(), processed["train"]["customer_age"].to_numpy())
    whole = nodes.compute_bias(model, processed["train"], processed["test"], processed["schema"], config)
    assert nodes.compute_bias(model, taken, processed["test"], processed["schema"], config) == whole
    assert whole["facets"][0]["n_d"] > 0 and whole["facets"][1]["pre_training"]["DPL"] is not None
    nothing = nodes.select_bias_columns(processed["train"], processed["schema"], None)
    assert nothing.shape == (len(processed["train"]), 0)
    with pytest.raises(ConfigError, match="facet column 'gender' is not in the data"):  # before training, not after
        nodes.select_bias_columns(processed["train"], processed["schema"],
                                  {"facets": [{"column": "gender", "values": ["f"]}]})


def test_nothing_configured_says_so(processed, fitted):
    report = nodes.compute_bias(fitted[0], processed["train"], processed["test"], processed["schema"], None)
    assert report == {"configured": False, "facets": [], "group_column": None, "positive_label": "yes",
                      "reason": "no facets configured (responsible_ml.facets)"}


def test_multiclass_without_positive_label_skips_post_training_with_a_reason():
    frame = _frame(300, 7, injected=False)
    frame["approved"] = np.where(frame["income"] > 60, "high", np.where(frame["income"] > 40, "mid", "low"))
    schema = {"task": "classification", "target": "approved", "classes": ["high", "low", "mid"],
              "features": [{"name": "region", "kind": "categorical"}, {"name": "income", "kind": "numeric"}]}
    config = bias.parse_config({"facets": [{"column": "region", "values": ["north"]}]})
    report = bias.bias_report(config, schema, frame, frame, frame["approved"].to_numpy())
    facet = report["facets"][0]
    assert "3 classes and no positive_label" in report["reason"] and facet["post_training"] == {}
    assert facet["pre_training"]["DPL"] != facet["pre_training"]["DPL"]  # NaN until to_jsonable: no positive class
    assert facet["pre_training"]["TVD"] >= 0 and math.isfinite(facet["pre_training"]["KL"])


def test_regression_uses_the_label_threshold():
    frame = pd.DataFrame({"x": ["d", "d", "a", "a", "a"], "y": [1.0, 3.0, 3.0, 4.0, 0.5]})
    schema = {"task": "regression", "target": "y", "classes": [], "features": [{"name": "x", "kind": "categorical"}]}
    config = bias.parse_config({"facets": [{"column": "x", "values": ["d"]}], "label_threshold": 2})
    predicted = np.array([2.5, 2.5, 1.0, 3.0, 3.0])
    report = bias.bias_report(config, schema, frame, frame, predicted)
    facet = report["facets"][0]
    assert report["label_threshold"] == 2.0
    assert facet["pre_training"]["DPL"] == pytest.approx(2 / 3 - 1 / 2)  # y > 2: a 2 of 3, d 1 of 2
    assert facet["post_training"]["DPPL"] == pytest.approx(2 / 3 - 2 / 2)  # ŷ > 2: a 2 of 3, d 2 of 2
    no_threshold = bias.bias_report(bias.parse_config({"facets": [{"column": "x", "values": ["d"]}]}), schema, frame,
                                    frame, predicted)
    assert "label_threshold" in no_threshold["reason"]
    assert no_threshold["facets"][0]["pre_training"] == {"CI": (3 - 2) / 5}


@pytest.mark.parametrize(("value", "message"), [
    ("{not json", "not valid JSON"),
    ('["region"]', "must be a JSON object"),
    ('{"facet": []}', "unknown keys ['facet']"),
    ('{"facets": [{"column": "region"}]}', "exactly one of 'values'"),
    ('{"facets": [{"column": "region", "values": []}]}', "non-empty list"),
    ('{"facets": [{"column": "age", "threshold": "old"}]}', "must be a number"),
    ('{"positive_label": "1", "label_threshold": 0.5}', "not both"),
])
def test_malformed_configuration_fails_with_the_reason(value, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        bias.parse_config(value)


def test_unknown_columns_fail_the_job_with_a_clear_message(processed, fitted):
    with pytest.raises(ConfigError, match=r"facet column 'gender' is not in the data; the columns are: customer_age"):
        nodes.compute_bias(fitted[0], processed["train"], processed["test"], processed["schema"],
                           {"facets": [{"column": "gender", "values": ["f"]}]})
    with pytest.raises(ConfigError, match="group_column 'district' is not in the data"):
        bias.check_columns(bias.parse_config({"group_column": "district"}), processed["schema"])
    with pytest.raises(ConfigError, match="positive_label 'maybe' is not a class of 'churn'; the classes are: no, yes"):
        bias.check_columns(bias.parse_config({"positive_label": "maybe"}), processed["schema"])
    with pytest.raises(ConfigError, match="threshold but the column is not numeric"):
        bias.check_columns(bias.parse_config({"facets": [{"column": "contract", "threshold": 1}]}), processed["schema"])


def test_the_hyperparameter_becomes_a_runtime_parameter():
    text = json.dumps({"facets": [{"column": "region", "values": ["north"]}, {"column": "age", "threshold": 40}],
                       "positive_label": 1, "group_column": "district", "intended_use": "triage"})
    params = training_runtime_params({"responsible_ml": text}, {})
    assert params["responsible_ml"] == {
        "facets": [{"column": "region", "values": ["north"]}, {"column": "age", "threshold": 40.0}],
        "positive_label": "1", "label_threshold": None, "group_column": "district", "intended_use": "triage"}
    assert "responsible_ml" not in training_runtime_params({"responsible_ml": ""}, {})
    with pytest.raises(ConfigError, match="responsible_ml.facets\\[0\\]"):
        training_runtime_params({"responsible_ml": '{"facets": [{"values": ["x"]}]}'}, {})


def test_facet_values_match_numbers_and_text_alike():
    frame = pd.DataFrame({"code": [1.0, 2.0, np.nan, 1.0], "name": ["1", "2", None, "x"]})
    assert bias.facet_mask(frame, {"column": "code", "values": [1]}).tolist() == [True, False, False, True]
    assert bias.facet_mask(frame, {"column": "name", "values": [1, "x"]}).tolist() == [True, False, False, True]
    assert bias.facet_mask(frame, {"column": "code", "threshold": 1.5}).tolist() == [False, True, False, False]
