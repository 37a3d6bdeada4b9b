"""handlers.training_done (gate → register → model → config → endpoint) and handlers.endpoint_state
(verify → record → prune → autoscale, or detect the rollback)."""
from __future__ import annotations

import json

import pytest

from ..helpers import ARTIFACTS, KMS, P, capture_calls, endpoint_state_change, job_state_change

ENDPOINT = f"{P}-endpoint"


def _train(aws, trigger, metrics=None, failure=None):
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    s = settings.load()
    aws.upload(f"validated/{trigger.replace(':', '-')}.csv")  # every run trains on new data
    job = request_training(s, Ledger(s.ledger_table), trigger, trigger).job
    if metrics is not None:
        aws.training_metrics[job] = metrics
    if failure:
        aws.training_metrics[("failed", job)] = failure
    return job


def _done(job, status="Completed"):
    from handlers.training_done import handler

    return handler(job_state_change("training", job, status), None)


def _endpoint_event(status="IN_SERVICE"):
    from handlers.endpoint_state import handler

    return handler(endpoint_state_change(ENDPOINT, status), None)


def _deploy_first(aws, sm, roc_auc=0.80):
    job = _train(aws, "file:first", {"roc_auc": roc_auc, "accuracy": 0.75})
    result = _done(job)
    assert result["status"] == "deploy_requested" and result["action"] == "create_endpoint"
    assert _endpoint_event()["status"] == "deployed"
    return job


def test_first_model_needs_only_the_threshold_and_creates_the_endpoint(aws, sm):
    create_model_calls = capture_calls(aws.sm, "CreateModel")
    job = _train(aws, "file:first", {"roc_auc": 0.71})
    result = _done(job)
    assert result["status"] == "deploy_requested"
    [passed] = aws.decisions("gate_passed")
    assert "first model" in passed["reason"]
    suffix = job[len(f"{P}-train-"):]
    model = aws.sm.describe_model(ModelName=f"{P}-model-{suffix}")
    [create_model] = create_model_calls  # moto does not keep EnableNetworkIsolation: check the request
    assert create_model["EnableNetworkIsolation"] is True and create_model["ModelName"] == f"{P}-model-{suffix}"
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{ARTIFACTS}/models/{job}/output/model.tar.gz"
    config = aws.sm.describe_endpoint_config(EndpointConfigName=f"{P}-cfg-{suffix}")
    assert config["KmsKeyId"] == KMS
    capture = config["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == f"s3://{ARTIFACTS}/datacapture/" and capture["KmsKeyId"] == KMS
    assert capture["InitialSamplingPercentage"] == 50
    assert config["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    assert aws.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{P}-cfg-{suffix}"
    # Registered with lineage in the group, which the deployer created because it was missing.
    [package] = aws.sm.list_model_packages(ModelPackageGroupName=f"{P}-models")["ModelPackageSummaryList"]
    described = aws.sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])
    assert described["ModelApprovalStatus"] == "Approved"
    props = described["CustomerMetadataProperties"]
    assert props["training_job"] == job and props["test_roc_auc"] == "0.71" and props["inputs"] == "2"
    lineage = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{job}/lineage.json")["Body"].read())
    assert {i["uri"].rsplit("/", 1)[-1] for i in lineage["inputs"]} == {"base.csv", "file-first.csv"}
    assert all(i["version"] for i in lineage["inputs"]) and len(lineage["fingerprint"]) == 64
    assert lineage["hyperparameters"]["target_column"] == "churn" and lineage["image"].endswith(f"{P}:latest")
    # Verified on the endpoint's state change: production recorded, autoscaling registered.
    assert _endpoint_event()["status"] == "deployed"
    production = aws.state("production")
    assert production["training_job"] == job and production["metrics"] == {"roc_auc": 0.71}
    import boto3

    aas = boto3.client("application-autoscaling", region_name="us-east-1")
    [target] = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == f"endpoint/{ENDPOINT}/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    [policy] = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == 200.0
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    assert any("New model serving" in m["subject"] for m in aws.notifications())


def test_first_model_below_the_threshold_is_not_deployed(aws, sm):
    job = _train(aws, "file:weak", {"roc_auc": 0.60})
    result = _done(job)
    assert result["status"] == "gated_out"
    [record] = aws.decisions("gated_out")
    assert "misses the threshold" in record["reason"] and record["details"]["value"] == 0.60
    assert aws.sm.list_endpoints()["Endpoints"] == [] and "Model not deployed" in aws.notifications()[0]["subject"]


def test_better_model_deploys_blue_green_with_rollback_alarms_and_prunes_the_old_one(aws, sm):
    first = _deploy_first(aws, sm)
    second = _train(aws, "file:second", {"roc_auc": 0.85})
    result = _done(second)
    assert result["status"] == "deploy_requested" and result["action"] == "update_endpoint"
    [update] = sm.updates
    assert update["EndpointConfigName"] == f"{P}-cfg-{second[len(P) + 7:]}"
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": f"{P}-5xx"}, {"AlarmName": f"{P}-latency"}]
    assert _endpoint_event("UPDATING")["status"] == "waiting"
    sm.settle(ENDPOINT)
    verified = _endpoint_event()
    assert verified["status"] == "deployed"
    old = first[len(P) + 7:]
    assert set(verified["after_deploy"]["pruned"]) == {f"{P}-cfg-{old}", f"{P}-model-{old}"}
    assert [c["EndpointConfigName"] for c in aws.sm.list_endpoint_configs()["EndpointConfigs"]] == [update["EndpointConfigName"]]
    assert aws.state("production")["training_job"] == second


def test_worse_model_beyond_tolerance_is_gated_out_with_its_reason(aws, sm):
    _deploy_first(aws, sm, roc_auc=0.80)
    worse = _train(aws, "file:worse", {"roc_auc": 0.78})
    assert _done(worse)["status"] == "gated_out"
    [record] = aws.decisions("gated_out")
    assert "worse than production (0.8000, as recorded when it was trained) beyond the tolerance 0.01" in record["reason"]
    assert sm.updates == []


def test_slightly_worse_model_within_tolerance_deploys(aws, sm):
    _deploy_first(aws, sm, roc_auc=0.80)
    close = _train(aws, "file:close", {"roc_auc": 0.795})
    assert _done(close)["status"] == "deploy_requested"


def test_rolled_back_update_is_detected_announced_and_nothing_is_pruned(aws, sm):
    first = _deploy_first(aws, sm)
    second = _train(aws, "file:second", {"roc_auc": 0.9})
    _done(second)
    configs_before = sorted(c["EndpointConfigName"] for c in aws.sm.list_endpoint_configs()["EndpointConfigs"])
    models_before = sorted(m["ModelName"] for m in aws.sm.list_models()["Models"])
    sm.settle(ENDPOINT, rolled_back=True)  # describe shows the old config again
    result = _endpoint_event()
    assert result["status"] == "rolled_back"
    assert aws.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{P}-cfg-{first[len(P) + 7:]}"
    [record] = aws.decisions("rolled_back")
    assert "rolled back" in record["reason"] and record["job"] == second
    assert any("rolled back" in m["subject"] for m in aws.notifications())
    assert sorted(c["EndpointConfigName"] for c in aws.sm.list_endpoint_configs()["EndpointConfigs"]) == configs_before
    assert sorted(m["ModelName"] for m in aws.sm.list_models()["Models"]) == models_before
    assert aws.state("production")["training_job"] == first  # the old model is still production
    package = record["model"]
    assert aws.sm.describe_model_package(ModelPackageName=package)["ModelApprovalStatus"] == "Rejected"
    assert _endpoint_event()["status"] == "nothing_in_flight"  # a repeated event changes nothing


def test_model_finished_during_an_update_waits_and_deploys_after_it(aws, sm):
    _deploy_first(aws, sm)
    second = _train(aws, "file:second", {"roc_auc": 0.85})
    _done(second)
    third = _train(aws, "file:third", {"roc_auc": 0.86})
    assert _done(third)["status"] == "deferred"
    sm.settle(ENDPOINT)
    result = _endpoint_event()
    assert result["status"] == "deployed" and result["pending"]["status"] == "deploy_requested"
    assert sm.updates[-1]["EndpointConfigName"].endswith(third[len(P) + 7:])


def test_failed_training_is_recorded_announced_and_starts_the_follow_up(aws, sm):
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import request_training

    job = _train(aws, "file:a", failure="AlgorithmError: target column 'churn' not found")
    s = settings.load()
    aws.upload("validated/b.csv")
    request_training(s, Ledger(s.ledger_table), "file:b", "b")
    result = _done(job, "Failed")
    assert result["status"] == "training_failed" and result["follow_up"]
    [record] = aws.decisions("training_failed")
    assert "target column 'churn' not found" in record["reason"]
    assert "not found" in aws.notifications()[0]["message"]
    assert len(aws.training_jobs()) == 2


def test_duplicate_training_completion_deploys_once(aws, sm):
    job = _train(aws, "file:first", {"roc_auc": 0.8})
    assert [_done(job)["status"] for _ in range(3)] == ["deploy_requested", "duplicate", "duplicate"]
    assert len(aws.sm.list_model_packages(ModelPackageGroupName=f"{P}-models")["ModelPackageSummaryList"]) == 1


def test_nan_metric_gates_out_and_is_recorded(aws, sm):
    job = _train(aws, "file:nan", {"roc_auc": float("nan")})
    assert _done(job)["status"] == "gated_out"
    assert aws.decisions("gated_out")[0]["details"]["value"] == "nan"


def test_missing_metric_gates_out_with_a_reason(aws, sm):
    job = _train(aws, "file:nometric", {"accuracy": 0.9})
    assert _done(job)["status"] == "gated_out"
    assert "no test:roc_auc metric" in aws.decisions("gated_out")[0]["reason"]


def test_throttled_deploy_is_recorded_raised_and_the_retry_deploys(aws, sm):
    from botocore.exceptions import ClientError

    job = _train(aws, "file:first", {"roc_auc": 0.8})
    calls = {"n": 0}
    real_create = aws.sm.create_endpoint_config

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "CreateEndpointConfig")
        return real_create(**kwargs)

    sm.create_endpoint_config = flaky  # instance attribute shadows the proxied method
    with pytest.raises(ClientError):
        _done(job)
    assert "ThrottlingException" in aws.decisions("error")[0]["reason"]
    assert aws.state("endpoint").get("inflight_config") is None  # slot released
    assert _done(job)["status"] == "deploy_requested"


def test_failed_endpoint_is_deleted_and_the_waiting_model_creates_it_again(aws, sm):
    from moto.sagemaker.models import sagemaker_backends

    first = _train(aws, "file:first", {"roc_auc": 0.8})
    _done(first)
    endpoint = sagemaker_backends["123456789012"]["us-east-1"].endpoints[ENDPOINT]
    endpoint.endpoint_status, endpoint.failure_reason = "Failed", "ping health check failed"
    assert _endpoint_event("FAILED")["status"] == "deploy_failed"
    [failed] = aws.decisions("deploy_failed")
    assert "ping health check failed" in failed["reason"]
    second = _train(aws, "file:second", {"roc_auc": 0.81})
    from mlops_control import settings
    from mlops_control.ledger import Ledger
    from mlops_control.training import finish_training

    s = settings.load()
    finish_training(s, Ledger(s.ledger_table), first)
    assert _done(second)["status"] == "deferred"
    assert aws.sm.list_endpoints()["Endpoints"] == []  # the Failed endpoint was deleted
    # moto deletes at once, so DescribeEndpoint already says it is gone when the Deleting event arrives.
    result = _endpoint_event("DELETING")
    assert result["status"] == "nothing_in_flight" and result["pending"]["status"] == "deploy_requested"
    assert aws.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"].endswith(second[len(P) + 7:])


@pytest.mark.parametrize("event", [
    job_state_change("processing", f"{P}-train-x", "Completed"),
    {"detail-type": "SageMaker Training Job State Change", "detail": {"TrainingJobName": f"{P}-train-x"}},
    {"detail-type": "SageMaker Training Job State Change"},
])
def test_malformed_events_are_recorded_and_announced(aws, event):
    from handlers.training_done import handler

    assert handler(event, None)["status"] == "malformed"
    [record] = aws.decisions("malformed_event")
    assert record["pk"] == "event#training_done" and aws.notifications()


def test_in_progress_and_foreign_jobs_start_nothing(aws, sm):
    assert _done(f"{P}-train-x", "InProgress")["status"] == "not_terminal"
    assert _done("other-train-x")["status"] == "ignored"
    assert aws.sm.list_model_packages(ModelPackageGroupName=f"{P}-models")["ModelPackageSummaryList"] == []


def test_endpoint_event_before_the_update_is_requested_is_not_mistaken_for_a_rollback(aws, sm):
    """An event that lands between taking the deployment slot and calling UpdateEndpoint sees the old config
    live; it must wait, not record a rollback."""
    _deploy_first(aws, sm)
    second = _train(aws, "file:second", {"roc_auc": 0.9})
    seen: list[dict] = []
    real_update = sm.update_endpoint

    def update_after_a_stray_event(**kwargs):
        seen.append(_endpoint_event())  # the endpoint is still InService on the old config here
        return real_update(**kwargs)

    sm.update_endpoint = update_after_a_stray_event
    assert _done(second)["status"] == "deploy_requested"
    assert seen[0]["status"] == "waiting" and aws.decisions("rolled_back") == []
    sm.settle(ENDPOINT)
    assert _endpoint_event()["status"] == "deployed"


def test_the_deployed_model_is_pinned_to_the_digest_of_the_artifact_that_passed_the_gate(aws, sm):
    """Issue 12 item 10: CreateModel passes MODEL_SHA256 (what `serve` checks before unpickling), and the package
    and the production record carry the tarball's S3 version."""
    import io

    from mlops_control.model_digest import digest_tarball

    create_model_calls = capture_calls(aws.sm, "CreateModel")
    job = _train(aws, "file:first", {"roc_auc": 0.8})
    tarball = aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{job}/output/model.tar.gz")
    expected = digest_tarball(io.BytesIO(tarball["Body"].read()))[0]
    assert _done(job)["status"] == "deploy_requested"
    [call] = create_model_calls
    assert call["PrimaryContainer"]["Environment"] == {"MODEL_SHA256": expected}
    assert call["ExecutionRoleArn"].endswith("-model")
    [package] = aws.sm.list_model_packages(ModelPackageGroupName=f"{P}-models")["ModelPackageSummaryList"]
    props = aws.sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])["CustomerMetadataProperties"]
    assert props["model_sha256"] == expected and props["model_version"] == tarball["VersionId"]
    assert _endpoint_event()["status"] == "deployed"
    assert aws.state("production")["model_sha256"] == expected


@pytest.mark.parametrize("artifact", ["missing", "symlink"])
def test_a_model_artifact_that_cannot_be_pinned_is_gated_out(aws, sm, artifact):
    import io
    import tarfile

    job = _train(aws, "file:first", {"roc_auc": 0.8})
    key = f"models/{job}/output/model.tar.gz"
    if artifact == "missing":
        aws.s3.delete_object(Bucket=ARTIFACTS, Key=key)
    else:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("./model.joblib")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
        aws.s3.put_object(Bucket=ARTIFACTS, Key=key, Body=buffer.getvalue())
    assert _done(job)["status"] == "gated_out"
    [record] = aws.decisions("gated_out")
    assert "cannot be deployed" in record["reason"] and aws.sm.list_endpoints()["Endpoints"] == []


def test_the_next_run_gets_the_production_model_and_the_gate_uses_its_paired_metrics(aws, sm):
    """Issue 14: once a model serves, every run gets it as the `champion` channel (with its pin), and the gate
    reads the champion/challenger comparison from the new model's metadata.json, not the old recorded metric."""
    import json

    creations = capture_calls(aws.sm, "CreateTrainingJob")
    first = _deploy_first(aws, sm, roc_auc=0.95)
    production = aws.state("production")
    second = _train(aws, "file:shifted", {"roc_auc": 0.80})
    champion = {c["ChannelName"]: c for c in creations[-1]["InputDataConfig"]}["champion"]
    assert champion["DataSource"]["S3DataSource"]["S3Uri"] == production["model_data_url"]
    assert creations[-1]["HyperParameters"]["champion_sha256"] == production["model_sha256"]
    comparison = {"champion": {"scored": True, "reason": None, "training_job": first},
                  "test": {"rows": 300, "challenger": {"roc_auc": 0.80}, "champion": {"roc_auc": 0.71}},
                  "new": {"rows": 150, "challenger": {"roc_auc": 0.86}, "champion": {"roc_auc": 0.52}}}
    aws.put_model(second, {"model.joblib": b"v2", "metadata.json": json.dumps({"comparison": comparison}).encode()})
    # Against the recorded 0.95 it would be gated out; on the same new rows it is much better.
    assert _done(second)["status"] == "deploy_requested"
    [_, passed] = aws.decisions("gate_passed")
    assert passed["details"]["basis"] == "new rows" and passed["details"]["rows"] == 150
    assert (passed["details"]["challenger_on_rows"], passed["details"]["production"]) == (0.86, 0.52)
    lineage = json.loads(aws.s3.get_object(Bucket=ARTIFACTS, Key=f"models/{second}/lineage.json")["Body"].read())
    assert lineage["comparison"] == comparison


def _responsible_metadata(di: float) -> bytes:
    facet = {"column": "region", "values": ["south"], "label": "region in {south}", "n_d": 120, "n_a": 480,
             "pre_training": {"CI": 0.6, "DPL": 0.21}, "post_training": {"DPPL": 0.24, "DI": di}, "reason": None}
    return json.dumps({
        "bias": {"configured": True, "facets": [facet], "positive_label": "yes", "reason": None},
        "explainability": {"method": "TreeSHAP", "global": [{"column": "tenure_months", "mean_abs_shap": 0.9}]},
        "model_card": {"model_overview": {"model_creator": "training job", "model_description": "Predicts churn"},
                       "intended_uses": {"intended_uses": "retention offers"}},
    }).encode()


def _with_fairness_gate(monkeypatch, gate: dict) -> None:
    from mlops_control import settings

    monkeypatch.setenv("FAIRNESS_GATE", json.dumps(gate))
    settings.reset()


def test_the_fairness_gate_refuses_a_biased_model_with_its_reason_and_the_old_model_keeps_serving(aws, sm,
                                                                                                  monkeypatch):
    first = _deploy_first(aws, sm, roc_auc=0.80)
    _with_fairness_gate(monkeypatch, {"DI": [0.8, 1.25]})
    job = _train(aws, "file:biased", {"roc_auc": 0.90})
    aws.put_model(job, {"model.joblib": b"biased", "metadata.json": _responsible_metadata(di=0.55)})
    result = _done(job)
    assert result["status"] == "gated_out"
    [record] = aws.decisions("gated_out")
    assert record["job"] == job
    assert "fairness gate: DI=0.55 for region in {south} is outside [0.8, 1.25]" in record["reason"]
    assert record["details"]["fairness"] == [{"facet": "region in {south}", "metric": "DI", "value": 0.55,
                                              "min": 0.8, "max": 1.25, "passed": False}]
    assert aws.state("production")["training_job"] == first
    assert any("fairness gate" in n["message"] for n in aws.notifications())


def test_a_fair_model_passes_and_its_package_carries_the_reports_and_the_card(aws, sm, monkeypatch):
    creations = capture_calls(aws.sm, "CreateModelPackage")
    _with_fairness_gate(monkeypatch, {"DI": [0.8, 1.25]})
    job = _train(aws, "file:fair", {"roc_auc": 0.85})
    aws.put_model(job, {"model.joblib": b"fair", "metadata.json": _responsible_metadata(di=0.97)})
    assert _done(job)["status"] == "deploy_requested"
    [passed] = aws.decisions("gate_passed")
    assert "fairness gate: within range: DI=0.97 (region in {south})" in passed["reason"]
    [package] = aws.sm.list_model_packages(ModelPackageGroupName=f"{P}-models")["ModelPackageSummaryList"]
    metrics = aws.sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])["ModelMetrics"]
    for name, section in (("bias", "Bias"), ("explainability", "Explainability")):
        uri = metrics[section]["Report"]["S3Uri"]
        assert uri == f"s3://{ARTIFACTS}/models/{job}/{name}.json"
        body = aws.s3.get_object(Bucket=ARTIFACTS, Key=uri.split("/", 3)[3])
        assert json.loads(body["Body"].read()) == json.loads(_responsible_metadata(0.97))[name]
        assert body["ServerSideEncryption"] == "aws:kms" and body["SSEKMSKeyId"] == KMS
    [call] = creations
    card = json.loads(call["ModelCard"]["ModelCardContent"])
    assert card["intended_uses"] == {"intended_uses": "retention offers"}
    assert card["model_overview"]["model_artifact"] == [f"s3://{ARTIFACTS}/models/{job}/output/model.tar.gz"]


def test_the_training_job_gets_the_facets_to_measure(aws, sm, monkeypatch):
    from mlops_control import settings

    facets = {"facets": [{"column": "region", "values": ["south"]}], "positive_label": "yes"}
    monkeypatch.setenv("RESPONSIBLE_ML", json.dumps(facets))
    settings.reset()
    creations = capture_calls(aws.sm, "CreateTrainingJob")
    _train(aws, "file:facets", {"roc_auc": 0.85})
    assert json.loads(creations[-1]["HyperParameters"]["responsible_ml"]) == facets
