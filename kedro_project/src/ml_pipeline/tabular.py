"""Reading tabular files (CSV or Parquet with a header), alone or a directory of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ml_pipeline.errors import DataError

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")


def list_data_files(path: str | Path) -> list[Path]:
    """Data files under `path` (a file or a directory, searched recursively), sorted for determinism."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"no input data: {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    data_files = [p for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES]
    if not data_files:
        found = ", ".join(p.name for p in files[:10]) or "nothing"
        raise DataError(f"no CSV or Parquet file in {root} (found: {found})")
    return data_files


def read_table(path: Path, text: bool = False) -> pd.DataFrame:
    """One CSV or Parquet file as a DataFrame; DataError with the parser's reason when unreadable.

    `text`: CSV cells stay the text they are (no type inference, no NA tokens), e.g. ids like "00123".
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv" and text:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".csv":
            frame = pd.read_csv(path, low_memory=False)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        kind = "CSV" if suffix == ".csv" else "Parquet"
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path.name} could not be parsed as {kind}: {first_line}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    unnamed = [c for c in frame.columns if c.startswith("Unnamed: ") or c == ""]
    if unnamed:
        raise DataError(f"{path.name} has columns without a name in its header ({len(unnamed)}): every column needs a name")
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{path.name} has duplicate column names: {', '.join(duplicated)}")
    return frame


SOURCE_INDEX = "source_file"


def read_tables(paths: list[Path], root: Path | None = None, text: bool = False) -> pd.DataFrame:
    """Several files with the same header, concatenated; DataError naming the file whose header differs.

    With `root`, the index says which file each row came from (its path relative to `root`, POSIX, as a
    categorical index named `source_file`) instead of counting rows. `text`: see read_table.
    """
    frames = [read_table(p, text) for p in paths]
    first = frames[0]
    names = [_relative(p, root) if root is not None else p.name for p in paths]
    for name, frame in zip(names[1:], frames[1:], strict=True):
        if set(frame.columns) != set(first.columns):
            missing = sorted(set(first.columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first.columns))
            raise DataError(
                f"{name} has a different header than {names[0]}: "
                f"missing {missing or 'none'}, extra {extra or 'none'}"
            )
    combined = first if len(frames) == 1 else pd.concat([f[list(first.columns)] for f in frames], ignore_index=True)
    if root is not None:  # a small integer code per row, not a string: cheap at millions of rows
        codes = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
        combined.index = pd.CategoricalIndex(pd.Categorical.from_codes(codes, categories=names), name=SOURCE_INDEX)
    return combined


def _relative(path: Path, root: Path) -> str:
    return path.name if root == path else path.relative_to(root).as_posix()


def read_path(path: str | Path, sources: bool = False) -> pd.DataFrame:
    """All data files under `path`, concatenated; `sources`: indexed by the file each row came from."""
    files = list_data_files(path)
    return read_tables(files, Path(path) if sources else None)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV or Parquet by suffix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
