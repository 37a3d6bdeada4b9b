"""`serve` as a real process on a free port, for the tests that need real sockets."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from entrypoint_support import COMMANDS, process_env

READY_SECONDS = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, opt_ml, workers: int, log: Path | None = None, **extra: str) -> None:
        """`log`: a file for the server's output, for runs long enough to fill a pipe nobody reads."""
        self.port = free_port()
        self.log = log
        env = process_env(opt_ml, SAGEMAKER_BIND_TO_PORT=str(self.port), SERVE_WORKERS=str(workers),
                          SERVE_HOST="127.0.0.1", **extra)
        out = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115 (closed below)
        self.process = subprocess.Popen([str(COMMANDS / "serve")], env=env, stdout=out,
                                        stderr=subprocess.STDOUT, text=True)
        if log is not None:
            out.close()  # the child has its own copy

    def output(self) -> str:
        return self.log.read_text() if self.log is not None else self.process.stdout.read()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()

    def wait_until_listening(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited early ({self.process.returncode}):\n{self.output()[-3000:]}")
            try:
                self.request("GET", "/ping")
                return
            except OSError:
                time.sleep(0.3)
        pytest.fail("serve did not listen in time")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
