"""mlops_control.runtime: claims whose lease ends with the invocation, busy deliveries on record, and one
commit per unit of work (items 8 and 5 of issue 12), through the fault-injection harness's Lambda delivery."""
from __future__ import annotations

import pytest

from ..faults import PASSED, ControlPlane, Fault


@pytest.fixture
def plane(monkeypatch):
    from moto import mock_aws
    from mlops_control import clients, settings

    with mock_aws():
        plane = ControlPlane(None, monkeypatch)
        yield plane
        settings.reset()
        clients.reset()


def _validated_upload(plane, fault):
    from handlers import processing_done, trigger

    from ..helpers import job_state_change

    upload = plane.upload("incoming/a.csv", b"age,plan,churn\n30,a,no\n41,b,yes\n")
    plane.deliver("trigger", trigger.handler, plane.upload_event(upload, "0061000000000000A1"))
    job = plane.validation_job(upload)
    plane.aws.put_report("val", job, PASSED)
    plane.injector.fault = fault
    return plane.deliver("processing_done", processing_done.handler, job_state_change("processing", job, "Completed"))


def test_a_delivery_killed_mid_way_is_finished_by_the_first_retry(plane):
    """Issue 12 item 8: the killed invocation keeps its claim, but only until its own deadline; Lambda's retry
    (a minute after the timeout) takes the work over instead of finding it busy until the DLQ."""
    delivery = _validated_upload(plane, Fault("processing_done", "s3.CopyObject", 1, "kill"))
    assert delivery.attempts == ["killed", "ok"] and not delivery.dead_lettered
    assert [d["decision"] for d in plane.aws.decisions() if d["decision"] in ("validated", "busy")] == ["validated"]
    assert len(plane.aws.training_jobs()) == 1


def test_a_delivery_that_fails_after_its_work_leaves_one_answer(plane):
    """The verdict and the claim's completion are one transaction: when that commit fails, the retry redoes the
    (idempotent) work and writes the only answer; the failed attempt left an error record, not a verdict."""
    delivery = _validated_upload(plane, Fault("processing_done", "dynamodb.TransactWriteItems", 1, "server"))
    assert delivery.attempts == ["error:ClientError", "ok"]
    decisions = [d["decision"] for d in plane.aws.decisions()]
    assert decisions.count("validated") == 1 and decisions.count("error") == 1
    assert decisions.count("training_started") + decisions.count("training_already_started") == 1


def test_a_busy_delivery_is_recorded(plane):
    """A delivery that meets another one working on the same event raises Busy (Lambda retries it); it leaves a
    record, so an event whose every retry was busy is not a dead letter without a trace."""
    from handlers import trigger
    from mlops_control import runtime
    from mlops_control.ledger import Ledger

    upload = plane.upload("incoming/b.csv", b"age,plan,churn\n30,a,no\n")
    event = plane.upload_event(upload, "0061000000000000B1")
    live = Ledger(plane.aws.ddb.meta.service_model and "mlops-test-ledger", plane.aws.ddb,
                  lease_until=plane.clock.time() + 120)
    live.claim(f"claim#obj#{upload['key'] and 'mlops-test-data-123456789012-us-east-1'}/{upload['key']}#{upload['version']}",
               "trigger")
    with pytest.raises(runtime.Busy):
        trigger.handler(event, None)
    [busy] = plane.aws.decisions("busy")
    assert "is being handled" in busy["reason"] and "this delivery is retried" in busy["reason"]
