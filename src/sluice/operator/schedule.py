"""When the next scheduled run of a snapshot connector is due (pure; rate or cron in an IANA time zone)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

__all__ = ["next_run"]

_UNITS = {"Minute": 60, "Hour": 3600, "Day": 86400}


def next_run(schedule: dict[str, Any], after: datetime) -> datetime:
    """The first tick strictly after ``after`` (an aware datetime); cron ticks are computed in the schedule's zone,
    so "0 3 * * *" in Europe/Berlin stays at 03:00 local time across daylight-saving changes."""
    if schedule.get("rate"):
        rate = schedule["rate"]
        return after + timedelta(seconds=int(rate["value"]) * _UNITS[str(rate["unit"])])
    cron = schedule["cron"]
    zone = ZoneInfo(cron.get("timezone") or "UTC")
    result: datetime = croniter(cron["expression"], after.astimezone(zone)).get_next(datetime)
    return result.astimezone(after.tzinfo)
