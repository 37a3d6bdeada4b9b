"""MODEL_SHA256: serve loads only the model directory the deployer pinned; the digest follows the contract."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil

import pytest

from asgi_support import call
from ml_pipeline.serving import predictor
from ml_pipeline.serving.integrity import InvalidModelDirectory, model_digest


def _contract_digest(files: dict[str, bytes]) -> str:
    """The contract written out by hand: one `<sha256>  <path>\\n` line per file, sorted by the path's UTF-8 bytes."""
    lines = [f"{hashlib.sha256(content).hexdigest()}  {path}\n"
             for path, content in sorted(files.items(), key=lambda item: item[0].encode("utf-8"))]
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def _write(root, files: dict[str, bytes]) -> None:
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def test_the_digest_is_the_contract_over_nested_files(tmp_path):
    # "a-b" sorts before "a/b" by bytes ("-" < "/"), though a walk would visit directory "a" first;
    # "Z" sorts before "a"; "é" after both.
    files = {"model.joblib": b"\x80\x05pickle", "metadata.json": b"{}", "a/b": b"1", "a-b": b"2", "Z": b"",
             "report/index.html": b"<html/>", "a/é/deep.txt": b"x" * 3_000_000}
    _write(tmp_path, files)
    assert model_digest(tmp_path) == _contract_digest(files)
    assert model_digest(tmp_path) == model_digest(str(tmp_path))  # a str is accepted too


def test_one_changed_byte_changes_the_digest(tmp_path):
    _write(tmp_path, {"model.joblib": b"abc", "metadata.json": b"{}"})
    before = model_digest(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"abd")
    assert model_digest(tmp_path) != before


def test_an_empty_directory_has_the_digest_of_empty_text(tmp_path):
    assert model_digest(tmp_path) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("kind", ["file link", "directory link", "dangling link", "fifo"])
def test_a_link_or_a_non_regular_entry_makes_the_directory_invalid(tmp_path, kind):
    _write(tmp_path, {"model.joblib": b"abc", "sub/metadata.json": b"{}"})
    if kind == "file link":
        (tmp_path / "sub" / "alias.joblib").symlink_to(tmp_path / "model.joblib")
    elif kind == "directory link":
        (tmp_path / "more").symlink_to(tmp_path / "sub", target_is_directory=True)
    elif kind == "dangling link":
        (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    else:
        os.mkfifo(tmp_path / "sub" / "pipe")
    with pytest.raises(InvalidModelDirectory):
        model_digest(tmp_path)


def test_a_missing_directory_is_invalid(tmp_path):
    with pytest.raises(InvalidModelDirectory):
        model_digest(tmp_path / "absent")


# --- serve's load_model ---------------------------------------------------------------------------------------

@pytest.fixture()
def opt_ml(tmp_path, served_model_dir, monkeypatch, serving_app):
    """A copy of the served model under a fresh OPT_ML_ROOT, and a record of every unpickling."""
    shutil.copytree(served_model_dir, tmp_path / "model")
    monkeypatch.setenv("OPT_ML_ROOT", str(tmp_path))
    monkeypatch.delenv("MODEL_SHA256", raising=False)
    unpickled = []
    real_load = predictor.joblib.load

    def recording_load(*args, **kwargs):
        unpickled.append(args[0])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(predictor.joblib, "load", recording_load)
    serving_app.state.model = None
    return tmp_path, unpickled


def _ping(serving):
    return call(serving.app, "GET", "/ping")


def test_a_model_matching_model_sha256_is_loaded(opt_ml, serving_app, monkeypatch):
    root, unpickled = opt_ml
    monkeypatch.setenv("MODEL_SHA256", model_digest(root / "model").upper())  # hex digits in either case
    serving_app.load_model()
    assert _ping(serving_app).status == 200 and len(unpickled) == 1


def test_one_changed_byte_in_the_model_refuses_to_load_without_unpickling(opt_ml, serving_app, monkeypatch, caplog):
    root, unpickled = opt_ml
    pinned = model_digest(root / "model")
    model = root / "model" / "model.joblib"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    monkeypatch.setenv("MODEL_SHA256", pinned)
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        serving_app.load_model()
    answer = _ping(serving_app)
    assert answer.status == 503 and unpickled == []
    assert answer.error == (f"model directory digest {model_digest(root / 'model')} does not match MODEL_SHA256 "
                            f"{pinned}: refusing to load")
    assert answer.error in caplog.text
    assert call(serving_app.app, "POST", "/invocations", b"1", {"Content-Type": "text/csv"}).status == 503


def test_a_symlink_in_the_model_directory_refuses_to_load(opt_ml, serving_app, monkeypatch):
    root, unpickled = opt_ml
    pinned = model_digest(root / "model")
    (root / "model" / "extra.joblib").symlink_to(root / "model" / "model.joblib")
    monkeypatch.setenv("MODEL_SHA256", pinned)
    serving_app.load_model()
    answer = _ping(serving_app)
    assert answer.status == 503 and unpickled == []
    assert "extra.joblib is a symbolic link" in answer.error and answer.error.endswith("refusing to load")


@pytest.mark.parametrize("value", ["abc", "g" * 64, "0" * 63])
def test_a_malformed_model_sha256_refuses_to_load(opt_ml, serving_app, monkeypatch, value):
    _, unpickled = opt_ml
    monkeypatch.setenv("MODEL_SHA256", value)
    serving_app.load_model()
    answer = _ping(serving_app)
    assert answer.status == 503 and unpickled == [] and "MODEL_SHA256 is not a sha256 hex digest" in answer.error


def test_without_model_sha256_the_model_loads_and_the_log_says_it_is_not_pinned(opt_ml, serving_app, caplog):
    _, unpickled = opt_ml
    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        serving_app.load_model()
    assert _ping(serving_app).status == 200 and len(unpickled) == 1
    assert any(r.levelno == logging.INFO and "MODEL_SHA256 is not set" in r.getMessage() and "not pinned"
               in r.getMessage() for r in caplog.records)
