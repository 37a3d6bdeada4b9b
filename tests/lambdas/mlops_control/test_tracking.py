"""mlops_control.tracking: every decision about a model asks for one `track` job, after its commit, never in the
way of the deploy; a failed start is retried from the outbox; a finished job links the run to the package."""
from __future__ import annotations

import json

import pytest

from ..helpers import ACCOUNT, ARTIFACTS, P, REGION, endpoint_state_change, handlers_sagemaker, job_state_change

TRACKING_URI = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:mlflow-app/app-test"
TRACKING_ROLE = f"arn:aws:iam::{ACCOUNT}:role/{P}-tracking"


@pytest.fixture
def tracked(env, monkeypatch):
    monkeypatch.setenv("TRACKING_URI", TRACKING_URI)
    monkeypatch.setenv("TRACKING_ROLE_ARN", TRACKING_ROLE)
    monkeypatch.setenv("TRACKING_EXPERIMENT", P)
    monkeypatch.setenv("REGISTERED_MODEL_NAME", f"{P}-model")
    from mlops_control import settings

    settings.reset()


@pytest.fixture
def sm(aws, tracked):
    return handlers_sagemaker(aws)


def _train(aws, trigger, metrics):
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    s = settings.load()
    aws.upload(f"validated/{trigger.replace(':', '-')}.csv")
    job = request_training(s, Ledger(s.ledger_table), trigger, trigger).job
    aws.training_metrics[job] = metrics
    return job


def _training_done(job):
    from handlers.training_done import handler

    return handler(job_state_change("training", job, "Completed"), None)


def _endpoint_event():
    from handlers.endpoint_state import handler

    return handler(endpoint_state_change(f"{P}-endpoint"), None)


def _tracking_jobs(aws) -> dict[str, dict]:
    """Each started `track` job's phase → its request as SageMaker holds it."""
    from mlops_control import clients

    jobs = {}
    for name in aws.processing_jobs():
        if name.startswith(f"{P}-trk-"):
            described = clients.get("sagemaker").describe_processing_job(ProcessingJobName=name)
            jobs[described["Environment"]["TRACK_PHASE"]] = described
    return jobs


def _finish(aws, described, tracked: dict, status="Completed"):
    from handlers.processing_done import handler

    name = described["ProcessingJobName"]
    aws.s3.put_object(Bucket=ARTIFACTS, Key=f"reports/tracking/{name}/tracking.json", Body=json.dumps(tracked).encode())
    return handler(job_state_change("processing", name, status, None if status == "Completed" else "AlgorithmError: x"),
                   None)


def test_each_decision_starts_one_track_job_with_the_model_and_the_decision(aws, sm):
    job = _train(aws, "file:first", {"roc_auc": 0.80})
    assert _training_done(job)["status"] == "deploy_requested"
    started = _tracking_jobs(aws)
    assert list(started) == ["trained"]
    trained = started["trained"]
    assert trained["RoleArn"] == TRACKING_ROLE
    assert trained["NetworkConfig"]["EnableNetworkIsolation"] is False  # it reaches MLflow
    assert trained["AppSpecification"]["ContainerEntrypoint"] == ["track"]
    assert trained["ProcessingInputs"][0]["S3Input"]["S3Uri"] == f"s3://{ARTIFACTS}/models/{job}/output/model.tar.gz"
    env = trained["Environment"]
    assert (env["TRACK_TRAINING_JOB"], env["TRACK_DECISION"], env["MLFLOW_TRACKING_URI"]) == (job, "gate_passed", TRACKING_URI)
    assert env["MLFLOW_EXPERIMENT_NAME"] == P and env["TRACK_REGISTERED_MODEL"] == f"{P}-model"
    assert "TRACK_PACKAGE_ARN" not in env  # packages are registered at deploy time
    pinned = aws.decisions("gate_passed")[0]["details"]["model"]["sha256"]
    assert env["MODEL_SHA256"] == pinned  # the job logs exactly the model that was judged
    fingerprint = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{job}/inputs.json")["Body"].read())["fingerprint"]
    assert env["TRACK_DATA_FINGERPRINT"] == fingerprint

    assert _endpoint_event()["status"] == "deployed"
    deployed = _tracking_jobs(aws)["deployed"]
    package = aws.state("production")["model_package_arn"]
    assert deployed["Environment"]["TRACK_PACKAGE_ARN"] == package
    assert deployed["Environment"]["TRACK_TRAINING_JOB"] == job
    assert deployed["Environment"]["MODEL_SHA256"] == pinned
    assert deployed["Environment"]["TRACK_DATA_FINGERPRINT"] == fingerprint
    assert deployed["Environment"]["TRACK_DEPLOYED_AT"] == aws.state("production")["deployed_at"]


def test_a_gated_out_model_is_tracked_with_its_reason_and_a_rollback_too(aws, sm):
    first = _train(aws, "file:first", {"roc_auc": 0.80})
    _training_done(first)
    _endpoint_event()
    worse = _train(aws, "file:worse", {"roc_auc": 0.60})
    assert _training_done(worse)["status"] == "gated_out"
    gated = [d for d in _tracking_jobs(aws).values() if d["Environment"]["TRACK_TRAINING_JOB"] == worse]
    assert [d["Environment"]["TRACK_DECISION"] for d in gated] == ["gated_out"]
    assert "0.6" in gated[0]["Environment"]["TRACK_REASON"]

    better = _train(aws, "file:better", {"roc_auc": 0.90})
    assert _training_done(better)["status"] == "deploy_requested"
    sm.settle(f"{P}-endpoint", rolled_back=True)
    assert _endpoint_event()["status"] == "rolled_back"
    rolled = _tracking_jobs(aws)["rolled_back"]
    assert rolled["Environment"]["TRACK_TRAINING_JOB"] == better
    assert "rolled back" in rolled["Environment"]["TRACK_REASON"]
    assert len(rolled["Environment"]["TRACK_REASON"]) <= 256


def test_a_failed_start_never_fails_the_deploy_and_the_outbox_starts_it_later(aws, sm):
    """The first CreateProcessingJob of a track job is throttled: the deploy goes on, the request stays in the
    outbox, and the next invocation of any function starts it."""
    from botocore.exceptions import ClientError
    from mlops_control import clients

    state = {"armed": True}

    def throttle(params, **_):
        if state["armed"] and params.get("ProcessingJobName", "").startswith(f"{P}-trk-"):
            state["armed"] = False
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "CreateProcessingJob")

    clients.get("sagemaker").meta.events.register("provide-client-params.sagemaker.CreateProcessingJob", throttle)
    job = _train(aws, "file:first", {"roc_auc": 0.80})
    assert _training_done(job)["status"] == "deploy_requested"
    assert not state["armed"] and _tracking_jobs(aws) == {}
    from mlops_control.keys import OUTBOX

    assert aws.ddb.query(TableName=f"{P}-ledger", KeyConditionExpression="pk = :o",
                         ExpressionAttributeValues={":o": {"S": OUTBOX}})["Items"]
    assert _endpoint_event()["status"] == "deployed"  # this invocation flushes the outbox first
    assert set(_tracking_jobs(aws)) == {"trained", "deployed"}


def test_the_same_request_twice_starts_one_job(aws, sm):
    from mlops_control import settings, tracking

    request = tracking.TrackRequest("trained", f"{P}-train-x", f"s3://{ARTIFACTS}/m.tar.gz", decision="gated_out")
    first, second = tracking.start(settings.load(), request), tracking.start(settings.load(), request)
    assert first == second and len(_tracking_jobs(aws)) == 1


def test_a_finished_track_job_links_run_version_and_package(aws, sm):
    job = _train(aws, "file:first", {"roc_auc": 0.80})
    _training_done(job)
    _endpoint_event()
    deployed = _tracking_jobs(aws)["deployed"]
    package = deployed["Environment"]["TRACK_PACKAGE_ARN"]
    result = _finish(aws, deployed, {"training_job": job, "phase": "deployed", "run_id": "r123", "experiment_id": "1",
                                     "experiment_name": P, "registered_model": f"{P}-model", "model_version": "3",
                                     "alias_moved": True})
    assert result == {"status": "tracked", "run_id": "r123", "model_version": "3"}
    props = aws.sm.describe_model_package(ModelPackageName=package)["CustomerMetadataProperties"]
    assert (props["mlflow_run_id"], props["mlflow_model_version"], props["mlflow_registered_model"]) == ("r123", "3", f"{P}-model")
    recorded = aws.decisions("tracked")
    assert recorded and recorded[0]["job"] == job and recorded[0]["details"]["run_id"] == "r123"
    # A redelivered completion is a duplicate, not a second record.
    _finish(aws, deployed, {"run_id": "r123"})
    assert len(aws.decisions("tracked")) == 1


def test_a_failed_track_job_is_recorded_against_its_model(aws, sm):
    job = _train(aws, "file:first", {"roc_auc": 0.80})
    _training_done(job)
    trained = _tracking_jobs(aws)["trained"]
    assert _finish(aws, trained, {}, status="Failed")["status"] == "tracking_failed"
    failed = aws.decisions("tracking_failed")
    assert failed and failed[0]["job"] == job and failed[0]["details"]["tracking_job"] == trained["ProcessingJobName"]


def test_without_a_tracking_uri_nothing_is_tracked(aws):
    handlers_sagemaker(aws)
    job = _train(aws, "file:first", {"roc_auc": 0.80})
    assert _training_done(job)["status"] == "deploy_requested"
    assert _endpoint_event()["status"] == "deployed"
    assert _tracking_jobs(aws) == {}


def test_a_tracking_uri_without_its_role_is_a_config_error(env, monkeypatch):
    from mlops_control.settings import ConfigError, Settings

    with pytest.raises(ConfigError, match="TRACKING_ROLE_ARN"):
        Settings.from_env({**env, "TRACKING_URI": TRACKING_URI})
