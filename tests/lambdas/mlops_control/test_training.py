"""mlops_control.training: one run at a time, uploads during a run coalesce into exactly one follow-up."""
from __future__ import annotations

import threading

import pytest

from ..helpers import DATA, ENV, P, AtomicDynamoDB, request_with_new_data


@pytest.fixture
def control(aws):
    from mlops_control import clients, settings
    from mlops_control.ledger import Ledger

    clients.override("dynamodb", AtomicDynamoDB(aws.ddb))
    aws.upload("validated/base.csv")
    return settings.load(), Ledger(settings.load().ledger_table)


def test_first_request_starts_a_run(aws, control):
    from mlops_control.training import request_training

    s, ledger = control
    request = request_with_new_data(aws, s, ledger, "a", "new data a")
    assert request.outcome == "started" and aws.training_jobs() == [request.job]
    assert aws.state("training")["running_job"] == request.job


def test_two_hundred_uploads_during_one_run_make_exactly_one_follow_up(aws, control):
    from mlops_control.training import finish_training, request_training

    s, ledger = control
    first = request_with_new_data(aws, s, ledger, "first", "first data")
    outcomes = [request_with_new_data(aws, s, ledger, f"upload-{i}", f"upload {i}").outcome for i in range(200)]
    assert set(outcomes) == {"coalesced"} and len(aws.training_jobs()) == 1
    assert aws.state("training")["pending_count"] == 200
    follow_up = finish_training(s, ledger, first.job)
    assert follow_up and follow_up != first.job
    assert sorted(aws.training_jobs()) == sorted([first.job, follow_up])
    assert aws.state("training")["pending"] is False
    assert finish_training(s, ledger, follow_up) is None  # nothing arrived during the follow-up
    assert len(aws.training_jobs()) == 2 and "running_job" not in aws.state("training")
    [started] = [d for d in aws.decisions("training_started") if d["job"] == follow_up]
    assert "200 request(s)" in started["reason"]


def test_concurrent_requests_and_completion_interleave_into_one_follow_up(aws, control):
    """Requests race each other and the completion of the running job: whatever the interleaving, the
    result is one follow-up run (or, if all requests landed after the completion, one fresh run)."""
    from mlops_control.training import finish_training, request_training

    s, ledger = control
    first = request_with_new_data(aws, s, ledger, "first", "first data")
    barrier = threading.Barrier(41)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def request(i: int):
        barrier.wait()
        try:
            outcomes.append(request_with_new_data(aws, s, ledger, f"c{i}", f"upload {i}").outcome)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def finish():
        barrier.wait()
        finish_training(s, ledger, first.job)

    threads = [threading.Thread(target=request, args=(i,)) for i in range(40)] + [threading.Thread(target=finish)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(aws.training_jobs()) == 2  # the first run + exactly one more
    state = aws.state("training")
    assert state["running_job"] != first.job
    # Whatever was still pending after the hand-over belongs to the new run's own follow-up, once.
    second = state["running_job"]
    follow = finish_training(s, ledger, second)
    assert len(aws.training_jobs()) == (3 if follow else 2)


def test_completion_of_a_job_that_is_not_running_changes_nothing(aws, control):
    from mlops_control.training import finish_training, request_training

    s, ledger = control
    first = request_with_new_data(aws, s, ledger, "a", "a")
    request_with_new_data(aws, s, ledger, "b", "b")
    assert finish_training(s, ledger, f"{P}-train-00000000000000000000") is None
    assert aws.state("training")["running_job"] == first.job and aws.state("training")["pending"] is True


def _throttle_next_create_training_job():
    import boto3
    from botocore.stub import Stubber
    from mlops_control import clients

    throttled = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(throttled)
    stubber.add_client_error("create_training_job", "ThrottlingException", "Rate exceeded")
    clients.override("sagemaker", throttled)
    return stubber


def test_failed_start_keeps_the_slot_for_the_retry_which_starts_the_run(aws, control):
    from mlops_control import clients
    from mlops_control.training import request_training

    s, ledger = control
    with _throttle_next_create_training_job(), pytest.raises(Exception, match="Rate exceeded"):
        request_with_new_data(aws, s, ledger, "a", "a")
    slot = aws.state("training")
    assert slot["running_started"] is False and slot["start_lease_until"] == 0
    clients.reset()  # Lambda's retry, with SageMaker answering again
    retried = request_with_new_data(aws, s, ledger, "a", "a")
    assert retried.outcome == "started" and retried.job == slot["running_job"]
    assert aws.training_jobs() == [retried.job] and aws.state("training")["running_started"] is True


def test_a_request_arriving_before_the_retry_takes_over_a_run_that_failed_to_start(aws, control):
    from mlops_control import clients
    from mlops_control.training import request_training

    s, ledger = control
    with _throttle_next_create_training_job(), pytest.raises(Exception, match="Rate exceeded"):
        request_with_new_data(aws, s, ledger, "a", "a")
    clients.reset()
    other = request_with_new_data(aws, s, ledger, "b", "b")
    assert other.outcome == "started" and aws.training_jobs() == [other.job]
    # The retry of the first request now joins that run's follow-up instead of starting a second run.
    assert request_with_new_data(aws, s, ledger, "a", "a").outcome == "coalesced"
    assert aws.training_jobs() == [other.job] and aws.state("training")["pending"] is True


def test_a_follow_up_whose_start_failed_is_started_by_the_retried_completion(aws, control):
    """Issue 12 item 4: the slot was handed to the follow-up and `pending` cleared, then CreateTrainingJob was
    throttled; the retried completion event must start the follow-up, not find nothing to do."""
    from mlops_control import clients
    from mlops_control.training import finish_training, request_training

    s, ledger = control
    first = request_with_new_data(aws, s, ledger, "a", "a")
    request_with_new_data(aws, s, ledger, "b", "b")  # arrives during the run: coalesced
    with _throttle_next_create_training_job(), pytest.raises(Exception, match="Rate exceeded"):
        finish_training(s, ledger, first.job)
    clients.reset()
    follow_up = finish_training(s, ledger, first.job)  # Lambda's retry of the completion event
    assert follow_up is not None and aws.training_jobs() == sorted([first.job, follow_up])
    assert aws.state("training")["running_started"] is True
    assert finish_training(s, ledger, first.job) == follow_up  # a third delivery starts nothing more
    assert len(aws.training_jobs()) == 2


def test_a_redelivered_request_of_the_running_job_keeps_its_follow_up(aws, control):
    """Issue 12 item 7: the running job's own trigger, delivered again, must not reset pending."""
    from mlops_control.training import finish_training, request_training

    s, ledger = control
    first = request_with_new_data(aws, s, ledger, "a", "a")
    request_with_new_data(aws, s, ledger, "b", "b")
    again = request_with_new_data(aws, s, ledger, "a", "a")
    assert again.outcome == "already_started" and again.job == first.job
    slot = aws.state("training")
    assert slot["pending"] is True and slot["pending_count"] == 1
    follow_up = finish_training(s, ledger, first.job)
    assert follow_up is not None and len(aws.training_jobs()) == 2


def test_duplicate_training_name_rejected_by_sagemaker_is_treated_as_started(aws, control):
    import boto3
    from botocore.stub import Stubber
    from mlops_control import clients
    from mlops_control.training import request_training

    s, ledger = control
    real = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(real)
    stubber.add_client_error("create_training_job", "ResourceInUse",
                             "Training job names must be unique within an AWS account and region, and a training job "
                             "with this name already exists")
    clients.override("sagemaker", real)
    with stubber:
        assert request_with_new_data(aws, s, ledger, "a", "a").outcome == "started"
    assert aws.decisions("training_already_started")


def test_a_stale_run_that_lost_its_completion_event_does_not_block_forever(aws, control):
    import time

    from mlops_control.training import request_training

    s, ledger = control
    old = request_with_new_data(aws, s, ledger, "old", "old", now=time.time() - s.max_runtime_seconds - 7200)
    fresh = request_with_new_data(aws, s, ledger, "new", "new")
    assert fresh.outcome == "started" and fresh.job != old.job


def _snapshot(keys):
    from mlops_control.training import select_window

    listed = [{"uri": f"s3://{DATA}/{k}", "key": k, "version": f"v-{k}", "modified": 1_800_000_000.0 + i}
              for i, k in enumerate(keys)]
    return select_window(listed, {}, 0, 0, 1_800_000_100.0)


def test_training_request_shape_follows_the_contract(env):
    from mlops_control import jobs, settings

    s = settings.load()
    request = jobs.training_request(s, f"{P}-train-abc", _snapshot(["validated/a.csv"]))
    regexes = {m["Name"]: m["Regex"] for m in request["AlgorithmSpecification"]["MetricDefinitions"]}
    assert regexes["test:roc_auc"] == "test:roc_auc=([-+0-9.eE]+)"
    assert set(regexes) == {f"test:{m}" for m in ("accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae", "r2")}
    [train] = request["InputDataConfig"]  # no production model: no champion channel
    assert train["ChannelName"] == "train"
    assert train["DataSource"]["S3DataSource"] == {
        "S3DataType": "ManifestFile", "S3Uri": f"s3://{ENV['ARTIFACTS_BUCKET']}/models/{P}-train-abc/manifest.json",
        "S3DataDistributionType": "FullyReplicated"}
    assert set(request["HyperParameters"]) >= {"target_column", "task", "tuning_iterations", "cv_folds", "seed"}
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())
    assert "KeepAlivePeriodInSeconds" not in request["ResourceConfig"]


def test_the_production_model_goes_in_as_the_champion_channel_with_its_pin(env):
    from mlops_control import jobs, settings

    champion = {"model_data_url": "s3://a/models/j/output/model.tar.gz", "model_sha256": "ab" * 32}
    request = jobs.training_request(settings.load(), f"{P}-train-abc", _snapshot(["validated/a.csv"]), champion)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in request["InputDataConfig"]}
    assert channels["champion"]["S3Uri"] == champion["model_data_url"]
    assert channels["champion"]["S3DataType"] == "S3Prefix"
    assert request["HyperParameters"]["champion_sha256"] == "ab" * 32


def test_warm_pool_keep_alive_comes_from_config(env, monkeypatch):
    from mlops_control import jobs, settings

    monkeypatch.setenv("TRAINING_KEEP_ALIVE_SECONDS", "900")
    settings.reset()
    request = jobs.training_request(settings.load(), f"{P}-train-abc", _snapshot(["validated/a.csv"]))
    assert request["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 900


@pytest.mark.parametrize(("days", "max_rows", "expected"), [
    (0, 0, ["d.csv", "c.csv", "b.csv", "a.csv"]),      # no window: everything, newest first
    (2, 0, ["d.csv", "c.csv"]),                        # the newest two days
    (0, 250, ["d.csv", "c.csv"]),                      # 100 + 100 rows fit, the next 100 would not
    (0, 50, ["d.csv"]),                                # the newest file is always in
    (3, 1000, ["d.csv", "c.csv", "b.csv"]),            # both limits: the first that binds
])
def test_the_training_window_keeps_the_newest_files(days, max_rows, expected):
    from mlops_control.training import select_window

    day = 86400.0
    now = 1_800_000_000.0
    listed = [{"uri": f"s3://{DATA}/validated/{n}", "key": f"validated/{n}", "version": f"v{n}",
               "modified": now - age * day - 60} for n, age in (("a.csv", 3), ("b.csv", 2), ("c.csv", 1), ("d.csv", 0))]
    rows = {f"validated/{n}": 100 for n in ("a.csv", "b.csv", "c.csv", "d.csv")}
    snapshot = select_window(listed, rows, days, max_rows, now)
    assert [i["key"].split("/")[-1] for i in snapshot.inputs] == expected
    assert snapshot.rows == 100 * len(expected) and snapshot.left_out == 4 - len(expected)
    # The fingerprint is the data: the same files and versions give the same one, another version another.
    again = select_window(list(reversed(listed)), rows, days, max_rows, now)
    assert again.fingerprint == snapshot.fingerprint
    listed[-1] = {**listed[-1], "version": "v-new"}
    assert select_window(listed, rows, days, max_rows, now).fingerprint != snapshot.fingerprint


def test_the_window_counts_rows_times_columns_and_unknown_widths_are_not_guessed():
    from mlops_control.training import select_window

    now = 1_800_000_000.0
    listed = [{"uri": f"s3://{DATA}/validated/{n}", "key": f"validated/{n}", "version": "v", "modified": now - age}
              for n, age in (("a.csv", 20), ("b.csv", 10))]
    rows = {"validated/a.csv": 100, "validated/b.csv": 50}
    assert select_window(listed, rows, 0, 0, now, columns={"validated/a.csv": 21, "validated/b.csv": 20}).cells == 3100
    # A file validated before validation counted columns: its size is unknown, so the window's is too.
    assert select_window(listed, rows, 0, 0, now, columns={"validated/b.csv": 20}).cells is None
    # Only the files in the window count.
    assert select_window(listed, rows, 0, 60, now, columns={"validated/b.csv": 20}).cells == 1000


def test_a_forced_retrain_does_not_override_the_memory_limit(aws, control, monkeypatch):
    from mlops_control import settings
    from mlops_control.training import request_training

    monkeypatch.setenv("TRAINING_MAX_CELLS", "5")
    settings.reset()
    s = settings.load()
    _, ledger = control
    from mlops_control import keys as ledger_keys

    ledger.put_state(ledger_keys.VALIDATED_FILES, "validated/base.csv", {"rows": 2, "columns": 3})
    request = request_training(s, ledger, "manual:1", "forced", force=True)
    assert request.outcome == "refused" and aws.training_jobs() == []
    assert [d["job"] for d in aws.decisions("training_refused_too_large")] == [request.job]
    assert "running_job" not in aws.state("training")
