"""The compact reader (text columns as `category`, read batch by batch) against the plain one: the same columns,
values, missing cells and kinds, and the same errors, on CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_pipeline import schema, tabular
from ml_pipeline.errors import DataError


def assert_same_table(plain: pd.DataFrame, compact: pd.DataFrame) -> None:
    """Column by column: numbers and booleans identical (dtype, values, NaN positions); text columns of the plain
    reader are `category` in the compact one (with categories of dtype object), with the same str value or missing
    cell in every row."""
    assert list(compact.columns) == list(plain.columns)
    assert compact.index.equals(plain.index)
    for name in plain.columns:
        old, new = plain[name], compact[name]
        if isinstance(new.dtype, pd.CategoricalDtype):
            assert new.cat.categories.dtype == object, name
            assert new.isna().tolist() == old.isna().tolist(), name
            assert [str(v) for v in new.dropna()] == [str(v) for v in old.dropna()], name
            assert not schema.is_numeric(new) and not schema.is_numeric(old), name  # both categorical features
        else:
            assert new.dtype == old.dtype, (name, new.dtype, old.dtype)
            np.testing.assert_array_equal(new.to_numpy(), old.to_numpy(), err_msg=name)


def read_both(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return tabular.read_table(path), tabular.read_table(path, compact=True)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


EDGE_CSV = """id,amount,plan,flag,day,count,empty,note,mixed
1,1.5,basic,true,2024-01-01,3,,x,1
2,inf,premium,False,2024-01-02,,,NA,a
3,-inf,,TRUE,2024-01-03,5,,"",2
4,1e5,basic,false,2024-01-04,6,,n/a,b
5,,"premium",True,2024-01-05,7,,"quoted, comma
and a line break",3
6,0.1,standard,FALSE,,8,,None,c
"""


def test_csv_with_missing_values_infinities_booleans_dates_quoted_line_breaks_and_mixed_text(tmp_path):
    plain, compact = read_both(write(tmp_path / "edge.csv", EDGE_CSV))
    assert_same_table(plain, compact)
    kinds = {name: str(dtype) for name, dtype in compact.dtypes.items()}
    assert kinds["plan"] == kinds["day"] == kinds["note"] == kinds["mixed"] == "category"  # dates stay text
    assert kinds["amount"] == kinds["count"] == kinds["empty"] == "float64" and kinds["flag"] == "bool"
    assert np.isinf(compact["amount"]).sum() == 2  # infinities are values here; clean_data makes them missing


def test_generated_training_data_is_read_identically_with_far_less_memory(tmp_path):
    from ml_pipeline import sample_data

    frame = sample_data.generate(30_000, seed=5)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)  # several Arrow blocks: the batches are stitched together
    plain, compact = read_both(path)
    assert_same_table(plain, compact)
    assert compact.memory_usage(deep=True).sum() < plain.memory_usage(deep=True).sum() / 2


def test_text_after_the_first_block_of_a_numeric_column_reads_as_the_plain_reader_does(tmp_path):
    rows = [f"{i},{i % 7}" for i in range(200_000)] + ["200000,seven"]
    path = write(tmp_path / "late.csv", "id,code\n" + "\n".join(rows) + "\n")
    plain, compact = read_both(path)
    assert_same_table(plain, compact)
    assert isinstance(compact["code"].dtype, pd.CategoricalDtype) and compact["code"].iloc[-1] == "seven"


def test_missing_booleans_and_values_after_an_empty_first_block(tmp_path):
    empty_first = "a,b\n" + "\n".join(f"{i}," for i in range(300_000)) + "\n300000,4.5\n"
    missing_bool = "a,b\n1,true\n2,\n3,false\n"
    for name, text in (("late-values.csv", empty_first), ("missing-bool.csv", missing_bool)):
        plain, compact = read_both(write(tmp_path / name, text))
        assert list(compact.columns) == list(plain.columns)
        for column in plain.columns:
            assert compact[column].isna().tolist() == plain[column].isna().tolist()
            assert [str(v) for v in compact[column].dropna()] == [str(v) for v in plain[column].dropna()]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("a,b\n1,2\n3,4,5\n", "could not be parsed as CSV"),
    ("a,,b\n1,2,3\n", "columns without a name"),
])
def test_the_same_errors_as_the_plain_reader(tmp_path, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=message) as plain:
        tabular.read_table(path)
    with pytest.raises(DataError, match=message) as compact:
        tabular.read_table(path, compact=True)
    assert str(compact.value) == str(plain.value)


def test_duplicate_names_and_a_byte_order_mark_are_named_as_pandas_names_them(tmp_path):
    duplicated = write(tmp_path / "dup.csv", "a,a,b\n1,2,x\n")
    assert_same_table(*read_both(duplicated))
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffa,b\n1,x\n".encode())
    plain, compact = read_both(bom)
    assert list(compact.columns) == list(plain.columns) == ["a", "b"]


def test_parquet_text_as_category_other_types_unchanged(tmp_path):
    frame = pd.DataFrame({"x": [1.5, np.nan, 3.0], "n": [1, 2, 3], "c": pd.Series(["a", None, "b"], dtype=object),
                          "k": pd.Categorical(["u", "v", None])})
    path = tmp_path / "part.parquet"
    frame.to_parquet(path, index=False)
    plain, compact = read_both(path)
    assert_same_table(plain, compact)
    assert isinstance(compact["c"].dtype, pd.CategoricalDtype)


def test_files_with_different_categories_concatenate_to_one_categorical_column_indexed_by_source(tmp_path):
    channel = tmp_path / "train"
    (channel / "b").mkdir(parents=True)
    write(channel / "a.csv", "x,plan,y\n1,basic,no\n2,premium,yes\n")
    write(channel / "b" / "c.csv", "x,plan,y\n3,enterprise,yes\n4,,no\n")  # a category only this file has
    pd.DataFrame({"x": [5.0], "plan": ["basic"], "y": ["no"]}).to_parquet(channel / "d.parquet", index=False)
    plain = tabular.read_path(channel, sources=True)
    compact = tabular.read_path(channel, sources=True, compact=True)
    assert_same_table(plain, compact)
    assert isinstance(compact["plan"].dtype, pd.CategoricalDtype)
    assert list(compact["plan"].cat.categories) == ["basic", "enterprise", "premium"]
    assert compact.index.name == tabular.SOURCE_INDEX and list(compact.index) == ["a.csv", "a.csv", "b/c.csv",
                                                                                  "b/c.csv", "d.parquet"]


def test_a_column_numeric_in_one_file_and_text_in_another_holds_both(tmp_path):
    channel = tmp_path / "train"
    channel.mkdir()
    write(channel / "a.csv", "x,y\n1,no\n2,yes\n")
    write(channel / "b.csv", "x,y\nthree,no\n")
    plain = tabular.read_path(channel)
    compact = tabular.read_path(channel, compact=True)
    assert [str(v) for v in compact["x"]] == [str(v) for v in plain["x"]] == ["1", "2", "three"]
    assert isinstance(compact["y"].dtype, pd.CategoricalDtype)
