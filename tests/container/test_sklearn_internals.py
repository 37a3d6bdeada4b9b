"""The scikit-learn internals the serving fast path reads — named, checked, and loud when an upgrade changes them.

`ml_pipeline/serving/forest.py` (`Forest`, `TreeWalk`) reads private attributes of a fitted
HistGradientBoosting estimator. `CompiledModel` verifies the fast path on probe rows at load time and falls back to
the estimator's own `predict` if anything differs or fails: correct, but silently slower, and nothing else would
say that the fast path stopped being taken. These tests fail instead, naming the attribute and what to do.
The public parts of the fitted Pipeline the fast path reads (`statistics_`, `mean_`, `scale_`, `categories_`,
`transformers_`, `n_trees_per_iteration_`, `classes_`) are covered by tests/container/test_predictor.py.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import sklearn

from entrypoint_support import TARGET, write_model_dir
from ml_pipeline import sample_data
from ml_pipeline.serving.predictor import CompiledModel

REPO = Path(__file__).resolve().parents[2]
PINNED = re.search(r"^scikit-learn==(\S+)", (REPO / "container" / "requirements.txt").read_text(), re.M).group(1)

# Every private member of a fitted HistGradientBoosting estimator that forest.py reads.
PRIVATE = ("_predictors", "_baseline_prediction", "_loss", "_preprocessor", "_bin_mapper")
# The fields forest.Forest reads from each tree's `nodes` record array (TreePredictor, a private class).
NODE_FIELDS = {"feature_idx": "iu", "num_threshold": "f", "left": "iu", "right": "iu", "is_leaf": "iub",
               "missing_go_to_left": "iub", "value": "f", "is_categorical": "iub"}


def fail(what: str) -> None:
    pytest.fail(
        f"The serving fast path (kedro_project/src/ml_pipeline/serving/forest.py: Forest, TreeWalk) reads scikit-learn "
        f"private attributes {', '.join(PRIVATE)} and the fields {', '.join(NODE_FIELDS)} of each tree's `nodes`; "
        f"scikit-learn=={sklearn.__version__} (pinned {PINNED} in container/requirements.txt) changed them: {what}. "
        "Update forest.py to the new internals, or the verified fallback will silently run "
        "(every prediction through the estimator's own predict: correct, slower).", pytrace=False)


def _frame(kind: str):
    frame = sample_data.generate(900, seed=81)
    if kind == "multiclass":
        return frame.rename(columns={"contract": TARGET, TARGET: "churned"})
    if kind == "regression":
        frame[TARGET] = frame["monthly_charges"].fillna(50) * 2 + frame["tenure_months"]
        return frame.drop(columns="monthly_charges")
    return frame


@pytest.fixture(scope="module", params=["binary", "multiclass", "regression"])
def model(request, tmp_path_factory) -> CompiledModel:
    return CompiledModel.load(write_model_dir(tmp_path_factory.mktemp(request.param), _frame(request.param)))


def test_the_pinned_version_is_the_one_installed():
    assert sklearn.__version__ == PINNED, (
        f"scikit-learn {sklearn.__version__} is installed but container/requirements.txt pins {PINNED}: "
        "these checks describe the pinned version")


def test_the_private_attributes_exist_with_the_expected_types_and_shapes(model):
    estimator = model.estimator
    missing = [name for name in PRIVATE if not hasattr(estimator, name)]
    if missing:
        fail(f"the fitted {type(estimator).__name__} has no {', '.join(missing)}")
    outputs = int(estimator.n_trees_per_iteration_)
    if estimator._preprocessor is not None:
        fail(f"_preprocessor is {type(estimator._preprocessor).__name__}, not None, for a model without native "
             "categorical features")
    baseline = np.asarray(estimator._baseline_prediction)
    if baseline.dtype != np.float64 or baseline.reshape(-1).shape != (outputs,):
        fail(f"_baseline_prediction is {baseline.dtype} of shape {baseline.shape}, not float64 with "
             f"{outputs} value(s)")
    predictors = estimator._predictors
    if not isinstance(predictors, list) or len(predictors) != estimator.n_iter_ or \
            any(len(iteration) != outputs for iteration in predictors):
        fail(f"_predictors is not a list of n_iter_={estimator.n_iter_} iterations of {outputs} tree(s) each")
    nodes = predictors[0][0].nodes
    fields = nodes.dtype.fields or {}
    wrong = {name: kinds for name, kinds in NODE_FIELDS.items()
             if name not in fields or fields[name][0].kind not in kinds}
    if wrong:
        fail(f"a tree's nodes lack or changed the type of {', '.join(wrong)} (dtype {nodes.dtype})")
    predict = inspect.signature(type(predictors[0][0]).predict).parameters
    if not {"known_cat_bitsets", "f_idx_map", "n_threads"} <= set(predict):
        fail(f"TreePredictor.predict takes ({', '.join(predict)}), not known_cat_bitsets, f_idx_map, n_threads")
    bitsets = estimator._bin_mapper.make_known_categories_bitsets()
    if not (isinstance(bitsets, tuple) and len(bitsets) == 2):
        fail("_bin_mapper.make_known_categories_bitsets() no longer returns (known_cat_bitsets, f_idx_map)")
    loss = estimator._loss
    absent = [] if callable(getattr(getattr(loss, "link", None), "inverse", None)) else ["link.inverse"]
    if model.task == "classification" and not callable(getattr(loss, "predict_proba", None)):
        absent.append("predict_proba")
    if absent:
        fail(f"_loss ({type(loss).__name__}) has no callable {', '.join(absent)}")


def test_the_fast_path_is_actually_taken(model):
    if not model.compiled:
        pytest.fail("the Pipeline's preprocessing is not compiled: see ml_pipeline/serving/predictor.py _compile "
                    "(public attributes changed, or the Pipeline's shape in ml_pipeline/model.py)", pytrace=False)
    if model.forest is None:
        fail("forest.Forest could not be built or did not reproduce the estimator on probe rows (the log says why)")
    if model.walk is None:
        fail("forest.TreeWalk could not be built or did not reproduce the estimator on probe rows (the log says why)")
