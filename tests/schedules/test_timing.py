"""Timing: RRULE validation, wall-clock expansion across DST, month ends, leap days, exclusions, holidays."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules import ScheduleError
from schedules.calendars import NO_HOLIDAYS, FixedHolidays, VietnamHolidays
from schedules.timing import Once, Recurring, slot_starts

WEEKDAYS = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local_hcm(instants: list[datetime]) -> list[str]:
    return [f"{i.astimezone(HCM):%a %Y-%m-%d %H:%M}" for i in instants]


# --- Validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "message"), [
    ("FREQ=MINUTELY;INTERVAL=30", "FREQ=MINUTELY is not supported"),
    ("FREQ=SECONDLY", "FREQ=SECONDLY is not supported"),
    ("FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z", "COUNT and UNTIL cannot both be set"),
    ("BYDAY=MO", "FREQ is required"),
    ("FREQ=FORTNIGHTLY", "unknown FREQ"),
    ("FREQ=DAILY;BYDAY=XX", "invalid RRULE"),
    ("FREQ=DAILY;FOO=1", "invalid RRULE"),
    ("FREQ=DAILY;BYDAY", "is not NAME=VALUE"),
    ("FREQ=DAILY;FREQ=WEEKLY", "given twice"),
    ("FREQ=DAILY\nDTSTART:20270101T000000", "give one rule value"),
    ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL=tomorrow is not a date"),
    ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "matches no day"),
    ("FREQ=HOURLY;INTERVAL=2;BYHOUR=6", "invalid RRULE"),  # 05:30 + 2 h steps never reach 06:xx
])
def test_bad_rules_are_refused_with_a_clear_message(rule: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Recurring(rule, datetime(2027, 1, 1, 5, 30))


def test_other_timing_errors() -> None:
    with pytest.raises(ScheduleError, match="wall-clock time"):
        Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30, tzinfo=UTC))
    with pytest.raises(ScheduleError, match="unknown time zone"):
        Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), zone="Mars/Olympus")
    with pytest.raises(ScheduleError, match="validity window is empty"):
        Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), valid_from=date(2027, 2, 1), valid_until=date(2027, 1, 1))
    with pytest.raises(ScheduleError, match="holiday rule"):
        Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), holiday_rule="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="time zone"):
        Once(datetime(2027, 1, 1, 5, 30))


def test_rrule_prefix_and_utc_until_are_accepted() -> None:
    rule = Recurring("RRULE:FREQ=DAILY;UNTIL=20270103T000000Z", datetime(2027, 1, 1, 5, 30))
    # 00:00 UTC on 3 January is 07:00 local: the 05:30 start of that day is still included.
    assert local_hcm(slot_starts(rule, utc(2026, 12, 30), utc(2027, 1, 10), NO_HOLIDAYS)) == [
        "Fri 2027-01-01 05:30", "Sat 2027-01-02 05:30", "Sun 2027-01-03 05:30"]
    assert rule.rule_text == "FREQ=DAILY;UNTIL=20270103T000000Z"


def test_date_only_until_includes_its_whole_day() -> None:
    rule = Recurring("FREQ=DAILY;UNTIL=20270102", datetime(2027, 1, 1, 17, 0))
    assert local_hcm(slot_starts(rule, utc(2026, 12, 30), utc(2027, 1, 10), NO_HOLIDAYS)) == [
        "Fri 2027-01-01 17:00", "Sat 2027-01-02 17:00"]


# --- Expansion --------------------------------------------------------------------------------------

def test_weekday_slot_across_a_month_end_and_a_leap_day() -> None:
    rule = Recurring(WEEKDAYS, datetime(2028, 1, 3, 5, 30))
    # Thursday 24 Feb to Friday 3 March 2028 (local); 29 February 2028 is a Tuesday.
    starts = slot_starts(rule, utc(2028, 2, 23, 17), utc(2028, 3, 3, 17), NO_HOLIDAYS)
    assert local_hcm(starts) == [
        "Thu 2028-02-24 05:30", "Fri 2028-02-25 05:30", "Mon 2028-02-28 05:30", "Tue 2028-02-29 05:30",
        "Wed 2028-03-01 05:30", "Thu 2028-03-02 05:30", "Fri 2028-03-03 05:30"]
    assert starts[3] == utc(2028, 2, 28, 22, 30)  # 05:30 ICT is 22:30 UTC the day before


def test_weekday_slot_across_a_30_day_month_end() -> None:
    rule = Recurring(WEEKDAYS, datetime(2027, 1, 4, 5, 30))
    starts = slot_starts(rule, utc(2027, 4, 28), utc(2027, 5, 5), NO_HOLIDAYS)
    assert local_hcm(starts) == ["Thu 2027-04-29 05:30", "Fri 2027-04-30 05:30", "Mon 2027-05-03 05:30",
                                 "Tue 2027-05-04 05:30", "Wed 2027-05-05 05:30"]  # 22:30 UTC on the 4th


@pytest.mark.parametrize(("window_start", "expected_utc_hour"), [
    (utc(2027, 3, 25), 4),   # CET (+01:00): 05:30 local is 04:30 UTC
    (utc(2027, 3, 29), 3),   # CEST (+02:00) after the change on Sunday 28 March: 03:30 UTC
    (utc(2027, 11, 1), 4),   # CET again after 31 October
])
def test_daylight_saving_never_shifts_the_wall_clock_time(window_start: datetime, expected_utc_hour: int) -> None:
    rule = Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), zone="Europe/Berlin")
    starts = slot_starts(rule, window_start, window_start + timedelta(days=2), NO_HOLIDAYS)
    assert [s.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") for s in starts] == ["05:30", "05:30"]
    assert {s.hour for s in starts} == {expected_utc_hour}


def test_dst_change_day_itself_keeps_the_wall_clock_time() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    rule = Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), zone="Europe/Berlin")
    starts = slot_starts(rule, utc(2027, 3, 27), utc(2027, 3, 30), NO_HOLIDAYS)
    assert [f"{s.astimezone(berlin):%d %H:%M %Z}" for s in starts] == ["27 05:30 CET", "28 05:30 CEST", "29 05:30 CEST"]
    # The two starts around the change are 23 hours apart: wall-clock, not a fixed 24 h step.
    assert starts[1] - starts[0] == timedelta(hours=23)


def test_start_in_the_spring_forward_gap_plays_at_the_same_reading_in_the_old_offset() -> None:
    rule = Recurring("FREQ=DAILY", datetime(2027, 1, 1, 2, 30), zone="Europe/Berlin")
    starts = slot_starts(rule, utc(2027, 3, 27, 12), utc(2027, 3, 28, 12), NO_HOLIDAYS)
    assert starts == [utc(2027, 3, 28, 1, 30)]  # 03:30 CEST


def test_validity_window_and_exception_dates() -> None:
    rule = Recurring("FREQ=DAILY", datetime(2027, 1, 1, 17, 0), valid_from=date(2027, 1, 5),
                     valid_until=date(2027, 1, 9), exception_dates=frozenset({date(2027, 1, 7)}))
    starts = slot_starts(rule, utc(2027, 1, 1), utc(2027, 2, 1), NO_HOLIDAYS)
    assert [s.astimezone(HCM).day for s in starts] == [5, 6, 8, 9]


def test_holiday_rules_with_a_fixed_calendar() -> None:
    days_off = FixedHolidays(frozenset({date(2027, 1, 2), date(2027, 1, 4)}))
    window = (utc(2026, 12, 31, 17), utc(2027, 1, 5, 17))  # local 1..5 January
    def days(rule: str) -> list[int]:
        timing = Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), holiday_rule=rule)  # type: ignore[arg-type]
        return [s.astimezone(HCM).day for s in slot_starts(timing, *window, days_off)]
    assert days("ignore") == [1, 2, 3, 4, 5]
    assert days("skip") == [1, 3, 5]
    assert days("only") == [2, 4]


def test_tet_2027_is_skipped_with_the_real_vietnamese_calendar() -> None:
    calendar = VietnamHolidays()
    # holidays 0.109: Tết Đinh Mùi is Saturday 6 February 2027; the days off run 4..10 February.
    assert calendar.is_holiday(date(2027, 2, 6))
    assert not calendar.is_holiday(date(2027, 2, 11))
    rule = Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), holiday_rule="skip")
    starts = slot_starts(rule, utc(2027, 2, 1), utc(2027, 2, 14), calendar)
    local_days = [s.astimezone(HCM).day for s in starts]
    assert local_days == [2, 3, 11, 12, 13, 14]  # 1 Feb 05:30 local is 31 Jan UTC: outside the window
    assert calendar.between(date(2027, 2, 1), date(2027, 2, 28)) == [date(2027, 2, d) for d in range(4, 11)]


def test_once_is_inside_its_window_only() -> None:
    once = Once(utc(2027, 1, 1, 3))
    assert slot_starts(once, utc(2027, 1, 1), utc(2027, 1, 2), NO_HOLIDAYS) == [utc(2027, 1, 1, 3)]
    assert slot_starts(once, utc(2027, 1, 1, 3, 0, 1), utc(2027, 1, 2), NO_HOLIDAYS) == []
    assert slot_starts(once, utc(2027, 1, 1), utc(2027, 1, 1, 3), NO_HOLIDAYS) == []


def test_window_must_be_aware() -> None:
    with pytest.raises(ScheduleError, match="aware"):
        slot_starts(Once(utc(2027, 1, 1)), datetime(2027, 1, 1), utc(2027, 1, 2), NO_HOLIDAYS)


def test_a_rule_started_years_ago_is_as_cheap_as_a_new_one() -> None:
    old = Recurring("FREQ=HOURLY;INTERVAL=2", datetime(2000, 1, 1, 0, 0))
    # Without moving DTSTART forward, dateutil would step through ~110,000 two-hour periods here.
    starts = slot_starts(old, utc(2027, 6, 1), utc(2027, 6, 3), NO_HOLIDAYS)
    assert len(starts) == 24
    assert all(s.astimezone(HCM).hour % 2 == 0 for s in starts)


def test_count_rules_are_counted_from_their_real_start() -> None:
    rule = Recurring("FREQ=DAILY;COUNT=3", datetime(2027, 1, 1, 5, 30))
    assert len(slot_starts(rule, utc(2026, 1, 1), utc(2028, 1, 1), NO_HOLIDAYS)) == 3
    assert slot_starts(rule, utc(2027, 1, 10), utc(2028, 1, 1), NO_HOLIDAYS) == []


def test_the_package_root_needs_neither_dateutil_nor_holidays() -> None:
    # The agent imports `schedules` (Priority, the error root) without the server extra.
    code = ("import sys, schedules, schedules.plans, schedules.incremental; "
            "print(sorted(m for m in ('dateutil', 'holidays') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stderr


# --- Properties -------------------------------------------------------------------------------------

_RULES = [WEEKDAYS, "FREQ=DAILY", "FREQ=DAILY;INTERVAL=3", "FREQ=WEEKLY;BYDAY=SA,SU", "FREQ=HOURLY;INTERVAL=5",
          "FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=WEEKLY;INTERVAL=2;BYDAY=TU", "FREQ=DAILY;COUNT=40",
          "FREQ=MONTHLY;BYDAY=1MO,-1FR", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"]
_ZONES = ["Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York"]
_DAY = st.dates(min_value=date(2026, 1, 1), max_value=date(2029, 12, 31))


@settings(max_examples=80, deadline=None, database=None)
@given(rule=st.sampled_from(_RULES), zone=st.sampled_from(_ZONES), dtstart=_DAY,
       hour=st.integers(0, 23), minute=st.sampled_from([0, 30, 59]), window_day=_DAY,
       window_hours=st.integers(1, 24 * 20), valid=st.tuples(_DAY, st.integers(0, 400)) | st.none(),
       exceptions=st.frozensets(_DAY, max_size=30), holidays=st.frozensets(_DAY, max_size=30),
       holiday_rule=st.sampled_from(["ignore", "skip", "only"]))
def test_property_expansion_is_exact_and_respects_every_exclusion(
        rule: str, zone: str, dtstart: date, hour: int, minute: int, window_day: date, window_hours: int,
        valid: tuple[date, int] | None, exceptions: frozenset[date], holidays: frozenset[date],
        holiday_rule: str) -> None:
    valid_from, valid_until = (valid[0], valid[0] + timedelta(days=valid[1])) if valid else (None, None)
    timing = Recurring(rule, datetime.combine(dtstart, datetime.min.time()).replace(hour=hour, minute=minute),
                       zone=zone, valid_from=valid_from, valid_until=valid_until, exception_dates=exceptions,
                       holiday_rule=holiday_rule)  # type: ignore[arg-type]
    calendar = FixedHolidays(holidays)
    start = datetime.combine(window_day, datetime.min.time(), tzinfo=UTC)
    end = start + timedelta(hours=window_hours)
    starts = slot_starts(timing, start, end, calendar)
    tz = ZoneInfo(zone)
    for instant in starts:
        day = instant.astimezone(tz).date()
        assert start <= instant < end
        assert valid_from is None or valid_from <= day
        assert valid_until is None or day <= valid_until
        assert day not in exceptions
        if holiday_rule == "skip":
            assert day not in holidays
        if holiday_rule == "only":
            assert day in holidays
    # The same starts as the slow way: every start of the rule from its real DTSTART, filtered.
    everything = timing._rrule.between(timing.to_local(start - timedelta(days=2)),
                                       timing.to_local(end + timedelta(days=2)), inc=True)
    expected = sorted(u for u in (timing.to_utc(local) for local in everything
                                  if timing.airs_on(local.date(), calendar)) if start <= u < end)
    assert starts == expected
