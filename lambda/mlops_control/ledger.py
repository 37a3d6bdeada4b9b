"""The decision ledger (DynamoDB, key schema pk/sk, TTL attribute expires_at).

Two kinds of items share the table:
- decision records (kind=decision): one per decision, never updated. pk is the subject
  (``file#s3://bucket/key``, ``job#<name>``, ``endpoint#<name>``, ``alarm#<name>``, ``event#<handler>``),
  sk is ``decision#<ISO time>#<random>``, so "what happened to my file?" is one Query on pk.
- state items (kind=state): small records that make the control plane idempotent and race-free, written
  only with conditional expressions (claims on event identities, the training slot, the endpoint slot,
  the retrain cooldown, the production model).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from . import clients

DECISION_PREFIX = "decision#"


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
    def __init__(self, table: str, client: Any | None = None):
        self.table = table
        self._client = client

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
        self.client.put_item(TableName=self.table, Item=to_item(record))
        return record

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
            "ReturnValues": "ALL_NEW",
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
        return from_item(self.client.update_item(**kwargs).get("Attributes"))

    # -- claims (idempotency) ---------------------------------------------------------------------
    def claim(self, pk: str, sk: str, *, lease_seconds: int = 900, values: Mapping[str, Any] | None = None,
              now: float | None = None) -> Claim:
        """Claim the work for one event identity. Exactly one concurrent caller gets 'acquired'; a caller whose
        predecessor failed (released, or its lease ran out because the Lambda died) can take it over."""
        moment = time.time() if now is None else now
        try:
            item = self.update(
                pk, sk,
                set_values={**(values or {}), "state": "working", "lease_until": int(moment + lease_seconds),
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

    def complete(self, pk: str, sk: str, values: Mapping[str, Any] | None = None) -> None:
        self.update(pk, sk, set_values={**(values or {}), "state": "done", "completed_at": now_iso()})

    def release(self, pk: str, sk: str, error: str) -> None:
        """Give a claim back after a failure so that the retried event can take it over at once."""
        self.update(pk, sk, set_values={"state": "failed", "lease_until": 0, "last_error": error[:1000]})


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
