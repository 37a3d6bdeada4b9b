"""``make demo``: start the embedded stack, upload sample data, follow it to a served model, call it, stop."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from .settings import Settings
from .stack import EmbeddedStack
from .statefiles import status_environment


def generate_sample(out: Path, rows: int, seed: int, target: str, drift: bool = False) -> Path:
    cmd = [sys.executable, "-m", "ml_pipeline.sample_data", "--rows", str(rows), "--seed", str(seed),
           "--target", target, "--out", str(out)]
    if drift:
        cmd.append("--drift")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def runtime_client(stack: EmbeddedStack) -> Any:
    import boto3

    session = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                    region_name=stack.region)
    # The host may set AWS_CA_BUNDLE for its own proxy: the local endpoint's CA is passed explicitly.
    return session.client("sagemaker-runtime", endpoint_url=stack.runtime_url, verify=str(stack.ca_bundle))


class Progress:
    """Follows one upload through the loop by what SageMaker reports (what a user would look at)."""

    def __init__(self, stack: EmbeddedStack, prefix: str, endpoint: str, started: float):
        self.sm = stack.client("sagemaker")
        self.prefix = prefix
        self.endpoint = endpoint
        self.started = started
        self.seen: set[str] = set()

    def say(self, key: str, text: str) -> None:
        if key not in self.seen:
            self.seen.add(key)
            print(f"  [{time.time() - self.started:6.1f} s] {text}", flush=True)

    def poll(self, known_configs: set[str]) -> str | None:
        for job in self.sm.list_processing_jobs(NameContains=f"{self.prefix}-val-")["ProcessingJobSummaries"]:
            status = job["ProcessingJobStatus"]
            if status != "InProgress":
                self.say(f"val-{job['ProcessingJobName']}-{status}",
                         f"validation {job['ProcessingJobName']}: {status}"
                         + (" (validated)" if status == "Completed" else ""))
            else:
                self.say(f"val-{job['ProcessingJobName']}", f"validating {job['ProcessingJobName']} ...")
        for job in self.sm.list_training_jobs(NameContains=f"{self.prefix}-train-")["TrainingJobSummaries"]:
            name, status = job["TrainingJobName"], job["TrainingJobStatus"]
            self.say(f"train-{name}", f"training {name} ...")
            if status != "InProgress":
                described = self.sm.describe_training_job(TrainingJobName=name)
                metrics = {m["MetricName"]: round(m["Value"], 4) for m in described.get("FinalMetricDataList", [])}
                self.say(f"train-{name}-{status}", f"training {name}: {status}"
                         + (f"; metrics {metrics}" if metrics else "")
                         + (f"; {described.get('FailureReason')}" if described.get("FailureReason") else ""))
        try:
            endpoint = self.sm.describe_endpoint(EndpointName=self.endpoint)
        except Exception:
            return None
        config = endpoint.get("EndpointConfigName")
        if endpoint["EndpointStatus"] == "InService" and config not in known_configs:
            self.say(f"deployed-{config}", f"deployed: {self.endpoint} serves {config}")
            return config
        self.say(f"ep-{endpoint['EndpointStatus']}-{config}", f"endpoint {self.endpoint}: {endpoint['EndpointStatus']}")
        return None


def run_demo(settings: Settings, rows: int = 1000, timeout: float = 240.0) -> int:
    wall = time.time()
    stack = EmbeddedStack(settings)
    print("1. synthesizing the CDK app and starting the embedded stack ...", flush=True)
    try:
        stack.start()
        print(f"   up in {time.time() - wall:.1f} s: AWS API {stack.aws_url}, runtime {stack.runtime_url} "
              f"({stack.container_runtime.describe()})", flush=True)
        assert stack.functions is not None
        trigger = stack.functions.by_handler("handlers.trigger.handler")
        if not trigger:
            raise RuntimeError("the templates have no function with handler handlers.trigger.handler")
        env = trigger[0].spec.environment
        target = env.get("TARGET_COLUMN", "churn")
        prefix = env["NAME_PREFIX"]
        bucket = stack.output("DataBucketName")
        endpoint = stack.output("EndpointName")
        work = settings.state_dir / "demo"
        work.mkdir(parents=True, exist_ok=True)
        data = generate_sample(work / "churn.csv", rows, seed=7, target=target)
        holdout = generate_sample(work / "holdout.csv", 200, seed=1234, target=target)

        print(f"2. uploading {rows} rows to s3://{bucket}/incoming/churn.csv", flush=True)
        s3 = stack.client("s3")
        uploaded = time.time()
        s3.upload_file(str(data), bucket, "incoming/churn.csv")
        progress = Progress(stack, prefix, endpoint, uploaded)
        served = None
        while time.time() - uploaded < timeout and served is None:
            served = progress.poll(set())
            if served is None:
                time.sleep(0.5)
        if served is None:
            print(f"   no model was serving after {timeout:.0f} s; see {settings.state_dir / 'logs'} and `make status`")
            _print_ledger(stack)
            return 1
        upload_to_serving = time.time() - uploaded
        print(f"   upload → new model serving: {upload_to_serving:.1f} s", flush=True)

        print("3. calling the endpoint over HTTPS (SageMaker runtime InvokeEndpoint, SigV4, local CA)", flush=True)
        with holdout.open() as f:
            rows_in = list(csv.DictReader(f))
        features = [c for c in rows_in[0] if c != target]
        body = io.StringIO()
        writer = csv.writer(body)
        writer.writerow(features)
        for row in rows_in:
            writer.writerow([row[c] for c in features])
        response = runtime_client(stack).invoke_endpoint(EndpointName=endpoint, ContentType="text/csv",
                                                         Accept="text/csv", Body=body.getvalue().encode())
        answer = response["Body"].read().decode()
        predictions = [line.split(",")[0].strip() for line in answer.strip().splitlines()]
        if predictions and predictions[0] == "prediction":  # a header row
            predictions = predictions[1:]
        actual = [row[target] for row in rows_in]
        correct = sum(p == a for p, a in zip(predictions, actual))
        majority = max(set(actual), key=actual.count)
        baseline = sum(a == majority for a in actual)
        print(f"   variant {response['ResponseMetadata']['HTTPHeaders'].get('x-amzn-invoked-production-variant')}; "
              f"first predictions: {predictions[:8]}")
        print(f"   held-out accuracy {correct}/{len(actual)} = {correct / len(actual):.3f} "
              f"(majority baseline '{majority}': {baseline / len(actual):.3f})")

        report = _extract_report(stack, served, work)
        print(f"4. training report: {report}")
        for line in _responsible_summary(work / "model" / "metadata.json"):
            print(f"   {line}")
        tracking_uri = stack.tracking.url
        if tracking_uri:
            print(f"5. MLflow: {_tracked_run(tracking_uri, env, served)}", flush=True)
        _print_ledger(stack)
        print(f"\nupload → serving {upload_to_serving:.1f} s; demo wall time so far {time.time() - wall:.1f} s")
        return 0
    finally:
        print("6. stopping everything ...", flush=True)
        stack.stop()
        print(f"   done; total {time.time() - wall:.1f} s", flush=True)


def _tracked_run(tracking_uri: str, env: dict[str, str], config: str, timeout: float = 120.0) -> str:
    """The serving model's MLflow run and champion version (logged by `track` jobs after the deploy, off its path)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # sagemaker-mlflow's header provider (installed for SageMaker's MLflow) cannot parse a URI that is not an ARN:
    # a warning per request, nothing else.
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    suffix = config.rsplit("-cfg-", 1)[-1]
    job = f"{env['NAME_PREFIX']}-train-{suffix}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            version = client.get_model_version_by_alias(env.get("REGISTERED_MODEL_NAME") or "", "champion")
        except MlflowException:
            version = None
        if version is not None and version.tags.get("training_job") == job:
            run = client.get_run(version.run_id)
            return (f"run {run.info.run_id} ({job}), {version.name} version {version.version} @champion; UI "
                    f"{tracking_uri}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id} "
                    "(up while the stack runs: `make up` keeps one running)")
        time.sleep(1)
    return f"the run of {job} was not tracked within {timeout:.0f} s; see `make status` and .local/logs/mlflow.log"


def _extract_report(stack: EmbeddedStack, config: str, work: Path) -> str:
    sm = stack.client("sagemaker")
    variant = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
    model = sm.describe_model(ModelName=variant["ModelName"])
    uri = (model.get("PrimaryContainer") or model["Containers"][0])["ModelDataUrl"]
    bucket, _, key = uri[5:].partition("/")
    archive = work / "model.tar.gz"
    stack.client("s3").download_file(bucket, key, str(archive))
    out = work / "model"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    index = out / "report" / "index.html"
    return f"{index} (from {uri})" if index.exists() else f"inside {uri} (report/index.html missing)"


def _responsible_summary(metadata_file: Path) -> list[str]:
    """What the report says about bias and explanations, in two lines."""
    if not metadata_file.is_file():
        return []
    metadata = json.loads(metadata_file.read_text())
    lines = []
    facets = (metadata.get("bias") or {}).get("facets") or []
    if facets:
        values = [f"{f['label']}: DI {f['post_training']['DI']:.2f}, DPL {f['pre_training']['DPL']:+.3f}"
                  for f in facets if isinstance((f.get("post_training") or {}).get("DI"), (int, float))
                  and isinstance((f.get("pre_training") or {}).get("DPL"), (int, float))]
        lines.append("bias (Clarify's metrics; DI 1 and DPL 0 are parity): " + ("; ".join(values) or "not computed"))
    ranking = (metadata.get("explainability") or {}).get("global") or []
    if ranking:
        lines.append("largest mean |SHAP|: " + ", ".join(f"{r['column']} {r['mean_abs_shap']:.2f}" for r in ranking[:4]))
    return lines


def _print_ledger(stack: EmbeddedStack) -> None:
    state = {"aws_url": stack.aws_url, "region": stack.region,
             "functions": {f.spec.handler: {"environment": f.spec.environment} for f in stack.functions.by_name.values()}}
    print("\nDecision ledger (make status):", flush=True)
    subprocess.run([sys.executable, "-m", "mlops_control.status", "--limit", "12"], env=status_environment(state))
