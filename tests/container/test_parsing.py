"""Large CSV requests: the typed read_csv path gives exactly what the text path gave, or falls back to it."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from entrypoint_support import write_model_dir
from ml_pipeline import sample_data
from ml_pipeline.serving import parsing
from ml_pipeline.serving.app import _csv_value, render_csv
from ml_pipeline.serving.parsing import NA_TOKENS, PANDAS_THRESHOLD_ROWS, RequestError, parse_csv
from ml_pipeline.serving.predictor import CompiledModel, Prediction

ROWS = PANDAS_THRESHOLD_ROWS + 136  # well inside the pandas path

# Tokens the C parser converts itself; each must give the number Python's float() gives (or NaN).
NUMERIC_TOKENS = [*sorted(NA_TOKENS), "inf", "-inf", "Infinity", "-INFINITY", "1e400", "-1e400", "1e-400", "5e-324",
                  "1.5 ", "+3", ".5", "5.", "1E5", "-0", "0.1000000000000000055511151231257827",
                  "123456789012345678901234567890", "2.2250738585072011e-308", "0.30000000000000004",
                  '"2.5"', '"NA"', '""']
# Whitespace and underscores: float() accepts them; the C parser may not. Either it gives the same or it refuses.
EDGE_TOKENS = ["1_000", " 1.5", " NA ", "  ", "\t7", " -inf", "NA\t", "1 000"]
CATEGORICAL_TOKENS = [*sorted(NA_TOKENS), "martian", '"a, b"', '"say ""hi"""', " NA", "NA ", "1.0", "nan ", "None"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    frame = sample_data.generate(1200, seed=71)
    return CompiledModel.load(write_model_dir(tmp_path_factory.mktemp("parse"), frame))


def _lines(model, seed: int) -> list[list[str]]:
    frame = sample_data.generate(ROWS, seed=seed)[list(model.schema.names)]
    text = frame.to_csv(index=False, header=False)
    return [line.split(",") for line in text.splitlines()]


def _inject(rows: list[list[str]], model, numeric: list[str], categorical: list[str], seed: int) -> str:
    rng = np.random.default_rng(seed)
    names = list(model.schema.names)
    for token_list, targets in ((numeric, model.schema.numeric_names), (categorical, model.schema.categorical_names)):
        for i, token in enumerate(token_list):
            for column in targets:
                rows[int(rng.integers(len(rows)))][names.index(column)] = token
            rows[(i * 7) % len(rows)][names.index(targets[i % len(targets)])] = token
    return "\n".join(",".join(row) for row in rows) + "\n"


def _text_path(text: str, model, header: list[str] | None = None) -> parsing.Columns:
    """The pre-existing conversion (every column read as text, converted in Python): the reference."""
    order = header or list(model.schema.names)
    return parsing._read_csv_as_text(text, order, header is not None, model.schema)


def _assert_same(a: parsing.Columns, b: parsing.Columns) -> None:
    assert a.rows == b.rows
    assert a.numeric.keys() == b.numeric.keys() and a.categorical.keys() == b.categorical.keys()
    for name, values in a.numeric.items():
        assert values.dtype == b.numeric[name].dtype == np.float64
        # bit-identical, NaN in the same places (and -0.0 stays -0.0)
        assert values.tobytes() == b.numeric[name].tobytes() or (
            np.array_equal(np.isnan(values), np.isnan(b.numeric[name]))
            and np.array_equal(values[~np.isnan(values)].view(np.int64),
                               b.numeric[name][~np.isnan(b.numeric[name])].view(np.int64))), name
    for name, values in a.categorical.items():
        assert values.dtype == b.categorical[name].dtype == object
        assert list(values) == list(b.categorical[name]), name
        assert all(v is None or type(v) is str for v in values), name


@pytest.mark.parametrize("header", [False, True])
def test_typed_read_gives_the_text_path_columns_and_predictions(model, header):
    text = _inject(_lines(model, seed=72), model, NUMERIC_TOKENS, CATEGORICAL_TOKENS, seed=73)
    order = None
    if header:
        order = list(reversed(model.schema.names))
        # reorder through the csv module: quoted categoricals contain commas
        rows = list(csv.reader(io.StringIO(text)))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(order)
        names = list(model.schema.names)
        for row in rows:
            writer.writerow([row[names.index(n)] for n in order])
        text = out.getvalue()
    typed = parsing._read_csv_typed(text.encode(), order or list(model.schema.names), header, model.schema)
    assert typed is not None, "the typed path must handle these tokens itself, not fall back"
    reference = _text_path(text, model, order)
    _assert_same(typed, reference)
    _assert_same(parse_csv(text.encode(), model.schema), reference)
    # the injected values really are there: missing numerics, missing and unseen categoricals
    assert any(np.isnan(v).any() for v in typed.numeric.values())
    assert any(v is None for col in typed.categorical.values() for v in col)
    assert any(v == "martian" for col in typed.categorical.values() for v in col)
    assert any(v == "a, b" for col in typed.categorical.values() for v in col)
    ours, theirs = model.predict(typed, probabilities=True), model.predict(reference, probabilities=True)
    assert ours.labels == theirs.labels
    np.testing.assert_array_equal(ours.probabilities, theirs.probabilities)
    assert render_csv(model.predict(typed)) == render_csv(model.predict(reference))


def test_numbers_needing_correct_rounding_are_bit_identical(model):
    rng = np.random.default_rng(78)
    rows = _lines(model, seed=79)
    names = list(model.schema.names)
    for row in rows:
        for column in model.schema.numeric_names:
            kind = int(rng.integers(3))
            if kind == 0:  # 17 significant digits, exponents to the subnormal and overflow ends
                row[names.index(column)] = f"{rng.integers(10**16, 10**17)}e{rng.integers(-340, 310)}"
            elif kind == 1:  # more digits than a double holds
                row[names.index(column)] = "0." + "".join(map(str, rng.integers(0, 10, 30)))
            else:
                row[names.index(column)] = repr(float(rng.random() * 10.0 ** rng.integers(-20, 20)))
    text = "\n".join(",".join(r) for r in rows) + "\n"
    typed = parsing._read_csv_typed(text.encode(), names, False, model.schema)
    assert typed is not None
    _assert_same(typed, _text_path(text, model))


@pytest.mark.parametrize("token", EDGE_TOKENS)
def test_tokens_with_spaces_or_underscores_give_the_text_path_result(model, token):
    text = _inject(_lines(model, seed=74), model, [token], [], seed=75)
    try:
        typed = parsing._read_csv_typed(text.encode(), list(model.schema.names), False, model.schema)
    except ValueError:
        typed = None  # refused: parse_csv falls back to the text path
    if token == "1_000":
        assert typed is None
    try:
        reference = _text_path(text, model)
    except RequestError as error:  # not a number for float() either ("1 000"): the same 400 from parse_csv
        assert typed is None
        assert _message(text.encode(), model) == (error.status, error.message)
        return
    if typed is not None:
        _assert_same(typed, reference)
    _assert_same(parse_csv(text.encode(), model.schema), reference)


def _message(body: bytes, model) -> tuple[int, str]:
    with pytest.raises(RequestError) as error:
        parse_csv(body, model.schema)
    return error.value.status, error.value.message


def _text_path_message(text: str, model, header: list[str] | None = None) -> tuple[int, str]:
    with pytest.raises(RequestError) as error:
        _text_path(text, model, header)
    return error.value.status, error.value.message


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("bad", ["abc", "1.2.3", "True", "0x10", "1e", "--1"])
def test_a_non_number_in_a_large_request_keeps_its_message(model, header, bad):
    rows = _lines(model, seed=76)
    names = list(model.schema.names)
    rows[40][names.index("support_calls")] = bad
    text = "\n".join(",".join(r) for r in rows) + "\n"
    if header:
        text = ",".join(names) + "\n" + text
    status, message = _message(text.encode(), model)
    row = 42 if header else 41
    assert (status, message) == (400, f"column 'support_calls' (row {row}): {bad!r} is not a number")
    assert (status, message) == _text_path_message(text, model, names if header else None)


def test_structural_errors_in_large_requests_keep_their_messages(model):
    names = list(model.schema.names)
    lines = [",".join(r) for r in _lines(model, seed=77)]
    short = lines.copy()
    short[9] = short[9].rsplit(",", 1)[0]
    assert _message("\n".join(short).encode(), model) == (
        400, f"CSV line 10 has 12 fields, expected 13 ({', '.join(names)})")
    header = ",".join([*names[:-1], "extra"]) + "\n"
    assert _message((header + "\n".join(lines)).encode(), model) == (
        400, f"missing columns: {names[-1]}; unexpected columns: extra")
    unclosed = lines.copy()
    unclosed[20] = unclosed[20].replace(",", ',"', 1)
    status, message = _message("\n".join(unclosed).encode(), model)
    assert status == 400 and message.startswith("CSV ")


def _field_count_verdict(text: str, width: int, full_pass: bool = False) -> str:
    order = [f"c{i}" for i in range(width)]
    try:
        if full_pass:
            parsing._check_each_line(text, width, order, False)
        else:
            parsing._check_field_counts(text.encode(), text, width, order, False)
    except RequestError as exc:
        return exc.message
    return "ok"


def _splitlines_counts_match(text: str, commas: int) -> bool:
    """What the numpy count must agree with whenever it answers True: the str.splitlines definition."""
    return '"' not in text and all(line.count(",") == commas for line in text.splitlines() if line)


@pytest.mark.parametrize("text", [
    "1,2,3\n4,5,6\n",                      # well formed
    "1,2,3\r\n4,5,6\r\n",                  # CRLF
    "1,2,3\n\n   \n4,5,6\n",              # blank and whitespace-only lines are skipped
    "1,2,3\n4,5\n",                        # short line
    "1,2,3\n4,5,6,7\n",                    # long line
    "1,2,3\n4,5\x0c6,7\n",                 # a form feed is a line break for the small path
    "1,2,3\n4,5\u2028,6\n",               # so is U+2028
    "1,2,3\n4,5\r6,7\n",                   # and a lone CR
    "1,2,3\n,,\n",                         # empty fields are fields
    "1,2,3\r\n\r\n4,5,6",                  # a CRLF blank line, no final line break
    "1,2,3\n4,5,6\r",                      # a final lone CR
    "\n\n1,2,3\n",                         # leading blank lines
    "1,2,3\n4,\t5,6\n",                    # a tab inside a field
    "1,2,3\n4,5\x1e,6\n",                  # a record separator is a line break for str.splitlines
    "1,2,3\n4,5\x85,6\n",                  # so is NEL
    "ü,2,3\nä,5,6\n",                      # non-ASCII text without line breaks
    '1,"2,5",3\n4,5,6\n',                 # quoted separator
    "1,2,3\n4,5,6,\n",                     # a trailing separator is one field too many
])
def test_field_count_shortcut_gives_the_full_pass_verdict(text):
    assert _field_count_verdict(text, 3) == _field_count_verdict(text, 3, full_pass=True)


def test_numpy_separator_count_never_clears_what_the_line_count_refuses():
    rng = np.random.default_rng(5)
    pieces = ["1", "22", ",", ",", ",", "\n", "\n", "\r\n", "\r", "\x0c", "\u2028", "\x85", "é", " ", '"', "\t"]
    cleared = 0
    for _ in range(3000):
        text = "".join(rng.choice(pieces, int(rng.integers(0, 30))))
        fast = parsing._separators_per_line_are(text.encode(), 2)
        if fast:
            cleared += 1
            assert _splitlines_counts_match(text, 2), repr(text)
    assert cleared > 50  # the generator does produce bodies the fast count clears
    assert parsing._separators_per_line_are(b"1,2,3\r\n4,5,6\r\n\r\n", 2)
    assert not parsing._separators_per_line_are(b"1,2,3\n4,5\n", 2)


def test_render_csv_escapes_each_class_as_before():
    classes = ["plain", "a,b", 'say "hi"', "two\nlines", 1, True, 2.5]
    labels = [classes[i % len(classes)] for i in range(50)] + ["not a class", 3.0]
    answer = render_csv(Prediction(labels, None, classes))
    assert answer == ("\n".join(_csv_value(v) for v in labels) + "\n").encode()
    assert answer.decode().splitlines()[:3] == ["plain", '"a,b"', '"say ""hi"""']
    assert answer.decode().split("\n")[5:8] == ["1", "True", "2.5"]  # "two\nlines" spans two
