"""EventBridge schedules (local.schedules): rate() intervals, firing a rule's Scheduled Event on demand."""

from local.bus import Rule
from local.schedules import Scheduler, schedule_interval


def test_only_rate_schedules_have_an_interval():
    assert schedule_interval("rate(1 day)") == 86400
    assert schedule_interval("rate(6 hours)") == 21600
    assert schedule_interval("rate(5 minutes)") == 300
    assert schedule_interval("cron(0 12 * * ? *)") is None


class Bus:
    def __init__(self):
        self.fired = []

    def fire_schedule(self, rule, account, region):
        self.fired.append((rule.name, account, region))


def test_fire_one_rule_or_every_rule():
    bus = Bus()
    scheduler = Scheduler(bus, "123456789012", "eu-west-1")  # type: ignore[arg-type]
    for name, expression in (("monitor", "rate(1 day)"), ("nightly", "cron(0 3 * * ? *)")):
        scheduler.add(Rule(name=name, arn=f"arn:aws:events:eu-west-1:123456789012:rule/{name}", pattern=None,
                           schedule=expression))
    assert scheduler.fire("nightly") == ["nightly"]
    assert scheduler.fire() == ["monitor", "nightly"]
    assert scheduler.fire("unknown") == []
    assert bus.fired[0] == ("nightly", "123456789012", "eu-west-1")
