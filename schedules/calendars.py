"""Holiday calendars: which local dates are public holidays.

A seam so that recurrence rules can say "skip on holidays" or "only on holidays" and tests can pass a fixed
set of days instead of the real Vietnamese calendar. Needs the `holidays` package (server extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

import holidays

__all__ = ["NO_HOLIDAYS", "FixedHolidays", "HolidayCalendar", "VietnamHolidays"]


class HolidayCalendar(Protocol):
    """Implementations MUST be pure (same answer for the same day) and SHOULD be cheap to ask."""

    def is_holiday(self, day: date) -> bool: ...


@dataclass(frozen=True)
class FixedHolidays:
    days: frozenset[date]

    def is_holiday(self, day: date) -> bool:
        return day in self.days


NO_HOLIDAYS = FixedHolidays(frozenset())


class VietnamHolidays:
    """Vietnamese public holidays from `holidays.country_holidays("VN")`: solar ones and the lunar Tết
    days (including the days off the package lists around Tết), Hùng Kings' day and observed days."""

    def __init__(self) -> None:
        self._years: dict[int, frozenset[date]] = {}

    def is_holiday(self, day: date) -> bool:
        days = self._years.get(day.year)
        if days is None:
            # Computed per year on first use and kept: the package builds its table per year.
            days = frozenset(holidays.country_holidays("VN", years=day.year))
            self._years[day.year] = days
        return day in days

    def between(self, first: date, last: date) -> list[date]:
        """Holidays from ``first`` to ``last`` inclusive, in order."""
        found: list[date] = []
        for year in range(first.year, last.year + 1):
            self.is_holiday(date(year, 1, 1))
            found.extend(d for d in self._years[year] if first <= d <= last)
        return sorted(found)
