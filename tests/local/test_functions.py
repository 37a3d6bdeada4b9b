"""Lambda emulation: warm worker with the template's environment, async retries, failure destination."""

import time

from local.functions import FunctionError, FunctionRegistry, FunctionSpec

HANDLER = '''
import os
calls = []
def handler(event, context):
    calls.append(event)
    if event.get("fail"):
        raise ValueError("bad event " + str(event["fail"]))
    if event.get("sleep"):
        import time; time.sleep(event["sleep"])
    print("logged to the function log")
    return {"env": os.environ["STAGE_VALUE"], "warm_calls": len(calls),
            "remaining_ms": context.get_remaining_time_in_millis(), "name": context.function_name,
            "local_importable": __import__("importlib").util.find_spec("local") is not None}
'''


def make(tmp_path, failures, **overrides):
    code = tmp_path / "code"
    (code / "handlers").mkdir(parents=True)
    (code / "handlers" / "__init__.py").write_text("")
    (code / "handlers" / "fn.py").write_text(HANDLER)
    registry = FunctionRegistry({"PATH": "/usr/bin:/bin"}, tmp_path / "logs",
                                on_failure=lambda spec, event, exc: failures.append((event, exc.error)))
    spec = FunctionSpec(name="p-fn", arn="arn:aws:lambda:us-east-1:123456789012:function:p-fn",
                        handler="handlers.fn.handler", code_dir=code, environment={"STAGE_VALUE": "from-template"},
                        timeout=overrides.get("timeout", 5))
    spec.max_retries = overrides.get("max_retries", 2)
    return registry, registry.add(spec)


def test_sync_invoke_is_warm_and_sees_the_template_environment(tmp_path):
    registry, fn = make(tmp_path, [])
    try:
        first = fn.invoke({})
        second = registry.lookup("arn:aws:lambda:us-east-1:123456789012:function:p-fn:$LATEST").invoke({})
        assert first["env"] == "from-template" and first["name"] == "p-fn"
        assert (first["warm_calls"], second["warm_calls"]) == (1, 2)
        assert 0 < first["remaining_ms"] <= 5000
        assert first["local_importable"] is False  # only the function's own code is on its path
        assert "logged to the function log" in (tmp_path / "logs" / "p-fn.log").read_text()
    finally:
        registry.stop()


def test_async_errors_are_retried_then_sent_to_the_failure_destination(tmp_path):
    failures = []
    registry, fn = make(tmp_path, failures, max_retries=1)
    try:
        fn.invoke_async({"fail": 1}, source="rule:x")
        deadline = time.time() + 20
        while fn.busy and time.time() < deadline:
            time.sleep(0.05)
        assert [i["ok"] for i in fn.invocations] == [False, False]  # first attempt + 1 retry
        assert failures == [({"fail": 1}, failures[0][1])]
        assert failures[0][1]["errorType"] == "ValueError" and "bad event 1" in failures[0][1]["errorMessage"]
    finally:
        registry.stop()


def test_timeout_kills_the_environment_and_reports_it(tmp_path):
    registry, fn = make(tmp_path, [], timeout=1)
    try:
        try:
            fn.invoke({"sleep": 5})
            raise AssertionError("a timed-out invocation must fail")
        except FunctionError as exc:
            assert exc.error["errorType"] == "Sandbox.Timedout"
        assert fn.invoke({})["warm_calls"] == 1  # a fresh environment
    finally:
        registry.stop()
