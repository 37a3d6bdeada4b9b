"""A client that stops sending mid-request loses its connection: `serve` over raw sockets on 127.0.0.1.

Timeouts are set to one second here; the assertions are about the connection being closed (and what was
answered), never about how long it took. A server that never closes makes the socket's own timeout fail the test.
"""

from __future__ import annotations

import socket
import time

import pytest

from serve_support import Server

GUARD_SECONDS = 30  # far beyond the 1 s timeouts: only a server that never closes reaches it


@pytest.fixture(scope="module")
def server(served_model_dir, tmp_path_factory):
    running = Server(served_model_dir.parent, workers=1, log=tmp_path_factory.mktemp("timeouts") / "serve.log",
                     SERVE_HEADER_TIMEOUT_SECONDS="1", SERVE_BODY_TIMEOUT_SECONDS="1", SERVE_KEEP_ALIVE="1")
    running.wait_until_listening()
    yield running
    running.stop()


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=GUARD_SECONDS)


def _read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout (a failure) if it never does."""
    received = b""
    while True:
        try:
            chunk = connection.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def test_half_a_header_is_answered_408_and_the_connection_closed(server):
    with _connect(server) as connection:
        connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty")
        answer = _read_until_closed(connection)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"request header did not arrive" in answer


def test_a_header_dribbled_byte_by_byte_is_cut_off(server):
    # Each byte arrives well within a second of the last: only a deadline for the whole header stops this.
    header = b"POST /invocations HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200
    with _connect(server) as connection:
        closed = False
        for byte in header:
            try:
                connection.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
        answer = _read_until_closed(connection)
    assert closed or answer.startswith(b"HTTP/1.1 408 ")


def test_half_a_body_is_answered_408_and_the_connection_closed(server):
    with _connect(server) as connection:
        connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                           b"Content-Length: 100\r\n\r\n33,12,")
        answer = _read_until_closed(connection)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert b"request body did not arrive within 1 s" in body


def test_a_connection_that_never_sends_is_closed(server):
    with _connect(server) as connection:
        assert _read_until_closed(connection) == b""


def test_stray_line_breaks_do_not_hold_the_connection(server):
    with _connect(server) as connection:
        connection.sendall(b"\r\n")
        answer = _read_until_closed(connection)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4")


def test_a_keep_alive_client_is_served_request_after_request(server):
    with _connect(server) as connection:
        for _ in range(3):
            connection.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = connection.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 ")
    assert server.process.poll() is None


@pytest.mark.parametrize("variable", ["SERVE_HEADER_TIMEOUT_SECONDS", "SERVE_BODY_TIMEOUT_SECONDS"])
def test_a_bad_timeout_setting_stops_serve_with_the_reason(served_model_dir, variable):
    running = Server(served_model_dir.parent, workers=1, **{variable: "soon"})
    try:
        assert running.process.wait(timeout=60) == 2
        assert f"{variable} must be a positive number of seconds, got 'soon'" in running.output()
    finally:
        running.stop()
