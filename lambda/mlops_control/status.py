"""`make status`: print the decision ledger readably, against AWS or the local moto endpoint.

    PYTHONPATH=lambda python -m mlops_control.status [--table NAME] [--file S3URI|KEY] [--limit N] [--json]

The table comes from --table, else LEDGER_TABLE. botocore honours AWS_ENDPOINT_URL (local stack) and
AWS_PROFILE/AWS_REGION (a real account).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, TextIO

from . import keys
from .ledger import Ledger

_STATE = keys.TRAINING, keys.DEPLOYMENT, keys.PRODUCTION, keys.RETRAIN


def _subject_label(pk: str) -> str:
    kind, _, rest = pk.partition("#")
    return rest if kind in ("file", "job", "endpoint", "alarm", "monitor") else pk


def format_decisions(records: Iterable[dict]) -> list[str]:
    lines = []
    for r in records:
        when = str(r.get("at", ""))[:19].replace("T", " ")
        what = str(r.get("decision", "?"))
        which = r.get("file") or r.get("job") or _subject_label(str(r.get("pk", "")))
        extra = []
        if r.get("job") and r.get("job") != which:
            extra.append(f"job={r['job']}")
        if r.get("model"):
            # model package ARNs end in <group>/<version>: that pair is what people recognise
            extra.append("model=" + "/".join(str(r["model"]).split("/")[-2:]))
        lines.append(f"{when}  {what:<26} {which}")
        lines.append(f"{'':21}{'':<26} why: {r.get('reason', '')}" + (f"  ({', '.join(extra)})" if extra else ""))
    return lines


def render(ledger: Ledger, *, file: str | None = None, limit: int | None = None, out: TextIO = sys.stdout) -> int:
    records = ledger.scan_decisions()
    if file:
        records = [r for r in records if file in str(r.get("file") or "") or file in str(r.get("pk") or "")]
    if limit:
        records = records[-limit:]
    out.write(f"Decision ledger {ledger.table}: {len(records)} record(s)\n\n")
    for line in format_decisions(records):
        out.write(line + "\n")
    state = {f"{pk}/{sk}": ledger.get(pk, sk) for pk, sk in _STATE}
    out.write("\nState:\n")
    production = state.get("pipeline/production") or {}
    training = state.get("pipeline/training") or {}
    endpoint = state.get("pipeline/endpoint") or {}
    out.write(f"  production model : {production.get('training_job') or 'none'}"
              + (f" (config {production.get('config_name')}, since {production.get('deployed_at')}, "
                 f"metrics {json.dumps(production.get('metrics') or {}, sort_keys=True)})" if production else "") + "\n")
    out.write(f"  training         : {training.get('running_job') or 'idle'}"
              + (f", follow-up pending ({training.get('pending_count', 0)} request(s))" if training.get("pending") else "") + "\n")
    out.write(f"  deployment       : {endpoint.get('inflight_config') or 'none in flight'}"
              + (f", waiting: {endpoint['pending_job']}" if endpoint.get("pending_job") else "") + "\n")
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlops_control.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", default=os.environ.get("LEDGER_TABLE"), help="ledger table (default: $LEDGER_TABLE)")
    parser.add_argument("--file", help="only records about this file (S3 URI or part of the key)")
    parser.add_argument("--limit", type=int, help="only the newest N records")
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("no ledger table: pass --table or set LEDGER_TABLE (the stack output LedgerTableName)")
    ledger = Ledger(args.table)
    try:
        if args.json:
            records = ledger.scan_decisions()
            for r in records[-args.limit:] if args.limit else records:
                print(json.dumps(r, default=str, sort_keys=True))
            return 0
        render(ledger, file=args.file, limit=args.limit)
    except Exception as exc:  # noqa: BLE001 - a CLI answers with one readable line, not a traceback
        from .clients import error_code
        print(f"error: cannot read ledger {args.table}: {error_code(exc) or type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
