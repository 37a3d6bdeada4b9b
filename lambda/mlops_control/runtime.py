"""What every handler does around its flow: structured logs, and no event lost.

- A malformed event is recorded in the ledger and announced on SNS, then the handler returns: retrying
  it cannot help.
- Any other failure (throttling that outlived the retries, a missing permission, a bug) is recorded and
  announced best-effort, then re-raised so that Lambda retries the event and the dead-letter queue keeps it.
"""
from __future__ import annotations

import json
import logging
import traceback
from typing import Any, Callable

from . import events, settings as settings_module
from .ledger import Ledger
from .notify import publish

log = logging.getLogger("mlops_control")
if not log.handlers:
    logging.basicConfig(level=logging.INFO)
log.setLevel(logging.INFO)


class Busy(RuntimeError):
    """Another delivery of the same event is being handled right now; raise so Lambda retries later."""


def once_per_job(ledger: Ledger, job: str, status: str, work: Callable[[], dict]) -> dict:
    """Run ``work`` for the first delivery of a job's terminal state change (EventBridge delivers at least
    once); a later delivery is recorded as a duplicate, and one arriving while the first runs is retried."""
    claim_pk = f"claim#job#{job}"
    claim = ledger.claim(claim_pk, "done", lease_seconds=600)
    if not claim.acquired:
        if claim.status == "busy":
            raise Busy(f"the completion of {job} is being handled by another delivery")
        ledger.record(f"job#{job}", "duplicate_skipped", f"completion of {job} ({status}) already handled",
                      job=job, ttl_days=30)
        return {"status": "duplicate"}
    try:
        result = work()
    except Exception as exc:
        ledger.release(claim_pk, "done", f"{type(exc).__name__}: {exc}")
        raise
    ledger.complete(claim_pk, "done", {"outcome": result.get("status")})
    return result


def ledger_for(settings: settings_module.Settings) -> Ledger:
    return Ledger(settings.ledger_table)


def run(name: str, event: Any, flow: Callable[[settings_module.Settings, Ledger, Any], dict], *,
        raise_malformed: bool = False) -> dict:
    settings = settings_module.load()
    ledger = ledger_for(settings)
    try:
        result = flow(settings, ledger, event)
        log.info(json.dumps({"handler": name, "result": result}, default=str))
        return result
    except events.MalformedEvent as exc:
        reason = f"malformed event: {exc}"
        ledger.record(f"event#{name}", "malformed_event", reason, details={"event": events.summarise(event)})
        _announce(settings, f"{name}: malformed event rejected", reason, event)
        log.error(json.dumps({"handler": name, "malformed": str(exc)}))
        if raise_malformed:
            raise
        return {"status": "malformed", "reason": reason}
    except Busy:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.error(json.dumps({"handler": name, "error": reason, "trace": traceback.format_exc()}))
        try:
            ledger.record(f"event#{name}", "error", reason, details={"event": events.summarise(event)})
        except Exception:  # noqa: BLE001 - the ledger itself may be what is failing; the DLQ still keeps the event
            log.exception("could not record the error in the ledger")
        _announce(settings, f"{name}: failed, event kept for retry/DLQ", reason, event)
        raise


def _announce(settings: settings_module.Settings, subject: str, reason: str, event: Any) -> None:
    try:
        publish(settings, subject, reason, {"event": events.summarise(event)})
    except Exception:  # noqa: BLE001 - notification is best-effort; the ledger record or the DLQ holds the fact
        log.exception("could not publish to SNS")
