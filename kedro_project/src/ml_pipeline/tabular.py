"""Reading tabular files (CSV or Parquet with a header), alone or a directory of them."""

from __future__ import annotations

from pathlib import Path

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


def read_table(path: Path) -> pd.DataFrame:
    """One CSV or Parquet file as a DataFrame; DataError with the parser's reason when unreadable."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
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


def read_tables(paths: list[Path]) -> pd.DataFrame:
    """Several files with the same header, concatenated; DataError naming the file whose header differs."""
    frames = [read_table(p) for p in paths]
    first = frames[0]
    for path, frame in zip(paths[1:], frames[1:], strict=True):
        if set(frame.columns) != set(first.columns):
            missing = sorted(set(first.columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(first.columns))
            raise DataError(
                f"{path.name} has a different header than {paths[0].name}: "
                f"missing {missing or 'none'}, extra {extra or 'none'}"
            )
    if len(frames) == 1:
        return first
    return pd.concat([f[list(first.columns)] for f in frames], ignore_index=True)


def read_path(path: str | Path) -> pd.DataFrame:
    """All data files under `path`, concatenated."""
    return read_tables(list_data_files(path))


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV or Parquet by suffix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
