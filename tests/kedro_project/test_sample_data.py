from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_pipeline import sample_data


def test_same_seed_same_data_and_different_seed_different_data():
    first, again, other = sample_data.generate(300, seed=5), sample_data.generate(300, seed=5), sample_data.generate(300, seed=6)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_mixed_types_missing_values_and_a_binary_target():
    frame = sample_data.generate(2000, seed=1)
    assert frame.shape == (2000, 14)
    numeric = frame.select_dtypes("number").columns
    assert len(numeric) >= 5 and len(frame.columns) - len(numeric) >= 5
    assert frame.drop(columns="churn").isna().any().sum() >= 4
    assert frame["churn"].notna().all()
    assert set(frame["churn"]) == {"yes", "no"}
    assert 0.15 < (frame["churn"] == "yes").mean() < 0.6


def test_target_depends_on_the_features():
    frame = sample_data.generate(4000, seed=2)
    churned = frame["churn"] == "yes"
    month_to_month = frame["contract"] == "month-to-month"
    assert churned[month_to_month].mean() > churned[~month_to_month].mean() + 0.15
    assert frame.loc[churned, "tenure_months"].mean() < frame.loc[~churned, "tenure_months"].mean()


def test_drifted_data_stays_inside_the_reference_ranges_and_categories():
    reference, drifted = sample_data.generate(3000, seed=1), sample_data.generate(3000, seed=2, drift=True)
    for column in reference.select_dtypes("number").columns:
        assert drifted[column].min() >= reference[column].min() - 1e-9, column
        assert drifted[column].max() <= reference[column].max() * 1.25, column
    for column in reference.select_dtypes(exclude="number").columns:
        assert set(drifted[column].dropna()) <= set(reference[column].dropna()), column
    assert drifted["tenure_months"].mean() < reference["tenure_months"].mean() / 2


def test_cli_writes_csv_and_parquet(tmp_path):
    assert sample_data.main(["--rows", "50", "--seed", "1", "--out", str(tmp_path / "a.csv")]) == 0
    assert sample_data.main(["--rows", "50", "--seed", "1", "--drift", "--target", "label",
                             "--out", str(tmp_path / "b.parquet")]) == 0
    csv_frame = pd.read_csv(tmp_path / "a.csv")
    parquet_frame = pd.read_parquet(tmp_path / "b.parquet")
    assert len(csv_frame) == 50 and "churn" in csv_frame
    assert len(parquet_frame) == 50 and "label" in parquet_frame and "churn" not in parquet_frame
    assert np.isclose(csv_frame["monthly_charges"], sample_data.generate(50, seed=1)["monthly_charges"]).all()


def test_cli_rejects_an_unknown_format(tmp_path):
    with pytest.raises(SystemExit):
        sample_data.main(["--rows", "5", "--out", str(tmp_path / "a.xlsx")])
