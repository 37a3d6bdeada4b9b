"""CloudWatch alarm evaluation over the datapoints moto received (moto stores alarms but never evaluates them).

Pure functions: the stack feeds them the alarm definition from the template and the datapoints from
moto's CloudWatch backend, and applies the resulting state. Semantics follow CloudWatch's documented
model: periods aligned to the period length, ``DatapointsToAlarm`` out of ``EvaluationPeriods``,
``TreatMissingData`` (missing | notBreaching | breaching | ignore), comparison against ``Threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

COMPARISONS = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}
STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


class UnsupportedAlarm(ValueError):
    """An alarm shape the embedded stack does not evaluate (metric math, anomaly detection)."""


@dataclass(frozen=True)
class AlarmDefinition:
    name: str
    namespace: str
    metric_name: str
    dimensions: tuple[tuple[str, str], ...]
    period: int
    statistic: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int
    comparison: str
    treat_missing_data: str = "missing"
    alarm_actions: tuple[str, ...] = ()
    ok_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    actions_enabled: bool = True
    description: str = ""
    unit: str | None = None

    @classmethod
    def from_properties(cls, props: dict[str, Any]) -> "AlarmDefinition":
        """Build from resolved ``AWS::CloudWatch::Alarm`` properties."""
        metric = props
        statistic = props.get("Statistic") or props.get("ExtendedStatistic")
        period = props.get("Period")
        if "Metrics" in props:
            returned = [m for m in props["Metrics"] if m.get("ReturnData", True)]
            if len(returned) != 1 or "MetricStat" not in returned[0]:
                raise UnsupportedAlarm(f"alarm {props.get('AlarmName')}: metric math is not evaluated locally")
            stat = returned[0]["MetricStat"]
            metric = stat["Metric"]
            statistic, period = stat["Stat"], stat["Period"]
        if "ThresholdMetricId" in props:
            raise UnsupportedAlarm(f"alarm {props.get('AlarmName')}: anomaly detection is not evaluated locally")
        if statistic is None or period is None:
            raise UnsupportedAlarm(f"alarm {props.get('AlarmName')}: no statistic/period")
        evaluation_periods = int(props["EvaluationPeriods"])
        return cls(
            name=props["AlarmName"],
            namespace=metric["Namespace"],
            metric_name=metric["MetricName"],
            dimensions=tuple(sorted((d["Name"], str(d["Value"])) for d in metric.get("Dimensions", []))),
            period=int(period),
            statistic=str(statistic),
            threshold=float(props["Threshold"]),
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=int(props.get("DatapointsToAlarm", evaluation_periods)),
            comparison=props["ComparisonOperator"],
            treat_missing_data=props.get("TreatMissingData", "missing"),
            alarm_actions=tuple(props.get("AlarmActions", [])),
            ok_actions=tuple(props.get("OKActions", [])),
            insufficient_data_actions=tuple(props.get("InsufficientDataActions", [])),
            actions_enabled=bool(props.get("ActionsEnabled", True)),
            description=props.get("AlarmDescription", ""),
            unit=props.get("Unit"),
        )

    def actions_for(self, state: str) -> tuple[str, ...]:
        if not self.actions_enabled:
            return ()
        return {"ALARM": self.alarm_actions, "OK": self.ok_actions}.get(state, self.insufficient_data_actions)


@dataclass(frozen=True)
class Datapoint:
    """One received datum: a raw value, or a StatisticSet (sum/count/min/max)."""

    timestamp: datetime
    dimensions: tuple[tuple[str, str], ...]
    value: float | None = None
    sample_count: float = 1.0
    total: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    unit: str | None = None


@dataclass
class Evaluation:
    state: str
    reason: str
    reason_data: dict[str, Any] = field(default_factory=dict)


def _aligned(ts: datetime, period: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period, tz=timezone.utc)


def statistic(points: list[Datapoint], name: str) -> float | None:
    """CloudWatch statistic over one period's datapoints; None when it cannot be computed."""
    if not points:
        return None
    count = sum(p.sample_count for p in points)
    total = sum(p.total if p.total is not None else (p.value or 0.0) for p in points)
    if name == "SampleCount":
        return count
    if name == "Sum":
        return total
    if name == "Average":
        return total / count if count else None
    if name == "Minimum":
        return min(p.minimum if p.minimum is not None else p.value for p in points)  # type: ignore[type-var]
    if name == "Maximum":
        return max(p.maximum if p.maximum is not None else p.value for p in points)  # type: ignore[type-var]
    if name.lower().startswith("p"):
        values = sorted(p.value for p in points if p.value is not None)
        if not values:
            return None  # percentiles need raw values, as in CloudWatch
        q = float(name[1:]) / 100.0
        rank = max(0, min(len(values) - 1, math.ceil(q * len(values)) - 1))
        return values[rank]
    raise UnsupportedAlarm(f"statistic {name} is not evaluated locally")


def evaluate(
    alarm: AlarmDefinition,
    datapoints: Iterable[Datapoint],
    now: datetime,
    current_state: str = "INSUFFICIENT_DATA",
) -> Evaluation:
    """The alarm's state at ``now`` given every datapoint received."""
    matching = [
        d
        for d in datapoints
        if d.dimensions == alarm.dimensions and (alarm.unit is None or d.unit in (None, alarm.unit))
    ]
    newest_start = _aligned(now, alarm.period)
    starts = [newest_start - timedelta(seconds=alarm.period * i) for i in range(alarm.evaluation_periods + 1)]
    values: list[tuple[datetime, float | None]] = []
    for start in starts:
        end = start + timedelta(seconds=alarm.period)
        in_period = [d for d in matching if start <= d.timestamp < end and d.timestamp <= now]
        values.append((start, statistic(in_period, alarm.statistic)))
    # The current period counts once it has data; until then the N periods that ended are evaluated
    # (so a datapoint just before a period boundary is not lost).
    values = values[:-1] if values[0][1] is not None else values[1:]

    compare, words = COMPARISONS[alarm.comparison]
    present = [(t, v) for t, v in values if v is not None]
    missing = len(values) - len(present)
    breaching = sum(1 for _, v in present if compare(v, alarm.threshold))
    treat = alarm.treat_missing_data
    if treat == "breaching":
        breaching += missing
    reason_data = {
        "version": "1.0",
        "queryDate": _cw_time(now),
        "statistic": alarm.statistic,
        "period": alarm.period,
        "recentDatapoints": [v for _, v in present],
        "threshold": alarm.threshold,
        "evaluatedDatapoints": [
            {"timestamp": _cw_time(t), **({"value": v} if v is not None else {})} for t, v in values
        ],
    }
    m, n = alarm.datapoints_to_alarm, alarm.evaluation_periods
    if not present and treat in ("missing", "ignore"):
        state = current_state if treat == "ignore" else "INSUFFICIENT_DATA"
        return Evaluation(state, f"Insufficient Data: {n} datapoints were unknown.", reason_data)
    shown = ", ".join(f"{v} ({t.strftime('%d/%m/%y %H:%M:%S')})" for t, v in present[:5])
    state = "ALARM" if breaching >= m else "OK"
    reason = (
        f"Threshold Crossed: {breaching} out of the last {n} datapoints [{shown}] "
        f"{'was' if state == 'ALARM' else 'was not'} {words} the threshold ({alarm.threshold}) "
        f"(minimum {m} datapoint{'s' if m != 1 else ''} for OK -> ALARM transition)."
    )
    return Evaluation(state, reason, reason_data)


def _cw_time(ts: datetime) -> str:
    """CloudWatch's timestamp form in alarm payloads: 2023-08-04T12:36:15.490+0000."""
    ts = ts.astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000"


def lambda_action_payload(
    alarm: AlarmDefinition,
    alarm_arn: str,
    account: str,
    region: str,
    new: Evaluation,
    previous: Evaluation,
    now: datetime,
) -> dict[str, Any]:
    """The event CloudWatch sends to a Lambda alarm action (documented "Lambda action payload")."""
    import json

    return {
        "source": "aws.cloudwatch",
        "alarmArn": alarm_arn,
        "accountId": account,
        "time": _cw_time(now),
        "region": region,
        "alarmData": {
            "alarmName": alarm.name,
            "state": {
                "value": new.state,
                "reason": new.reason,
                "reasonData": json.dumps(new.reason_data),
                "timestamp": _cw_time(now),
            },
            "previousState": {
                "value": previous.state,
                "reason": previous.reason,
                **({"reasonData": json.dumps(previous.reason_data)} if previous.reason_data else {}),
                "timestamp": _cw_time(now),
            },
            "configuration": {
                "description": alarm.description,
                "metrics": [
                    {
                        "id": f"{alarm.name}-m1",
                        "metricStat": {
                            "metric": {
                                "namespace": alarm.namespace,
                                "name": alarm.metric_name,
                                "dimensions": dict(alarm.dimensions),
                            },
                            "period": alarm.period,
                            "stat": alarm.statistic,
                            **({"unit": alarm.unit} if alarm.unit else {}),
                        },
                        "returnData": True,
                    }
                ],
            },
        },
    }


def sns_message(alarm: AlarmDefinition, alarm_arn: str, account: str, region: str,
                new: Evaluation, previous: Evaluation, now: datetime) -> dict[str, Any]:
    """The JSON message CloudWatch publishes to an SNS alarm action."""
    return {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": account,
        "NewStateValue": new.state,
        "NewStateReason": new.reason,
        "StateChangeTime": _cw_time(now),
        "Region": region,
        "AlarmArn": alarm_arn,
        "OldStateValue": previous.state,
        "Trigger": {
            "MetricName": alarm.metric_name,
            "Namespace": alarm.namespace,
            "StatisticType": "ExtendedStatistic" if alarm.statistic.lower().startswith("p") else "Statistic",
            "Statistic": alarm.statistic.upper(),
            "Unit": alarm.unit,
            "Dimensions": [{"value": v, "name": k} for k, v in alarm.dimensions],
            "Period": alarm.period,
            "EvaluationPeriods": alarm.evaluation_periods,
            "ComparisonOperator": alarm.comparison,
            "Threshold": alarm.threshold,
            "TreatMissingData": alarm.treat_missing_data,
        },
    }
