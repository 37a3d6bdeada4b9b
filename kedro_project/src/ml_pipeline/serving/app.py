"""A minimal ASGI app for the SageMaker serving contract: GET /ping, POST /invocations.

Deliberately framework-free: per request it only parses the body, predicts and writes bytes.

Content types in (parsing.REQUEST_FORMATS): text/csv (header optional), application/json ({"instances": [...]},
a list of records or lists, or one record), application/jsonlines. Out (Accept, with q-values;
parsing.ANSWER_TYPES): application/json or text/csv; */* or no Accept answers in the request's format.
Probabilities: header `X-Amzn-SageMaker-Custom-Attributes: probabilities=true` (passes through InvokeEndpoint's
CustomAttributes) or query `?probabilities=true`; `explain=true` likewise adds each row's SHAP contributions per input
column (serving/explanations.py; JSON answers only, at most SERVE_EXPLAIN_MAX_ROWS rows, on the compute thread).
A body larger than INLINE_MAX_BYTES is parsed and predicted on the worker's compute thread, so that /ping and
small requests keep being answered meanwhile; smaller ones are done inline, which is faster for them.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any
from urllib.parse import parse_qs

import orjson

from ml_pipeline.allocator import keep_freed_memory
from ml_pipeline.paths import model_dir
from ml_pipeline.serving import timeouts
from ml_pipeline.serving.cores import CoreShare
from ml_pipeline.serving.integrity import InvalidModelDirectory, model_digest
from ml_pipeline.serving.parsing import ANSWER_TYPES, CSV, JSON, RequestError, answer_type, parse_body, request_format
from ml_pipeline.serving.predictor import CompiledModel, Prediction

log = logging.getLogger("uvicorn.error")  # configured by uvicorn in every worker
MAX_BODY_BYTES = int(os.environ.get("SERVE_MAX_BODY_BYTES", 6 * 1024 * 1024))  # SageMaker's payload limit
BODY_TIMEOUT_SECONDS = timeouts.seconds(os.environ, timeouts.BODY_VARIABLE)
# A few hundred CSV rows, a few ms of work: a smaller body is done on the event loop, where it is fastest; a larger
# one on the compute thread, so that it cannot hold /ping and the small requests up.
INLINE_MAX_BYTES = 64 * 1024
PIN_VARIABLE = "MODEL_SHA256"
_body_deadlines = timeouts.Deadlines()

_JSON_HEADERS = [(b"content-type", JSON.encode())]
_CSV_HEADERS = [(b"content-type", CSV.encode())]


class _State:
    model: CompiledModel | None = None
    error: str | None = None
    cores: CoreShare | None = None
    explainer: Any = None  # serving/explanations.RequestExplainer of `model`, made by the first request that asks


state = _State()


def load_model() -> None:
    """Load the model once per worker, before the worker accepts connections (never one MODEL_SHA256 refuses)."""
    directory = model_dir()
    started = time.perf_counter()
    refusal = _pin_refusal(directory)
    if refusal is not None:  # nothing in the directory is unpickled: /ping answers 503 with the reason
        state.model = None
        state.error = refusal
        log.error(refusal)
        return
    try:
        state.model = CompiledModel.load(directory)
        state.error = None
        log.info("model loaded from %s in %.2f s (fast path: %s)", directory, time.perf_counter() - started,
                 state.model.fast_path)
    except Exception as exc:  # the server stays up and /ping says why (SageMaker logs it)
        state.model = None
        state.error = f"model could not be loaded from {directory}: {type(exc).__name__}: {exc}"
        log.error(state.error)
        return
    if state.cores is None:
        state.cores = CoreShare.from_environment(dict(os.environ))
    keep_freed_memory()
    # The imports and the model are ≈ 260k objects that live as long as the worker. Left to the collector, each
    # full collection walks them all: ≈ 5 µs a request on average, a quarter of a one-row request (bench/findings.md).
    gc.freeze()


def _pin_refusal(directory) -> str | None:
    """Why the model directory must not be loaded, or None: its digest must equal MODEL_SHA256 when that is set."""
    expected = os.environ.get(PIN_VARIABLE, "").strip()
    if not expected:
        log.info("%s is not set: the model in %s is loaded without checking its digest (not pinned)",
                 PIN_VARIABLE, directory)
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", expected):
        return f"{PIN_VARIABLE} is not a sha256 hex digest ({expected[:80]!r}): refusing to load"
    expected = expected.lower()
    try:
        actual = model_digest(directory)
    except (InvalidModelDirectory, OSError) as exc:
        return (f"model directory digest could not be computed ({exc}), so it does not match {PIN_VARIABLE} "
                f"{expected}: refusing to load")
    if actual != expected:
        return f"model directory digest {actual} does not match {PIN_VARIABLE} {expected}: refusing to load"
    log.info("model directory digest matches %s (%s)", PIN_VARIABLE, actual)
    return None


async def app(scope, receive, send) -> None:
    if scope["type"] == "http":
        await _http(scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            load_model()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send, status: int, body: bytes, headers: list) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send, status: int, message: str, close: bool = False) -> None:
    headers = [*_JSON_HEADERS, (b"connection", b"close")] if close else _JSON_HEADERS
    await _respond(send, status, orjson.dumps({"error": message}), headers)


async def _http(scope, receive, send) -> None:
    path, method = scope["path"], scope["method"]
    if path == "/invocations":
        if method != "POST":
            await _error(send, 405, "use POST /invocations")
            return
        try:
            status, body, headers = await _invocations(scope, receive)
        except RequestError as exc:
            await _error(send, exc.status, exc.message, exc.close)
            return
        except Exception as exc:  # a bug, not the client's fault
            log.exception("invocation failed")
            await _error(send, 500, f"internal error: {type(exc).__name__}")
            return
        await _respond(send, status, body, headers)
    elif path == "/ping":
        if state.model is not None:
            await _respond(send, 200, b'{"status":"ok"}', _JSON_HEADERS)
        else:
            await _error(send, 503, state.error or "model not loaded yet")
    elif path == "/execution-parameters" and method == "GET":
        # Batch transform asks for this; it must never be larger than what /invocations accepts.
        await _respond(send, 200, orjson.dumps({"MaxConcurrentTransforms": 1, "BatchStrategy": "MULTI_RECORD",
                                                "MaxPayloadInMB": MAX_BODY_BYTES // (1024 * 1024)}), _JSON_HEADERS)
    else:
        await _error(send, 404, f"no route {method} {path}: use GET /ping or POST /invocations")


def _header(scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _read_body(scope, receive) -> bytes:
    length = _header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise RequestError(413, f"body of {int(length)} bytes is over the {MAX_BODY_BYTES} byte limit: "
                                "split the batch")
    chunks, size = [], 0
    task = asyncio.current_task()
    _body_deadlines.watch(task, BODY_TIMEOUT_SECONDS)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestError(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise RequestError(413, f"body is over the {MAX_BODY_BYTES} byte limit: split the batch")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except asyncio.CancelledError:
        if not _body_deadlines.expired(task):
            raise
        raise RequestError(408, f"the request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s "
                                f"({size} bytes received): send the whole body without pauses", close=True) from None
    finally:
        _body_deadlines.forget(task)


_YES = ("true", "1", "yes")


def _requested(scope) -> set[str]:
    """The flags a request turned on: CustomAttributes `name=true` pairs, or the query string's."""
    flags = set()
    attributes = _header(scope, b"x-amzn-sagemaker-custom-attributes")
    if attributes:
        for item in attributes.replace(";", ",").split(","):
            key, _, value = item.partition("=")
            if value.strip().lower() in _YES:
                flags.add(key.strip().lower())
    query = scope.get("query_string") or b""
    if query:
        flags.update(k.lower() for k, values in parse_qs(query.decode("latin-1")).items()
                     if any(v.lower() in _YES for v in values))
    return flags


def _output_type(accept: str | None, content_type: str) -> str:
    """The answer's media type: the acceptable offer with the highest q (RFC 9110); a tie keeps Accept's order."""
    requested = answer_type(content_type)
    if not accept or not accept.strip():
        return requested
    if accept in ANSWER_TYPES:  # what clients send almost always: no parsing
        return accept
    ranges = _media_ranges(accept)
    best, best_key = None, None
    for offer in ANSWER_TYPES:
        match = _most_specific_range(ranges, offer)
        if match is None or match[1] <= 0:  # not listed, or q=0: "not acceptable"
            continue
        position, q = match
        key = (q, -position, offer == requested)  # */* matches both offers at one position: the request's format
        if best_key is None or key > best_key:
            best, best_key = offer, key
    if best is None:
        shown = accept if len(accept) <= 200 else accept[:200] + "…"
        raise RequestError(406, f"cannot answer in {shown}: accept {' or '.join(ANSWER_TYPES)}")
    return best


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """(media range, q) per Accept element, in order; an element with an unreadable q is left out."""
    ranges = []
    for element in accept.split(","):
        kind, *parameters = element.split(";")
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        kind = kind.strip().lower()
        if kind and 0.0 <= q <= 1.0:
            ranges.append((kind, q))
    return ranges


def _most_specific_range(ranges: list[tuple[str, float]], offer: str) -> tuple[int, float] | None:
    """(position, q) of the range that matches `offer` most specifically (type/subtype > type/* > */*)."""
    wildcard = offer.split("/", 1)[0] + "/*"
    found, found_rank = None, -1
    for position, (kind, q) in enumerate(ranges):
        rank = 2 if kind == offer else 1 if kind == wildcard else 0 if kind == "*/*" else -1
        if rank > found_rank:
            found, found_rank = (position, q), rank
    return found


async def _invocations(scope, receive) -> tuple[int, bytes, list]:
    model = state.model
    if model is None:
        raise RequestError(503, state.error or "model not loaded yet")
    content_type = _header(scope, b"content-type") or ""
    if request_format(content_type) is None:
        # Before reading the body: a wrong type is answered without buffering megabytes.
        parse_body(b"", content_type, model.schema)
    flags = _requested(scope)
    probabilities = "probabilities" in flags
    if "explain" in flags:
        output = _output_type(_header(scope, b"accept"), JSON)
        if output != JSON:
            raise RequestError(406, f"explanations are answered in {JSON} only: accept it, or ask without explain=true")
        body = await _read_body(scope, receive)
        return await asyncio.get_running_loop().run_in_executor(_compute_thread(), _compute_explained, model, body,
                                                                content_type, probabilities)
    output = _output_type(_header(scope, b"accept"), content_type)
    body = await _read_body(scope, receive)
    if len(body) <= INLINE_MAX_BYTES:
        return _compute(model, body, content_type, probabilities, output)
    return await asyncio.get_running_loop().run_in_executor(_compute_thread(), _compute, model, body, content_type,
                                                            probabilities, output)


_compute_pool: ThreadPoolExecutor | None = None


def _compute_thread() -> ThreadPoolExecutor:
    """One thread per worker: large requests take turns on it, as they did on the event loop, without blocking it."""
    global _compute_pool
    if _compute_pool is None:
        _compute_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-compute")
    return _compute_pool


def _compute(model: CompiledModel, body: bytes, content_type: str, probabilities: bool,
             output: str) -> tuple[int, bytes, list]:
    """Parse, predict and render, marked as computing for the workers that lend cores (serving/cores.py)."""
    cores = state.cores
    with cores.computing() if cores is not None else nullcontext():
        parsed = parse_body(body, content_type, model.schema)
        prediction = model.predict(parsed, probabilities=probabilities,
                                   threads=cores.threads if cores is not None else None)
        if output == CSV:
            return 200, render_csv(prediction), _CSV_HEADERS
        return 200, render_json(prediction), _JSON_HEADERS


def _compute_explained(model: CompiledModel, body: bytes, content_type: str,
                       probabilities: bool) -> tuple[int, bytes, list]:
    from ml_pipeline.serving.explanations import RequestExplainer

    cores = state.cores
    with cores.computing() if cores is not None else nullcontext():
        parsed = parse_body(body, content_type, model.schema)
        RequestExplainer.admit(parsed)
        explainer = state.explainer
        if explainer is None or explainer.model is not model:
            explainer = state.explainer = RequestExplainer(model)
        prediction = model.predict(parsed, probabilities=probabilities)
        return 200, render_json(prediction, explainer.explain(parsed, prediction.labels)), _JSON_HEADERS


def render_json(prediction: Prediction, explanations: list[dict] | None = None) -> bytes:
    document: dict = {"predictions": prediction.labels}
    if prediction.probabilities is not None:
        document["classes"] = prediction.classes
        document["probabilities"] = prediction.probabilities
    if explanations is not None:
        document["explanations"] = explanations
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def render_csv(prediction: Prediction) -> bytes:
    if prediction.probabilities is None:
        if len(prediction.labels) == 1:
            return (_csv_value(prediction.labels[0]) + "\n").encode()
        if prediction.classes is not None:
            return ("\n".join(_escaped_labels(prediction)) + "\n").encode()
        return ("\n".join(_csv_value(v) for v in prediction.labels) + "\n").encode()
    lines = [",".join([_csv_value(label), *(repr(float(p)) for p in row)])
             for label, row in zip(prediction.labels, prediction.probabilities, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def _escaped_labels(prediction: Prediction) -> list[str]:
    """Class labels come from a handful of classes: escape each class once, not once per row."""
    # Keyed by type too, so that e.g. 1 and True (equal as dict keys) keep their own text.
    escaped = {(type(c), c): _csv_value(c) for c in prediction.classes}
    return [escaped.get((type(v), v)) or _csv_value(v) for v in prediction.labels]


def _csv_value(value) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    if "," in text or '"' in text or "\n" in text:
        return '"' + text.replace('"', '""') + '"'
    return text
