"""The trees compiled at training time (serving/forest.py): scikit-learn's numbers, and the estimator whenever the
compiled library is missing, stale, from another platform or wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from entrypoint_support import write_model_dir
from model_support import KINDS, frame_for, pipeline_answers, random_rows
from ml_pipeline.serving import forest
from ml_pipeline.serving.integrity import model_digest
from ml_pipeline.serving.parsing import parse_csv
from ml_pipeline.serving.predictor import CompiledModel


def _copy(task_model_dirs, kind: str, tmp_path):
    return shutil.copytree(task_model_dirs[kind], tmp_path / "model")


def _predict_both(model: CompiledModel, rows: pd.DataFrame):
    served = model.predict(parse_csv(rows.to_csv(index=False, header=False).encode(), model.schema), probabilities=True)
    labels, proba = pipeline_answers(model, rows)
    return served, proba, labels


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_trees_give_scikit_learns_predictions_onrandom_rows(task_models, kind):
    model = task_models[kind]
    assert model.forest is not None, model.forest_reason  # the compiled library is what predicts here
    for count, seed in ((1, 1), (7, 2), (500, 3)):
        served, proba, labels = _predict_both(model, random_rows(model, count, seed))
        assert served.labels == labels
        if proba is not None:
            np.testing.assert_array_equal(served.probabilities, proba)


@pytest.mark.parametrize("kind", KINDS)
def test_compiled_trees_equal_the_estimator_on_any_feature_values(task_models, kind):
    model = task_models[kind]
    rng = np.random.default_rng(4)
    width = model.features(parse_csv(random_rows(model, 1, 5).to_csv(index=False, header=False).encode(),
                                     model.schema)).shape[1]
    x = rng.normal(0, 3, size=(2000, width))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[:5, 0] = [np.inf, -np.inf, 0.0, -0.0, 1e300]
    method = "predict_proba" if model.task == "classification" else "predict"
    np.testing.assert_array_equal(getattr(model.forest, method)(x), getattr(model.estimator, method)(x))


@pytest.mark.parametrize("kind", KINDS)
def test_values_the_library_would_read_as_missing_are_predicted_exactly(task_models, kind):
    model = task_models[kind]
    x = model.features(parse_csv(random_rows(model, 200, 6).to_csv(index=False, header=False).encode(),
                                 model.schema))
    present = ~np.isnan(x)
    x.view(np.uint64)[present] |= np.uint64(0xFFFFFFFF)  # low 32 bits all ones: TL2cgen's "missing" marker
    method = "predict_proba" if model.task == "classification" else "predict"
    np.testing.assert_array_equal(getattr(model.forest, method)(x), getattr(model.estimator, method)(x))
    # The same bits in a NaN (still a NaN: missing for both), in rows without any other such value
    x = model.features(parse_csv(random_rows(model, 50, 9).to_csv(index=False, header=False).encode(), model.schema))
    x[:, 0] = np.array([0x7FF80000FFFFFFFF], dtype=np.uint64).view(np.float64)[0]
    np.testing.assert_array_equal(getattr(model.forest, method)(x), getattr(model.estimator, method)(x))


class _Budget:
    """A thread budget that changes between chunks, as it does when other workers start and stop computing."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return 1 + self.calls % 2


@pytest.mark.parametrize("kind", KINDS)
def test_large_batches_on_borrowed_threads_give_the_same_numbers(task_models, kind):
    model = task_models[kind]
    rows = random_rows(model, 3 * forest.CHUNK_ROWS + 17, 7)
    parsed = parse_csv(rows.to_csv(index=False, header=False).encode(), model.schema)
    budget = _Budget()
    borrowed = model.predict(parsed, probabilities=True, threads=budget)
    alone = model.predict(parsed, probabilities=True)
    assert budget.calls > 1  # asked again while the chunks were predicted
    assert borrowed.labels == alone.labels
    if model.task == "classification":
        np.testing.assert_array_equal(borrowed.probabilities, alone.probabilities)
        np.testing.assert_array_equal(borrowed.probabilities, model.estimator.predict_proba(model.features(parsed)))


def _served_by_the_estimator(directory, reason: str) -> CompiledModel:
    model = CompiledModel.load(directory)
    assert model.forest is None and model.compiled
    assert reason in model.forest_reason and reason in model.fast_path
    served, proba, labels = _predict_both(model, random_rows(model, 50, 8))
    assert served.labels == labels
    if proba is not None:
        np.testing.assert_array_equal(served.probabilities, proba)
    return model


@pytest.mark.parametrize("kind", KINDS)
def test_without_the_compiled_library_the_estimator_serves(task_model_dirs, kind, tmp_path):
    directory = _copy(task_model_dirs, kind, tmp_path)
    shutil.rmtree(directory / forest.DIRECTORY)  # a model directory from before the library existed
    _served_by_the_estimator(directory, "no forest/forest.json")


def test_a_library_compiled_from_other_trees_is_stale(task_model_dirs, tmp_path):
    directory = _copy(task_model_dirs, "binary", tmp_path)
    other = write_model_dir(tmp_path / "other", frame_for("binary", 600, seed=82), max_iter=20)
    shutil.rmtree(directory / forest.DIRECTORY)
    shutil.copytree(other / forest.DIRECTORY, directory / forest.DIRECTORY)  # a retrain that left the old library
    _served_by_the_estimator(directory, "compiled from other trees than model.joblib's (stale)")


def test_a_library_that_is_not_the_one_its_record_describes_is_not_loaded(task_model_dirs, tmp_path, monkeypatch):
    directory = _copy(task_model_dirs, "multiclass", tmp_path)
    other = write_model_dir(tmp_path / "other", frame_for("binary", 600, seed=82), max_iter=20)
    shutil.copyfile(other / forest.DIRECTORY / forest.LIBRARY, directory / forest.DIRECTORY / forest.LIBRARY)
    monkeypatch.setattr(forest.Forest, "__init__", _never_loaded)
    _served_by_the_estimator(directory, "is not the library its record describes")


def _never_loaded(*args, **kwargs):
    raise AssertionError("the library was loaded")


@pytest.mark.parametrize("key, value", [("machine", "aarch64"), ("libc", "musl 1.2.4"), ("python", "cpython-312"),
                                        ("tl2cgen", "0.9.0"), ("scikit-learn", "1.8.0")])
def test_a_library_from_another_platform_is_never_loaded(task_model_dirs, tmp_path, monkeypatch, key, value):
    directory = _copy(task_model_dirs, "regression", tmp_path)
    record_path = directory / forest.DIRECTORY / forest.RECORD
    record = json.loads(record_path.read_text())
    record["platform"][key] = value
    record_path.write_text(json.dumps(record))
    monkeypatch.setattr(forest.Forest, "__init__", _never_loaded)
    _served_by_the_estimator(directory, f"compiled on another platform: {key} {value!r} there")


def test_a_model_training_could_not_compile_is_served_by_the_estimator(task_model_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr(forest, "compiler", lambda: None)
    directory = _copy(task_model_dirs, "binary", tmp_path)
    forest.CompiledForestDataset(str(directory / forest.DIRECTORY)).save(
        forest.compile_forest(CompiledModel.load(directory).estimator))
    assert not (directory / forest.DIRECTORY / forest.LIBRARY).exists()  # the earlier library was removed
    _served_by_the_estimator(directory, "training did not compile the trees (RuntimeError: no C compiler")


def test_compiled_trees_that_differ_from_the_estimator_are_not_used(task_model_dirs, monkeypatch):
    monkeypatch.setattr(forest.Forest, "raw", lambda self, x, threads=None: np.zeros((x.shape[0], self.outputs)))
    model = _served_by_the_estimator(task_model_dirs["multiclass"], "they differ from the estimator on probe rows")
    assert model.fast_path.startswith("numpy preprocessing + the estimator's predict")


def test_the_compiled_library_is_part_of_the_pinned_digest(task_model_dirs, tmp_path):
    directory = _copy(task_model_dirs, "binary", tmp_path)
    pinned = model_digest(directory)
    library = directory / forest.DIRECTORY / forest.LIBRARY
    library.write_bytes(library.read_bytes() + b"\0")
    assert model_digest(directory) != pinned
