"""Periodic runs (``schedule``) for snapshot replication: a fixed rate or a cron expression in a time zone."""

from __future__ import annotations

from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import field_validator

from sluice.models.common import NonEmptyStr, OneOf, PositiveInt, SluiceModel

__all__ = ["CronSchedule", "RateSchedule", "RateUnit", "Schedule"]


class RateUnit(StrEnum):
    """Unit of a rate schedule."""

    MINUTE = "Minute"
    HOUR = "Hour"
    DAY = "Day"


class RateSchedule(SluiceModel):
    """Run every `value` `unit`s, counted from the end of the previous run."""

    value: PositiveInt
    """How many units between runs (at least 1)."""
    unit: RateUnit
    """Minute, Hour or Day."""


class CronSchedule(SluiceModel):
    """Run at the times of a standard 5-field cron expression, evaluated in a time zone."""

    expression: NonEmptyStr
    """Cron expression with 5 fields: minute hour day-of-month month day-of-week (e.g. "0 3 * * *" = 03:00 daily)."""
    timezone: NonEmptyStr = "UTC"
    """IANA time zone the expression is evaluated in, e.g. "UTC" or "Europe/Berlin"."""

    @field_validator("expression")
    @classmethod
    def _five_fields(cls, expression: str) -> str:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(
                f"cron expression {expression!r} has {len(fields)} fields; it needs exactly 5: "
                'minute hour day-of-month month day-of-week, e.g. "0 3 * * *"'
            )
        if not croniter.is_valid(expression):
            raise ValueError(
                f"cron expression {expression!r} is not valid: check each of the 5 fields "
                '(minute 0-59, hour 0-23, day-of-month 1-31, month 1-12, day-of-week 0-6), e.g. "*/15 * * * *"'
            )
        return " ".join(fields)

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {timezone!r}: use an IANA time zone name such as 'UTC', 'Europe/Berlin' "
                "or 'America/New_York'"
            ) from None
        return timezone


class Schedule(OneOf):
    """When to run: exactly one of rate, cron."""

    one_of_label = "schedule kind"

    rate: RateSchedule | None = None
    """Fixed interval between runs."""
    cron: CronSchedule | None = None
    """Cron expression in a time zone."""
