"""handlers.retrain: CloudWatch alarm Lambda action (and manual invoke) with a cooldown."""
from __future__ import annotations

import pytest

from ..helpers import P, alarm_action


def _retrain(event):
    from handlers.retrain import handler

    return handler(event, None)


@pytest.fixture
def data(aws):
    aws.upload("validated/base.csv")
    return aws


def test_alarm_fired_twenty_times_inside_the_cooldown_retrains_once(data):
    aws = data
    results = [_retrain(alarm_action(at=f"2026-11-21T12:{i:02d}:15.490+0000"))["status"] for i in range(20)]
    assert results == ["started"] + ["cooldown"] * 19
    assert len(aws.training_jobs()) == 1
    assert len(aws.decisions("retrain_requested")) == 1
    assert len(aws.decisions("retrain_skipped_cooldown")) == 19
    assert "cooldown is 3600s" in aws.decisions("retrain_skipped_cooldown")[0]["reason"]


def test_alarm_after_the_cooldown_retrains_again(data, monkeypatch):
    import time

    from mlops_control import training

    aws = data
    _retrain(alarm_action())
    from mlops_control import settings
    from mlops_control.ledger import Ledger

    s = settings.load()
    first = aws.state("training")["running_job"]
    training.finish_training(s, Ledger(s.ledger_table), first)
    later = time.time() + 3601
    monkeypatch.setattr(training.time, "time", lambda: later)
    assert _retrain(alarm_action(at="2026-11-21T13:40:00.000+0000"))["status"] == "started"
    assert len(aws.training_jobs()) == 2


def test_retrain_during_a_run_coalesces_into_its_follow_up(data):
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    s = settings.load()
    running = request_training(s, Ledger(s.ledger_table), "file:x", "x").job
    result = _retrain(alarm_action())
    assert result == {"status": "coalesced", "job": running}
    assert len(data.training_jobs()) == 1 and data.state("training")["pending"] is True


def test_the_same_alarm_action_delivered_again_is_one_request(data):
    assert _retrain(alarm_action())["status"] == "started"
    assert _retrain(alarm_action())["status"] == "duplicate"
    assert len(data.training_jobs()) == 1 and len(data.decisions("retrain_requested")) == 1


def test_a_retrain_killed_after_taking_the_cooldown_is_finished_by_its_retry(data):
    """The cooldown item says which request holds it: the redelivery of that request is not 'in cooldown'."""
    from mlops_control import settings, training
    from mlops_control.ledger import Ledger

    s = settings.load()
    dead = Ledger(s.ledger_table)
    dead.update(*training.RETRAIN, set_values={"last_retrain_at": int(__import__("time").time()),
                                               "last_request": f"alarm:{P}-drift:2026-11-21T12:36:15.490+0000"})
    assert _retrain(alarm_action())["status"] == "started"
    assert len(data.training_jobs()) == 1


def test_ok_state_does_not_retrain(data):
    assert _retrain(alarm_action(state="OK"))["status"] == "ignored"
    assert data.training_jobs() == [] and data.decisions("retrain_ignored")


def test_manual_invoke_with_force_bypasses_the_cooldown(data):
    assert _retrain(alarm_action())["status"] == "started"
    assert _retrain({"reason": "new labels arrived"})["status"] == "cooldown"
    from mlops_control import settings, training
    from mlops_control.ledger import Ledger

    s = settings.load()
    training.finish_training(s, Ledger(s.ledger_table), data.state("training")["running_job"])
    assert _retrain({"reason": "new labels arrived", "force": True})["status"] == "started"
    assert len(data.training_jobs()) == 2


def test_no_validated_data_is_recorded(aws):
    assert _retrain(alarm_action())["status"] == "no_data"
    assert "no validated data" in aws.decisions("retrain_skipped")[0]["reason"]


def test_failed_start_gives_the_cooldown_back_so_the_retry_retrains(data):
    import boto3
    from botocore.exceptions import ClientError
    from botocore.stub import Stubber
    from mlops_control import clients

    throttled = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(throttled)
    stubber.add_client_error("create_training_job", "ThrottlingException", "Rate exceeded")
    clients.override("sagemaker", throttled)
    with stubber, pytest.raises(ClientError):
        _retrain(alarm_action())
    assert data.decisions("error") and data.notifications()
    clients.reset()
    assert _retrain(alarm_action())["status"] == "started"


@pytest.mark.parametrize("event", [
    {"source": "aws.cloudwatch", "alarmData": {"alarmName": f"{P}-drift"}},
    {"reason": ""},
    {"something": "else"},
    [],
])
def test_malformed_payloads_are_recorded(aws, event):
    assert _retrain(event)["status"] == "malformed"
    assert aws.decisions("malformed_event") and aws.notifications()
