"""Too much data for the training instance, end to end on a stack of its own: the real validation job counts rows
and columns, a window larger than `training_max_cells` starts no training job and says why (ledger + SNS), every
file is kept, and a smaller window (the next upload alone, by `training_window_max_rows`) trains."""

from __future__ import annotations

import pandas as pd
import pytest
from test_e2e_retraining import _decisions, _notices  # tests/local is on sys.path

pytestmark = pytest.mark.e2e

LIMIT_CELLS = 30_000


@pytest.fixture(scope="module")
def own_stack(stack_starter, tmp_path_factory):
    with stack_starter(tmp_path_factory.mktemp("scale"), f"training_max_cells={LIMIT_CELLS}",
                       "training_window_max_rows=2000") as running:
        yield running


def test_a_window_over_the_memory_limit_is_refused_and_a_smaller_one_trains(own_stack, sample, tmp_path):
    stack, target = own_stack, own_stack.env["TARGET_COLUMN"]
    bucket = stack.output("DataBucketName")
    s3 = stack.client("s3")
    big = sample(tmp_path / "big.csv", 3000, seed=3, target=target)
    rows, columns = pd.read_csv(big).shape
    assert rows * columns > LIMIT_CELLS
    s3.upload_file(str(big), bucket, "incoming/big.csv")
    [refused] = stack.wait_for("the refusal", lambda: _decisions(stack, "training_refused_too_large"), timeout=300)
    assert refused["details"]["cells"] == rows * columns and refused["details"]["limit_cells"] == LIMIT_CELLS
    assert f"{rows:,} rows x {columns} columns" in refused["reason"] and "training_instance_type" in refused["reason"]
    assert _decisions(stack, "training_started") == []
    assert stack.wait_for("the SNS message", lambda: _notices(stack, "too much data"), timeout=60)
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert {"incoming/big.csv", "validated/big.csv"} <= listed  # nothing deleted

    small = sample(tmp_path / "small.csv", 1500, seed=4, target=target)
    s3.upload_file(str(small), bucket, "incoming/small.csv")
    [started] = stack.wait_for("the smaller window's run", lambda: _decisions(stack, "training_started"), timeout=300)
    assert started["details"]["rows"] == 1500 and started["details"]["inputs"] == 1
    assert len(_decisions(stack, "training_refused_too_large")) == 1
