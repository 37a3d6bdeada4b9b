"""Lambda functions from the template, run as warm worker processes with the template's environment.

Asynchronous invocations (EventBridge targets, alarm actions) are queued per function and retried on
error as Lambda does (``MaximumRetryAttempts`` from the function's EventInvokeConfig, default 2), then
sent to the function's dead-letter/on-failure destination. The retry delays are compressed (1 s, 2 s
instead of about 1 and 2 minutes) so the loop stays fast on one machine.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .work_queue import WorkQueue

log = logging.getLogger("local.functions")

RETRY_DELAYS_SECONDS = (1.0, 2.0)


class FunctionError(RuntimeError):
    def __init__(self, function: str, error: dict[str, Any]):
        self.error = error
        super().__init__(f"{function}: {error.get('errorType')}: {error.get('errorMessage')}")


@dataclass
class FunctionSpec:
    name: str
    arn: str
    handler: str
    code_dir: Path
    environment: dict[str, str]
    timeout: int = 3
    memory: int = 128
    runtime: str = "python3.11"
    max_retries: int = 2
    max_event_age: int = 21600
    failure_destination: str | None = None
    logical_id: str = ""
    stack: str = ""


@dataclass
class _Job:
    event: Any
    attempt: int = 0
    first_seen: float = field(default_factory=time.time)
    source: str = ""


class _Worker:
    """A warm execution environment (one process); restarted after a timeout or a crash."""

    def __init__(self, spec: FunctionSpec, base_env: dict[str, str], log_path: Path):
        self.spec = spec
        self.base_env = base_env
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self._log_file: Any = None

    def _start(self) -> subprocess.Popen[str]:
        env = {**self.base_env, **self.spec.environment}
        # Only the function's code is importable (as in /var/task); the worker runs by path, so the
        # repository's own packages (local/, stacks/) are not on the handler's sys.path.
        env["PYTHONPATH"] = str(self.spec.code_dir)
        env["LAMBDA_TASK_ROOT"] = str(self.spec.code_dir)
        env["_HANDLER"] = self.spec.handler
        env["AWS_LAMBDA_FUNCTION_NAME"] = self.spec.name
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(self.spec.memory)
        env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = str(self.spec.timeout)
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')",
             str(Path(__file__).with_name("lambda_worker.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file, text=True,
            env=env, cwd=str(self.spec.code_dir), bufsize=1,
        )
        return self.proc

    def invoke(self, event: Any) -> Any:
        proc = self.proc if self.proc is not None and self.proc.poll() is None else self._start()
        request_id = str(uuid.uuid4())
        deadline = time.time() + self.spec.timeout
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"id": request_id, "event": event, "deadline": deadline,
                                     "function_arn": self.spec.arn}) + "\n")
        proc.stdin.flush()
        result: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: result.update(line=proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.spec.timeout + 1.0)  # +1 s: process start-up is not charged by Lambda either
        timed_out = reader.is_alive()
        if timed_out or not result.get("line"):
            self.stop()
            if timed_out:
                raise FunctionError(self.spec.name, {"errorType": "Sandbox.Timedout",
                                                     "errorMessage": f"Task timed out after {self.spec.timeout}.00 seconds"})
            raise FunctionError(self.spec.name, {"errorType": "Runtime.ExitError",
                                                 "errorMessage": "the execution environment exited; see its log"})
        response = json.loads(result["line"])
        if not response.get("ok"):
            raise FunctionError(self.spec.name, response)
        return response.get("result")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


FailureSink = Callable[[FunctionSpec, Any, FunctionError], None]


class LambdaFunction:
    def __init__(self, spec: FunctionSpec, base_env: dict[str, str], log_dir: Path,
                 on_failure: FailureSink | None = None):
        self.spec = spec
        self._worker = _Worker(spec, base_env, log_dir / f"{spec.name}.log")
        self._invoke_lock = threading.Lock()
        self._on_failure = on_failure
        self.invocations: list[dict[str, Any]] = []  # (source, ok, error) — for status and tests
        self._events = WorkQueue(self._attempt, f"lambda-{spec.name}")

    def invoke(self, event: Any, source: str = "sync") -> Any:
        """RequestResponse invocation."""
        with self._invoke_lock:
            try:
                result = self._worker.invoke(event)
                self.invocations.append({"source": source, "ok": True, "time": time.time()})
                return result
            except FunctionError as exc:
                self.invocations.append({"source": source, "ok": False, "error": str(exc), "time": time.time()})
                raise

    def invoke_async(self, event: Any, source: str = "event") -> None:
        """Event invocation: queued, retried on error, then sent to the failure destination."""
        self._events.put(_Job(event, source=source))

    @property
    def busy(self) -> bool:
        return self._events.busy

    def _attempt(self, job: _Job) -> None:
        while True:
            if time.time() - job.first_seen > self.spec.max_event_age:
                self._fail(job, FunctionError(self.spec.name, {"errorType": "EventAgeExceeded",
                                                               "errorMessage": "maximum event age exceeded"}))
                return
            try:
                self.invoke(job.event, source=job.source)
                return
            except FunctionError as exc:
                log.warning("%s failed (attempt %d): %s", self.spec.name, job.attempt + 1, exc)
                if job.attempt >= self.spec.max_retries:
                    self._fail(job, exc)
                    return
                time.sleep(RETRY_DELAYS_SECONDS[min(job.attempt, len(RETRY_DELAYS_SECONDS) - 1)])
                job.attempt += 1

    def _fail(self, job: _Job, exc: FunctionError) -> None:
        if self._on_failure is not None:
            self._on_failure(self.spec, job.event, exc)

    def stop(self) -> None:
        self._events.stop()
        self._worker.stop()


class FunctionRegistry:
    def __init__(self, base_env: dict[str, str], log_dir: Path, on_failure: FailureSink | None = None):
        self.base_env = base_env
        self.log_dir = log_dir
        self.on_failure = on_failure
        self.by_arn: dict[str, LambdaFunction] = {}
        self.by_name: dict[str, LambdaFunction] = {}

    def add(self, spec: FunctionSpec) -> LambdaFunction:
        fn = LambdaFunction(spec, self.base_env, self.log_dir, self.on_failure)
        self.by_arn[spec.arn] = fn
        self.by_name[spec.name] = fn
        return fn

    def lookup(self, arn_or_name: str) -> LambdaFunction | None:
        if arn_or_name in self.by_arn:
            return self.by_arn[arn_or_name]
        if arn_or_name in self.by_name:
            return self.by_name[arn_or_name]
        # Qualified ARNs (…:function:name:alias) and bare names resolve to the function.
        if ":function:" in arn_or_name:
            name = arn_or_name.split(":function:")[1].split(":")[0]
            return self.by_name.get(name)
        return None

    def by_handler(self, handler: str) -> list[LambdaFunction]:
        return [f for f in self.by_name.values() if f.spec.handler == handler]

    @property
    def busy(self) -> bool:
        return any(f.busy for f in self.by_name.values())

    def stop(self) -> None:
        for fn in self.by_name.values():
            fn.stop()
