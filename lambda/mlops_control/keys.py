"""The ledger's state items, by key: one place for every (pk, sk) the control plane reads and writes.

Decision records use their subject as pk (ledger.py); these are the small state items beside them.
"""
from __future__ import annotations

TRAINING = ("pipeline", "training")      # the training slot: the run in progress and what waits for it
DEPLOYMENT = ("pipeline", "endpoint")    # the deployment slot: the endpoint update in flight, the waiting model
PRODUCTION = ("pipeline", "production")  # what serves: job, package, config, metrics, pin, data fingerprint
RETRAIN = ("pipeline", "retrain")        # the retrain cooldown and the request that holds it
VALIDATED_FILES = "validated-files"      # pk of one item per validated key: its rows, when it was validated
OUTBOX = "outbox"                        # pk of notifications committed with their decision, not yet sent


def fingerprint(value: str) -> tuple[str, str]:
    """The run made on exactly this data (its fingerprint)."""
    return "fingerprint", value


def newest_validated(bucket: str, key: str) -> tuple[str, str]:
    """Which upload version of s3://bucket/key holds validated/ (the newest write that passed)."""
    return f"validated#s3://{bucket}/{key}", "newest"


def job_meta(job: str) -> tuple[str, str]:
    """The upload a validation or ground-truth job reads (written by the trigger)."""
    return f"job#{job}", "meta"
