"""One warm Lambda execution environment: imports the handler once, then serves invocations over stdin.

Started by ``local.functions`` with the function's environment from the template. Protocol: one JSON
request per line on stdin, one JSON response per line on the original stdout; everything the handler
prints or logs goes to stderr (the function's log file), as Lambda sends it to CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class Context:
    def __init__(self, request: dict[str, Any]):
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = "$LATEST"
        self.invoked_function_arn = request.get("function_arn", "")
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self.aws_request_id = request["id"]
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = float(request["deadline"])

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def main() -> None:
    handler_path = os.environ["_HANDLER"]  # as the Lambda runtime reads it
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    module_name, _, function_name = handler_path.rpartition(".")
    init_error = None
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # Lambda reports Runtime.ImportModuleError on every invoke
        init_error = {"errorType": "Runtime.ImportModuleError", "errorMessage": f"{type(exc).__name__}: {exc}",
                      "stackTrace": traceback.format_exc().splitlines()}
    for line in sys.stdin:
        request = json.loads(line)
        print(f"START RequestId: {request['id']}", file=sys.stderr, flush=True)
        if init_error is not None:
            response = {"id": request["id"], "ok": False, **init_error}
        else:
            try:
                result = handler(request["event"], Context(request))
                response = {"id": request["id"], "ok": True, "result": result}
            except Exception as exc:
                traceback.print_exc()
                response = {"id": request["id"], "ok": False, "errorType": type(exc).__name__,
                            "errorMessage": str(exc), "stackTrace": traceback.format_exc().splitlines()}
        print(f"END RequestId: {request['id']}", file=sys.stderr, flush=True)
        protocol.write(json.dumps(response, default=str) + "\n")


if __name__ == "__main__":
    main()
