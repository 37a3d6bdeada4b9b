"""Hostile requests to the serving app, in-process: bounded work, 4xx for every parse failure, no wedged loop."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_support import call, call_async
from entrypoint_support import TARGET
from ml_pipeline import sample_data
from ml_pipeline.serving import parsing
from ml_pipeline.serving.parsing import FeatureSchema

CSV = {"Content-Type": "text/csv"}
FIELD_LIMIT = 131072  # the csv module's default field size limit


def _rows(serving, count: int, seed: int = 3):
    return sample_data.generate(count, seed=seed)[list(serving.state.model.schema.names)]


def _csv(frame, header: bool = False) -> bytes:
    return frame.to_csv(index=False, header=header).encode()


class CountingList(list):
    """A list that counts how many elements are visited through iteration or count()."""

    visits = 0

    def __iter__(self):
        for item in super().__iter__():
            self.visits += 1
            yield item

    def count(self, value) -> int:
        self.visits += len(self)
        return super().count(value)


def _visits(extra: int) -> int:
    schema = FeatureSchema(("a", "b", "c"), ("numeric", "numeric", "categorical"), "y")
    given = CountingList(["a", "b", "b", *(f"x{i}" for i in range(extra))])
    assert parsing._columns_problem(given, schema) is not None
    return given.visits


def test_the_column_check_does_linear_work_in_the_number_of_columns():
    small, large = _visits(1_000), _visits(8_000)
    # Linear work grows 8x here; the quadratic check grew 64x (a 1 MB header took minutes).
    assert large <= 10 * small, (small, large)


def test_a_header_with_12000_extra_columns_is_a_400_listing_the_first_ten(serving_app):
    names = list(serving_app.state.model.schema.names)
    header = ",".join([*names, *(f"extra{i}" for i in range(12_000))])
    body = (header + "\n" + _csv(_rows(serving_app, 1)).decode()).encode()
    answer = call(serving_app.app, "POST", "/invocations", body, CSV)
    assert answer.status == 400
    assert answer.error == "unexpected columns: " + ", ".join(f"extra{i}" for i in range(10)) + " and 11990 more"


def test_a_json_record_with_8000_keys_is_a_400_with_a_bounded_message(serving_app):
    record = {f"key{i}": i for i in range(8_000)}
    answer = call(serving_app.app, "POST", "/invocations", json.dumps(record).encode(),
                  {"Content-Type": "application/json"})
    assert answer.status == 400
    assert "missing columns: customer_age" in answer.error
    assert "unexpected columns: key0, key1" in answer.error and "and 7990 more" in answer.error
    assert len(answer.error) < 1000


def test_long_and_repeated_names_are_shortened_and_counted(serving_app):
    names = list(serving_app.state.model.schema.names)
    header = ",".join([*names, "z" * 5000, *([names[0]] * 30)])
    body = (header + "\n" + _csv(_rows(serving_app, 1)).decode()).encode()
    answer = call(serving_app.app, "POST", "/invocations", body, CSV)
    assert answer.status == 400 and len(answer.error) < 400
    assert "duplicate columns: customer_age" in answer.error and "zzzz" in answer.error


def test_ping_answers_while_a_large_body_is_parsed(serving_app, monkeypatch):
    real_parse = serving_app.parse_body
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def held_parse(*args):
        entered.set()
        # The guard only ends the test when the parse runs on the event loop (which /ping then waits for).
        order.append("parse released" if release.wait(timeout=10) else "parse gave up waiting")
        return real_parse(*args)

    monkeypatch.setattr(serving_app, "parse_body", held_parse)
    body = _csv(_rows(serving_app, 4000))  # ≈ 0.9 MB

    async def scenario():
        invocation = asyncio.create_task(call_async(serving_app.app, "POST", "/invocations", body, CSV))
        while not entered.is_set() and not invocation.done():
            await asyncio.sleep(0.01)
        ping = await call_async(serving_app.app, "GET", "/ping")
        order.append("ping answered")
        release.set()
        return ping, await invocation

    ping, answer = asyncio.run(scenario())
    assert ping.status == 200
    assert order == ["ping answered", "parse released"]
    assert answer.status == 200 and len(answer.body.split()) == 4000


def test_a_small_request_is_parsed_on_the_event_loop(serving_app, monkeypatch):
    threads: list[str] = []
    real_parse = serving_app.parse_body

    def recording_parse(*args):
        threads.append(threading.current_thread().name)
        return real_parse(*args)

    monkeypatch.setattr(serving_app, "parse_body", recording_parse)
    answer = call(serving_app.app, "POST", "/invocations", _csv(_rows(serving_app, 1)), CSV)
    assert answer.status == 200 and threads == [threading.main_thread().name]


# --- every CSV parse failure is a 4xx naming the problem -------------------------------------------------------

def _one_row_fields(serving) -> list[str]:
    return _csv(_rows(serving, 1)).decode().strip().split(",")


def _huge_first_field(serving) -> str:
    return '"' + "x" * (FIELD_LIMIT + 10) + '",' + ",".join(_one_row_fields(serving)[1:])


@pytest.mark.parametrize("where, line", [("alone", 1), ("after 100 rows", 101), ("first of 100 rows", 1)])
def test_a_quoted_field_over_the_csv_field_limit_is_a_400_naming_the_line(serving_app, where, line):
    rows = _csv(_rows(serving_app, 100)).decode()
    huge = _huge_first_field(serving_app) + "\n"
    text = {"alone": huge, "after 100 rows": rows + huge, "first of 100 rows": huge + rows}[where]
    answer = call(serving_app.app, "POST", "/invocations", text.encode(), CSV)
    assert answer.status == 400, answer.body[:300]
    assert f"line {line}" in answer.error and str(FIELD_LIMIT) in answer.error


def test_bare_carriage_returns_end_lines_even_with_a_quoted_field(serving_app):
    fields = _one_row_fields(serving_app)
    quoted = ",".join(fields[:-1] + [f'"{fields[-1]}"'])
    body = (",".join(fields) + "\r" + quoted + "\r").encode()
    answer = call(serving_app.app, "POST", "/invocations", body, CSV)
    assert answer.status == 200, answer.body
    assert len(answer.body.split()) == 2


@pytest.mark.parametrize("body", [
    b'1,"2\n',                                   # an unterminated quote
    b'"a"b,1,2\n',                               # text after a closing quote
    b"1,2,3\x00\n" * 80,                         # NUL bytes, large path
    b'1,"\x00",3\n' * 80,                        # a quoted NUL, large path
    b'"' + b"y" * (FIELD_LIMIT + 1) + b'"\n' + b"1\n" * 80,
])
def test_malformed_csv_is_a_4xx_with_a_reason(serving_app, body):
    answer = call(serving_app.app, "POST", "/invocations", body, CSV)
    assert 400 <= answer.status < 500 and answer.error


@pytest.mark.parametrize("quote", [b"", b'"'])
@pytest.mark.parametrize("blank", ["\x0b", "\u2028", "\xa0 ", "\x1e"])
def test_a_line_of_other_white_space_in_a_large_body_is_refused_not_read_as_a_padded_row(serving_app, quote, blank):
    # pandas reads such a line as a row of one field and pads it with missing values: a prediction nobody asked for.
    row = b",".join([quote + b"1" + quote] * 13)
    body = b"\r\n".join([row] * 70) + b"\r" + blank.encode() + b"\r"
    answer = call(serving_app.app, "POST", "/invocations", body, CSV)
    assert answer.status == 400 and "line 71 holds only white space" in answer.error


def test_the_other_white_space_list_is_what_str_strip_removes():
    every = {chr(c) for c in range(0x110000) if chr(c).isspace()} - set(" \t\r\n")
    assert {c for c in every if parsing._OTHER_WHITE_SPACE.match(c)} == every


# --- JSON Lines, Accept, body timeout ------------------------------------------------------------------------

@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_json_lines_split_only_at_line_feeds(serving_app, separator):
    records = json.loads(_rows(serving_app, 2).to_json(orient="records"))
    records[0]["plan"] = f"basic{separator}plus"
    body = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    answer = call(serving_app.app, "POST", "/invocations", body,
                  {"Content-Type": "application/jsonlines", "Accept": "application/json"})
    assert answer.status == 200, answer.body
    assert len(answer.json()["predictions"]) == 2


def test_a_bad_json_lines_line_is_named_by_its_line_feed_number(serving_app):
    records = json.loads(_rows(serving_app, 2).to_json(orient="records"))
    records[0]["plan"] = "basic\u2028plus"
    body = (json.dumps(records[0], ensure_ascii=False) + "\n{oops\n").encode()
    answer = call(serving_app.app, "POST", "/invocations", body, {"Content-Type": "application/jsonlines"})
    assert answer.status == 400 and answer.error.startswith("JSON Lines line 2 is not valid JSON")


@pytest.mark.parametrize("accept, content_type, expected", [
    ("application/json;q=0.1, text/csv", "text/csv", "text/csv"),
    ("text/csv;q=0.5, application/json;q=0.9", "text/csv", "application/json"),
    ("application/*;q=0.2, text/*;q=0.8", "application/json", "text/csv"),
    ("text/csv;q=0, */*", "text/csv", "application/json"),
    ("*/*;q=0.5, text/csv;q=0.6", "application/json", "text/csv"),
    ("text/csv, application/json", "application/json", "text/csv"),          # a tie keeps the listed order
    ("application/json, text/csv", "text/csv", "application/json"),
    ("*/*, text/csv", "application/json", "application/json"),               # */* first: the request's format
    ("text/csv; Q=0.3, application/json; charset=utf-8; q=0.4", "text/csv", "application/json"),
    ("*/*", "text/csv", "text/csv"),
    (None, "application/json", "application/json"),
])
def test_accept_q_values_choose_the_answer_format(serving_app, accept, content_type, expected):
    rows = _rows(serving_app, 1)
    body = _csv(rows) if content_type == "text/csv" else rows.to_json(orient="records").encode()
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept is not None else {})}
    answer = call(serving_app.app, "POST", "/invocations", body, headers)
    assert answer.status == 200 and answer.headers["content-type"] == expected


@pytest.mark.parametrize("accept", ["application/json;q=0", "*/*;q=0", "text/csv;q=0, application/json;q=0.000",
                                    "image/png, */*;q=0"])
def test_q_zero_means_not_acceptable(serving_app, accept):
    answer = call(serving_app.app, "POST", "/invocations", _csv(_rows(serving_app, 1)),
                  {"Content-Type": "application/json", "Accept": accept})
    assert answer.status == 406 and "cannot answer" in answer.error


def test_a_body_that_stops_arriving_is_a_408_that_closes_the_connection(serving_app, monkeypatch):
    monkeypatch.setattr(serving_app, "BODY_TIMEOUT_SECONDS", 0.2, raising=False)

    async def stalled():
        never = asyncio.Event()
        # The outer guard only ends the test if the app waits for the body forever.
        return await asyncio.wait_for(call_async(serving_app.app, "POST", "/invocations", headers=CSV,
                                                 chunks=[b"33,12,"], stall=never), timeout=20)

    answer = asyncio.run(stalled())
    assert answer.status == 408 and "0.2 s" in answer.error
    assert answer.headers.get("connection") == "close"


def test_the_target_column_hint_survives_the_bounded_listing(serving_app):
    names = list(serving_app.state.model.schema.names)
    body = (",".join([*names, TARGET]) + "\n" + _csv(_rows(serving_app, 1)).decode().strip() + ",yes\n").encode()
    answer = call(serving_app.app, "POST", "/invocations", body, CSV)
    assert answer.status == 400 and answer.error == f"unexpected columns: {TARGET} (the target column must not be sent)"



@settings(max_examples=3000, derandomize=True, database=None, deadline=None)
@given(st.one_of(st.floats().map(repr), st.text(alphabet=" \t\n+-._0123456789eEinfINFatyTY\u0663\u00a0\u2028x"),
                 st.from_regex(r"\s*[+-]?(\d[\d_]*)?\.?\d*([eE][+-]?\d+)?\s*", fullmatch=True)))
def test_the_header_check_only_skips_fields_that_cannot_be_numbers(text):
    try:
        float(text)
    except ValueError:
        return
    assert parsing._MAY_BE_NUMBER.match(text)
