"""ModelArchiveDataset: a model handed to a job as model.tar.gz is unpickled only when its digest is the pin."""

from __future__ import annotations

import io
import json
import tarfile

import joblib
import pytest
from kedro.io import DatasetError

from ml_pipeline.datasets import ModelArchiveDataset
from ml_pipeline.errors import DataError
from ml_pipeline.jsonutil import to_jsonable
from ml_pipeline.serving.integrity import model_digest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, fitted, production_metadata):
    directory = tmp_path_factory.mktemp("model")
    joblib.dump(fitted[0], directory / "model.joblib")
    (directory / "metadata.json").write_text(json.dumps(to_jsonable(production_metadata)))
    (directory / "report").mkdir()
    (directory / "report" / "index.html").write_text("<html></html>")
    return directory


@pytest.fixture(scope="module")
def archive(model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("channel") / "model.tar.gz"
    with tarfile.open(path, "w:gz") as handle:  # as SageMaker packs /opt/ml/model
        for item in sorted(model_dir.iterdir()):
            handle.add(item, arcname=item.name)
    return path


def _load(path, **kwargs):
    """The dataset's load, unwrapped from Kedro's DatasetError to the reason it carries."""
    try:
        return ModelArchiveDataset(str(path), **kwargs).load()
    except DatasetError as exc:
        raise exc.__cause__ or exc from None


def test_the_pinned_archive_loads_as_serve_loads_it(archive, model_dir, processed):
    pin = model_digest(model_dir)
    loaded = _load(archive.parent, sha256=pin.upper(), pin_required=True)
    assert loaded["sha256"] == pin and loaded["metadata"]["target"] == "churn"
    rows = processed["test"].drop(columns="churn").head(5)
    assert list(loaded["pipeline"].predict(rows)) == list(joblib.load(model_dir / "model.joblib").predict(rows))


def test_a_digest_mismatch_is_refused_before_unpickling(archive):
    with pytest.raises(DataError, match=r"model directory digest [0-9a-f]{64} of model.tar.gz does not match "
                                        r"hyperparameter champion_sha256 a{64}: refusing to load it"):
        _load(archive, sha256="a" * 64, pin_required=True, pin_name="hyperparameter champion_sha256")


@pytest.mark.parametrize("pin, message", [
    ("", r"holds a model but champion_sha256 is not set: refusing to unpickle an unpinned model"),
    ("not-hex", r"champion_sha256 is not a sha256 hex digest"),
])
def test_a_missing_or_malformed_pin_is_refused(archive, pin, message):
    with pytest.raises(DataError, match=message):
        _load(archive, sha256=pin, pin_required=True, pin_name="champion_sha256")


def test_a_pin_without_a_model_is_refused_and_no_model_without_a_pin_is_none(tmp_path):
    with pytest.raises(DataError, match="champion_sha256 is set but .* holds no model.tar.gz"):
        _load(tmp_path / "absent", sha256="a" * 64, pin_required=True, pin_name="champion_sha256")
    assert _load(tmp_path / "absent", sha256="", pin_required=True) is None
    (tmp_path / "empty").mkdir()
    assert _load(tmp_path / "empty", sha256="", pin_required=True) is None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"holds no model.tar.gz \(found: notes.txt\)"):
        _load(tmp_path / "other")


def test_unpinned_loads_when_no_pin_is_required(archive, model_dir):
    assert _load(archive)["sha256"] == model_digest(model_dir)


def _tar_with(path, member: tarfile.TarInfo, content: bytes = b""):
    with tarfile.open(path, "w:gz") as handle:
        handle.addfile(member, io.BytesIO(content) if content else None)
    return path


def test_an_archive_escaping_its_directory_or_holding_a_link_is_refused(tmp_path):
    escaping = tarfile.TarInfo("../escaped.joblib")
    escaping.size = 3
    with pytest.raises(DataError, match="is not a usable model archive: '../escaped.joblib' points outside"):
        _load(_tar_with(tmp_path / "escape.tar.gz", escaping, b"abc"))
    assert not (tmp_path / "escaped.joblib").exists()
    link = tarfile.TarInfo("model.joblib")
    link.type, link.linkname = tarfile.SYMTYPE, "metadata.json"
    with pytest.raises(DataError, match="model.joblib is a link or a device, not a regular file"):
        _load(_tar_with(tmp_path / "link.tar.gz", link))


def test_an_archive_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "model.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="is not a usable model archive"):
        _load(tmp_path)
    only = tarfile.TarInfo("metadata.json")
    only.size = 2
    with pytest.raises(DataError, match="holds no model.joblib"):
        _load(_tar_with(tmp_path / "other.tar.gz", only, b"{}"))
