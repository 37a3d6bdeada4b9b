"""Request bodies (CSV / JSON) → feature columns, without pandas for small requests.

Values follow pandas' CSV reading rules used at training time: the same tokens mean "missing", numerics are
floats (infinities are missing, as in training), categoricals stay text.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import orjson

# pandas' default NA tokens (read_csv keep_default_na): missing at training time, so missing here too.
NA_TOKENS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})
# The media types: the one place that says which request formats `serve` reads (app.py, captures.py read it here)
# and what it answers in. A new request format = an entry here + its parser in parse_body.
CSV, JSON = "text/csv", "application/json"
REQUEST_FORMATS = {
    CSV: "csv", "application/csv": "csv",
    JSON: "json",
    "application/jsonlines": "jsonlines", "application/x-jsonlines": "jsonlines",
}
ANSWER_TYPES = (JSON, CSV)  # what `Accept` can choose from, in this order of preference on a tie
PANDAS_THRESHOLD_ROWS = 64
NAMES_SHOWN = 10  # an error lists this many offending column names, then says how many more there are
NAME_CHARS_SHOWN = 40


class RequestError(Exception):
    """A client mistake: HTTP status + a message that names what is wrong (+ whether to close the connection)."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


@dataclass(frozen=True)
class FeatureSchema:
    names: tuple[str, ...]
    kinds: tuple[str, ...]  # "numeric" | "categorical"
    target: str | None = None

    @classmethod
    def from_metadata(cls, metadata: dict) -> FeatureSchema:
        return cls(tuple(f["name"] for f in metadata["features"]), tuple(f["kind"] for f in metadata["features"]),
                   metadata.get("target"))

    @property
    def numeric_names(self) -> list[str]:
        return [n for n, k in zip(self.names, self.kinds, strict=True) if k == "numeric"]

    @property
    def categorical_names(self) -> list[str]:
        return [n for n, k in zip(self.names, self.kinds, strict=True) if k == "categorical"]

    # Asked for by every request: computed once per schema.
    @cached_property
    def name_set(self) -> frozenset[str]:
        return frozenset(self.names)

    @cached_property
    def header_names(self) -> frozenset[str]:
        """What a header row may name: the features and the target."""
        return self.name_set | ({self.target} if self.target else set())

    @cached_property
    def numeric_flags(self) -> tuple[bool, ...]:
        return tuple(k == "numeric" for k in self.kinds)

    @cached_property
    def numeric_positions(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.kinds) if k == "numeric")

    @cached_property
    def categorical_positions(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.kinds) if k != "numeric")


class Columns:
    """Parsed rows by column: float64 arrays for numerics, object arrays (str / None) for categoricals.

    One row parsed by `single` also keeps its values as Python objects (`row`, in schema order: float for numerics,
    str / None for categoricals), which is what the single-row prediction path reads; the column arrays are then
    made only if something asks for them.
    """

    __slots__ = ("rows", "row", "_numeric", "_categorical", "_schema")

    def __init__(self, rows: int, numeric: dict[str, np.ndarray] | None,
                 categorical: dict[str, np.ndarray] | None) -> None:
        self.rows = rows
        self.row: list | None = None
        self._numeric = numeric
        self._categorical = categorical
        self._schema: FeatureSchema | None = None

    @classmethod
    def single(cls, row: list, schema: FeatureSchema) -> Columns:
        parsed = cls(1, None, None)
        parsed.row, parsed._schema = row, schema
        return parsed

    @property
    def numeric(self) -> dict[str, np.ndarray]:
        if self._numeric is None:
            self._make_arrays()
        return self._numeric

    @property
    def categorical(self) -> dict[str, np.ndarray]:
        if self._categorical is None:
            self._make_arrays()
        return self._categorical

    def _make_arrays(self) -> None:
        numeric, categorical = {}, {}
        for name, is_numeric, value in zip(self._schema.names, self._schema.numeric_flags, self.row, strict=True):
            if is_numeric:
                numeric[name] = np.array([value], dtype=np.float64)
            else:
                categorical[name] = np.empty(1, dtype=object)
                categorical[name][0] = value
        self._numeric, self._categorical = numeric, categorical

    def to_frame(self, schema: FeatureSchema):
        """The rows as the DataFrame the Pipeline was trained on (missing categoricals as NaN, as pandas read them)."""
        import pandas as pd  # only the fallback path and monitoring need pandas; the fast path never does

        data = {}
        for name, kind in zip(schema.names, schema.kinds, strict=True):
            if kind == "numeric":
                data[name] = self.numeric[name]
            else:
                values = self.categorical[name].copy()
                values[[v is None for v in values]] = np.nan
                data[name] = pd.Series(values, dtype=object)
        return pd.DataFrame(data)


def media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def request_format(content_type: str | None) -> str | None:
    """"csv", "json" or "jsonlines" for an accepted request media type; None for any other."""
    return REQUEST_FORMATS.get(media_type(content_type))


def answer_type(content_type: str | None) -> str:
    """The media type of an answer in the request's own format (Accept absent or */*)."""
    return CSV if request_format(content_type) == "csv" else JSON


def parse_body(body: bytes, content_type: str, schema: FeatureSchema) -> Columns:
    """Dispatch on the media type (REQUEST_FORMATS); 415 for any other."""
    kind = request_format(content_type)
    if kind == "csv":
        return parse_csv(body, schema)
    if kind == "json":
        return parse_json(body, schema)
    if kind == "jsonlines":
        return parse_json_lines(body, schema)
    shown = media_type(content_type) or "(none)"
    raise RequestError(415, f"unsupported content type {shown}: send one of {', '.join(REQUEST_FORMATS)}")


_UTF8_BOM = "\ufeff".encode()


def _decode(body: bytes) -> str:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return text[1:] if text.startswith("\ufeff") else text


def _columns_problem(given: list[str], schema: FeatureSchema) -> str | None:
    """What is wrong with a header or a record's keys; linear in their number, the message bounded."""
    expected = set(schema.names)
    counts = Counter(given)
    missing = [n for n in schema.names if n not in counts]
    extra = [n for n in counts if n not in expected]
    duplicated = sorted(n for n, count in counts.items() if count > 1)
    parts = []
    if missing:
        parts.append(f"missing columns: {_listed(missing)}")
    if extra:
        note = " (the target column must not be sent)" if schema.target in counts else ""
        parts.append(f"unexpected columns: {_listed(extra)}{note}")
    if duplicated:
        parts.append(f"duplicate columns: {_listed(duplicated)}")
    return "; ".join(parts) or None


def _listed(names: list[str]) -> str:
    """The first NAMES_SHOWN names (each cut to NAME_CHARS_SHOWN characters) and how many more there are."""
    shown = [n if len(n) <= NAME_CHARS_SHOWN else n[:NAME_CHARS_SHOWN] + "…" for n in names[:NAMES_SHOWN]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


# What float() can start with (after white space and a sign): a digit, ".", "inf"/"infinity" or "nan". Fields
# that do not match cannot be numbers, and skipping float()'s exception for them makes a wide header 5x cheaper.
_MAY_BE_NUMBER = re.compile(r"\s*[+-]?[\d.in]", re.IGNORECASE)


def _is_header(fields: list[str], schema: FeatureSchema) -> bool:
    if schema.header_names.isdisjoint(map(str.strip, fields)):
        return False
    for field in filter(_MAY_BE_NUMBER.match, fields):
        try:
            float(field)
            return False
        except ValueError:
            continue
    return True


def parse_csv(body: bytes, schema: FeatureSchema) -> Columns:
    text = _decode(body)
    if text.count("\n") > PANDAS_THRESHOLD_ROWS:
        raw = body[len(_UTF8_BOM):] if body.startswith(_UTF8_BOM) else body
        return _parse_csv_pandas(raw, text, schema)
    if '"' in text:
        rows = [row for row in _csv_rows(io.StringIO(text, newline="")) if row]
    else:
        rows = [line.split(",") for line in text.splitlines() if line.strip()]
    if not rows:
        raise RequestError(400, "empty CSV body: send one row per line")
    order = list(schema.names)
    first_line = 1
    if _is_header(rows[0], schema):
        header = [f.strip() for f in rows[0]]
        problem = _columns_problem(header, schema)
        if problem:
            raise RequestError(400, problem)
        order = header
        rows = rows[1:]
        first_line = 2
        if not rows:
            raise RequestError(400, "CSV has a header but no rows")
    width = len(order)
    for number, row in enumerate(rows, start=first_line):
        if len(row) != width:
            raise RequestError(400, f"CSV line {number} has {len(row)} fields, expected {width} "
                                    f"({', '.join(order)})")
    return _from_rows(rows, order, schema, first_line)


def _csv_rows(lines, first_line: int = 1):
    """csv.reader over `lines`, its errors (a field over the size limit, a stray quote) as 400s naming the line."""
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RequestError(400, f"CSV line {first_line + reader.line_num - 1} could not be parsed: {exc}") from None
        yield row


def _from_rows(rows: list[list], order: list[str], schema: FeatureSchema, first_line: int) -> Columns:
    if len(rows) == 1:
        row = _single_row(rows[0], order, schema)
        if row is not None:
            return Columns.single(row, schema)
    kinds = dict(zip(schema.names, schema.kinds, strict=True))
    numeric, categorical = {}, {}
    numeric_positions = [position for position, name in enumerate(order) if kinds[name] == "numeric"]
    together = _plain_numbers([row[position] for position in numeric_positions for row in rows])
    if together is not None:
        for k, block in enumerate(together.reshape(len(numeric_positions), len(rows))):
            numeric[order[numeric_positions[k]]] = block
    for position, name in enumerate(order):
        if kinds[name] != "numeric":
            categorical[name] = _categorical_column([row[position] for row in rows])
        elif together is None:
            numeric[name] = _numeric_column(name, [row[position] for row in rows], first_line)
    return Columns(len(rows), numeric, categorical)


def _single_row(fields: list, order: list[str], schema: FeatureSchema) -> list | None:
    """One row's values in schema order, as the column functions below would make them, or None for anything that
    needs them (a value that is not a number, a list, ...): they then name the problem.

    The same conversions: float() for numerics (infinities missing; NA tokens missing when float() refuses them, as
    in `_numeric_column`), `_category` for categoricals.
    """
    if order != list(schema.names):
        by_name = dict(zip(order, fields, strict=True))
        fields = [by_name[name] for name in schema.names]
    row = _numbers_with_missing(fields, schema)
    if row is None:
        return None
    for position in schema.categorical_positions:
        value = row[position]
        if type(value) is str:
            if value in NA_TOKENS:
                row[position] = None
        elif isinstance(value, (dict, list)):
            return None
        else:
            row[position] = _category(value)
    return row


def _numbers_with_missing(fields: list, schema: FeatureSchema) -> list | None:
    """`fields` with its numerics converted, missing ones (None, an NA token) as NaN; None if one is not a number."""
    row = list(fields)
    for position in schema.numeric_positions:
        value = row[position]
        if value is None:
            row[position] = math.nan
            continue
        if type(value) is bool:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            if type(value) is str and value.strip() in NA_TOKENS:
                row[position] = math.nan
                continue
            return None
        row[position] = number if math.isfinite(number) else math.nan
    return row


def _plain_numbers(values: list) -> np.ndarray | None:
    """Every numeric value of a small request converted at once, or None: then column by column, which names errors.

    Same numbers as `_numeric_column` whenever it answers: float() takes what that takes, "nan"-like tokens become
    NaN there too, infinities become NaN below, and anything else it raises on (the other missing-value tokens,
    booleans, text) goes the careful way.
    """
    if any(type(v) is bool for v in values):
        return None
    try:
        out = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    finite = np.isfinite(out)
    if not finite.all():
        out[~finite] = math.nan
    return out


def _numeric_column(name: str, values: list, first_line: int) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            out[i] = math.nan
            continue
        if isinstance(value, bool):
            raise RequestError(400, f"column {name!r} (row {first_line + i}): {value!r} is not a number")
        if isinstance(value, (int, float)):
            try:
                number = float(value)
            except OverflowError:
                raise RequestError(400, f"column {name!r} (row {first_line + i}): {value} is out of range") from None
        else:
            token = str(value).strip()
            if token in NA_TOKENS:
                out[i] = math.nan
                continue
            try:
                number = float(token)
            except ValueError:
                raise RequestError(400, f"column {name!r} (row {first_line + i}): {str(value)[:50]!r} is not a number") from None
        out[i] = number if math.isfinite(number) else math.nan
    return out


def _categorical_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = _category(value)
    return out


def _category(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in NA_TOKENS else value
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (dict, list)):
        raise RequestError(400, f"a categorical value must be text, got {type(value).__name__}")
    return str(value)


def _parse_csv_pandas(raw: bytes, text: str, schema: FeatureSchema) -> Columns:
    """`raw` is `text` as UTF-8 (no BOM): pandas' C parser reads bytes, and from a str it would encode them again."""
    first = next(_csv_rows(io.StringIO(text.split("\n", 1)[0], newline="")), [])
    has_header = _is_header(first, schema)
    if has_header:
        header = [f.strip() for f in first]
        problem = _columns_problem(header, schema)
        if problem:
            raise RequestError(400, problem)
        order = header
    else:
        order = list(schema.names)
    _check_field_counts(raw, text, len(order), order, skip_first=has_header)
    try:
        typed = _read_csv_typed(raw, order, has_header, schema)
    except ValueError:
        typed = None  # a non-number, or anything odd: the text path below names the column and row
    if typed is not None:
        return typed
    return _read_csv_as_text(text, order, has_header, schema)


def _read_csv_typed(raw: bytes, order: list[str], has_header: bool, schema: FeatureSchema) -> Columns | None:
    """Numerics converted by pandas' C parser, as `train` reads data: ≈ 10× faster than converting text.

    pandas 3's default float parser gave the same bits as float() on 320k hard tokens (17-digit mantissas,
    subnormals, overflow, 30-digit fractions), and tests/container/test_parsing.py checks such cases; a token that is not a number raises ValueError and the
    caller falls back to the text path, which names the column and row.
    """
    import pandas as pd

    kinds = dict(zip(schema.names, schema.kinds, strict=True))
    dtypes = {n: (np.float64 if kinds[n] == "numeric" else object) for n in order}
    frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8", header=0 if has_header else None, names=order,
                        dtype=dtypes, skip_blank_lines=True, keep_default_na=False, na_values=sorted(NA_TOKENS),
                        engine="c")
    if frame.empty:
        return None
    numeric, categorical = {}, {}
    for name in order:
        if kinds[name] == "numeric":
            values = frame[name].to_numpy(dtype=np.float64, copy=True)
            values[~np.isfinite(values)] = np.nan
            numeric[name] = values
        else:
            values = frame[name].to_numpy(dtype=object, copy=True)
            values[pd.isna(values)] = None
            categorical[name] = values
    return Columns(len(frame), numeric, categorical)


def _read_csv_as_text(text: str, order: list[str], has_header: bool, schema: FeatureSchema) -> Columns:
    import pandas as pd

    kinds = dict(zip(schema.names, schema.kinds, strict=True))
    dtypes = {n: (object if kinds[n] == "categorical" else str) for n in order}
    try:
        frame = pd.read_csv(io.StringIO(text), header=0 if has_header else None, names=order, dtype=dtypes,
                            skip_blank_lines=True, keep_default_na=False, na_filter=False, engine="c")
    except (pd.errors.ParserError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "malformed CSV"
        raise RequestError(400, f"CSV could not be parsed: {message}; expected {len(order)} fields "
                                f"({', '.join(order)})") from None
    if frame.empty:
        raise RequestError(400, "empty CSV body: send one row per line")
    first_line = 2 if has_header else 1
    numeric, categorical = {}, {}
    for name in order:
        values = frame[name].to_numpy(dtype=object)
        if kinds[name] == "numeric":
            numeric[name] = _numeric_vector(name, values, first_line)
        else:
            missing = frame[name].isin(NA_TOKENS).to_numpy()
            values = values.copy()
            values[missing] = None
            categorical[name] = values
    return Columns(len(frame), numeric, categorical)


def _check_field_counts(raw: bytes, text: str, width: int, order: list[str], skip_first: bool) -> None:
    """pandas pads short lines silently; the small path refuses them, so the large path must too."""
    # Counting separators clears a well-formed body several times faster than splitting every line into fields;
    # any other body gets the full pass, which names the first bad line exactly as the small path does.
    if not _separators_per_line_are(raw, width - 1):
        _check_each_line(text, width, order, skip_first)


_UNICODE_LINE_BREAKS = ("\x85".encode(), "\u2028".encode(), "\u2029".encode())


def _separators_per_line_are(raw: bytes, commas: int) -> bool:
    """True if every non-empty line has exactly `commas` commas, counted with numpy over the bytes.

    Answers only for bodies where lines split at LF (CRLF allowed) mean exactly what `str.splitlines` means and
    no field is quoted; False sends every other body (and every mismatch) to the line-by-line checks.
    """
    data = np.frombuffer(raw, dtype=np.uint8)
    newline, cr = data == 0x0A, data == 0x0D
    controls = int(np.count_nonzero(data < 0x20))
    carriage_returns = int(np.count_nonzero(cr))
    if carriage_returns and carriage_returns != int(np.count_nonzero(cr[:-1] & newline[1:])):
        return False  # a CR that does not end a line splits one for str.splitlines
    if controls != int(np.count_nonzero(newline)) + carriage_returns or 0x22 in raw:  # other breaks, tabs, quotes
        return False
    if int(data.max(initial=0)) >= 0x80 and any(b in raw for b in _UNICODE_LINE_BREAKS):
        return False
    ends = np.flatnonzero(newline)
    if not raw.endswith(b"\n"):
        ends = np.append(ends, len(raw))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts - (cr[ends - 1] if carriage_returns else 0)
    commas_before = np.searchsorted(np.flatnonzero(data == 0x2C), np.concatenate(([0], ends)))
    per_line = np.diff(commas_before)
    return bool(np.all(per_line[lengths > 0] == commas))


# White space that str.strip() removes but pandas' C parser keeps: a line made of it is blank to the checks
# below and a row to pandas, which would pad it with missing values into a row nobody sent.
_OTHER_WHITE_SPACE = re.compile("[\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_PANDAS_LINE_ENDS = re.compile("\r\n|\r|\n")


def _check_each_line(text: str, width: int, order: list[str], skip_first: bool) -> None:
    if _OTHER_WHITE_SPACE.search(text):
        for number, line in enumerate(_PANDAS_LINE_ENDS.split(text), start=1):
            other = line.strip(" \t")
            if other and not line.strip():
                raise RequestError(400, f"CSV line {number} holds only white space ({other[:1]!r}): remove the line")
    lines = [line for line in text.splitlines() if line.strip()]
    rows = _csv_rows(lines) if '"' in text else (line.split(",") for line in lines)
    for number, row in enumerate(rows, start=1):
        if skip_first and number == 1:
            continue
        if len(row) != width:
            raise RequestError(400, f"CSV line {number} has {len(row)} fields, expected {width} ({', '.join(order)})")


def _numeric_vector(name: str, values: np.ndarray, first_line: int) -> np.ndarray:
    import pandas as pd

    missing = pd.Series(values, dtype=object).str.strip().isin(NA_TOKENS).to_numpy()
    text = values.copy()
    text[missing] = "nan"
    try:
        # object -> float64 calls float() per value: the same conversion as the small-request path.
        parsed = text.astype(np.float64)
    except ValueError:
        for index, value in enumerate(text):
            try:
                float(value)
            except ValueError:
                raise RequestError(400, f"column {name!r} (row {first_line + index}): {str(value)[:50]!r} "
                                        "is not a number") from None
        raise
    parsed[~np.isfinite(parsed)] = np.nan
    return parsed


def parse_json(body: bytes, schema: FeatureSchema) -> Columns:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"body is not valid JSON: {exc}") from None
    if isinstance(document, dict) and "instances" in document:
        instances = document["instances"]
    elif isinstance(document, dict):
        instances = [document]
    else:
        instances = document
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, 'JSON must be {"instances": [...]}, a list of records, or one record; got nothing to score')
    return _from_instances(instances, schema)


def parse_json_lines(body: bytes, schema: FeatureSchema) -> Columns:
    """One JSON value per line; lines end at LF (or CRLF) only: U+2028, U+2029 and NEL are valid inside JSON."""
    instances = []
    for number, line in enumerate(_decode(body).split("\n"), start=1):
        if line.strip(" \t\r"):
            try:
                instances.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise RequestError(400, f"JSON Lines line {number} is not valid JSON: {exc}") from None
    if not instances:
        raise RequestError(400, "empty JSON Lines body")
    return _from_instances(instances, schema)


def _from_instances(instances: list, schema: FeatureSchema) -> Columns:
    names = list(schema.names)
    if all(isinstance(i, dict) for i in instances):
        expected = schema.name_set
        for number, record in enumerate(instances, start=1):
            if record.keys() != expected:
                problem = _columns_problem(list(record), schema)
                raise RequestError(400, f"instance {number}: {problem}")
        rows = [[record[n] for n in names] for record in instances]
    elif all(isinstance(i, list) for i in instances):
        for number, row in enumerate(instances, start=1):
            if len(row) != len(names):
                raise RequestError(400, f"instance {number} has {len(row)} values, expected {len(names)} "
                                        f"({', '.join(names)})")
        rows = instances
    else:
        raise RequestError(400, "instances must all be records (objects keyed by column) or all be lists of values")
    return _from_rows(rows, names, schema, 1)
