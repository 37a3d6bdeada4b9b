"""The SageMaker runtime API over HTTPS on localhost: ``POST /endpoints/<name>/invocations``.

Requests are forwarded to the ``serve`` process that currently backs the endpoint; the reply keeps the
container's status, body and content type, wrapped in the runtime API's own error shapes (a model's
4xx/5xx becomes ``ModelError``/424, an unknown endpoint ``ValidationError``/400). Each invocation is
reported to an observer (metrics to CloudWatch, data capture to S3: :mod:`local.endpoint_traffic`) the way
SageMaker does. The same server answers the embedded stack's control operations (``/_local/...``, loopback only,
with the control token: :mod:`local.control`). Named for InvokeEndpoint, the one operation it serves.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from .endpoint_traffic import Invocation, InvokeBackend, Route

log = logging.getLogger("local.invoke_server")

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's documented request limit
UPSTREAM_TIMEOUT_SECONDS = 60.0  # SageMaker's invocation timeout
CLIENT_TIMEOUT_SECONDS = 60.0  # a client silent this long mid-request (handshake, header or body) is dropped
# An over-limit body up to this size is read and dropped so that the client sees the 413; beyond it, or when the
# length is not a plain decimal, the connection is closed instead: nothing is ever read without a bound.
DRAIN_LIMIT_BYTES = 2 * MAX_PAYLOAD_BYTES
_DECIMAL = re.compile(r"[0-9]{1,19}")


ControlHandler = Callable[[str, str, bytes], tuple[int, Any]]


class _Upstreams(threading.local):
    def __init__(self) -> None:
        self.connections: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def request(self, route: Route, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        key = (route.host, route.port)
        for attempt in range(2):
            conn = self.connections.get(key)
            if conn is None:
                conn = http.client.HTTPConnection(route.host, route.port, timeout=UPSTREAM_TIMEOUT_SECONDS)
                self.connections[key] = conn
            try:
                conn.request("POST", "/invocations", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, data, resp.getheader("Content-Type", "application/octet-stream")
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self.connections.pop(key, None)
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


class _TlsHttpServer(ThreadingHTTPServer):
    """TLS handshakes happen in each connection's thread, so a slow or bad client never blocks accept()."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], ssl_context: Any,
                 client_timeout: float = CLIENT_TIMEOUT_SECONDS):
        super().__init__(address, handler)
        self.ssl_context = ssl_context
        self.client_timeout = client_timeout

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.client_timeout)  # bounds the handshake too, not only the request
        if self.ssl_context is not None:
            request = self.ssl_context.wrap_socket(request, server_side=True)
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)


class InvokeServer:
    """Threaded HTTPS server; ``backend`` decides where each endpoint's traffic goes."""

    def __init__(
        self,
        backend: InvokeBackend,
        ssl_context: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        account: str = "123456789012",
        region: str = "us-east-1",
        control: ControlHandler | None = None,
        control_token: str | None = None,
        client_timeout: float = CLIENT_TIMEOUT_SECONDS,
    ):
        self.backend = backend
        self.account = account
        self.region = region
        self.control = control
        self.control_token = control_token
        self._upstreams = _Upstreams()
        handler = self._handler_class()
        handler.timeout = client_timeout
        self.httpd = _TlsHttpServer((host, port), handler, ssl_context, client_timeout)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="runtime-https", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------------------------------
    def invoke(self, endpoint_name: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Handle one InvokeEndpoint call; returns (status, headers, body) for the client."""
        request_id = str(uuid.uuid4())
        base_headers = {"x-amzn-RequestId": request_id}
        if len(body) > MAX_PAYLOAD_BYTES:
            return self._error(413, "ValidationError",
                               f"Request payload size {len(body)} exceeds the maximum of {MAX_PAYLOAD_BYTES} bytes.",
                               base_headers)
        route = self.backend.route(endpoint_name)
        if route is None:
            return self._error(400, "ValidationError",
                               f"Endpoint {endpoint_name} of account {self.account} not found.", base_headers)
        content_type = headers.get("content-type", "application/octet-stream")
        accept = headers.get("accept", "*/*")
        upstream_headers = {"Content-Type": content_type, "Accept": accept}
        for name in ("x-amzn-sagemaker-custom-attributes",):
            if name in headers:
                upstream_headers["X-Amzn-SageMaker-Custom-Attributes"] = headers[name]
        started = time.perf_counter()
        try:
            status, data, response_type = self._upstreams.request(route, body, upstream_headers)
        except (OSError, http.client.HTTPException) as exc:
            elapsed = (time.perf_counter() - started) * 1e6
            self._observe(Invocation(endpoint_name, route.variant_name, body, content_type, accept, 0, b"",
                                     "", elapsed, 0.0))
            return self._error(503, "ServiceUnavailable",
                               f"The endpoint {endpoint_name} could not be reached: {exc}", base_headers)
        model_latency = (time.perf_counter() - started) * 1e6
        invocation = Invocation(endpoint_name, route.variant_name, body, content_type, accept, status, data,
                                response_type, model_latency, 0.0,
                                inference_id=headers.get("x-amzn-sagemaker-inference-id"))
        if 200 <= status < 300:
            invocation.overhead_latency_us = max(0.0, (time.perf_counter() - started) * 1e6 - model_latency)
            self._observe(invocation)
            out = {**base_headers, "Content-Type": response_type,
                   "x-Amzn-Invoked-Production-Variant": route.variant_name}
            return 200, out, data
        self._observe(invocation)
        original = data.decode("utf-8", "replace")
        kind = "client" if 400 <= status < 500 else "server"
        log_stream = (f"arn:aws:logs:{self.region}:{self.account}:log-group:/aws/sagemaker/Endpoints/"
                      f"{endpoint_name}")
        payload = {
            "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
            "LogStreamArn": log_stream,
            "Message": f"Received {kind} error ({status}) from primary with message \"{original}\". "
                       f"See {log_stream} in account {self.account} for more information.",
            "OriginalMessage": original,
            "OriginalStatusCode": status,
        }
        return self._error(424, "ModelError", payload["Message"], base_headers, payload)

    def _observe(self, invocation: Invocation) -> None:
        try:
            self.backend.observe(invocation)
        except Exception:  # observing must never fail a client's request
            log.exception("recording invocation metrics/capture failed")

    @staticmethod
    def _error(status: int, code: str, message: str, headers: dict[str, str],
               payload: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
        body = dict(payload or {})
        body.setdefault("message", message)
        body["__type"] = code
        out = {**headers, "Content-Type": "application/json", "x-amzn-ErrorType": f"{code}:"}
        return status, out, json.dumps(body).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "mlops-local-runtime"

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("%s " + fmt, self.address_string(), *args)

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes | None:
                """The request body, or None after answering a refusal (the connection then closes)."""
                if self.headers.get("Transfer-Encoding") is not None:
                    # Unread chunks would be parsed as the next request; InvokeEndpoint clients send a length.
                    self._refuse(411, "LengthRequired", "send the body with a Content-Length, not chunked")
                    return None
                lengths = {value.strip(" \t") for value in self.headers.get_all("Content-Length") or []}
                if not lengths:
                    return b""
                length = lengths.pop() if len(lengths) == 1 else ""
                if not _DECIMAL.fullmatch(length):
                    self._refuse(400, "ValidationError", "invalid Content-Length: send one plain decimal byte count")
                    return None
                n = int(length)
                if n > MAX_PAYLOAD_BYTES:
                    message = f"Request payload size {n} exceeds the maximum of {MAX_PAYLOAD_BYTES} bytes."
                    if n <= DRAIN_LIMIT_BYTES and self._drained(n):
                        self._send(*server._error(413, "ValidationError", message, {}))
                    else:
                        self._refuse(413, "ValidationError", message)
                    return None
                body = self.rfile.read(n)
                if len(body) < n:  # the client closed early: nothing to answer on this connection
                    self.close_connection = True
                    return None
                return body

            def _drained(self, n: int) -> bool:
                """Read and drop `n` bytes (keeps the connection usable); False if the client stopped sending."""
                remaining = n
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        return False
                    remaining -= len(chunk)
                return True

            def _refuse(self, status: int, code: str, message: str) -> None:
                """Answer and close: the rest of what the client sent cannot be told apart from a next request."""
                self.close_connection = True
                status, headers, body = server._error(status, code, message, {})
                self._send(status, {**headers, "Connection": "close"}, body)

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                path = urlsplit(self.path).path
                body = self._body()
                if body is None:
                    return
                if path.startswith("/_local/"):
                    self._control("POST", path, body)
                    return
                parts = path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
                    self._send(*server._error(404, "UnknownOperationException",
                                              f"no runtime operation at {path}", {}))
                    return
                if not self.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
                    self._send(*server._error(403, "MissingAuthenticationTokenException",
                                              "Missing Authentication Token (sign requests with SigV4)", {}))
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    reply = server.invoke(unquote(parts[1]), body, headers)
                except Exception:  # a bug here must cost one request, never the server
                    log.exception("invocation failed")
                    reply = server._error(500, "InternalFailure", "the local runtime failed; see its log", {})
                self._send(*reply)

            def do_GET(self) -> None:  # noqa: N802
                path = urlsplit(self.path).path
                if path.startswith("/_local/"):
                    self._control("GET", path, b"")
                    return
                if path == "/ping":
                    self._send(200, {"Content-Type": "application/json"}, b'{"status": "ok"}')
                    return
                self._send(*server._error(404, "UnknownOperationException", f"no runtime operation at {path}", {}))

            def _control(self, method: str, path: str, body: bytes) -> None:
                if server.control is None or self.headers.get("X-Local-Token") != server.control_token:
                    self._send(*server._error(403, "AccessDenied", "control API needs the token in .local/state.json", {}))
                    return
                try:
                    status, result = server.control(method, path, body)
                except Exception as exc:  # a control call's bug must not kill the server
                    log.exception("control call %s %s failed", method, path)
                    status, result = 500, {"error": str(exc)}
                self._send(status, {"Content-Type": "application/json"}, json.dumps(result, default=str).encode())

        return Handler
