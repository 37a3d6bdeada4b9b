"""mlops_control.ledger: decision records, claims, conditional updates."""
from __future__ import annotations

import threading

import pytest

from ..helpers import TABLE, AtomicDynamoDB


@pytest.fixture
def ledger(aws):
    from mlops_control.ledger import Ledger

    return Ledger(TABLE, AtomicDynamoDB(aws.ddb))


def test_attribute_round_trip():
    from mlops_control.ledger import from_item, to_item

    value = {"s": "x", "i": 3, "f": 0.25, "b": True, "l": [1, "a", {"n": -2}], "m": {"k": 1.5e-7}}
    assert from_item(to_item(value)) == value
    assert from_item(to_item({"x": float("nan"), "y": float("inf")})) == {"x": "nan", "y": "inf"}


def test_record_has_what_why_which_when(ledger):
    record = ledger.record("file#s3://b/incoming/a.csv", "quarantined", "age out of range", file="s3://b/incoming/a.csv",
                           job="j", details={"rows": 3}, ttl_days=1)
    [stored] = ledger.decisions("file#s3://b/incoming/a.csv")
    assert stored["decision"] == "quarantined" and stored["reason"] == "age out of range"
    assert stored["file"] == "s3://b/incoming/a.csv" and stored["job"] == "j" and stored["at"].endswith("Z")
    assert stored["details"] == {"rows": 3} and stored["expires_at"] > 0 and stored["sk"] == record["sk"]


def test_claim_is_granted_once_then_reports_done_or_busy(ledger):
    first = ledger.claim("claim#x", "t")
    assert first.acquired
    assert ledger.claim("claim#x", "t").status == "busy"
    ledger.complete("claim#x", "t", {"outcome": "ok"})
    done = ledger.claim("claim#x", "t")
    assert done.status == "done" and done.item["outcome"] == "ok"


def test_released_or_expired_claims_can_be_taken_over(aws, ledger):
    import time

    from mlops_control.ledger import Ledger

    first = ledger.claim("claim#y", "t")
    assert first.acquired
    ledger.release(first, "claim#y", "t", "boom")
    taken = ledger.claim("claim#y", "t")
    assert taken.acquired and taken.item["attempts"] == 2
    # A release by a holder whose claim was taken over meanwhile must not end the new holder's lease.
    ledger.release(first, "claim#y", "t", "late")
    assert ledger.claim("claim#y", "t").status == "busy"
    # An invocation whose deadline has passed (killed by its timeout) holds nothing any more.
    killed = Ledger(TABLE, AtomicDynamoDB(aws.ddb), lease_until=time.time() - 1)
    assert killed.claim("claim#z", "t").acquired
    assert ledger.claim("claim#z", "t").acquired


def test_a_claim_lasts_as_long_as_the_invocation_holding_it(aws):
    import time

    from mlops_control import clients, runtime, settings

    clients.reset(session=True)  # a session made before moto was imported would reach the real AWS

    class Context:
        def get_remaining_time_in_millis(self):
            return 30_000

    before = time.time()
    ledger = runtime.ledger_for(settings.load(), Context())
    claim = ledger.claim("claim#lease", "t")
    from mlops_control.ledger import LEASE_MARGIN_SECONDS

    assert before + 30 + LEASE_MARGIN_SECONDS - 1 <= claim.item["lease_until"] <= time.time() + 30 + LEASE_MARGIN_SECONDS


def test_a_unit_of_work_writes_its_decisions_with_the_claim_or_not_at_all(ledger):
    claim = ledger.claim("claim#unit", "t")
    depth = ledger.begin()
    ledger.record("file#a", "validated", "ok")
    ledger.stage_state("pipeline", "unit", {"v": 1})
    assert ledger.decisions("file#a") == [] and ledger.get("pipeline", "unit") is None
    ledger.abandon(depth)
    ledger.release(claim, "claim#unit", "t", "failed")
    assert ledger.claim("claim#unit", "t").acquired
    ledger.begin()
    ledger.record("file#a", "validated", "ok")
    ledger.stage_state("pipeline", "unit", {"v": 2})
    ledger.complete("claim#unit", "t", {"outcome": "validated"})
    assert [r["decision"] for r in ledger.decisions("file#a")] == ["validated"]
    assert ledger.get("pipeline", "unit")["v"] == 2 and ledger.claim("claim#unit", "t").status == "done"


def test_a_failed_staged_condition_commits_nothing(ledger):
    from botocore.exceptions import ClientError

    ledger.claim("claim#cond", "t")
    ledger.begin()
    ledger.record("file#b", "validated", "ok")
    ledger.stage_update("pipeline", "absent", set_values={"x": 1}, condition="attribute_exists(#x)")
    with pytest.raises(ClientError, match="TransactionCanceled"):
        ledger.complete("claim#cond", "t")
    assert ledger.decisions("file#b") == [] and ledger.claim("claim#cond", "t").status == "busy"


def test_concurrent_claims_grant_exactly_one(ledger):
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def claim():
        barrier.wait()
        outcomes.append(ledger.claim("claim#race", "t").status)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("acquired") == 1 and outcomes.count("busy") == 15


def test_conditional_update_raises_when_the_condition_fails(ledger):
    from botocore.exceptions import ClientError

    ledger.update("pipeline", "x", set_values={"a": 1})
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        ledger.update("pipeline", "x", set_values={"a": 2}, condition="#a = :two", condition_values={":two": 2})
    assert ledger.get("pipeline", "x")["a"] == 1


def test_scan_returns_only_decisions_in_time_order(ledger):
    ledger.record("s1", "b", "second", at=2_000_000_000)
    ledger.record("s2", "a", "first", at=1_000_000_000)
    ledger.put_state("pipeline", "training", {"running_job": "j"})
    assert [r["reason"] for r in ledger.scan_decisions()] == ["first", "second"]
