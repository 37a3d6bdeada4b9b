"""The invoke server (local.invoke_server): SageMaker runtime API shapes over TLS with the local CA, through boto3."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config

from local.endpoint_traffic import Route
from local.invoke_server import InvokeServer
from local.tls import ensure_certificates


class FakeModel(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if body == b"bad":
            status, payload, ctype = 400, b'{"error": "missing column age"}', "application/json"
        elif body == b"boom":
            status, payload, ctype = 500, b"internal", "text/plain"
        else:
            status, payload, ctype = 200, b"yes\n" * body.count(b"\n"), "text/csv"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Backend:
    def __init__(self, port):
        self.port = port
        self.seen = []

    def route(self, name):
        return Route(name, "AllTraffic", "127.0.0.1", self.port) if name == "ep" else None

    def observe(self, invocation):
        self.seen.append(invocation)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    model = ThreadingHTTPServer(("127.0.0.1", 0), FakeModel)
    threading.Thread(target=model.serve_forever, daemon=True).start()
    tls = ensure_certificates(tmp_path_factory.mktemp("tls"))
    backend = Backend(model.server_address[1])
    calls = []
    server = InvokeServer(backend, tls.server_context(), control=lambda m, p, b: (calls.append(p) or (200, {"ok": True})),
                           control_token="secret")
    server.start()
    client = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1").client(
        "sagemaker-runtime", endpoint_url=f"https://localhost:{server.port}", verify=str(tls.ca_cert),
        config=Config(retries={"max_attempts": 1}))
    yield client, backend, server, tls, calls
    server.stop()
    model.shutdown()


def test_invoke_endpoint_over_https_with_the_local_ca(proxy):
    client, backend, *_ = proxy
    response = client.invoke_endpoint(EndpointName="ep", ContentType="text/csv", Accept="text/csv", Body=b"1,2\n3,4\n")
    assert response["Body"].read() == b"yes\nyes\n"
    assert response["ContentType"] == "text/csv"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    seen = backend.seen[-1]
    assert seen.status == 200 and seen.request_body == b"1,2\n3,4\n" and seen.model_latency_us > 0


def test_unknown_endpoint_is_a_validation_error(proxy):
    client, *_ = proxy
    with pytest.raises(client.exceptions.ClientError) as err:
        client.invoke_endpoint(EndpointName="nope", ContentType="text/csv", Body=b"1\n")
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert "nope" in err.value.response["Error"]["Message"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_model_errors_become_model_error_with_the_original_status(proxy):
    client, backend, *_ = proxy
    with pytest.raises(client.exceptions.ModelError) as err:
        client.invoke_endpoint(EndpointName="ep", ContentType="text/csv", Body=b"bad")
    assert err.value.response["OriginalStatusCode"] == 400
    assert "missing column age" in err.value.response["OriginalMessage"]
    assert backend.seen[-1].status == 400
    with pytest.raises(client.exceptions.ModelError) as err:
        client.invoke_endpoint(EndpointName="ep", ContentType="text/csv", Body=b"boom")
    assert err.value.response["OriginalStatusCode"] == 500


def test_the_certificate_is_refused_without_the_local_ca(proxy):
    _, _, server, _, _ = proxy
    import ssl
    import urllib.request

    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(f"https://localhost:{server.port}/ping", context=ssl.create_default_context(), timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_unsigned_requests_and_control_without_token_are_refused(proxy):
    _, _, server, tls, calls = proxy
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    req = urllib.request.Request(f"https://localhost:{server.port}/endpoints/ep/invocations", data=b"1\n",
                                 headers={"Content-Type": "text/csv"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=ctx, timeout=5)
    assert err.value.code == 403
    req = urllib.request.Request(f"https://localhost:{server.port}/_local/state")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, context=ctx, timeout=5)
    assert err.value.code == 403 and calls == []
    req = urllib.request.Request(f"https://localhost:{server.port}/_local/state", headers={"X-Local-Token": "secret"})
    assert json.loads(urllib.request.urlopen(req, context=ctx, timeout=5).read()) == {"ok": True}


# --- Content-Length is read strictly: never an unbounded read, never a desynchronised connection ----------------

def _raw_exchange(server, tls, head: bytes, body: bytes = b"") -> bytes:
    """Send `head` + `body` over TLS and keep sending nothing: what comes back until the server closes."""
    import socket
    import ssl

    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    # Only a server that waits forever (reads without limit, or keeps the connection) reaches this guard.
    with socket.create_connection(("localhost", server.port), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as connection:
            connection.sendall(head + body)
            received = b""
            while True:
                try:
                    chunk = connection.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    return received
                if not chunk:
                    return received
                received += chunk


def _invocation_head(content_length: str, extra: str = "") -> bytes:
    return (f"POST /endpoints/ep/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
            f"Authorization: AWS4-HMAC-SHA256 Credential=x\r\nContent-Length: {content_length}\r\n{extra}\r\n").encode()


@pytest.mark.parametrize("content_length", ["-1", "+5", "0x10", "5_0", "5 5", "1e3", "", "\u0665"])
def test_a_content_length_that_is_not_a_plain_decimal_is_a_400_and_the_connection_closes(proxy, content_length):
    _, backend, server, tls, _ = proxy
    seen = len(backend.seen)
    # No body follows: a server that keeps the connection (or reads "until the end") waits for the guard.
    answer = _raw_exchange(server, tls, _invocation_head(content_length))
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Content-Length" in answer
    assert len(backend.seen) == seen  # nothing reached the model


def test_two_different_content_lengths_are_a_400(proxy):
    _, backend, server, tls, _ = proxy
    seen = len(backend.seen)
    answer = _raw_exchange(server, tls, _invocation_head("5", extra="Content-Length: 6\r\n"), b"1,2\n\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and len(backend.seen) == seen


def test_a_body_claimed_far_over_the_limit_is_a_413_without_reading_it(proxy):
    _, _, server, tls, _ = proxy
    answer = _raw_exchange(server, tls, _invocation_head(str(10**18)), b"1,2\n")
    assert answer.startswith(b"HTTP/1.1 413 ") and b"exceeds the maximum" in answer


def test_a_chunked_body_is_refused_rather_than_read_as_the_next_request(proxy):
    _, backend, server, tls, _ = proxy
    head = (b"POST /endpoints/ep/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
            b"Authorization: AWS4-HMAC-SHA256 Credential=x\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = _raw_exchange(server, tls, head, b"4\r\n1,2\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and answer.count(b"HTTP/1.1") == 1


def test_a_client_that_stops_mid_request_is_disconnected(tmp_path_factory):
    tls = ensure_certificates(tmp_path_factory.mktemp("tls-timeout"))
    server = InvokeServer(Backend(1), tls.server_context(), client_timeout=0.5)
    server.start()
    try:
        answer = _raw_exchange(server, tls, b"POST /endpoints/ep/invocations HTTP/1.1\r\nHost: loc")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408 ")
    finally:
        server.stop()


def test_an_ordinary_content_length_still_works_over_a_raw_connection(proxy):
    _, backend, server, tls, _ = proxy
    head = _invocation_head("4", extra="Connection: close\r\n")
    answer = _raw_exchange(server, tls, head, b"1,2\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"yes\n")
    assert backend.seen[-1].request_body == b"1,2\n"
