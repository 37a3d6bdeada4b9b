"""Kedro datasets for the SageMaker file layout (directories of inputs, a model directory or model.tar.gz)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import joblib
from kedro.io import AbstractDataset, DatasetError

from ml_pipeline import tabular
from ml_pipeline.jsonutil import to_jsonable


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
    """All CSV/Parquet files under a path as one DataFrame (same header), or one file written by suffix."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> Any:
        return tabular.read_path(self._path)

    def save(self, data: Any) -> None:
        tabular.write_table(data, self._path)

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class JoblibDataset(AbstractDataset[Any, Any]):
    """A Python object (the scikit-learn Pipeline) in a joblib file."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> Any:
        return joblib.load(self._path)

    def save(self, data: Any) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(data, self._path)

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class JSONFileDataset(AbstractDataset[Any, Any]):
    """A JSON document; numpy scalars/arrays are converted on save."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> Any:
        return json.loads(Path(self._path).read_text(encoding="utf-8"))

    def save(self, data: Any) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        Path(self._path).write_text(json.dumps(to_jsonable(data), indent=1, allow_nan=False), encoding="utf-8")

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class TextFileDataset(AbstractDataset[str, str]):
    """A UTF-8 text file (HTML reports)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> str:
        return Path(self._path).read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        Path(self._path).write_text(data, encoding="utf-8")

    def _exists(self) -> bool:
        return Path(self._path).exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


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


class DataCaptureDataset(AbstractDataset[None, list]):
    """SageMaker data-capture records (JSON Lines files under a prefix, any depth), in file order."""

    def __init__(self, path: str) -> None:
        self._path = path

    def load(self) -> list[dict]:
        root = Path(self._path)
        if not root.exists():
            return []
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".json"))
        records: list[dict] = []
        for file in files:
            for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    records.append({"_unreadable": f"{file.name}:{number}"})
        return records

    def save(self, data: list) -> None:
        raise DatasetError("DataCaptureDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}
