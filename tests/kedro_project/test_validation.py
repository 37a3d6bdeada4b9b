from __future__ import annotations

from ml_pipeline import sample_data
from ml_pipeline.pipelines.data_validation import nodes

from kedro_test_params import EXPECTATION_SETTINGS, PROFILE_SETTINGS


def _validate(tmp_path, frame, metadata, name="new.csv"):
    path = tmp_path / name
    if isinstance(frame, bytes):
        path.write_bytes(frame)
    else:
        frame.to_csv(path, index=False)
    return nodes.validate_new_data([str(path)], metadata, "churn", "auto", EXPECTATION_SETTINGS, PROFILE_SETTINGS)


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


def test_bad_values_fail_with_column_expected_and_found(tmp_path, production_metadata):
    frame = sample_data.generate(300, seed=23)
    frame.loc[::10, "customer_age"] = 400.0
    frame.loc[::10, "contract"] = "lifetime"
    report = _validate(tmp_path, frame, production_metadata)
    assert report["passed"] is False
    by_column = {f["column"]: f for f in report["failures"]}
    assert by_column["customer_age"]["expectation"] == "expect_column_values_to_be_between"
    assert by_column["customer_age"]["found"] == [400.0] and by_column["customer_age"]["unexpected_count"] == 30
    assert "<= value <=" in by_column["customer_age"]["expected"]
    assert by_column["contract"]["found"] == ["lifetime"]
    assert "month-to-month" in by_column["contract"]["expected"]
    assert report["rows_rejected"] == 30
    assert "customer_age" in report["summary"] and "lifetime" in report["summary"]


def test_wrong_type_is_reported_once_with_examples(tmp_path, production_metadata):
    frame = sample_data.generate(100, seed=24)
    frame["tenure_months"] = frame["tenure_months"].astype(object)
    frame.loc[:4, "tenure_months"] = "twelve"
    report = _validate(tmp_path, frame, production_metadata)
    failures = [f for f in report["failures"] if f["column"] == "tenure_months"]
    assert len(failures) == 1 and failures[0]["expectation"] == "expect_column_values_to_be_in_type_list"
    assert "twelve" in failures[0]["found"] and failures[0]["unexpected_count"] == 5


def test_missing_and_extra_columns(tmp_path, production_metadata):
    frame = sample_data.generate(50, seed=25).drop(columns=["churn", "plan"]).assign(extra=1)
    report = _validate(tmp_path, frame, production_metadata)
    table = next(f for f in report["failures"] if f["expectation"] == "expect_table_columns_to_match_set")
    assert table["found"] == {"missing": ["churn", "plan"], "unexpected": ["extra"]}
    assert any(f["column"] == "churn" and f["expectation"] == "expect_column_to_exist" for f in report["failures"])


def test_unparsable_and_empty_files_fail_without_crashing(tmp_path, production_metadata):
    broken = _validate(tmp_path, b"a,b\n1,2,3,4\n\x00\xff\xfe", production_metadata, "broken.csv")
    assert broken["passed"] is False and broken["failures"][0]["expectation"] == "file_is_parseable"
    empty = _validate(tmp_path, b"", None, "empty.csv")
    assert empty["passed"] is False and "empty" in empty["summary"]
    header_only = _validate(tmp_path, b"customer_age,churn\n", None, "header.csv")
    assert header_only["passed"] is False
    assert any(f["expectation"] == "expect_table_row_count_to_be_between" for f in header_only["failures"])


def test_first_run_builds_the_suite_from_the_data_itself(tmp_path):
    report = _validate(tmp_path, sample_data.generate(200, seed=26), None)
    assert report["passed"] is True and report["reference"] == "self"
    assert report["drift"]["score"] == 0.0
    missing_target = _validate(tmp_path, sample_data.generate(50, seed=26).drop(columns="churn"), None)
    assert missing_target["passed"] is False
    assert any(f["column"] == "churn" for f in missing_target["failures"])


def test_html_report_shows_failures_and_drift(tmp_path, production_metadata):
    frame = sample_data.generate(100, seed=27)
    frame.loc[:5, "contract"] = "lifetime"
    html = nodes.render_validation_report(_validate(tmp_path, frame, production_metadata))
    assert "FAILED" in html and "lifetime" in html and "tenure_months" in html
