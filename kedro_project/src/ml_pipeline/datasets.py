"""Kedro datasets for the SageMaker file layout (directories of inputs, a model directory or model.tar.gz).

The catalogs use kedro-datasets wherever it has the dataset: the model (`pickle.PickleDataset`, backend joblib),
the JSON documents (`json.JSONDataset`), the HTML reports (`text.TextDataset`) and labeled.csv
(`pandas.CSVDataset`). The datasets here have no library equivalent: each reads a SageMaker input whose shape
the library datasets do not know — every CSV/Parquet file under a channel directory as one table (or only their
paths), the production model as `model.tar.gz` checked against its pin before anything is unpickled, its
`metadata.json` from inside the tarball, and data-capture JSON Lines under a prefix.
"""

from __future__ import annotations

import json
import logging
import re
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from ml_pipeline import tabular
from ml_pipeline.errors import DataError

log = logging.getLogger(__name__)


class DataFilesDataset(AbstractDataset[None, list[str]]):
    """The CSV/Parquet files under a path (file or directory); parsing is left to the node that judges them."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> list[str]:
        return [str(p) for p in tabular.list_data_files(self._path)]

    def save(self, data: None) -> None:
        raise DatasetError("DataFilesDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class TabularDataset(AbstractDataset[Any, Any]):
    """All CSV/Parquet files under a path as one DataFrame (same header), or one file written by suffix.

    `sources: true` indexes the rows by the file they came from (relative path, categorical index `source_file`),
    so that evaluation can tell rows of files the production model never saw. `compact` (default): text columns as
    pandas `category`, read batch by batch (tabular.read_table): training data of millions of rows in a fraction
    of the memory one string object per cell takes.
    """

    def __init__(self, path: str, sources: bool = False, compact: bool = True) -> None:
        self._path = path
        self._sources = sources
        self._compact = compact

    def load(self) -> Any:
        return tabular.read_path(self._path, sources=self._sources, compact=self._compact)

    def save(self, data: Any) -> None:
        tabular.write_table(data, self._path)

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "sources": self._sources, "compact": self._compact}


def read_model_metadata(path: str | Path) -> dict | None:
    """metadata.json from a model directory, or from a model.tar.gz in it (or given directly); None if absent."""
    root = Path(path)
    if root.is_dir():
        direct = root / "metadata.json"
        if direct.is_file():
            return json.loads(direct.read_text(encoding="utf-8"))
        archives = sorted(root.glob("*.tar.gz"))
        if not archives:
            return None
        root = archives[0]
    if not root.is_file():
        return None
    if root.name == "metadata.json":
        return json.loads(root.read_text(encoding="utf-8"))
    with tarfile.open(root, "r:*") as archive:
        for member in archive.getmembers():
            if member.isfile() and PurePosixPath(member.name).as_posix().lstrip("./") == "metadata.json":
                handle = archive.extractfile(member)
                if handle is None:
                    break
                return json.loads(handle.read().decode("utf-8"))
    raise DatasetError(f"{root} holds no metadata.json: is it a model.tar.gz from the train job?")


class ModelMetadataDataset(AbstractDataset[None, Any]):
    """The production model's metadata.json (directory or model.tar.gz); None when the input is absent (first run)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> dict | None:
        return read_model_metadata(self._path)

    def save(self, data: None) -> None:
        raise DatasetError("ModelMetadataDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class ModelArchiveDataset(AbstractDataset[None, Any]):
    """A model.tar.gz as SageMaker hands a model to a job, extracted to a temporary directory, its digest checked
    against the pin, then loaded as `serve` loads it: {"pipeline", "metadata", "sha256"}; None when the input is absent.

    `sha256` is the pin (the MODEL_SHA256 digest of the extracted directory, serving/integrity.py); `pin_name` names
    where it came from in messages. With `pin_required`, a model without a pin is refused, and so is a pin without a
    model: nothing is unpickled that the caller did not vouch for. Without it, an empty pin loads the model unchecked.
    """

    def __init__(self, path: str, sha256: str | None = "", pin_required: bool = False,
                 pin_name: str = "MODEL_SHA256") -> None:
        self._path = path
        self._sha256 = (sha256 or "").strip().lower()
        self._pin_required = pin_required
        self._pin_name = pin_name

    def load(self) -> dict | None:
        root = Path(self._path)
        archive = _model_archive(root)
        if archive is None:
            if self._pin_required and self._sha256:
                raise DataError(f"{self._pin_name} is set but {root} holds no model.tar.gz")
            return None
        if not self._sha256:
            if self._pin_required:
                raise DataError(f"{root} holds a model but {self._pin_name} is not set: refusing to unpickle an "
                                "unpinned model")
            log.info("%s is not set: the model in %s is loaded without checking its digest (not pinned)",
                     self._pin_name, archive)
        elif not re.fullmatch(r"[0-9a-f]{64}", self._sha256):
            raise DataError(f"{self._pin_name} is not a sha256 hex digest ({self._sha256[:80]!r})")
        from ml_pipeline.serving.predictor import load_model_files

        with tempfile.TemporaryDirectory(prefix="model-") as extracted:
            directory = archive if archive.is_dir() else Path(extracted)
            actual = open_pinned(archive, directory, self._sha256, self._pin_name)
            pipeline, metadata = load_model_files(directory)
        return {"pipeline": pipeline, "metadata": metadata, "sha256": actual}

    def save(self, data: None) -> None:
        raise DatasetError("ModelArchiveDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path, "pin_required": self._pin_required, "pinned": bool(self._sha256)}


def _extract(archive: Path, directory: Path) -> None:
    """Only regular files and directories at relative paths inside `directory`: a model.tar.gz has nothing else.

    Checked here rather than left to tarfile's "data" filter alone: that filter needs Python 3.11.4, and the
    image's base may be an older 3.11 (scripts/build_image.sh builds one from Debian when no registry answers).
    """
    with tarfile.open(archive, "r:*") as handle:
        members = handle.getmembers()
        for member in members:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise tarfile.TarError(f"{member.name!r} points outside the model directory")
            if not (member.isfile() or member.isdir()):
                raise tarfile.TarError(f"{member.name} is a link or a device, not a regular file")
        if hasattr(tarfile, "data_filter"):
            handle.extractall(directory, members=members, filter="data")
        else:
            handle.extractall(directory, members=members)


def open_pinned(archive: Path, directory: Path, pin: str | None, pin_name: str = "MODEL_SHA256") -> str:
    """Extract `archive` (a model.tar.gz, or already a model directory) into `directory` and return the model
    directory's digest, refusing (DataError) an unreadable archive, a digest other than `pin` (when given) and a
    directory without model.joblib and metadata.json."""
    from ml_pipeline.serving.integrity import InvalidModelDirectory, model_digest

    try:
        if not archive.is_dir():
            _extract(archive, directory)
        actual = model_digest(directory)
    except (tarfile.TarError, OSError, EOFError, zlib.error, InvalidModelDirectory) as exc:
        raise DataError(f"{archive.name} is not a usable model archive: {exc}") from None
    if pin and actual != pin:
        raise DataError(f"model directory digest {actual} of {archive.name} does not match {pin_name} {pin}: "
                        "refusing to load it")
    missing = [n for n in ("model.joblib", "metadata.json") if not (directory / n).is_file()]
    if missing:
        raise DataError(f"{archive.name} holds no {' or '.join(missing)}: is it a model.tar.gz from the train job?")
    return actual


def _model_archive(root: Path) -> Path | None:
    """The model.tar.gz at `root` (a file, or the one in a directory), or `root` itself when it is a model
    directory (metadata.json + model.joblib: `kedro run` locally); None when there is nothing there."""
    if root.is_file():
        return root
    if not root.is_dir():
        return None
    if (root / "metadata.json").is_file() and (root / "model.joblib").is_file():
        return root
    archives = sorted(root.glob("*.tar.gz"))
    if archives:
        return root / "model.tar.gz" if (root / "model.tar.gz").is_file() else archives[0]
    present = sorted(p.name for p in root.iterdir())
    if present:
        raise DataError(f"{root} holds no model.tar.gz (found: {', '.join(present[:10])})")
    return None


class DataCaptureDataset(AbstractDataset[None, list]):
    """SageMaker data-capture records (JSON Lines files under a prefix, any depth), in file order; each record
    carries its file's relative path under `_file` (captures.read_capture_files)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> list[dict]:
        from ml_pipeline.captures import read_capture_files

        return read_capture_files(self._path)

    def save(self, data: list) -> None:
        raise DatasetError("DataCaptureDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
