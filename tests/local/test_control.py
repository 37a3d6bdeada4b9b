"""The control operations (local.control): every route, its JSON, and the idle wait."""

import json
from types import SimpleNamespace

from local.control import ControlApi, wait_idle
from local.functions import FunctionError


class Fn:
    spec = SimpleNamespace(handler="handlers.retrain.handler")
    invocations = [{"source": "manual", "ok": True}]

    def invoke(self, payload, source):
        if payload.get("fail"):
            raise FunctionError("p-retrain", {"errorType": "ValueError", "errorMessage": "no"})
        return {"echo": payload, "source": source}


def api(busy=None):
    fn = Fn()
    functions = SimpleNamespace(lookup=lambda name: fn if name in ("p-retrain", "arn:aws:lambda:r:1:function:p-retrain") else None,
                                by_name={"p-retrain": fn})
    alarms = SimpleNamespace(evaluate=lambda now=None: {"a": "OK" if now is None else now.isoformat()},
                             current=lambda: {"a": "OK"}, unsupported={"m": "metric math"})
    scheduler = SimpleNamespace(fire=lambda rule=None: [rule or "every"])
    objects = SimpleNamespace(redeliver=lambda key: 1 if key == "incoming/a.csv" else 0)
    return ControlApi(alarms, scheduler, objects, functions, busy or (lambda: {"events": False}),  # type: ignore[arg-type]
                      lambda: {"ep": "c1"}, ["X (AWS::ApiGateway::RestApi)"])


def call(method, path, body=None):
    return api().handle(method, path, json.dumps(body).encode() if body is not None else b"")


def test_every_operation_and_its_json():
    assert call("POST", "/_local/alarms/evaluate") == (200, {"alarms": {"a": "OK"}})
    assert call("POST", "/_local/alarms/evaluate", {"at": "2026-01-01T00:00:00+00:00"}) == (
        200, {"alarms": {"a": "2026-01-01T00:00:00+00:00"}})
    assert call("POST", "/_local/schedules/fire", {"rule": "monitor"}) == (200, {"fired": ["monitor"]})
    assert call("POST", "/_local/events/redeliver", {"key": "incoming/a.csv"}) == (200, {"redelivered": 1})
    assert call("POST", "/_local/functions/invoke", {"function": "p-retrain:live", "payload": {"reason": "x"}}) == (
        200, {"result": {"echo": {"reason": "x"}, "source": "manual"}})
    assert call("POST", "/_local/functions/invoke", {"function": "arn:aws:lambda:r:1:function:p-retrain"})[0] == 200
    assert call("POST", "/_local/functions/invoke", {"function": "p-retrain", "payload": {"fail": 1}}) == (
        200, {"error": {"errorType": "ValueError", "errorMessage": "no"}})
    assert call("POST", "/_local/functions/invoke", {"function": "nope"}) == (404, {"error": "no function 'nope'"})
    assert call("POST", "/_local/idle", {"timeout": 5}) == (200, {"idle": True, "busy": {"events": False}})
    status, state = call("GET", "/_local/state")
    assert status == 200 and state == {
        "busy": {"events": False}, "alarms": {"a": "OK"}, "unsupported_alarms": {"m": "metric math"},
        "endpoints": {"ep": "c1"}, "invocations": {"handlers.retrain.handler": [{"source": "manual", "ok": True}]},
        "not_emulated": ["X (AWS::ApiGateway::RestApi)"]}
    assert call("GET", "/_local/nothing") == (404, {"error": "no control operation GET /_local/nothing"})


def test_wait_idle_needs_a_quiet_settle_period():
    answers = iter([{"jobs": True}] * 3 + [{"jobs": False}] * 1000)
    assert wait_idle(lambda: next(answers), timeout=5, settle=0.2)
    assert not wait_idle(lambda: {"jobs": True}, timeout=0.3, settle=0.1)
