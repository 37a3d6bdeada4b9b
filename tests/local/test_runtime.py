"""The HTTPS runtime proxy: SageMaker runtime API shapes over TLS with the local CA, through boto3."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config

from local.runtime import Route, RuntimeServer
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
    server = RuntimeServer(backend, tls.server_context(), control=lambda m, p, b: (calls.append(p) or (200, {"ok": True})),
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
