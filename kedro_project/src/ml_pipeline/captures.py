"""SageMaker data-capture records: reading them, the captured requests parsed as `serve` parsed them, and the
export of captured requests for labeling.

    aws s3 sync s3://<artifacts>/datacapture/<endpoint>/ captures/
    python -m ml_pipeline.captures captures/ --model model.tar.gz --out to_label.csv

writes `inference_id,row,<feature columns...>,prediction`: one line per scored row (a request may hold several:
CSV lines, JSON instances; `row` is the 0-based position in its request). Label the rows, keep `inference_id`,
`row` and a column named like the target, and upload the file under `ground-truth/`.

A record (one JSON line): `captureData.endpointInput` / `endpointOutput` = {data, encoding (CSV|JSON|BASE64),
mode, observedContentType}; `eventMetadata` = {eventId, inferenceId (when the caller gave one), inferenceTime}.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ml_pipeline.serving.parsing import (NA_TOKENS, Columns, FeatureSchema, RequestError, media_type, parse_body,
                                         request_format)

FILE_KEY = "_file"  # added to every record read: the capture file it came from (relative to the capture root)
UNREADABLE_KEY = "_unreadable"  # a line that is not JSON: "<file>:<line number>"
ID, ROW, PREDICTION = "inference_id", "row", "prediction"
# What reading a captured request can raise: a record without the expected keys, a body that is not the declared
# encoding or content type, or one that `serve` would have answered with a 4xx.
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, binascii.Error, RequestError)


def read_capture_files(path: str | Path) -> list[dict]:
    """Every record of the JSON Lines files under `path` (any depth), in file order, each with its file's name."""
    root = Path(path)
    if not root.exists():
        return []
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*")
                                                 if p.is_file() and p.suffix in (".jsonl", ".json"))
    records: list[dict] = []
    for file in files:
        relative = file.name if file == root else file.relative_to(root).as_posix()
        # JSON Lines end at LF: U+2028/U+2029 inside a captured JSON string must not split a record.
        for number, line in enumerate(file.read_bytes().split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            if isinstance(record, dict):
                record[FILE_KEY] = relative
            else:
                record = {UNREADABLE_KEY: f"{relative}:{number}", FILE_KEY: relative}
            records.append(record)
    return records


def inference_id(record: dict) -> str | None:
    """The caller's InferenceId when it gave one, else the eventId SageMaker gives every captured request."""
    metadata = record.get("eventMetadata") or {}
    value = metadata.get("inferenceId") or metadata.get("eventId")
    return str(value) if value not in (None, "") else None


def _decoded(part: dict) -> bytes:
    data = part["data"]
    if str(part.get("encoding", "")).upper() == "BASE64":
        return base64.b64decode(data)
    return data.encode("utf-8")


def request_body(record: dict) -> tuple[bytes, str]:
    """The captured request body (BASE64 decoded) and its content type."""
    endpoint_input = record["captureData"]["endpointInput"]
    return _decoded(endpoint_input), str(endpoint_input.get("observedContentType") or "")


def parse_request(record: dict, schema: FeatureSchema) -> Columns:
    """The captured request's rows, parsed exactly as `serve` parsed them."""
    body, content_type = request_body(record)
    return parse_body(body, content_type, schema)


def predictions(record: dict) -> list:
    """The labels `serve` answered (endpointOutput): JSON {"predictions": [...]} or CSV lines `label[,p1,...]`."""
    endpoint_output = record["captureData"]["endpointOutput"]
    body = _decoded(endpoint_output)
    if "json" in media_type(endpoint_output.get("observedContentType")):
        document = json.loads(body)
        answer = document["predictions"] if isinstance(document, dict) else document
        return [item.get("label", item.get("prediction")) if isinstance(item, dict) else item for item in answer]
    return [row[0] for row in csv.reader(io.StringIO(body.decode("utf-8"), newline="")) if row]


def captured_rows(records: list[dict], schema: FeatureSchema) -> tuple[pd.DataFrame, dict]:
    """One row per scored row: `inference_id`, `row`, then the features in the model's order.

    A request whose id was already read is skipped (counted in `duplicate_captures`): an id names one request.
    """
    frames, seen = [], set()
    unreadable = duplicates = 0
    for record in records:
        identifier = inference_id(record) if UNREADABLE_KEY not in record else None
        try:
            if identifier is None:
                raise KeyError("eventMetadata has no inferenceId or eventId")
            parsed = parse_request(record, schema)
        except UNREADABLE:
            unreadable += 1
            continue
        if identifier in seen:
            duplicates += 1
            continue
        seen.add(identifier)
        frame = parsed.to_frame(schema)
        frame.insert(0, ROW, range(parsed.rows))
        frame.insert(0, ID, identifier)
        frames.append(frame)
    names = [ID, ROW, *schema.names]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({n: [] for n in names})
    rows[ROW] = rows[ROW].astype("int64")
    counts = {"records": len(records), "records_unreadable": unreadable, "duplicate_captures": duplicates,
              "captures": sorted({r[FILE_KEY] for r in records if FILE_KEY in r})}
    return rows, counts


# ---------------------------------------------------------------------------------------------------------
# the export for labeling
# ---------------------------------------------------------------------------------------------------------
def export_rows(records: list[dict], metadata: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """`inference_id,row,<features...>,prediction` for every captured row.

    With the model's metadata the request is parsed as `serve` parsed it (its feature columns, in its order);
    without, columns come from the request itself: JSON record keys or a CSV header (a CSV body with one line
    more than the answer has predictions starts with a header), else `column_1..N` by position.
    """
    schema = FeatureSchema.from_metadata(metadata) if metadata else None
    frames, unreadable = [], 0
    for record in records:
        identifier = inference_id(record) if UNREADABLE_KEY not in record else None
        try:
            if identifier is None:
                raise KeyError("eventMetadata has no inferenceId or eventId")
            try:
                answered = predictions(record)
            except UNREADABLE:
                answered = []
            frame = parse_request(record, schema).to_frame(schema) if schema else _generic_rows(record, len(answered))
        except UNREADABLE:
            unreadable += 1
            continue
        frame.insert(0, ROW, range(len(frame)))
        frame.insert(0, ID, identifier)
        frame[PREDICTION] = answered if len(answered) == len(frame) else [None] * len(frame)
        frames.append(frame)
    if frames:
        rows = pd.concat(frames, ignore_index=True)
        rows = rows[[ID, ROW, *[c for c in rows.columns if c not in (ID, ROW, PREDICTION)], PREDICTION]]
    else:
        rows = pd.DataFrame({n: [] for n in [ID, ROW, *(schema.names if schema else []), PREDICTION]})
    return rows, {"records": len(records), "records_unreadable": unreadable, "rows": len(rows)}


def _generic_rows(record: dict, answered: int) -> pd.DataFrame:
    body, content_type = request_body(record)
    kind = request_format(content_type)
    text = body.decode("utf-8").lstrip("\ufeff")
    if kind == "json":
        document = json.loads(text)
        instances = document.get("instances", [document]) if isinstance(document, dict) else document
        return _instances_frame(instances)
    if kind == "jsonlines":
        return _instances_frame([json.loads(line) for line in text.split("\n") if line.strip(" \t\r")])
    if kind == "csv":
        lines = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
        if not lines:
            raise ValueError("empty CSV body")
        header = lines[0] if answered and len(lines) == answered + 1 else None
        data = lines[1:] if header else lines
        names = [h.strip() for h in header] if header else [f"column_{i + 1}" for i in range(len(lines[0]))]
        return pd.DataFrame([[None if v in NA_TOKENS else v for v in row] for row in data], columns=names)
    raise ValueError(f"unsupported content type {media_type(content_type) or '(none)'}")


def _instances_frame(instances: Any) -> pd.DataFrame:
    if not isinstance(instances, list) or not instances:
        raise ValueError("no instances")
    if all(isinstance(i, dict) for i in instances):
        return pd.DataFrame.from_records(instances)
    if all(isinstance(i, list) for i in instances):
        width = max(len(i) for i in instances)
        return pd.DataFrame(instances, columns=[f"column_{i + 1}" for i in range(width)])
    raise ValueError("instances must all be records or all be lists")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml_pipeline.captures",
        description="Export captured endpoint requests for labeling: inference_id,row,<features...>,prediction.")
    parser.add_argument("capture_dir", help="data capture files (aws s3 sync s3://ARTIFACTS/datacapture/<endpoint>/ DIR)")
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    parser.add_argument("--model", help="the production model (model.tar.gz, model directory or metadata.json): "
                                        "columns named and parsed exactly as the endpoint parsed them")
    args = parser.parse_args(argv)
    if not Path(args.capture_dir).exists():
        parser.error(f"{args.capture_dir} does not exist")
    metadata = None
    if args.model:
        from ml_pipeline.datasets import read_model_metadata

        metadata = read_model_metadata(args.model)
        if metadata is None:
            parser.error(f"{args.model} holds no metadata.json")
    rows, counts = export_rows(read_capture_files(args.capture_dir), metadata)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out, index=False)
    else:
        rows.to_csv(sys.stdout, index=False)
    print(f"{counts['rows']} rows from {counts['records'] - counts['records_unreadable']} captured requests "
          f"({counts['records_unreadable']} unreadable) written to {args.out or 'standard output'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
