"""When a broadcast airs: once, or an RFC 5545 recurrence rule in local wall-clock time.

A `Recurring` rule is expanded in the wall-clock time of its zone and only then converted to UTC, so
daylight saving never shifts a repeat (05:30 stays 05:30 in Berlin in summer and in winter). Exclusions
(validity window, exception dates, holidays) apply to the local date of each start. Needs python-dateutil
(server extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, HOURLY, WEEKLY, YEARLY, rrule, rrulestr

from schedules.calendars import HolidayCalendar
from schedules.errors import ScheduleError

__all__ = ["DEFAULT_ZONE", "HolidayRule", "Once", "Recurring", "Timing", "slot_starts"]

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"

HolidayRule = Literal["ignore", "skip", "only"]
_HOLIDAY_RULES = ("ignore", "skip", "only")

_SUPPORTED_FREQS = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_REBASE_UNIT = {HOURLY: timedelta(hours=1), DAILY: timedelta(days=1), WEEKLY: timedelta(weeks=1)}
_FIRST_START_WITHIN = timedelta(days=8 * 366)
"""A rule must start within this (8 years include a leap day)."""
_DAY_FILTERS = ("bymonth", "bymonthday", "byyearday", "byweekno", "byweekday", "byeaster")
_MARGIN = timedelta(days=1)
"""More than any UTC offset: a UTC window widened by this covers the same local window."""


@dataclass(frozen=True)
class Once:
    at: datetime
    """UTC instant (any aware datetime is accepted and compared as an instant)."""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ScheduleError("a one-off time must carry its time zone (UTC)")


@dataclass(frozen=True)
class Recurring:
    rule: str
    """An RFC 5545 RRULE value, e.g. ``FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR`` (a leading ``RRULE:`` is allowed)."""
    dtstart_local: datetime
    """First start as a naive wall-clock time in ``zone``; it also gives the time of day of each start."""
    zone: str = DEFAULT_ZONE
    valid_from: date | None = None
    """First local date on which it may air (inclusive)."""
    valid_until: date | None = None
    """Last local date on which it may air (inclusive)."""
    exception_dates: frozenset[date] = frozenset()
    """Local dates on which it does not air."""
    holiday_rule: HolidayRule = "ignore"
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _rrule: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dtstart_local.tzinfo is not None:
            raise ScheduleError("dtstart_local is a wall-clock time: give it without a time zone, and name the zone")
        try:
            tz = ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ScheduleError(f"unknown time zone {self.zone!r}") from exc
        if self.holiday_rule not in _HOLIDAY_RULES:
            raise ScheduleError(f"holiday rule must be one of {', '.join(_HOLIDAY_RULES)}, not {self.holiday_rule!r}")
        if self.valid_from and self.valid_until and self.valid_from > self.valid_until:
            raise ScheduleError(f"validity window is empty: {self.valid_from} is after {self.valid_until}")
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_rrule", _parse_rule(self.rule, self.dtstart_local, tz))

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @property
    def rule_text(self) -> str:
        """The rule as dateutil understood it (UNTIL in UTC), without DTSTART: for iCalendar export."""
        text = str(self._rrule).splitlines()
        rule = next(line for line in text if line.startswith("RRULE:"))[len("RRULE:"):]
        if self._rrule._until is not None:
            until_utc = self._rrule._until.replace(tzinfo=self._tz).astimezone(UTC)
            parts = [p for p in rule.split(";") if not p.startswith("UNTIL=")]
            rule = ";".join([*parts, f"UNTIL={until_utc:%Y%m%dT%H%M%SZ}"])
        return rule

    @property
    def has_count(self) -> bool:
        return self._rrule._count is not None

    def local_starts(self, first: datetime, last: datetime) -> list[datetime]:
        """The rule's own wall-clock starts in [first, last] (naive local), before any exclusion."""
        rule = self._rrule
        unit = _REBASE_UNIT.get(rule._freq)
        if unit is not None and rule._count is None and first > self.dtstart_local:
            # dateutil always iterates from DTSTART; moving DTSTART forward by whole periods keeps every
            # start (the time of day and weekday come from DTSTART and do not change) and makes a rule
            # started years ago as cheap as a new one. A COUNT rule must be counted from its real start.
            period = unit * rule._interval
            periods = (first - self.dtstart_local) // period
            if periods > 0:
                rule = rule.replace(dtstart=self.dtstart_local + periods * period)
        return list(rule.between(first, last, inc=True))

    def airs_on(self, day: date, holidays: HolidayCalendar) -> bool:
        """Whether a start on this local date is kept (validity window, exception dates, holiday rule)."""
        if self.valid_from is not None and day < self.valid_from:
            return False
        if self.valid_until is not None and day > self.valid_until:
            return False
        if day in self.exception_dates:
            return False
        if self.holiday_rule == "ignore":
            return True
        return holidays.is_holiday(day) == (self.holiday_rule == "only")

    def to_utc(self, local: datetime) -> datetime:
        # fold=0: a time in the spring-forward gap keeps the old offset, an ambiguous one is the first.
        return local.replace(tzinfo=self._tz).astimezone(UTC)

    def to_local(self, instant: datetime) -> datetime:
        return instant.astimezone(self._tz).replace(tzinfo=None)


Timing = Once | Recurring


def slot_starts(timing: Timing, start: datetime, end: datetime, holidays: HolidayCalendar) -> list[datetime]:
    """Every start (UTC, sorted) with ``start <= t < end``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ScheduleError("window bounds must be aware datetimes (UTC)")
    if isinstance(timing, Once):
        return [timing.at.astimezone(UTC)] if start <= timing.at < end else []
    first = timing.to_local(start - _MARGIN)
    last = timing.to_local(end + _MARGIN)
    if timing.valid_from is not None:
        first = max(first, datetime.combine(timing.valid_from, time()))
    if timing.valid_until is not None:
        last = min(last, datetime.combine(timing.valid_until + timedelta(days=1), time()))
    found: list[datetime] = []
    for local in timing.local_starts(first, last):
        if not timing.airs_on(local.date(), holidays):
            continue
        instant = timing.to_utc(local)
        if start <= instant < end:
            found.append(instant)
    found.sort()  # wall-clock order and UTC order differ only around an autumn change
    return found


def _parse_rule(rule: str, dtstart_local: datetime, tz: ZoneInfo) -> Any:
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:"):]
    if not text or any(c in text for c in "\r\n:"):
        raise ScheduleError(f"invalid RRULE {rule!r}: give one rule value such as FREQ=DAILY;BYDAY=MO")
    parts: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ScheduleError(f"invalid RRULE {rule!r}: {part!r} is not NAME=VALUE")
        if key.upper() in parts:
            raise ScheduleError(f"invalid RRULE {rule!r}: {key.upper()} is given twice")
        parts[key.upper()] = value
    freq = parts.get("FREQ", "").upper()
    if not freq:
        raise ScheduleError(f"invalid RRULE {rule!r}: FREQ is required")
    if freq in ("SECONDLY", "MINUTELY"):
        raise ScheduleError(f"FREQ={freq} is not supported: a slot recurs at most hourly; "
                            "use a repeat policy for repeats every few minutes")
    if freq not in _SUPPORTED_FREQS:
        raise ScheduleError(f"invalid RRULE {rule!r}: unknown FREQ={freq}")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ScheduleError("COUNT and UNTIL cannot both be set in one RRULE (RFC 5545 section 3.3.10)")
    if "UNTIL" in parts:
        parts["UNTIL"] = _local_until(parts["UNTIL"], tz, rule)
    normalised = ";".join(f"{k}={v}" for k, v in parts.items())
    try:
        parsed = rrulestr(normalised, dtstart=dtstart_local)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ScheduleError(f"invalid RRULE {rule!r}: {exc}") from exc
    # dateutil walks period by period up to the year 9999 when day filters never match (seconds of CPU for
    # FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30). The same filters at FREQ=YEARLY walk a year per step, so they
    # tell quickly whether any day matches at all.
    day_filters = {k: v for k, v in parsed._original_rule.items() if k in _DAY_FILTERS}
    if day_filters and "bysetpos" not in parsed._original_rule:
        probe = rrule(YEARLY, dtstart=dtstart_local, until=dtstart_local + _FIRST_START_WITHIN, **day_filters)
        if probe.after(dtstart_local, inc=True) is None:
            raise ScheduleError(f"RRULE {rule!r} matches no day within 8 years of {dtstart_local:%Y-%m-%d}")
    if parsed.after(dtstart_local, inc=True) is None:
        raise ScheduleError(f"RRULE {rule!r} does not occur within 8 years of {dtstart_local:%Y-%m-%d %H:%M}")
    return parsed


def _local_until(value: str, tz: ZoneInfo, rule: str) -> str:
    """UNTIL as a naive local wall-clock time, as dateutil wants it next to a naive DTSTART.

    RFC 5545 writes UNTIL in UTC when DTSTART has a TZID; a date-only UNTIL includes its whole day.
    """
    try:
        if len(value) == 8:
            day = datetime.strptime(value, "%Y%m%d")
            return f"{day:%Y%m%d}T235959"
        if value.upper().endswith("Z"):
            instant = datetime.strptime(value[:-1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            return f"{instant.astimezone(tz):%Y%m%dT%H%M%S}"
        datetime.strptime(value, "%Y%m%dT%H%M%S")
        return value
    except ValueError as exc:
        raise ScheduleError(f"invalid RRULE {rule!r}: UNTIL={value} is not a date or date-time") from exc
