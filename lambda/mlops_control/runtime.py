"""What every handler does around its flow: structured logs, and no event lost.

- A malformed event is recorded in the ledger and announced on SNS, then the handler returns: retrying
  it cannot help.
- Any other failure (throttling that outlived the retries, a missing permission, a bug) is recorded and
  announced best-effort, then re-raised so that Lambda retries the event and the dead-letter queue keeps it.
- Work on one event identity runs under a claim (`exactly_once`) whose lease ends with the invocation, so a
  delivery killed by its timeout never blocks the retries that follow it.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from typing import Any, Callable

from . import events, settings as settings_module, tracking
from .ledger import LEASE_MARGIN_SECONDS, Claim, Ledger
from .notify import publish

log = logging.getLogger("mlops_control")
if not log.handlers:
    logging.basicConfig(level=logging.INFO)
log.setLevel(logging.INFO)


class Busy(RuntimeError):
    """Another delivery of the same event is being handled right now; raise so Lambda retries later."""


def exactly_once(ledger: Ledger, claim_pk: str, sk: str, work: Callable[[], dict], *, busy: str,
                 duplicate: Callable[[Claim], dict], values: dict | None = None,
                 completion: Callable[[dict], dict] = lambda result: {"outcome": result.get("status")}) -> dict:
    """Run `work` once per event identity (EventBridge and S3 deliver at least once).

    The decisions `work` records are written with the claim's completion in one transaction, so a delivery
    that failed anywhere (or was killed) leaves no answer and its retry gives the only one. A later delivery
    gets `duplicate(claim)`; one arriving while another works on it raises Busy, and Lambda retries it."""
    claim = ledger.claim(claim_pk, sk, values=values)
    if not claim.acquired:
        if claim.status == "busy":
            raise Busy(busy)
        return duplicate(claim)
    depth = ledger.begin()
    try:
        result = work()
        outbox = ledger.complete(claim_pk, sk, completion(result))
    except BaseException as exc:  # a kill (BaseException) keeps the claim until its lease ends, like a real one
        ledger.abandon(depth)
        if isinstance(exc, Exception):
            try:
                ledger.release(claim, claim_pk, sk, f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the lease still ends with this invocation
                log.exception("could not release claim %s", claim_pk)
        raise
    send_outbox(ledger, outbox)
    return result


def send_outbox(ledger: Ledger, keys: list[str]) -> None:
    """Send committed notifications and start committed tracking jobs, each outbox item once (leased while it is
    sent, deleted after). A failure leaves the item for the next invocation; it never fails the work, which is
    committed already. Starting a tracking job twice starts one (its name is its identity)."""
    settings = settings_module.load()
    for key in keys:
        try:
            notices = ledger.take_outbox(key)
            if notices is None:
                continue
            try:
                for notice in notices:
                    track = tracking.from_outbox(notice)
                    if track is not None:
                        tracking.start(settings, track)
                    else:
                        publish(settings, notice["subject"], notice["message"], notice.get("details"))
            except Exception:
                ledger.unsent(key)
                raise
            ledger.sent(key)
        except Exception:  # noqa: BLE001 - kept in the outbox; the next invocation sends it
            log.exception("outbox item %s not sent yet", key)


def once_per_job(ledger: Ledger, job: str, status: str, work: Callable[[], dict]) -> dict:
    """`work` for the first delivery of a job's terminal state change; later deliveries are duplicates."""

    def duplicate(_: Claim) -> dict:
        ledger.record(f"job#{job}", "duplicate_skipped", f"completion of {job} ({status}) already handled",
                      job=job, ttl_days=30)
        return {"status": "duplicate"}

    return exactly_once(ledger, f"claim#job#{job}", "done", work, duplicate=duplicate,
                        busy=f"the completion of {job} is being handled by another delivery")


def ledger_for(settings: settings_module.Settings, context: Any = None) -> Ledger:
    """The invocation's ledger: its claims end with the invocation (Lambda's deadline + a margin)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    lease_until = time.time() + remaining() / 1000 + LEASE_MARGIN_SECONDS if callable(remaining) else None
    return Ledger(settings.ledger_table, lease_until=lease_until)


def run(name: str, event: Any, flow: Callable[[settings_module.Settings, Ledger, Any], dict], *,
        context: Any = None, raise_malformed: bool = False) -> dict:
    settings = settings_module.load()
    ledger = ledger_for(settings, context)
    try:
        # Notifications a dead invocation committed but never sent, whichever function it was.
        send_outbox(ledger, ledger.outbox())
    except Exception:  # noqa: BLE001 - they stay in the outbox for the next invocation
        log.exception("could not read the outbox")
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
    except Busy as exc:
        # Not an error, but the event leaves this delivery unanswered: say so, so that an event that then
        # exhausts its retries still has a record next to its dead letter.
        log.warning(json.dumps({"handler": name, "busy": str(exc)}))
        try:
            ledger.record(f"event#{name}", "busy", f"{exc}; this delivery is retried",
                          details={"event": events.summarise(event)}, ttl_days=30)
        except Exception:  # noqa: BLE001 - the retry and the DLQ still keep the event
            log.exception("could not record the busy delivery")
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
