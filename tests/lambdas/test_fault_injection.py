"""Every failure path of the control plane, by injection: the whole loop replayed with the Nth call of one AWS
operation failing, for every step, operation and N the loop makes; every event delivered twice; every event
delivered twice at once. After Lambda's retries the outcome must be the fault-free one (faults.violations).

Each call point fails twice over, in separate runs: once killed (the invocation dies there, nothing is released
or recorded, as at Lambda's timeout) and once with an error (ThrottlingException and a 500 alternate over the
points: the control plane treats both alike). Each run forks from the fault-free run just before its step."""
from __future__ import annotations

import os

import pytest

from .faults import ControlPlane, Fault, ForkingMatrix, Variant, dumps, observe, story

PARALLEL = max(1, min(4, os.cpu_count() or 1))


def _fault_free():
    from moto import mock_aws
    from mlops_control import clients, settings

    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        plane = ControlPlane(None, monkeypatch)
        try:
            return plane, observe(plane, story(plane))
        finally:
            settings.reset()
            clients.reset()


@pytest.fixture(scope="module")
def baseline():
    plane, outcome = _fault_free()
    return plane.injector.counts, outcome


def test_the_fault_free_story_ends_as_designed(baseline):
    counts, outcome = baseline
    assert not outcome.dead_letters and outcome.failed_attempts == 0, dumps(outcome)
    assert outcome.file_answers == {f"s3://mlops-test-data-123456789012-us-east-1/incoming/{name}.csv": [answer]
                                    for name, answer in (("a", "validated"), ("b", "validated"), ("c", "quarantined"),
                                                         ("d", "validated"))}
    assert outcome.outcomes["retrain_skipped_no_new_data"] == 1 and outcome.outcomes["retrain_requested"] == 0
    assert outcome.outcomes["training_coalesced"] == 1 and outcome.training_jobs == 3
    assert outcome.outcomes["deployed"] == 2 and outcome.outcomes["rolled_back"] == 1
    assert outcome.production_job == "<follow_up>" and outcome.production_after_deploy == "done"
    assert outcome.outcomes["monitor_completed"] == 1 and not outcome.held_claims
    # Each model decision asked MLflow tracking for exactly its phase: trained (gate), deployed, rolled back.
    phases = [entry.rsplit(" ", 1)[1] for entry in outcome.tracking]
    assert phases.count("deployed") == 2 and phases.count("rolled_back") == 1, outcome.tracking
    assert phases.count("trained") == outcome.training_jobs, outcome.tracking
    assert sum(counts.values()) > 100  # the matrix below covers every one of these calls


def matrix(counts) -> list[Variant]:
    variants = []
    for (step, operation), total in sorted(counts.items()):
        for n in range(1, total + 1):
            variants.append(Variant(step, Fault(step, operation, n, "kill")))
            variants.append(Variant(step, Fault(step, operation, n, "throttle" if n % 2 else "server")))
    for step in dict.fromkeys(step for step, _ in counts):
        variants += [Variant(step, delivery="twice"), Variant(step, delivery="concurrent")]
    return variants


def test_no_single_failure_or_repeated_delivery_changes_the_outcome(baseline, tmp_path):
    from moto import mock_aws
    from mlops_control import clients, settings

    counts, expected = baseline
    variants = matrix(counts)
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        plane = ControlPlane(None, monkeypatch)
        forking = ForkingMatrix(plane, variants, expected, PARALLEL, tmp_path)
        try:
            forking.run(story)
        finally:
            settings.reset()
            clients.reset()
    results = forking.results
    assert len(results) == len(variants)
    never = [str(v) for v, fired, _ in results if not fired]
    assert not never, f"faults that never fired (the story no longer makes those calls): {never[:5]}"
    failures = {v: problems for v, _, problems in results if problems}
    faults = sum(v.fault is not None for v in variants)
    print(f"\nfault matrix: {faults} injected faults ({len(counts)} step × operation pairs, {sum(counts.values())} "
          f"calls, each killed once and failed once) + {len(variants) - faults} repeated deliveries; "
          f"{len(failures)} broke an invariant")
    report = "\n".join(f"{v}: " + "; ".join(p) for v, p in sorted(failures.items(), key=lambda i: str(i[0])))
    assert not failures, f"{len(failures)} of {len(variants)} runs broke an invariant:\n{report}"
