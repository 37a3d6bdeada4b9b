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
    aws.upload("validated/new-labels.csv")  # new data since: the retrain has something to learn from
    later = time.time() + 3601
    monkeypatch.setattr(training.time, "time", lambda: later)
    assert _retrain(alarm_action(at="2026-11-21T13:40:00.000+0000"))["status"] == "started"
    assert len(aws.training_jobs()) == 2


def test_retrain_during_a_run_coalesces_into_its_follow_up(data):
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    s = settings.load()
    data.upload("validated/x.csv")
    running = request_training(s, Ledger(s.ledger_table), "file:x", "x").job
    data.upload("validated/y.csv")  # arrived after the run started: the follow-up must train on it
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


def test_drift_without_new_data_trains_nothing_and_asks_for_labels(data):
    """Issue 14: a drift alarm whose training window holds exactly the production model's data would only make
    the same model again: zero training jobs, one record, one message saying which labeled data is needed."""
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import finish_training, take_snapshot

    s = settings.load()
    assert _retrain({"reason": "first model", "force": True})["status"] == "started"
    [first] = data.training_jobs()
    finish_training(s, Ledger(s.ledger_table), first)
    fingerprint = take_snapshot(s, Ledger(s.ledger_table)).fingerprint
    data.ddb.put_item(TableName=s.ledger_table, Item={  # what the deployer records when that model serves
        "pk": {"S": "pipeline"}, "sk": {"S": "production"}, "training_job": {"S": first},
        "fingerprint": {"S": fingerprint}})
    result = _retrain(alarm_action(at="2026-11-21T15:00:00.000+0000"))
    assert result == {"status": "no_new_data", "same_as": first}
    assert data.training_jobs() == [first]
    [record] = data.decisions("retrain_skipped_no_new_data")
    assert record["details"]["fingerprint"] == fingerprint and "needs new labeled data" in record["reason"]
    [message] = [m for m in data.notifications() if "labeled data needed" in m["subject"]]
    assert "ground-truth/" in message["message"] and "ml_pipeline.captures" in message["message"]


def test_a_manual_retrain_on_unchanged_data_is_skipped_and_force_retrains(data):
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import finish_training

    s = settings.load()
    assert _retrain({"reason": "first", "force": True})["status"] == "started"
    finish_training(s, Ledger(s.ledger_table), data.training_jobs()[0])
    skipped = _retrain({"reason": "try again", "request_id": "r-2"})
    assert skipped["status"] == "no_new_data" and len(data.training_jobs()) == 1
    assert not [m for m in data.notifications() if "labeled data needed" in m["subject"]]  # manual: no SNS
    assert _retrain({"reason": "try again", "request_id": "r-3", "force": True})["status"] == "started"
    assert len(data.training_jobs()) == 2


def test_an_alarm_raised_by_an_upload_does_not_train_that_data_twice(data):
    """The upload's own validation starts a run on the window with the new file; the drift alarm the same
    validation raised finds exactly that data in the running run."""
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    s = settings.load()
    data.upload("validated/drifted.csv")
    running = request_training(s, Ledger(s.ledger_table), "file:drifted", "new validated data").job
    result = _retrain(alarm_action(at="2026-11-21T16:00:00.000+0000"))
    assert result == {"status": "no_new_data", "same_as": running} and data.training_jobs() == [running]
