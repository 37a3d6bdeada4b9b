"""Fault injection for the control plane: make the Nth call of one AWS operation fail, deliver each event the
way Lambda's asynchronous invocation does (two retries, then the dead-letter queue), and replay one whole
upload → train → deploy → retrain → monitor story against moto.

Faults go through botocore's event system (`before-call`), on every client the handlers use, so a failure is
raised where a real one would surface: after botocore's own retries, inside the handler's call. Kinds:
- `throttle`: a ThrottlingException (what outlives botocore's standard retries under load);
- `server`: a 500 InternalFailure;
- `kill`: the invocation dies at that call (Lambda's timeout): a BaseException nothing in the handler catches,
  so no claim is released and nothing is recorded, as when the process is gone.

Time is a fake clock in the control plane's modules, so leases, retry delays (≈ 1 and 2 minutes) and a killed
invocation's deadline pass without waiting.
"""
from __future__ import annotations

import json
import os
import pickle
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from .helpers import (ARTIFACTS, DATA, ENV, P, REGION, AtomicDynamoDB, Aws, SageMakerWithUpdateEndpoint,
                      alarm_action, endpoint_state_change, eventbridge_object_created, job_state_change,
                      scheduled_event)

ENDPOINT = f"{P}-endpoint"
FUNCTION_TIMEOUT_SECONDS = 120
RETRY_DELAYS_SECONDS = (60, 120)  # Lambda's asynchronous retries come about 1 and 2 minutes apart
SERVICES = ("dynamodb", "s3", "sns", "cloudwatch", "application-autoscaling")
KINDS = ("throttle", "server", "kill")


class Killed(BaseException):
    """The invocation ends here, as when Lambda stops it at its timeout."""


@dataclass(frozen=True)
class Fault:
    step: str
    operation: str  # "<service>.<Operation>", e.g. "dynamodb.TransactWriteItems"
    nth: int  # 1-based: the Nth call of that operation during that step (over all its deliveries)
    kind: str = "throttle"


class Clock:
    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Context:
    """The part of Lambda's context object the handlers read."""

    def __init__(self, clock: Clock, timeout: float = FUNCTION_TIMEOUT_SECONDS):
        self._clock, self.deadline = clock, clock.time() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - self._clock.time()) * 1000))


class Injector:
    """Counts every AWS call made during a step and raises the planned fault at its call."""

    def __init__(self, fault: Fault | None):
        self.fault = fault
        self.fired = False
        self.step = ""
        self.active = False
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call", self._before_call)

    def _before_call(self, model: Any = None, **_: Any) -> None:
        if not self.active or model is None:
            return
        operation = f"{model.service_model.service_name}.{model.name}"
        with self._lock:
            self.counts[(self.step, operation)] += 1
            count = self.counts[(self.step, operation)]
            fault = self.fault
            if self.fired or fault is None or (fault.step, fault.operation, fault.nth) != (self.step, operation, count):
                return
            self.fired = True
        if fault.kind == "kill":
            raise Killed(f"killed at {operation} #{count} in {self.step}")
        from botocore.exceptions import ClientError

        code, status = ("ThrottlingException", 400) if fault.kind == "throttle" else ("InternalFailure", 500)
        raise ClientError({"Error": {"Code": code, "Message": f"injected at {operation} #{count}"},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, model.name)


@dataclass
class Delivery:
    step: str
    attempts: list[str] = field(default_factory=list)  # "ok" | "error:<Type>" | "killed"
    dead_lettered: bool = False


class ControlPlane:
    """The stack's resources in moto, the handlers, and Lambda's way of delivering events to them."""

    def __init__(self, fault: Fault | None, monkeypatch: Any):
        from mlops_control import clients, deployer, ledger, runtime, settings, training

        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            monkeypatch.delenv(name, raising=False)
        # With MLflow tracking on: its requests ride in the outbox, which every delivery flushes first.
        for name, value in {**ENV, **TRACKING_ENV, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}.items():
            monkeypatch.setenv(name, value)
        self.clock = Clock()
        for module in (ledger, runtime, training, deployer):
            monkeypatch.setattr(module, "time", SimpleNamespace(time=self.clock.time), raising=False)
        settings.reset()
        clients.reset(session=True)  # a session made before moto started would not be mocked
        self.aws = Aws()
        self.aws.inject_training_metrics(self.aws.sm)
        self.aws.write_model_artifacts(self.aws.sm)
        self.sagemaker = SageMakerWithUpdateEndpoint(self.aws.sm)
        self.injector = Injector(fault)
        for service in SERVICES:
            self.injector.attach(clients.get(service))
        self.injector.attach(self.aws.sm)
        self.injector.attach(self.sagemaker._stubbed)
        clients.override("sagemaker", self.sagemaker)
        # DynamoDB checks and applies a condition atomically; moto in threads does not (see AtomicDynamoDB).
        clients.override("dynamodb", AtomicDynamoDB(clients.get("dynamodb")))
        self.deliveries: list[Delivery] = []
        self._running = threading.Condition()
        self._in_flight = 0
        self.twice: str | None = None
        self.concurrent: str | None = None
        self.before_step: Callable[[str], None] = lambda step: None

    # -- Lambda's asynchronous invocation --------------------------------------------------------------------
    def deliver(self, step: str, handler: Callable[[Any, Any], Any], event: dict) -> Delivery:
        delivery = Delivery(step)
        self.deliveries.append(delivery)
        self.injector.step = step
        for attempt in range(1 + len(RETRY_DELAYS_SECONDS)):
            if attempt:
                # A retry comes a minute or two later, when every invocation running now has ended (they all
                # end by their deadline): the shared clock must not overtake one that is still working.
                with self._running:
                    self._running.wait_for(lambda: self._in_flight == 0)
                    self.clock.advance(RETRY_DELAYS_SECONDS[attempt - 1])
            context = Context(self.clock)
            with self._running:
                self._in_flight += 1
            self.injector.active = True
            try:
                handler(event, context)
                delivery.attempts.append("ok")
                return delivery
            except Killed:
                delivery.attempts.append("killed")
                with self._running:
                    self.clock.now = max(self.clock.now, context.deadline)
            except Exception as exc:  # noqa: BLE001 - what Lambda sees as a function error
                delivery.attempts.append(f"error:{type(exc).__name__}")
            finally:
                with self._running:
                    self._in_flight -= 1
                    self.injector.active = self._in_flight > 0
                    self._running.notify_all()
        delivery.dead_lettered = True
        return delivery

    def deliver_concurrently(self, step: str, handler: Callable[[Any, Any], Any], event: dict) -> list[Delivery]:
        """Two deliveries of one event at the same moment (EventBridge and S3 deliver at least once)."""
        barrier = threading.Barrier(2)
        results: list[Delivery] = []

        def one() -> None:
            barrier.wait()
            results.append(self.deliver(step, handler, event))

        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    # -- world ------------------------------------------------------------------------------------------------
    def upload(self, key: str, body: bytes) -> dict:
        response = self.aws.s3.put_object(Bucket=DATA, Key=key, Body=body)
        return {"key": key, "size": len(body), "etag": response["ETag"].strip('"'), "version": response["VersionId"]}

    def upload_event(self, upload: dict, sequencer: str) -> dict:
        return eventbridge_object_created(upload["key"], size=upload["size"], etag=upload["etag"],
                                          version=upload["version"], sequencer=sequencer)

    def validation_job(self, upload: dict) -> str:
        from mlops_control import jobs, settings

        return jobs.job_name(settings.load(), "val", DATA, upload["key"], upload["version"])

    def slot(self, sk: str) -> dict:
        return self.aws.state(sk) or {}


PASSED = {"kind": "validation", "passed": True, "rows": 2, "rows_rejected": 0,
          "drift": {"score": 0.03, "method": "psi/ks", "features": {}}, "failures": [], "reference": "self",
          "summary": "2 rows, all expectations met"}
FAILED = {**PASSED, "passed": False, "rows_rejected": 1, "summary": "1 of 2 rows has age outside 0..120",
          "failures": [{"column": "age", "expectation": "expect_column_values_to_be_between",
                        "expected": "0 <= value <= 120", "found": [-4], "unexpected_count": 1}]}
MONITOR = {"kind": "monitor", "passed": True, "rows": 5, "rows_rejected": 0, "records": 5, "records_unreadable": 0,
           "drift": {"score": 0.05, "method": "psi/ks", "features": {}}, "summary": "5 captured rows, stable"}


def story(plane: ControlPlane) -> dict[str, str]:
    """The whole loop, step by step: three uploads (two pass, one is quarantined; the second arrives during the
    first run and joins its follow-up), the first model creates the endpoint, the follow-up's model replaces it,
    a fourth upload trains again and the drift alarm it raised finds that data already in training (no second
    run), the new model's update is rolled back by SageMaker, the monitor runs. A step named in
    `plane.twice` has its event delivered a second time afterwards; in `plane.concurrent`, twice at once.
    `plane.before_step` (the forking matrix) runs before each step. Returns the training jobs by their part."""
    from handlers import endpoint_state, monitor_schedule, processing_done, retrain, training_done, trigger

    names: dict[str, str] = {}

    def step(name: str, handler: Any, event: dict) -> None:
        plane.before_step(name)
        if name == plane.concurrent:
            plane.deliver_concurrently(name, handler, event)
        else:
            plane.deliver(name, handler, event)
        if name == plane.twice:
            plane.clock.advance(30)
            plane.deliver(name, handler, event)
        plane.clock.advance(5)

    def upload_and_validate(label: str, key: str, body: bytes, report: dict, sequencer: str) -> None:
        upload = plane.upload(key, body)
        step(f"trigger:{label}", trigger.handler, plane.upload_event(upload, sequencer))
        job = plane.validation_job(upload)
        plane.aws.put_report("val", job, report)
        step(f"processing_done:{label}", processing_done.handler, job_state_change("processing", job, "Completed"))

    upload_and_validate("a", "incoming/a.csv", b"age,plan,churn\n30,a,no\n41,b,yes\n", PASSED, "0061000000000000A1")
    names["first"] = plane.slot("training").get("running_job", "")
    upload_and_validate("b", "incoming/b.csv", b"age,plan,churn\n35,a,no\n52,b,yes\n", PASSED, "0061000000000000B1")
    upload_and_validate("c", "incoming/c.csv", b"age,plan,churn\n-4,a,no\n52,b,yes\n", FAILED, "0061000000000000C1")

    plane.aws.training_metrics[names["first"]] = {"roc_auc": 0.80, "accuracy": 0.75}
    step("training_done:first", training_done.handler, job_state_change("training", names["first"], "Completed"))
    names["follow_up"] = plane.slot("training").get("running_job", "")
    step("endpoint_state:created", endpoint_state.handler, endpoint_state_change(ENDPOINT, "IN_SERVICE"))

    plane.aws.training_metrics[names["follow_up"]] = {"roc_auc": 0.85, "accuracy": 0.78}
    step("training_done:follow_up", training_done.handler,
         job_state_change("training", names["follow_up"], "Completed"))
    if plane.aws.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Updating":
        plane.sagemaker.settle(ENDPOINT)
    step("endpoint_state:updated", endpoint_state.handler, endpoint_state_change(ENDPOINT, "IN_SERVICE"))

    upload_and_validate("d", "incoming/d.csv", b"age,plan,churn\n61,b,no\n19,a,yes\n", PASSED, "0061000000000000D1")
    names["latest"] = plane.slot("training").get("running_job", "")
    # The drift alarm that d's validation could raise finds d's data already in training: no second run.
    step("retrain:alarm", retrain.handler, alarm_action(f"{P}-drift"))
    plane.aws.training_metrics[names["latest"]] = {"roc_auc": 0.90, "accuracy": 0.80}
    step("training_done:latest", training_done.handler, job_state_change("training", names["latest"], "Completed"))
    if plane.aws.sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Updating":
        plane.sagemaker.settle(ENDPOINT, rolled_back=True)
    step("endpoint_state:rolled_back", endpoint_state.handler, endpoint_state_change(ENDPOINT, "IN_SERVICE"))

    plane.aws.s3.put_object(Bucket=ARTIFACTS, Key=f"datacapture/{ENDPOINT}/AllTraffic/2026/11/21/12/x.jsonl",
                            Body=b'{"captureData": {}}\n')
    step("monitor_schedule", monitor_schedule.handler, scheduled_event("2026-11-21T12:00:00Z"))
    monitor = next((d["job"] for d in plane.aws.decisions() if d["decision"] in ("monitor_started",
                                                                               "monitor_already_started")), None)
    if monitor:
        plane.aws.put_report("mon", monitor, MONITOR)
        step("processing_done:monitor", processing_done.handler, job_state_change("processing", monitor, "Completed"))
    return names


# Decisions that state an outcome, with the spellings a retried attempt may legitimately use instead.
OUTCOME_DECISIONS = {
    "rejected": "rejected", "validated": "validated", "quarantined": "quarantined",
    "validation_started": "validation_started", "validation_already_started": "validation_started",
    "training_started": "training_started", "training_already_started": "training_started",
    "training_coalesced": "training_coalesced", "training_failed": "training_failed",
    "gate_passed": "gate_passed", "gated_out": "gated_out", "deploy_requested": "deploy_requested",
    "deploy_deferred": "deploy_deferred", "deployed": "deployed", "rolled_back": "rolled_back",
    "deploy_failed": "deploy_failed", "retrain_requested": "retrain_requested",
    "retrain_skipped_no_new_data": "retrain_skipped_no_new_data",
    "monitor_started": "monitor_started", "monitor_already_started": "monitor_started",
    "monitor_completed": "monitor_completed",
}
FILE_ANSWERS = ("rejected", "validated", "quarantined")


TRACKING_ENV = {"TRACKING_URI": "http://mlflow.invalid", "TRACKING_ROLE_ARN": f"arn:aws:iam::123456789012:role/{P}-tracking"}


@dataclass
class Outcome:
    """What a story left behind, in the terms of the invariants."""

    outcomes: Counter[str]
    file_answers: dict[str, list[str]]
    training_jobs: int
    production_job: str | None
    production_after_deploy: str | None
    live_config: str | None
    production_config: str | None
    held_claims: list[str]
    training_slot: dict
    endpoint_slot: dict
    validated: dict[str, bytes]
    quarantine: list[str]
    notifications: Counter[str]  # subjects, job names replaced by their part in the story
    failure_notices: int  # "<handler>: failed, event kept for retry/DLQ"
    notification_failures: int
    failure_records: int
    dead_letters: list[str]
    failed_attempts: int
    names: dict[str, str]
    # (training job, phase) of every MLflow tracking request: started as a `track` job, or still in the outbox
    tracking: list[str] = field(default_factory=list)


def observe(plane: ControlPlane, names: dict[str, str]) -> Outcome:
    aws = plane.aws
    decisions = aws.decisions()
    answers: dict[str, list[str]] = {}
    for record in decisions:
        if record["decision"] in FILE_ANSWERS:
            answers.setdefault(record["file"], []).append(record["decision"])
    items = aws.ddb.scan(TableName=ENV["LEDGER_TABLE"])["Items"]
    from mlops_control.keys import OUTBOX
    from mlops_control.ledger import from_item

    claims = [from_item(i) for i in items if i["pk"]["S"].startswith("claim#")]
    endpoint = aws.sm.describe_endpoint(EndpointName=ENDPOINT) if aws.sm.list_endpoints()["Endpoints"] else {}
    production = plane.slot("production")
    labels = {name: label for label, name in names.items() if name}

    def labelled(text: str | None) -> str | None:
        for name, label in labels.items():
            text = text.replace(name, f"<{label}>") if text else text
        return text

    started = [env for name, env in plane.sagemaker._environments.items() if name.startswith(f"{P}-trk-")]
    waiting = [notice["track"] for item in items if item["pk"]["S"] == OUTBOX
               for notice in from_item(item).get("notices") or [] if "track" in notice]
    tracking = sorted(f"{labelled(t)} {p}" for t, p in
                      [(e["TRACK_TRAINING_JOB"], e["TRACK_PHASE"]) for e in started]
                      + [(w["training_job"], w["phase"]) for w in waiting])
    subjects = [m["subject"] for m in aws.notifications()]
    notices = [s for s in subjects if "event kept for retry/DLQ" in s]
    return Outcome(
        outcomes=Counter(OUTCOME_DECISIONS[d["decision"]] for d in decisions if d["decision"] in OUTCOME_DECISIONS),
        file_answers=answers,
        training_jobs=len(aws.training_jobs()),
        production_job=labelled(production.get("training_job")),
        production_after_deploy=production.get("after_deploy"),
        live_config=endpoint.get("EndpointConfigName"),
        production_config=production.get("config_name"),
        held_claims=sorted(c["pk"] for c in claims if c.get("state") != "done"),
        training_slot={k: labelled(v) if isinstance(v, str) else v for k, v in plane.slot("training").items()
                       if k.startswith(("running", "pending")) and k != "pending_updated_at"},
        endpoint_slot={k: v for k, v in plane.slot("endpoint").items() if k.startswith(("inflight", "pending"))},
        validated={k: aws.s3.get_object(Bucket=DATA, Key=k)["Body"].read() for k in aws.keys(DATA, "validated/")},
        quarantine=aws.keys(DATA, "quarantine/"),
        notifications=Counter(labelled(s) for s in subjects if s not in notices),
        failure_notices=len(notices),
        notification_failures=sum(d["decision"] == "notification_failed" for d in decisions),
        failure_records=sum(d["decision"] in ("error", "busy") for d in decisions),
        dead_letters=[d.step for d in plane.deliveries if d.dead_lettered],
        failed_attempts=sum(a.startswith("error:") for d in plane.deliveries for a in d.attempts),
        names=names,
        tracking=tracking,
    )


def violations(baseline: Outcome, got: Outcome, fault: Fault | None = None) -> list[str]:
    """The invariants, each as one readable line when it does not hold. A notification may be sent twice only
    when the fault hit the deletion of its outbox item (after sending: at-least-once, as SNS itself is)."""
    problems = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    check(not got.dead_letters, f"events dead-lettered although one retry should recover: {got.dead_letters}")
    check(all(len(a) == 1 for a in got.file_answers.values()) and got.file_answers == baseline.file_answers,
          f"every upload has exactly one terminal answer: {got.file_answers} (baseline {baseline.file_answers})")
    check(got.outcomes == baseline.outcomes,
          f"outcome records differ: +{dict(got.outcomes - baseline.outcomes)} -{dict(baseline.outcomes - got.outcomes)}")
    check(got.training_jobs == baseline.training_jobs,
          f"{got.training_jobs} training jobs, baseline {baseline.training_jobs} (one run, one follow-up, one more)")
    check(got.failure_notices <= got.failed_attempts, f"{got.failure_notices} failure notices for "
          f"{got.failed_attempts} failed attempts")
    check(not got.held_claims, f"claims left held: {got.held_claims}")
    check(got.training_slot == baseline.training_slot, f"training slot {got.training_slot}, baseline {baseline.training_slot}")
    check(got.endpoint_slot == baseline.endpoint_slot, f"deployment slot {got.endpoint_slot}, baseline {baseline.endpoint_slot}")
    check(got.production_job == baseline.production_job and got.production_config == got.live_config,
          f"production {got.production_job} on {got.production_config}, endpoint runs {got.live_config} "
          f"(baseline {baseline.production_job})")
    check(got.production_after_deploy == "done", f"autoscaling/pruning after deploy: {got.production_after_deploy}")
    check(got.validated == baseline.validated and got.quarantine == baseline.quarantine, "bucket contents differ")
    missing = baseline.notifications - got.notifications
    resent_after_send = fault is not None and fault.operation == "dynamodb.DeleteItem"
    check(resent_after_send or not (got.notifications - baseline.notifications),
          f"duplicate or unexpected notifications: {dict(got.notifications - baseline.notifications)}")
    check(sum(missing.values()) == got.notification_failures,
          f"lost notifications {dict(missing)} vs {got.notification_failures} notification_failed records")
    check(set(got.tracking) == set(baseline.tracking),
          f"MLflow tracking requests (started or waiting in the outbox) {got.tracking}, baseline {baseline.tracking}")
    check(got.failure_records >= got.failed_attempts,
          f"{got.failed_attempts} failed attempts but {got.failure_records} error/busy records")
    return problems


def dumps(outcome: Outcome) -> str:
    return json.dumps({k: (dict(v) if isinstance(v, Counter) else v) for k, v in vars(outcome).items()
                       if k != "validated"}, default=str, indent=1)


@dataclass(frozen=True)
class Variant:
    """One run of the matrix: a fault, or a step whose event is delivered twice (after, or at once)."""

    step: str
    fault: Fault | None = None
    delivery: str = "once"  # once | twice | concurrent

    def __str__(self) -> str:
        if self.fault:
            return f"{self.step} {self.fault.operation} #{self.fault.nth} ({self.fault.kind})"
        return f"{self.step} delivered {self.delivery}"


class ForkingMatrix:
    """Every variant of the story, each in a process forked just before its step: the steps before it ran once
    (in this process, fault-free), and the moto state they built is the child's copy. A child finishes the
    story, checks the invariants against `expected` and reports through a file; the parent goes on to the next
    step. At most `parallel` children run at once."""

    def __init__(self, plane: ControlPlane, variants: list[Variant], expected: Outcome, parallel: int, workdir: Any):
        self.plane, self.expected, self.parallel, self.workdir = plane, expected, parallel, workdir
        self.by_step: dict[str, list[Variant]] = {}
        for variant in variants:
            self.by_step.setdefault(variant.step, []).append(variant)
        self.children: dict[int, tuple[Variant, str]] = {}
        self.results: list[tuple[Variant, bool, list[str]]] = []
        self.variant: Variant | None = None  # set in a child
        plane.before_step = self._before_step

    def _before_step(self, step: str) -> None:
        if self.variant is not None:
            return  # a child forks nothing
        for index, variant in enumerate(self.by_step.pop(step, [])):
            while len(self.children) >= self.parallel:
                self._reap(os.wait())
            path = str(self.workdir / f"{step.replace(':', '_')}-{index}.pickle")
            pid = os.fork()
            if pid == 0:
                self.variant = variant
                self.plane.injector.fault = variant.fault
                self.plane.twice = step if variant.delivery == "twice" else None
                self.plane.concurrent = step if variant.delivery == "concurrent" else None
                self._path = path
                return
            self.children[pid] = (variant, path)

    def run(self, story_of: Callable[[ControlPlane], dict[str, str]]) -> None:
        """Tell the story once, forking the variants on the way; returns in the parent only."""
        try:
            names = story_of(self.plane)
        except BaseException as exc:
            if self.variant is not None:  # a child must never return into pytest
                self._exit(1, (True, [f"the story crashed: {type(exc).__name__}: {exc}"]))
            raise
        if self.variant is not None:
            try:
                outcome = observe(self.plane, names)
                result = (self.plane.injector.fired or self.variant.fault is None,
                          violations(self.expected, outcome, self.variant.fault))
            except BaseException as exc:  # noqa: BLE001
                self._exit(1, (True, [f"checking the outcome crashed: {type(exc).__name__}: {exc}"]))
            self._exit(0, result)
        self._collect()

    def _exit(self, code: int, result: tuple[bool, list[str]]) -> None:
        try:
            with open(self._path, "wb") as handle:
                pickle.dump(result, handle)
        finally:
            os._exit(code)

    def _collect(self) -> None:
        while self.children:
            self._reap(os.wait())
        leftover = [v for vs in self.by_step.values() for v in vs]
        self.results.extend((v, False, ["its step never came"]) for v in leftover)

    def _reap(self, waited: tuple[int, int]) -> None:
        pid, _status = waited
        variant, path = self.children.pop(pid)
        try:
            with open(path, "rb") as handle:
                fired, problems = pickle.load(handle)
        except (OSError, EOFError, pickle.UnpicklingError):
            fired, problems = True, [f"the child process died without a report (status {_status})"]
        self.results.append((variant, fired, problems))


__all__ = ["ControlPlane", "Fault", "ForkingMatrix", "KINDS", "REGION", "Variant", "story", "observe", "violations",
           "dumps"]
