"""End to end through the embedded stack: the synthesized app, the real handlers, the container entrypoints.

Ordered: the first test produces the production model the later ones rely on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.e2e


def _features_and_labels(path, target):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    features = [c for c in rows[0] if c != target]
    body = io.StringIO()
    writer = csv.writer(body)
    writer.writerow(features)
    for row in rows:
        writer.writerow([row[c] for c in features])
    return body.getvalue().encode(), [row[target] for row in rows]


def test_jobs_and_endpoints_run_in_the_real_image_when_one_is_given(stack):
    """CI builds the image and sets MLOPS_IMAGE: the loop must then run in it, as SageMaker would, not fall
    back to local processes unnoticed."""
    image = os.environ.get("MLOPS_IMAGE")
    if not image:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but MLOPS_IMAGE is not set: the end-to-end loop would not exercise the real image")
        pytest.skip("MLOPS_IMAGE not set: jobs and endpoints run as local processes")
    assert stack.state["container_runtime"] == f"docker image {image}"


def test_event_sources_invoke_the_functions_live_alias(stack):
    """As deployed: rules and the drift alarm invoke `live` (the published, SnapStart-enabled version)."""
    events, prefix = stack.client("events"), stack.env["NAME_PREFIX"]
    for suffix, function in (("upload", "trigger"), ("training-jobs", "training-done")):
        (target,) = events.list_targets_by_rule(Rule=f"{prefix}-{suffix}")["Targets"]
        assert target["Arn"].endswith(f":function:{prefix}-{function}:live"), target
    (drift,) = stack.client("cloudwatch").describe_alarms(AlarmNames=[f"{prefix}-data-drift"])["MetricAlarms"]
    assert any(a.endswith(f":function:{prefix}-retrain:live") for a in drift["AlarmActions"]), drift["AlarmActions"]


def _predict(stack, body):
    response = stack.runtime().invoke_endpoint(EndpointName=stack.output("EndpointName"), ContentType="text/csv",
                                               Accept="text/csv", Body=body)
    lines = response["Body"].read().decode().strip().splitlines()
    if lines and not lines[0].replace(".", "", 1).replace("-", "", 1).isdigit() and lines[0] in ("prediction", "label"):
        lines = lines[1:]
    return [line.split(",")[0].strip() for line in lines]


@pytest.fixture(scope="module")
def first_model(stack, sample, tmp_path_factory):
    work = tmp_path_factory.mktemp("data")
    target = stack.env["TARGET_COLUMN"]
    data = sample(work / "churn.csv", 1200, seed=7, target=target)
    stack.client("s3").upload_file(str(data), stack.output("DataBucketName"), "incoming/churn.csv")
    config = stack.wait_for("a model serving", stack.live_config, timeout=300)
    return {"config": config, "work": work, "target": target}


def test_upload_serves_a_model_that_beats_the_majority_baseline(stack, first_model, sample):
    holdout = sample(first_model["work"] / "holdout.csv", 300, seed=99, target=first_model["target"])
    body, labels = _features_and_labels(holdout, first_model["target"])
    predictions = _predict(stack, body)
    assert len(predictions) == len(labels)
    accuracy = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
    majority = max(set(labels), key=labels.count)
    baseline = labels.count(majority) / len(labels)
    assert accuracy > baseline, (accuracy, baseline)


def test_the_serving_model_is_pinned_and_serve_checked_the_pin(stack, first_model):
    """Issue 12 item 10: the model the gate passed is the one `serve` loaded: MODEL_SHA256 in the model's
    environment, the same digest in the package, and the endpoint's log shows serve verified it."""
    sm = stack.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=first_model["config"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    pin = model["PrimaryContainer"]["Environment"]["MODEL_SHA256"]
    [package] = sm.list_model_packages(ModelPackageGroupName=stack.env["MODEL_PACKAGE_GROUP"],
                                       SortBy="CreationTime", SortOrder="Ascending", MaxResults=1)["ModelPackageSummaryList"]
    assert sm.describe_model_package(ModelPackageName=package["ModelPackageArn"])[
        "CustomerMetadataProperties"]["model_sha256"] == pin
    logs = list((stack.state_dir / "logs" / "endpoints").glob(f"*{first_model['config']}.log"))
    assert logs and f"model directory digest matches MODEL_SHA256 ({pin})" in logs[0].read_text()


def test_the_same_upload_delivered_twice_starts_one_job(stack, first_model):
    before = stack.control("GET", "state")["invocations"].get("handlers.trigger.handler", [])
    result = stack.control("POST", "events/redeliver", {"key": "incoming/churn.csv"})
    assert result["redelivered"] == 1
    stack.control("POST", "idle", {"timeout": 120})
    after = stack.control("GET", "state")["invocations"]["handlers.trigger.handler"]
    assert len(after) == len(before) + 1 and after[-1]["ok"], after[-1]
    jobs = stack.client("sagemaker").list_processing_jobs(NameContains=f"{stack.env['NAME_PREFIX']}-val-")
    names = [j["ProcessingJobName"] for j in jobs["ProcessingJobSummaries"]]
    assert len(names) == 1, names
    skipped = [r for r in stack.ledger() if r["decision"] == "duplicate_skipped" and "churn.csv" in str(r.get("file"))]
    assert len(skipped) == 1, skipped


def test_malformed_file_is_quarantined_with_a_report_and_the_old_model_keeps_serving(stack, first_model, sample):
    s3 = stack.client("s3")
    bucket = stack.output("DataBucketName")
    good = sample(first_model["work"] / "good.csv", 200, seed=5, target=first_model["target"])
    text = good.read_text().splitlines()
    header = text[0].split(",")
    age = header.index("customer_age")
    broken = [text[0]]
    for line in text[1:]:
        cells = line.split(",")
        cells[age] = "not-a-number"
        broken.append(",".join(cells))
    s3.put_object(Bucket=bucket, Key="incoming/broken.csv", Body=("\n".join(broken) + "\n").encode())

    def quarantined():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="quarantine/").get("Contents", [])]
        return keys if any(k.endswith("broken.csv") for k in keys) and any("report" in k for k in keys) else None

    keys = stack.wait_for("the file in quarantine/ with its report", quarantined, timeout=180)
    report_key = next(k for k in keys if k.endswith(".json") and "report" in k)
    report = s3.get_object(Bucket=bucket, Key=report_key)["Body"].read().decode()
    assert "customer_age" in report
    s3.head_object(Bucket=bucket, Key="incoming/broken.csv")  # the original is never deleted
    stack.control("POST", "idle", {"timeout": 120})
    assert stack.live_config() == first_model["config"]
    body, _ = _features_and_labels(good, first_model["target"])
    assert len(_predict(stack, body)) == 200


def test_an_upload_that_raises_the_drift_alarm_trains_once_not_twice(stack, first_model, sample):
    """The drifted upload's own validation starts a run on it; the drift alarm the same validation raised finds
    exactly that data in training (issue 14): one run, a record and a message instead of a second run."""
    target = first_model["target"]
    sm, prefix = stack.client("sagemaker"), stack.env["NAME_PREFIX"]

    def runs():
        return sm.list_training_jobs(NameContains=f"{prefix}-train-", MaxResults=100)["TrainingJobSummaries"]

    before = len(runs())
    drifted = sample(first_model["work"] / "drifted.csv", 1000, seed=11, target=target, drift=True)
    stack.client("s3").upload_file(str(drifted), stack.output("DataBucketName"), "incoming/drifted.csv")
    stack.control("POST", "idle", {"timeout": 300})
    served_before_alarm = stack.live_config()
    alarm = f"{prefix}-data-drift"
    states = stack.control("POST", "alarms/evaluate")["alarms"]
    assert states[alarm] == "ALARM", states
    stack.control("POST", "alarms/evaluate")  # still ALARM: no new transition, no second action
    stack.control("POST", "idle", {"timeout": 300})
    retrain_calls = [i for i in stack.control("GET", "state")["invocations"]["handlers.retrain.handler"]
                     if i["source"].startswith("alarm:")]
    assert len(retrain_calls) == 1, retrain_calls
    assert len(runs()) == before + 1
    assert [r for r in stack.ledger() if r["decision"] == "retrain_requested"] == []
    [skipped] = [r for r in stack.ledger() if r["decision"] == "retrain_skipped_no_new_data"]
    [run] = [r["job"] for r in stack.ledger() if r["decision"] == "training_started"
             and "drifted.csv" in str((r.get("details") or {}).get("trigger"))]
    assert skipped["details"]["same_as"] == run  # the alarm found the upload's own run
    notices = [json.loads(line) for line in (stack.state_dir / "logs" / "sns.log").read_text().splitlines()]
    assert [n for n in notices if (n["subject"] or "").startswith(f'ALARM: "{alarm}"')], "no SNS alarm notification"
    assert [n for n in notices if "labeled data needed" in (n["subject"] or "")], "no request for labels"
    # That one run was judged against the production model on the drifted rows, whatever the verdict.
    [gate] = [r for r in stack.ledger() if r["decision"] in ("gate_passed", "gated_out") and r.get("job") == run]
    assert gate["details"]["basis"] == "new rows" and gate["details"]["rows"] >= 30, gate
    if gate["decision"] == "gated_out":  # not better where the data is now: the production model keeps serving
        assert stack.live_config() == served_before_alarm
    holdout = sample(first_model["work"] / "holdout2.csv", 100, seed=123, target=target)
    body, labels = _features_and_labels(holdout, target)
    assert len(_predict(stack, body)) == len(labels)


def test_the_aws_cli_works_unchanged_against_both_endpoints(stack, first_model, sample, tmp_path):
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed on this machine")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": stack.region}
    env.pop("AWS_PROFILE", None)
    listing = subprocess.run([aws, "--endpoint-url", stack.aws_url, "s3", "ls",
                              f"s3://{stack.output('DataBucketName')}/incoming/"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "churn.csv" in listing.stdout
    body, labels = _features_and_labels(sample(tmp_path / "rows.csv", 50, seed=3, target=first_model["target"]),
                                        first_model["target"])
    rows = tmp_path / "features.csv"
    rows.write_bytes(body)
    out = tmp_path / "out.csv"
    call = subprocess.run([aws, "--endpoint-url", stack.runtime_url, "--ca-bundle", stack.ca, "sagemaker-runtime",
                           "invoke-endpoint", "--endpoint-name", stack.output("EndpointName"),
                           "--content-type", "text/csv", "--accept", "text/csv", "--body", f"fileb://{rows}",
                           str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert call.returncode == 0, call.stderr
    assert json.loads(call.stdout)["InvokedProductionVariant"] == "AllTraffic"
    predictions = [line for line in out.read_text().strip().splitlines() if line not in ("prediction", "label")]
    assert len(predictions) == len(labels)


def test_the_monitor_schedule_runs_a_monitoring_job_over_the_captured_requests(stack, first_model):
    prefix = stack.env["NAME_PREFIX"]
    fired = stack.control("POST", "schedules/fire", {"rule": f"{prefix}-monitor-schedule"})["fired"]
    assert fired == [f"{prefix}-monitor-schedule"]
    stack.control("POST", "idle", {"timeout": 180})
    sm = stack.client("sagemaker")
    jobs = sm.list_processing_jobs(NameContains=f"{prefix}-mon-")["ProcessingJobSummaries"]
    assert len(jobs) == 1, jobs  # the first tick of this stack
    job = sm.describe_processing_job(ProcessingJobName=jobs[0]["ProcessingJobName"])
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    report = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].rstrip("/") + "/report.json"
    bucket, _, key = report[5:].partition("/")
    content = json.loads(stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert content["kind"] == "monitor" and content["rows"] > 0
