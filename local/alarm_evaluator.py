"""CloudWatch alarm evaluation: the template's alarms over the datapoints moto received, and their actions.

moto stores alarms (``PutMetricAlarm``) and datapoints (``PutMetricData``) but never evaluates an alarm. Each tick
(every ``LOCAL_ALARM_INTERVAL`` seconds, or the ``alarms/evaluate`` control operation) reads moto's received
datapoints, evaluates every alarm with :func:`local.alarms.evaluate`, writes a changed state back to moto
(``SetAlarmState``, so ``DescribeAlarms`` agrees) and fires the new state's actions: a Lambda action gets
CloudWatch's Lambda-action payload, an SNS action CloudWatch's alarm message. Before each tick the ``AWS/SQS``
queue-depth metric CloudWatch would have is published for the stack's queues (the dead-letter alarm reads it).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any

from . import alarms
from .aws import cloudwatch_backend, put_metrics
from .destinations import Destinations

log = logging.getLogger("local.alarm_evaluator")


def datapoint(metric: Any) -> alarms.Datapoint:
    """A datum of moto's CloudWatch backend (a raw value or a statistic set) as the evaluator's datapoint."""
    ts = metric.timestamp
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    dims = tuple(sorted((d.name, str(d.value)) for d in metric.dimensions))
    if hasattr(metric, "value"):
        return alarms.Datapoint(ts, dims, value=float(metric.value), unit=metric.unit)
    return alarms.Datapoint(ts, dims, sample_count=float(metric.sample_count), total=float(metric.sum),
                            minimum=float(metric.min), maximum=float(metric.max), unit=metric.unit)


class AlarmEvaluator:
    def __init__(self, destinations: Destinations, account: str, region: str, interval: float = 10.0):
        self.destinations = destinations
        self.client = destinations.client
        self.account = account
        self.region = region
        self.interval = interval
        self.definitions: dict[str, alarms.AlarmDefinition] = {}
        self.arns: dict[str, str] = {}
        self.states: dict[str, alarms.Evaluation] = {}
        self.unsupported: dict[str, str] = {}  # name -> why it is not evaluated (stays INSUFFICIENT_DATA)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def add(self, name: str, arn: str, props: dict[str, Any]) -> None:
        """An ``AWS::CloudWatch::Alarm`` of the template (resolved properties, ``AlarmName`` set)."""
        try:
            definition = alarms.AlarmDefinition.from_properties(props)
        except alarms.UnsupportedAlarm as exc:
            self.unsupported[name] = str(exc)
            return
        with self._lock:
            self.definitions[name] = definition
            self.arns[name] = arn
            self.states[name] = alarms.Evaluation("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")

    def state(self, name: str) -> str:
        with self._lock:
            state = self.states.get(name)
        return state.state if state else "INSUFFICIENT_DATA"

    def current(self) -> dict[str, str]:
        with self._lock:
            return {name: s.state for name, s in self.states.items()}

    def _publish_queue_metrics(self) -> None:
        for name, url in self.destinations.queues.items():
            try:
                attrs = self.client("sqs").get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
            except Exception:
                continue
            put_metrics(self.client("cloudwatch"), "AWS/SQS", [
                {"MetricName": "ApproximateNumberOfMessagesVisible",
                 "Value": float(attrs.get("ApproximateNumberOfMessages", 0)),
                 "Dimensions": [{"Name": "QueueName", "Value": name}]}])

    def _datapoints(self, now: datetime) -> dict[tuple[str, str], list[alarms.Datapoint]]:
        wanted = {(d.namespace, d.metric_name): max(d.period * (d.evaluation_periods + 1), 3600)
                  for d in self.definitions.values()}
        found: dict[tuple[str, str], list[alarms.Datapoint]] = {}
        for metric in list(cloudwatch_backend(self.region).metric_data):
            key = (metric.namespace, metric.name)
            if key in wanted:
                point = datapoint(metric)
                if (now - point.timestamp).total_seconds() <= wanted[key]:
                    found.setdefault(key, []).append(point)
        return found

    def evaluate(self, now: datetime | None = None) -> dict[str, str]:
        """One evaluation tick over every alarm; fires actions on state transitions. Returns every state."""
        now = now or datetime.now(timezone.utc)
        self._publish_queue_metrics()
        by_metric = self._datapoints(now)
        transitions = []
        with self._lock:
            for name, definition in self.definitions.items():
                previous = self.states[name]
                result = alarms.evaluate(definition, by_metric.get((definition.namespace, definition.metric_name), []),
                                         now, previous.state)
                self.states[name] = result
                if result.state != previous.state:
                    transitions.append((definition, previous, result))
        for definition, previous, result in transitions:
            log.info("alarm %s: %s -> %s", definition.name, previous.state, result.state)
            self.client("cloudwatch").set_alarm_state(AlarmName=definition.name, StateValue=result.state,
                                                      StateReason=result.reason[:1023],
                                                      StateReasonData=json.dumps(result.reason_data))
            self._fire_actions(definition, previous, result, now)
        return self.current()

    def _fire_actions(self, definition: alarms.AlarmDefinition, previous: alarms.Evaluation,
                      result: alarms.Evaluation, now: datetime) -> None:
        arn = self.arns[definition.name]
        for action in definition.actions_for(result.state):
            if ":lambda:" in action:
                payload = alarms.lambda_action_payload(definition, arn, self.account, self.region, result, previous, now)
                self.destinations.send(action, payload, source=f"alarm:{definition.name}")
            elif ":sns:" in action:
                message = alarms.sns_message(definition, arn, self.account, self.region, result, previous, now)
                self.destinations.send(action, message, source=f"alarm:{definition.name}",
                                       subject=f'{result.state}: "{definition.name}" in {self.region}')
            else:
                log.info("alarm %s: action %s is not emulated", definition.name, action)

    # -- the periodic tick --------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._loop, name="alarm-evaluator", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.evaluate()
            except Exception:
                log.exception("alarm evaluation failed")
