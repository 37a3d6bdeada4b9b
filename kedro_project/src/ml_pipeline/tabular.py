"""Reading tabular files (CSV or Parquet with a header), alone or a directory of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

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


def read_table(path: Path, text: bool = False, compact: bool = False) -> pd.DataFrame:
    """One CSV or Parquet file as a DataFrame; DataError with the parser's reason when unreadable.

    `text`: CSV cells stay the text they are (no type inference, no NA tokens), e.g. ids like "00123".
    `compact`: text columns as pandas `category` (small integer codes + each distinct value once) instead of one
    string per cell, read batch by batch: the same values, missing cells and column kinds as the plain reader
    (numbers float64/int64, booleans bool) in a fraction of its memory.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv" and text:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix == ".csv" and compact:
            frame = _compact_csv(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path, low_memory=False)
        elif compact:
            frame = _compact_parquet(path)
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


def read_tables(paths: list[Path], root: Path | None = None, text: bool = False,
                compact: bool = False) -> pd.DataFrame:
    """Several files with the same header, concatenated; DataError naming the file whose header differs.

    With `root`, the index says which file each row came from (its path relative to `root`, POSIX, as a
    categorical index named `source_file`) instead of counting rows. `text`, `compact`: see read_table.
    """
    frames = [read_table(p, text, compact) for p in paths]
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
    if len(frames) > 1 and compact:
        frames = _shared_categories(frames, list(first.columns))
    combined = first if len(frames) == 1 else pd.concat([f[list(first.columns)] for f in frames], ignore_index=True)
    if root is not None:  # a small integer code per row, not a string: cheap at millions of rows
        codes = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
        combined.index = pd.CategoricalIndex(pd.Categorical.from_codes(codes, categories=names), name=SOURCE_INDEX)
    return combined


def _relative(path: Path, root: Path) -> str:
    return path.name if root == path else path.relative_to(root).as_posix()


def read_path(path: str | Path, sources: bool = False, compact: bool = False) -> pd.DataFrame:
    """All data files under `path`, concatenated; `sources`: indexed by the file each row came from."""
    files = list_data_files(path)
    return read_tables(files, Path(path) if sources else None, compact=compact)


def write_table(frame: pd.DataFrame, path: str | Path) -> None:
    """CSV or Parquet by suffix."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)


# pandas' read_csv defaults, given to pyarrow's reader so that both see the same missing cells and booleans.
_NA_TOKENS = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
              "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
_TRUE, _FALSE = ("True", "TRUE", "true"), ("False", "FALSE", "false")
# pyarrow infers the types from the first block, and a later block that does not fit them (text in a numeric
# column) raises: the plain reader then reads the file. Larger blocks cost memory (Arrow holds ≈ 40× a block while
# parsing it: 1 MiB → 40 MB, 16 MiB → 350 MB) and gain no speed.
_BLOCK_BYTES = 1 << 20


class _NotCompact(Exception):
    """The file has something the compact reader does not reproduce exactly: the plain reader takes it."""


def _compact_csv(path: Path) -> pd.DataFrame:
    import pyarrow as pa

    try:
        return _arrow_csv(path)
    except (_NotCompact, pa.ArrowException):
        # Whatever pyarrow refuses or reads differently (ragged rows, bad UTF-8, a type change after the first
        # block, duplicate names...) gets the plain reader's result, or its error message.
        return _categorised(pd.read_csv(path, low_memory=False))


def _arrow_csv(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(block_size=_BLOCK_BYTES)
    # A quoted value may hold a line break (pandas reads it): without this pyarrow would cut the row there.
    parse = pacsv.ParseOptions(newlines_in_values=True)
    convert = pacsv.ConvertOptions(null_values=list(_NA_TOKENS), strings_can_be_null=True, true_values=list(_TRUE),
                                   false_values=list(_FALSE), timestamp_parsers=[], auto_dict_encode=True,
                                   auto_dict_max_cardinality=2**31 - 1)
    if path.stat().st_size == 0:
        raise _NotCompact("empty file")
    reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    schema = reader.schema
    names = [n.lstrip("\ufeff") if i == 0 else n for i, n in enumerate(schema.names)]
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise _NotCompact("header needs pandas' naming rules")
    # Dates and times stay text, as the plain reader leaves them (pyarrow would infer dates even without parsers).
    as_text = [f.name for f in schema if not _plain_arrow_type(f.type)]
    if as_text:
        reader.close()
        convert.column_types = {n: pa.dictionary(pa.int32(), pa.string()) for n in as_text}
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        schema = reader.schema
    columns: list[_Column] = []
    for batch in reader:
        if not columns:  # the file's size over the first block's bytes per row, a little more: rarely regrown
            size = path.stat().st_size
            per_row = min(size, _BLOCK_BYTES) / max(batch.num_rows, 1)
            expected = int(size / max(per_row, 1.0) * 1.05) + 1024
            columns = [_Column(f.type, expected) for f in schema]
        for column, array in zip(columns, batch.columns, strict=True):
            column.add(array)
    if not columns:
        columns = [_Column(f.type, 0) for f in schema]
    frame = pd.DataFrame({name: column.finish() for name, column in zip(names, columns, strict=True)}, copy=False)
    # Arrow's allocator keeps what the parser freed for its next use; there is none: give it back (≈ 40 MB).
    pa.default_memory_pool().release_unused()
    return frame


def _plain_arrow_type(kind) -> bool:
    import pyarrow.types as pat

    if pat.is_dictionary(kind):
        return pat.is_string(kind.value_type) or pat.is_large_string(kind.value_type)
    return pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind) or pat.is_null(kind) \
        or pat.is_string(kind) or pat.is_large_string(kind)


class _Column:
    """One column filled batch by batch into a numpy buffer sized from the file; text as codes into one growing
    list of distinct values. The batches' Arrow memory is released as the next one comes: the file is never
    held twice."""

    def __init__(self, kind, expected_rows: int) -> None:
        import pyarrow.types as pat

        self.text = pat.is_dictionary(kind) or pat.is_string(kind) or pat.is_large_string(kind)
        self.null = pat.is_null(kind)
        self.expected = expected_rows
        self.buffer: np.ndarray | None = None
        self.rows = 0
        self.codes: dict[str, int] = {}

    def _append(self, values: np.ndarray) -> None:
        if self.buffer is None:
            self.buffer = np.empty(max(self.expected, len(values)), dtype=values.dtype)
        elif np.result_type(self.buffer.dtype, values.dtype) != self.buffer.dtype:
            # integers, then a batch with a missing cell: float64 from there on, as pandas makes the column
            self.buffer = self.buffer.astype(np.result_type(self.buffer.dtype, values.dtype))
        end = self.rows + len(values)
        if end > len(self.buffer):
            grown = np.empty(max(end, int(len(self.buffer) * 1.25)), dtype=self.buffer.dtype)
            grown[:self.rows] = self.buffer[:self.rows]
            self.buffer = grown
        self.buffer[self.rows:end] = values
        self.rows = end

    def add(self, array) -> None:
        import pyarrow as pa

        if self.null:
            if array.null_count != len(array):
                raise _NotCompact("values after an empty first block")
            self._append(np.full(len(array), np.nan))
        elif not self.text:
            if array.null_count and pa.types.is_boolean(array.type):  # pandas keeps objects there
                raise _NotCompact("boolean column with missing values")
            self._append(array.to_numpy(zero_copy_only=False))
        else:
            if not pa.types.is_dictionary(array.type):
                array = array.dictionary_encode()
            local = array.dictionary.to_pylist()
            mapping = np.fromiter((self.codes.setdefault(v, len(self.codes)) for v in local), dtype=np.int32,
                                  count=len(local))
            indices = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
            self._append(np.where(indices >= 0, mapping[np.maximum(indices, 0)] if len(mapping) else -1,
                                  -1).astype(np.int32))

    def finish(self):
        values = np.empty(0, dtype=np.int32 if self.text else np.float64) if self.buffer is None \
            else self.buffer[:self.rows]
        self.buffer = None
        if not self.text:
            return values.copy()  # one column at a time: the spare capacity goes, the transient copy is small
        seen = np.array(list(self.codes), dtype=object)
        order = np.argsort(seen, kind="stable")  # sorted categories, as pandas' astype("category") gives them
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        codes = np.full(len(values), -1, dtype=_code_dtype(len(seen)))
        present = values >= 0
        codes[present] = rank[values[present]]
        return pd.Categorical.from_codes(codes, categories=pd.Index(seen[order], dtype=object))


def _code_dtype(n: int) -> type:
    return np.int8 if n < 127 else np.int16 if n < 32_767 else np.int32


def _compact_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return _categorised(table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True))


def _categorised(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns (str/object) as `category` with categories of dtype object, every other column as it is."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        is_text = pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)
        if is_text and not isinstance(series.dtype, pd.CategoricalDtype):
            series = _as_category(series)
        if isinstance(series.dtype, pd.CategoricalDtype) and series.cat.categories.dtype != object:
            # pandas' `str` categories (Arrow-backed) would not concatenate with another file's object ones
            values = series.array
            series = pd.Series(pd.Categorical.from_codes(values.codes, categories=pd.Index(
                values.categories.to_numpy(dtype=object), dtype=object), ordered=values.ordered), index=series.index,
                name=name, copy=False)
        columns[name] = series
    return pd.DataFrame(columns, index=frame.index, copy=False)


def _as_category(series: pd.Series) -> pd.Series:
    present = series.dropna()
    kinds = {type(v) for v in present.to_numpy(dtype=object)}
    if len(kinds) > 1:  # mixed (e.g. numbers and text in one object column): categories must be sortable
        return series.astype(object).astype("category")
    return series.astype("category")


def _shared_categories(frames: list[pd.DataFrame], names: list[str]) -> list[pd.DataFrame]:
    """Frames whose categorical columns share one set of categories, so that concatenating them stays categorical."""
    out = [f.copy(deep=False) for f in frames]
    for name in names:
        dtypes = [f[name].dtype for f in frames]
        if not all(isinstance(d, pd.CategoricalDtype) for d in dtypes):
            if any(isinstance(d, pd.CategoricalDtype) for d in dtypes):  # text in one file, numbers in another
                for f in out:
                    f[name] = f[name].astype(object)
            continue
        union = union_categoricals([f[name].array for f in frames], sort_categories=True, ignore_order=True)
        categories = pd.Index(union.categories.to_numpy(dtype=object), dtype=object)
        for f in out:
            f[name] = f[name].cat.set_categories(categories)
    return out
