"""Champion vs challenger on the same rows: the concept-shift case the comparison exists for, and the cases where
the production model cannot be scored."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from kedro.framework.project import configure_project, find_pipelines
from sklearn.metrics import accuracy_score, roc_auc_score

from ml_pipeline import comparison, entrypoints
from ml_pipeline.datasets import ModelArchiveDataset, TabularDataset
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.pipelines.evaluation import nodes as evaluation
from ml_pipeline.serving.integrity import model_digest

from pipeline_support import catalog_with, project_parameters, run

TARGET = "outcome"
SEED = 5


def concept(rows: int, seed: int, regime: str) -> pd.DataFrame:
    """Regime A: outcome = yes when x1 > 0. Regime B: the relation is reversed (yes when x1 < 0) and x2, which
    tells the regimes apart, is shifted — the same features mean the opposite: a concept shift."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0.0, 1.0, rows)
    x2 = rng.uniform(0.0, 1.0, rows) + (2.0 if regime == "B" else 0.0)
    signal = x1 if regime == "A" else -x1
    return pd.DataFrame({"x1": x1.round(4), "x2": x2.round(4), "colour": rng.choice(["red", "blue"], rows),
                         TARGET: np.where(signal + rng.normal(0.0, 0.3, rows) > 0, "yes", "no")})


@pytest.fixture(scope="module")
def pipelines():
    configure_project("ml_pipeline")
    found = find_pipelines(raise_errors=True)
    return found["data_processing"] + found["training"] + found["evaluation"]


@pytest.fixture(scope="module")
def parameters():
    params = project_parameters()
    params.update({"target_column": TARGET, "seed": SEED})
    return params


def _train(pipelines, parameters, channel, champion):
    """The training run as `train` makes it: rows indexed by file, lineage with the channel's sha256s."""
    lineage = entrypoints._lineage({}, channel, {"TRAINING_JOB_NAME": f"job-{channel.name}"})
    raw = TabularDataset(str(channel), sources=True).load()
    catalog = catalog_with({**parameters, "lineage": lineage}, raw_data=raw, champion_model=champion)
    return run(pipelines, catalog)


def _model_directory(catalog, directory):
    import joblib

    directory.mkdir(parents=True)
    joblib.dump(catalog.load("model"), directory / "model.joblib")
    (directory / "metadata.json").write_text(json.dumps(to_jsonable(catalog.load("model_metadata")), allow_nan=False))
    return directory


@pytest.fixture(scope="module")
def shifted(tmp_path_factory, pipelines, parameters):
    """v1 (the champion) trained on regime A; v2 (the challenger) on A plus a file of regime B, v1 as champion
    channel (archived and pinned, as the training job receives it)."""
    root = tmp_path_factory.mktemp("concept")
    a, b = concept(600, 1, "A"), concept(400, 2, "B")
    first = root / "v1"
    (first / "a").mkdir(parents=True)
    a.to_csv(first / "a" / "part-1.csv", index=False)
    v1 = _train(pipelines, parameters, first, None)
    champion_dir = _model_directory(v1, root / "champion")
    archive = root / "champion.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        for path in sorted(champion_dir.iterdir()):
            handle.add(path, arcname=path.name)
    pin = model_digest(champion_dir)
    champion = ModelArchiveDataset(str(archive), sha256=pin, pin_required=True).load()
    second = root / "v2"
    for name, frame in (("a", a), ("b", b)):
        (second / name).mkdir(parents=True)
        frame.to_csv(second / name / "part-1.csv", index=False)
    v2 = _train(pipelines, parameters, second, champion)
    return {"a": a, "b": b, "v2": v2, "champion": champion, "pin": pin}


def test_new_rows_are_the_b_files_test_rows(shifted, parameters):
    metadata = shifted["v2"].load("model_metadata")
    result = metadata["comparison"]
    # The split as the test computes it: files are read in path order (a/ then b/), nothing is dropped by cleaning,
    # then a seeded permutation is cut 70/20/10.
    sources = np.array(["a"] * len(shifted["a"]) + ["b"] * len(shifted["b"]))
    n = len(sources)
    order = np.random.default_rng(SEED).permutation(n)
    n_train, n_test = round(n * 0.7), round(n * 0.2)
    test_positions = order[n_train:n_train + n_test]
    expected_new = int((sources[test_positions] == "b").sum())
    assert result["test"]["rows"] == n_test == 200
    assert result["new"]["rows"] == expected_new and 0 < expected_new < n_test
    assert result["new"]["files"] == ["b/part-1.csv"]
    assert result["champion"]["scored"] is True and result["champion"]["reason"] is None
    assert result["champion"]["sha256"] == shifted["pin"] and result["champion"]["training_job"] == "job-v1"
    assert set(result["test"]["champion"]) == set(result["test"]["challenger"]) == {
        "accuracy", "precision", "recall", "f1", "roc_auc"}


def test_the_challenger_beats_the_champion_on_the_new_rows(shifted):
    catalog = shifted["v2"]
    result = catalog.load("model_metadata")["comparison"]
    test_set = catalog.load("test_set")
    sources = np.array(["a"] * len(shifted["a"]) + ["b"] * len(shifted["b"]))
    order = np.random.default_rng(SEED).permutation(len(sources))
    is_b = sources[order[700:900]] == "b"
    rows = test_set[is_b]
    features = [f["name"] for f in catalog.load("data_schema")["features"]]
    challenger, champion = catalog.load("model"), shifted["champion"]["pipeline"]
    accuracy = {name: accuracy_score(rows[TARGET], model.predict(rows[features]))
                for name, model in (("challenger", challenger), ("champion", champion))}
    auc = {name: roc_auc_score(rows[TARGET] == "yes", model.predict_proba(rows[features])[:, 1])
           for name, model in (("challenger", challenger), ("champion", champion))}
    for name in ("challenger", "champion"):
        assert result["new"][name]["accuracy"] == pytest.approx(accuracy[name])
        assert result["new"][name]["roc_auc"] == pytest.approx(auc[name])
    margin = accuracy["challenger"] - accuracy["champion"]
    # B reverses A's relation: the champion is mostly wrong there, the challenger learnt both regimes.
    assert margin > 0.6, accuracy
    assert auc["challenger"] - auc["champion"] > 0.6, auc
    # On the whole test split both are scored on the same rows too; the champion still wins nothing.
    assert result["test"]["challenger"]["accuracy"] > result["test"]["champion"]["accuracy"]


def test_the_report_shows_the_comparison_side_by_side(shifted):
    report = shifted["v2"].load("evaluation_report")
    section = report.split("Champion vs challenger (same rows)")[1].split("<h2>")[0]
    assert "b/part-1.csv" in section and "new: champion" in section and "test: challenger" in section
    assert section.count("data:image/png;base64,") == 1  # the bar chart


def _schema(features, classes=("no", "yes")):
    return {"target": TARGET, "task": "classification", "classes": list(classes),
            "features": [{"name": n, "kind": k, "dtype": "float64" if k == "numeric" else "object"}
                         for n, k in features]}


@pytest.fixture(scope="module")
def split(shifted):
    catalog = shifted["v2"]
    return {"model": catalog.load("model"), "test": catalog.load("test_set"), "sources": catalog.load("test_sources"),
            "schema": catalog.load("data_schema"), "lineage": {"files": []}}


def test_a_missing_column_means_the_champion_cannot_score(split, shifted):
    needs_more = {**shifted["champion"], "metadata": {**shifted["champion"]["metadata"],
                                                      "features": [*shifted["champion"]["metadata"]["features"],
                                                                   {"name": "x3", "kind": "numeric"}]}}
    result = evaluation.compare_with_champion(split["model"], needs_more, split["test"], split["sources"],
                                              split["schema"], split["lineage"])
    assert result["champion"]["scored"] is False
    assert result["champion"]["reason"] == ("the schema changed: the new data lacks 1 column(s) the production model "
                                            "needs: x3")
    assert "champion" not in result["test"] and "champion" not in result["new"]
    assert result["test"]["challenger"]["accuracy"] > 0.5


def test_a_changed_column_kind_or_task_means_the_champion_cannot_score(split, shifted):
    metadata = shifted["champion"]["metadata"]
    retyped = [{**f, "kind": "categorical"} if f["name"] == "x2" else f for f in metadata["features"]]
    assert comparison.champion_blocker({**metadata, "features": retyped}, split["schema"]) == (
        "the schema changed: column kinds differ: x2 (categorical for the production model, numeric now)")
    assert comparison.champion_blocker({**metadata, "task": "regression"}, split["schema"]).startswith(
        "the task changed")


def test_columns_the_champion_never_saw_are_ignored_not_a_blocker(split, shifted, pipelines, parameters, tmp_path):
    channel = tmp_path / "no-colour"
    channel.mkdir()
    shifted["a"].drop(columns="colour").to_csv(channel / "a.csv", index=False)
    older = _train(pipelines, parameters, channel, None)
    champion = {"pipeline": older.load("model"), "metadata": to_jsonable(older.load("model_metadata")),
                "sha256": "0" * 64}
    result = evaluation.compare_with_champion(split["model"], champion, split["test"], split["sources"],
                                              split["schema"], split["lineage"])
    assert result["champion"]["scored"] is True and result["champion"]["ignored_columns"] == ["colour"]
    features = ["x1", "x2"]
    expected = accuracy_score(split["test"][TARGET], champion["pipeline"].predict(split["test"][features]))
    assert result["test"]["champion"]["accuracy"] == pytest.approx(expected)


def test_an_exception_while_predicting_is_a_reason(split, shifted):
    class Broken:
        classes_ = np.array(["no", "yes"])

        def predict(self, x):
            raise RuntimeError("unpickled with another library version")

        predict_proba = predict

    result = evaluation.compare_with_champion(split["model"], {**shifted["champion"], "pipeline": Broken()},
                                              split["test"], split["sources"], split["schema"], split["lineage"])
    assert result["champion"]["scored"] is False
    assert result["champion"]["reason"] == ("the production model could not predict the new data: RuntimeError: "
                                            "unpickled with another library version")


def test_without_lineage_every_test_row_is_new(split, shifted):
    # A champion whose metadata lists no files (or other files) was not trained on any of these rows.
    result = evaluation.compare_with_champion(split["model"], shifted["champion"], split["test"], split["sources"],
                                              split["schema"], {"files": [{"file": "a/part-1.csv", "sha256": "0" * 64},
                                                                          {"file": "b/part-1.csv", "sha256": "1" * 64}]})
    assert result["new"]["rows"] == result["test"]["rows"] == 200
    assert result["new"]["champion"] == result["test"]["champion"]


def test_a_champion_missing_a_class_is_scored_over_the_challengers_classes(split, shifted):
    # The new data has a third class: the champion gets probability 0 for it, both use weighted averages.
    test = split["test"].copy()
    test.loc[:9, TARGET] = "maybe"

    class ThreeClasses:
        classes_ = np.array(["maybe", "no", "yes"])

        def __init__(self, inner):
            self.inner = inner

        def predict(self, x):
            return self.inner.predict(x)

        def predict_proba(self, x):
            return np.hstack([np.zeros((len(x), 1)), self.inner.predict_proba(x)])

    schema = {**split["schema"], "classes": ["maybe", "no", "yes"]}
    result = evaluation.compare_with_champion(ThreeClasses(split["model"]), shifted["champion"], test,
                                              split["sources"], schema, split["lineage"])
    champion = shifted["champion"]["pipeline"]
    features = [f["name"] for f in split["schema"]["features"]]
    expected = accuracy_score(test[TARGET], champion.predict(test[features]))
    assert result["champion"]["scored"] is True
    assert result["test"]["champion"]["accuracy"] == pytest.approx(expected)
    assert 0.0 <= result["test"]["champion"]["roc_auc"] <= 1.0


def test_regression_models_are_compared_with_every_regression_metric(raw_frame):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    from ml_pipeline.pipelines.data_processing import nodes as processing
    from ml_pipeline.pipelines.training import nodes as training

    from kedro_test_params import SPLIT, TRAINING

    frame = raw_frame.drop(columns="churn").assign(spend=raw_frame["monthly_charges"].fillna(60) * 3 + 1.5)
    cleaned, sources = processing.clean_data(frame.drop(columns="monthly_charges"), "spend")
    data_schema = processing.infer_schema(cleaned, "spend", "auto")
    train, test, _ = processing.split_data(processing.prepare_model_input(cleaned, data_schema), SPLIT, 1)
    challenger, _ = training.train_model(train, data_schema, TRAINING, 1)
    champion, _ = training.train_model(train.iloc[:100], data_schema, TRAINING, 1)
    result = comparison.compare(challenger, {"pipeline": champion, "sha256": "0" * 64,
                                             "metadata": {**data_schema, "lineage": {"files": []}}},
                                test, processing.split_sources(sources, SPLIT, 1), data_schema, {"files": []})
    features = [f["name"] for f in data_schema["features"]]
    for name, model in (("challenger", challenger), ("champion", champion)):
        predicted = model.predict(test[features])
        assert result["test"][name] == pytest.approx({
            "rmse": mean_squared_error(test["spend"], predicted) ** 0.5,
            "mae": mean_absolute_error(test["spend"], predicted), "r2": r2_score(test["spend"], predicted)})
    assert result["new"]["rows"] == 0 and result["new"]["champion"] == {}  # rows not read from files: none is new
