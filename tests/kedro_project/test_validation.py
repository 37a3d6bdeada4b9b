from __future__ import annotations

from ml_pipeline import sample_data
from ml_pipeline.pipelines.data_validation import nodes

from kedro_test_params import EXPECTATION_SETTINGS, PROFILE_SETTINGS


def _validate(tmp_path, frame, metadata, name="new.csv", strict=(), accept=False):
    path = tmp_path / name
    if isinstance(frame, bytes):
        path.write_bytes(frame)
    else:
        frame.to_csv(path, index=False)
    return nodes.validate_new_data([str(path)], metadata, "churn", "auto", EXPECTATION_SETTINGS, PROFILE_SETTINGS,
                                   {"strict_columns": list(strict), "accept_shift": accept})


def _shifted(rows: int, seed: int):
    """Sample data with three kinds of shift on every 10th row: an age far outside the reference range, a contract
    and a target class the reference never saw."""
    frame = sample_data.generate(rows, seed=seed)
    frame.loc[::10, "customer_age"] = 400.0
    frame.loc[::10, "contract"] = "lifetime"
    frame.loc[::10, "churn"] = "paused"
    return frame


def test_fresh_data_passes_with_low_drift(tmp_path, production_metadata):
    report = _validate(tmp_path, sample_data.generate(600, seed=21), production_metadata)
    assert report["passed"] is True, report["failures"]
    assert report["kind"] == "validation" and report["reference"] == "production-model"
    assert report["rows"] == 600 and report["failures"] == []
    assert report["drift"]["score"] < 0.1
    assert report["drift"]["features"]["tenure_months"]["method"] == "ks"
    assert report["drift"]["features"]["contract"]["method"] == "psi"


def test_drifted_data_passes_validation_but_scores_high_drift(tmp_path, production_metadata):
    report = _validate(tmp_path, sample_data.generate(600, seed=22, drift=True), production_metadata)
    assert report["passed"] is True, report["failures"]
    assert report["drift"]["score"] > 0.3
    assert report["drift"]["features"]["tenure_months"]["p_value"] < 0.001


def test_shift_is_reported_and_the_file_passes_by_default(tmp_path, production_metadata):
    frame = _shifted(300, seed=23)
    report = _validate(tmp_path, frame, production_metadata)
    assert report["passed"] is True and report["failures"] == [] and report["accepted_shift"] is False
    by_column = {f["column"]: f for f in report["shifts"]}
    assert set(by_column) == {"customer_age", "contract", "churn"}
    assert {f["severity"] for f in report["shifts"]} == {"shift"}
    assert by_column["customer_age"]["expectation"] == "expect_column_values_to_be_between"
    assert by_column["customer_age"]["found"] == [400.0] and by_column["customer_age"]["unexpected_count"] == 30
    assert "<= value <=" in by_column["customer_age"]["expected"]
    assert by_column["contract"]["found"] == ["lifetime"] and "month-to-month" in by_column["contract"]["expected"]
    assert by_column["churn"]["found"] == ["paused"]  # a new target class
    # rows 0, 10, 20, ... carry all three shifts: 30 rows with shift, none rejected (they are trained on)
    assert report["rows_shifted"] == 30 and report["rows_rejected"] == 0
    assert "shift reported and accepted" in report["summary"] and "lifetime" in report["summary"]


def test_a_shift_in_a_strict_column_fails_the_file(tmp_path, production_metadata):
    report = _validate(tmp_path, _shifted(300, seed=23), production_metadata, strict=["contract"])
    assert report["passed"] is False
    assert [(f["column"], f["severity"], f.get("strict")) for f in report["failures"]] == [("contract", "shift", True)]
    assert {f["column"] for f in report["shifts"]} == {"customer_age", "churn"}  # other columns: still only reported
    assert report["rows_rejected"] == 30  # the rows with the unknown contract
    assert report["summary"].startswith("rejected: 1 shift(s) in strict columns: contract")


def test_accepting_the_file_turns_strict_shift_into_reported_shift(tmp_path, production_metadata):
    report = _validate(tmp_path, _shifted(300, seed=23), production_metadata, strict=["contract", "churn"],
                       accept=True)
    assert report["passed"] is True and report["failures"] == [] and report["accepted_shift"] is True
    strict = {f["column"] for f in report["shifts"] if f.get("strict")}
    assert strict == {"contract", "churn"} and report["rows_rejected"] == 0
    assert "accepted by a person" in report["summary"]


def test_accepting_does_not_accept_errors(tmp_path, production_metadata):
    frame = sample_data.generate(100, seed=28).drop(columns="plan")
    report = _validate(tmp_path, frame, production_metadata, strict=["contract"], accept=True)
    assert report["passed"] is False and report["accepted_shift"] is False
    table = next(f for f in report["failures"] if f["expectation"] == "expect_table_columns_to_match_set")
    assert table["severity"] == "error" and table["found"] == {"missing": ["plan"], "unexpected": []}


def test_more_nulls_in_a_feature_is_shift_but_a_missing_target_is_an_error(tmp_path, production_metadata):
    frame = sample_data.generate(200, seed=29)
    frame.loc[:99, "region"] = None  # half the rows; the reference has none
    frame.loc[:9, "churn"] = None  # 5 % of the targets
    report = _validate(tmp_path, frame, production_metadata)
    assert report["passed"] is False
    assert [(f["column"], f["severity"]) for f in report["failures"]] == [("churn", "error")]
    assert [(f["column"], f["expectation"]) for f in report["shifts"]] == [
        ("region", "expect_column_values_to_not_be_null")]
    assert report["rows_rejected"] == 10  # rows without a target; a missing feature value is imputed


def test_wrong_type_is_reported_once_with_examples(tmp_path, production_metadata):
    frame = sample_data.generate(100, seed=24)
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[:4, "tenure_months"] = "twelve"
    report = _validate(tmp_path, frame, production_metadata)
    failures = [f for f in report["failures"] if f["column"] == "tenure_months"]
    assert len(failures) == 1 and failures[0]["expectation"] == "expect_column_values_to_be_in_type_list"
    assert "twelve" in failures[0]["found"] and failures[0]["unexpected_count"] == 5
    assert failures[0]["severity"] == "error" and report["passed"] is False and report["rows_rejected"] == 5


def test_missing_and_extra_columns(tmp_path, production_metadata):
    frame = sample_data.generate(50, seed=25).drop(columns=["churn", "plan"]).assign(extra=1)
    report = _validate(tmp_path, frame, production_metadata)
    table = next(f for f in report["failures"] if f["expectation"] == "expect_table_columns_to_match_set")
    assert table["found"] == {"missing": ["churn", "plan"], "unexpected": ["extra"]}
    assert any(f["column"] == "churn" and f["expectation"] == "expect_column_to_exist" for f in report["failures"])
    assert {f["severity"] for f in report["failures"]} == {"error"} and report["passed"] is False


def test_unparsable_and_empty_files_fail_without_crashing(tmp_path, production_metadata):
    broken = _validate(tmp_path, b"a,b\n1,2,3,4\n\x00\xff\xfe", production_metadata, "broken.csv")
    assert broken["passed"] is False and broken["failures"][0]["expectation"] == "file_is_parseable"
    assert broken["failures"][0]["severity"] == "error" and broken["shifts"] == []
    empty = _validate(tmp_path, b"", None, "empty.csv")
    assert empty["passed"] is False and "empty" in empty["summary"]
    header_only = _validate(tmp_path, b"customer_age,churn\n", None, "header.csv")
    assert header_only["passed"] is False
    assert any(f["expectation"] == "expect_table_row_count_to_be_between" and f["severity"] == "error"
               for f in header_only["failures"])


def test_first_run_builds_the_suite_from_the_data_itself(tmp_path):
    report = _validate(tmp_path, sample_data.generate(200, seed=26), None)
    assert report["passed"] is True and report["reference"] == "self"
    assert report["drift"]["score"] == 0.0
    missing_target = _validate(tmp_path, sample_data.generate(50, seed=26).drop(columns="churn"), None)
    assert missing_target["passed"] is False
    assert any(f["column"] == "churn" and f["severity"] == "error" for f in missing_target["failures"])
    # strict columns and acceptance change nothing on a first run: the reference is the file itself
    strict = _validate(tmp_path, sample_data.generate(200, seed=26), None, strict=["contract", "churn"])
    assert strict["passed"] is True and strict["shifts"] == []


def test_html_report_shows_failures_accepted_shift_and_drift(tmp_path, production_metadata):
    failed = nodes.render_validation_report(_validate(tmp_path, _shifted(100, seed=27), production_metadata,
                                                      strict=["contract"]))
    assert "FAILED" in failed and "lifetime" in failed and "tenure_months" in failed
    passed = nodes.render_validation_report(_validate(tmp_path, _shifted(100, seed=27), production_metadata))
    assert "PASSED" in passed and "Shift (reported, accepted)" in passed
    shift_section = passed.split("Shift (reported, accepted)")[1].split("<h2>")[0]
    assert "lifetime" in shift_section and "paused" in shift_section
