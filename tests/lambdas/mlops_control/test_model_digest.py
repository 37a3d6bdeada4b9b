"""mlops_control.model_digest against the image's ml_pipeline.serving.integrity: the two deployables must agree
on MODEL_SHA256 for the same model, or `serve` would refuse every deployed model (or accept a swapped one)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

FILES = {"model.joblib": b"\x80\x04pickle", "metadata.json": b'{"task": "classification"}',
         "report/index.html": b"<html></html>", "report/plots/a-b.png": b"\x89PNG", "a-b": b"dash", "a/b": b"slash",
         "r\u00e9sum\u00e9.txt": "\u00e9".encode()}


def _directory(root: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def _tarball(directory: Path) -> bytes:
    """As SageMaker packs /opt/ml/model: `tar -czf model.tar.gz -C /opt/ml/model .` (members ./<path>, dirs too)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=".")
    return buffer.getvalue()


def test_the_lambda_and_the_image_compute_the_same_digest(tmp_path):
    from ml_pipeline.serving.integrity import model_digest
    from mlops_control.model_digest import digest_tarball

    directory = _directory(tmp_path / "model", FILES)
    tarball = _tarball(directory)
    digest, tarball_sha256, files, _ = digest_tarball(io.BytesIO(tarball))
    extracted = tmp_path / "extracted"
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        archive.extractall(extracted, filter="data")
    assert digest == model_digest(directory) == model_digest(extracted)
    assert files == len(FILES) and len(tarball_sha256) == 64
    # Any change to any file changes it.
    (directory / "report/plots/a-b.png").write_bytes(b"\x89PNH")
    assert digest_tarball(io.BytesIO(_tarball(directory)))[0] == model_digest(directory) != digest


@pytest.mark.parametrize("member", ["symlink", "hardlink", "parent", "absolute", "line break"])
def test_a_tarball_that_is_not_a_plain_tree_of_files_is_refused(member):
    from mlops_control.model_digest import InvalidModel, digest_tarball

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo({"symlink": "./model.joblib", "hardlink": "./model.joblib", "parent": "../x",
                                "absolute": "/etc/x", "line break": "./a\nb"}[member])
        if member == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif member == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "metadata.json"
        else:
            info.size = 1
        archive.addfile(info, io.BytesIO(b"x") if info.size else None)
    with pytest.raises(InvalidModel):
        digest_tarball(io.BytesIO(buffer.getvalue()))


def test_the_image_refuses_a_name_with_a_line_break(tmp_path):
    from ml_pipeline.serving.integrity import InvalidModelDirectory, model_digest

    with pytest.raises(InvalidModelDirectory, match="line break"):
        model_digest(_directory(tmp_path, {"model.joblib": b"x", "a\nb": b"y"}))
