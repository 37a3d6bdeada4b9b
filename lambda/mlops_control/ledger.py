"""The decision ledger (DynamoDB, key schema pk/sk, TTL attribute expires_at).

Two kinds of items share the table:
- decision records (kind=decision): one per decision, never updated. pk is the subject
  (``file#s3://bucket/key``, ``job#<name>``, ``endpoint#<name>``, ``alarm#<name>``, ``event#<handler>``),
  sk is ``decision#<ISO time>#<random>``, so "what happened to my file?" is one Query on pk.
- state items (kind=state): small records that make the control plane idempotent and race-free, written
  only with conditional expressions (claims on event identities, the training slot, the endpoint slot,
  the retrain cooldown, the production model).

Work done under a claim is a unit: the decisions it records are written in one transaction with the claim's
completion, so a retried delivery (after any failed call, or a kill mid-way) never leaves a second answer, and
a failed one leaves none. Its notifications are committed with it too, as an outbox item (pk=outbox), sent after
the commit and deleted; one left behind by a delivery that died is sent by the next invocation of any function.
So a notification is never lost, and is sent twice only when a delivery dies between sending and deleting it.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from . import clients, keys

DECISION_PREFIX = "decision#"
OUTBOX = keys.OUTBOX
# A claim must outlive the invocation that holds it, and no longer: Lambda kills an invocation at its deadline,
# so a lease that ends just after it lets the retried delivery (≈ 1 and 3 minutes later) take the work over
# instead of finding it "busy" until a fixed lease runs out. Callers without a Lambda context (tests, tools)
# get the default function timeout.
LEASE_MARGIN_SECONDS = 10
DEFAULT_LEASE_SECONDS = 120 + LEASE_MARGIN_SECONDS


def now_iso(epoch: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if epoch is None else epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_attr(value: Any) -> dict:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        return {"S": repr(value)}  # DynamoDB numbers cannot be NaN/inf; keep the fact as text
    if isinstance(value, (int, float)):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attr(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attr(v) for v in value]}
    return {"S": str(value)}


def from_attr(attr: Mapping[str, Any]) -> Any:
    (kind, value), = attr.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attr(v) for k, v in value.items()}
    if kind == "L":
        return [from_attr(v) for v in value]
    return value


def to_item(values: Mapping[str, Any]) -> dict:
    return {k: to_attr(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any] | None) -> dict | None:
    return None if item is None else {k: from_attr(v) for k, v in item.items()}


@dataclass
class _Unit:
    records: list[dict] = field(default_factory=list)
    writes: list[dict] = field(default_factory=list)  # TransactWriteItems items
    notices: list[dict] = field(default_factory=list)  # {"subject", "message", "details"}: sent after the commit


@dataclass(frozen=True)
class Claim:
    """Outcome of claiming an event identity: acquired (do the work), done (a duplicate), busy (another
    delivery of the same event is working on it right now)."""
    status: str
    item: dict | None = None

    @property
    def acquired(self) -> bool:
        return self.status == "acquired"


class Ledger:
    def __init__(self, table: str, client: Any | None = None, *, lease_until: float | None = None):
        self.table = table
        self._client = client
        self._lease_until = lease_until
        # Open units of work, innermost last (a deploy verified inside a training completion nests one).
        self._units: list[_Unit] = []

    def lease_end(self, now: float | None = None) -> int:
        """When a claim taken now by this invocation stops protecting its work (epoch seconds)."""
        if self._lease_until is not None:
            return int(self._lease_until)
        return int((time.time() if now is None else now) + DEFAULT_LEASE_SECONDS)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = clients.get("dynamodb")
        return self._client

    # -- decision records -------------------------------------------------------------------------
    def record(self, subject: str, decision: str, reason: str, *, file: str | None = None, job: str | None = None,
               model: str | None = None, details: Mapping[str, Any] | None = None, ttl_days: int | None = None,
               at: float | None = None) -> dict:
        """Write one decision record: what (decision), why (reason), which file/job/model, when (at)."""
        moment = time.time() if at is None else at
        record = {
            "pk": subject,
            "sk": f"{DECISION_PREFIX}{now_iso(moment)}#{os.urandom(4).hex()}",
            "kind": "decision",
            "decision": decision,
            "reason": reason[:4000],
            "at": now_iso(moment),
            "file": file,
            "job": job,
            "model": model,
            "details": dict(details) if details else None,
            "expires_at": int(moment + ttl_days * 86400) if ttl_days else None,
        }
        if self._units:
            self._units[-1].records.append(record)
        else:
            self.client.put_item(TableName=self.table, Item=to_item(record))
        return record

    # -- units of work (claims) -------------------------------------------------------------------------
    def begin(self) -> int:
        """From here, decisions are held until `complete` writes them with the claim's completion. Returns the
        unit's depth, for `abandon`."""
        self._units.append(_Unit())
        return len(self._units) - 1

    def abandon(self, depth: int) -> None:
        """The unit failed (or its commit did): its decisions and notifications are dropped, and any unit opened
        inside it; the retried delivery makes its own."""
        del self._units[depth:]

    def stage_state(self, pk: str, sk: str, values: Mapping[str, Any]) -> None:
        """`put_state`, committed with the unit's decisions (at once outside a unit)."""
        if not self._units:
            self.put_state(pk, sk, values)
            return
        item = to_item({**values, "pk": pk, "sk": sk, "kind": "state"})
        self._units[-1].writes.append({"Put": {"TableName": self.table, "Item": item}})

    def stage_update(self, pk: str, sk: str, **update: Any) -> None:
        """`update` (conditions included), committed with the unit's decisions (at once outside a unit). If its
        condition fails at commit, nothing of the unit is written and the delivery fails, to be retried."""
        if not self._units:
            self.update(pk, sk, **update)
            return
        self._units[-1].writes.append({"Update": self._update_request(pk, sk, **update)})

    def notice(self, subject: str, message: str, details: Mapping[str, Any] | None = None) -> bool:
        """Queue a notification with the open unit of work (committed with it); False outside a unit, where the
        caller sends it at once."""
        return self.after_commit({"subject": subject, "message": message, "details": dict(details or {})})

    def after_commit(self, effect: Mapping[str, Any]) -> bool:
        """Queue an effect (a notification, a tracking request) in the open unit's outbox: done after the unit
        commits, retried by later invocations until done. False outside a unit, where the caller acts at once."""
        if not self._units:
            return False
        self._units[-1].notices.append(dict(effect))
        return True

    def decisions(self, subject: str) -> list[dict]:
        items, kwargs = [], {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :d)",
            "ExpressionAttributeValues": {":pk": {"S": subject}, ":d": {"S": DECISION_PREFIX}},
        }
        while True:
            page = self.client.query(**kwargs)
            items.extend(from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def scan_decisions(self) -> list[dict]:
        items, kwargs = [], {
            "TableName": self.table,
            "FilterExpression": "#k = :d",
            "ExpressionAttributeNames": {"#k": "kind"},
            "ExpressionAttributeValues": {":d": {"S": "decision"}},
        }
        while True:
            page = self.client.scan(**kwargs)
            items.extend(from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return sorted(items, key=lambda r: (r.get("at", ""), r.get("sk", "")))
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- state items --------------------------------------------------------------------------------
    def get(self, pk: str, sk: str) -> dict | None:
        response = self.client.get_item(TableName=self.table, Key=to_item({"pk": pk, "sk": sk}), ConsistentRead=True)
        return from_item(response.get("Item"))

    def put_state(self, pk: str, sk: str, values: Mapping[str, Any]) -> None:
        self.client.put_item(TableName=self.table, Item=to_item({**values, "pk": pk, "sk": sk, "kind": "state"}))

    def update(self, pk: str, sk: str, *, set_values: Mapping[str, Any] | None = None, remove: tuple[str, ...] = (),
               add: Mapping[str, int] | None = None, condition: str | None = None,
               condition_values: Mapping[str, Any] | None = None) -> dict | None:
        """Conditional UpdateItem; raises ClientError ConditionalCheckFailedException when it does not hold.
        Returns the item after the update."""
        kwargs = self._update_request(pk, sk, set_values=set_values, remove=remove, add=add, condition=condition,
                                      condition_values=condition_values)
        return from_item(self.client.update_item(**kwargs, ReturnValues="ALL_NEW").get("Attributes"))

    def _update_request(self, pk: str, sk: str, *, set_values: Mapping[str, Any] | None = None,
                        remove: tuple[str, ...] = (), add: Mapping[str, int] | None = None,
                        condition: str | None = None, condition_values: Mapping[str, Any] | None = None) -> dict:
        names: dict[str, str] = {"#kind": "kind"}
        values: dict[str, Any] = {":kind": {"S": "state"}}
        sets = ["#kind = :kind"]
        for i, (name, value) in enumerate((set_values or {}).items()):
            names[f"#s{i}"] = name
            values[f":s{i}"] = to_attr(value)
            sets.append(f"#s{i} = :s{i}")
        expression = "SET " + ", ".join(sets)
        if add:
            parts = []
            for i, (name, value) in enumerate(add.items()):
                names[f"#a{i}"] = name
                values[f":a{i}"] = to_attr(value)
                parts.append(f"#a{i} :a{i}")
            expression += " ADD " + ", ".join(parts)
        if remove:
            parts = []
            for i, name in enumerate(remove):
                names[f"#r{i}"] = name
                parts.append(f"#r{i}")
            expression += " REMOVE " + ", ".join(parts)
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": to_item({"pk": pk, "sk": sk}),
            "UpdateExpression": expression,
        }
        if condition:
            # Condition placeholders are written as #name / :value by callers; attribute names are
            # plain identifiers in this module, so map each #x to x.
            for token in _placeholders(condition, "#"):
                names.setdefault(token, token[1:])
            for key, value in (condition_values or {}).items():
                values[key] = to_attr(value)
            kwargs["ConditionExpression"] = condition
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = values
        return kwargs

    # -- claims (idempotency) ---------------------------------------------------------------------
    def claim(self, pk: str, sk: str, *, values: Mapping[str, Any] | None = None, now: float | None = None) -> Claim:
        """Claim the work for one event identity. Exactly one concurrent caller gets 'acquired'; a caller whose
        predecessor failed (released, or its lease ran out because the Lambda died) can take it over."""
        moment = time.time() if now is None else now
        try:
            item = self.update(
                pk, sk,
                set_values={**(values or {}), "state": "working", "lease_until": self.lease_end(moment),
                            "claimed_at": now_iso(moment)},
                add={"attempts": 1},
                condition="attribute_not_exists(#pk) OR (#state <> :done AND #lease_until < :now)",
                condition_values={":done": "done", ":now": int(moment)},
            )
            return Claim("acquired", item)
        except Exception as exc:  # noqa: BLE001 - only the conditional failure is an expected outcome
            if not clients.is_conditional_failure(exc):
                raise
        item = self.get(pk, sk)
        return Claim("done" if item and item.get("state") == "done" else "busy", item)

    def complete(self, pk: str, sk: str, values: Mapping[str, Any] | None = None) -> list[dict]:
        """Mark the claim done; with an open unit of work, in one transaction with the unit's decisions and
        state writes. Returns the unit's notifications, now in the claim's outbox, for the caller to send."""
        unit = self._units.pop() if self._units else _Unit()
        staged, writes = unit.records, unit.writes
        update = self._update_request(pk, sk, set_values={**(values or {}), "state": "done", "completed_at": now_iso()})
        outbox_key = hashlib.sha256(f"{pk}\x1f{sk}".encode()).hexdigest()  # a claim key can outgrow a sort key
        if unit.notices:
            writes = [*writes, {"Put": {"TableName": self.table, "Item": to_item({
                "pk": OUTBOX, "sk": outbox_key, "claim": pk, "kind": "state", "notices": unit.notices})}}]
        if not staged and not writes:
            self.client.update_item(**update)
        else:
            # 100 items per transaction; a unit writes a handful.
            self.client.transact_write_items(TransactItems=[{"Update": update}, *writes, *(
                {"Put": {"TableName": self.table, "Item": to_item(record)}} for record in staged)])
        return [outbox_key] if unit.notices else []

    # -- outbox (notifications committed with their decisions) ------------------------------------------------
    def outbox(self) -> list[str]:
        """Keys of the notifications committed but not yet sent."""
        page = self.client.query(TableName=self.table, KeyConditionExpression="pk = :o",
                                 ExpressionAttributeValues={":o": {"S": OUTBOX}}, ProjectionExpression="sk",
                                 ConsistentRead=True)
        return [i["sk"]["S"] for i in page.get("Items", [])]

    def take_outbox(self, key: str, now: float | None = None) -> list[dict] | None:
        """Lease one outbox item for sending (None: gone, or another invocation is sending it)."""
        moment = time.time() if now is None else now
        try:
            item = self.update(OUTBOX, key, set_values={"sending_until": self.lease_end(moment)},
                               condition="attribute_exists(#notices) AND (attribute_not_exists(#sending_until) "
                                         "OR #sending_until < :now)", condition_values={":now": int(moment)})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise
            return None
        return list((item or {}).get("notices") or [])

    def unsent(self, key: str) -> None:
        """Sending failed: let the next invocation try at once rather than after this one's lease."""
        self.update(OUTBOX, key, set_values={"sending_until": 0}, condition="attribute_exists(#notices)")

    def sent(self, key: str) -> None:
        self.client.delete_item(TableName=self.table, Key=to_item({"pk": OUTBOX, "sk": key}))

    def release(self, claim: Claim, pk: str, sk: str, error: str) -> None:
        """Give a claim back after a failure so that the retried event can take it over at once; a no-op when
        another delivery has taken it over meanwhile (its lease is then not ours to end)."""
        try:
            self.update(pk, sk, set_values={"state": "failed", "lease_until": 0, "last_error": error[:1000]},
                        condition="#state = :working AND #claimed_at = :mine",
                        condition_values={":working": "working", ":mine": (claim.item or {}).get("claimed_at", "")})
        except Exception as exc:  # noqa: BLE001
            if not clients.is_conditional_failure(exc):
                raise


def _placeholders(expression: str, sigil: str) -> set[str]:
    tokens, current = set(), ""
    for char in expression + " ":
        if current:
            if char.isalnum() or char == "_":
                current += char
                continue
            tokens.add(current)
            current = ""
        if char == sigil:
            current = sigil
    return tokens
