"""iCalendar export: RFC 5545 shape, folding, and a round trip through dateutil's rrulestr."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from schedules import AudioAsset, DeviceAgentId, Priority
from schedules.broadcasts import BroadcastSpec, ProgrammeItem, RepeatPolicy, slot_times
from schedules.calendars import FixedHolidays, HolidayCalendar, VietnamHolidays
from schedules.ical import EXERCISE_LABEL, fold_line, to_ical
from schedules.timing import Once, Recurring, Timing

STAMP = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
WINDOW = (datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC))
AUDIO = AudioAsset(sha256="bb" * 32, duration_ms=15 * 60_000, size_bytes=1)


def spec(broadcast_id: int, timing: Timing, *, title: str = "Chương trình sáng", repeat: RepeatPolicy | None = None,
         exercise: bool = False, items: int = 1) -> BroadcastSpec:
    return BroadcastSpec(broadcast_id, title, Priority.NORMAL,
                         tuple(ProgrammeItem(f"Mục {n + 1}", AUDIO) for n in range(items)), timing,
                         frozenset({DeviceAgentId("a")}), max_duration=timedelta(minutes=30) if items > 1 else None,
                         repeat=repeat, exercise=exercise)


def events(text: str) -> list[list[str]]:
    """Unfolded content lines of each VEVENT."""
    unfolded = text.replace("\r\n ", "").split("\r\n")
    found: list[list[str]] = []
    for line in unfolded:
        if line == "BEGIN:VEVENT":
            found.append([])
        elif found and found[-1] is not None and line != "END:VEVENT" and not line.startswith("END:V"):
            found[-1].append(line)
    return found


def round_trip(event: list[str]) -> list[datetime]:
    lines = [line for line in event if line.split(":")[0].split(";")[0] in ("DTSTART", "RRULE", "EXDATE", "RDATE")]
    # compatible=True: RFC 5545 counts DTSTART as the first instance (dateutil does not by default).
    ruleset = rrulestr("\n".join(lines), compatible=True, tzids=lambda name: ZoneInfo(name))
    return [d.astimezone(UTC) for d in ruleset.between(WINDOW[0], WINDOW[1] - timedelta(microseconds=1), inc=True)]


CASES: list[tuple[str, Timing, RepeatPolicy | None]] = [
    ("weekdays", Recurring("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", datetime(2026, 12, 2, 5, 30), holiday_rule="skip",
                           exception_dates=frozenset({date(2027, 1, 20)}), valid_until=date(2027, 3, 15)), None),
    ("berlin", Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), zone="Europe/Berlin",
                         valid_from=date(2027, 2, 1)), None),
    ("count", Recurring("FREQ=DAILY;INTERVAL=3;COUNT=20", datetime(2027, 1, 10, 17, 0)), None),
    ("not-on-dtstart", Recurring("FREQ=WEEKLY;BYDAY=MO", datetime(2027, 1, 6, 17, 0)), None),
    ("holidays-only", Recurring("FREQ=DAILY", datetime(2027, 1, 1, 7, 0), holiday_rule="only"), None),
    ("repeats", Recurring("FREQ=WEEKLY;BYDAY=SA", datetime(2027, 1, 2, 20, 0)),
     RepeatPolicy(every=timedelta(hours=2), times=3)),
    ("storm", Once(datetime(2027, 2, 10, 1, 0, tzinfo=UTC)),
     RepeatPolicy(every=timedelta(hours=2), until=datetime(2027, 2, 10, 12, 0, tzinfo=UTC))),
    ("once", Once(datetime(2027, 3, 3, 3, 3, tzinfo=UTC)), None),
]


@pytest.mark.parametrize("calendar", [VietnamHolidays(), FixedHolidays(frozenset({date(2027, 1, 1)}))],
                         ids=["vietnam", "fixed"])
@pytest.mark.parametrize(("name", "timing", "repeat"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_through_rrulestr_gives_the_domain_starts(name: str, timing: Timing, repeat: RepeatPolicy | None,
                                                             calendar: HolidayCalendar) -> None:
    broadcast = spec(1, timing, repeat=repeat)
    text = to_ical([broadcast], dtstamp=STAMP, window_start=WINDOW[0], window_end=WINDOW[1], holidays=calendar)
    expected = slot_times(broadcast, *WINDOW, calendar)
    found = events(text)
    if not expected:
        assert found == []
        return
    (event,) = found
    assert round_trip(event) == expected


def test_calendar_shape_crlf_folding_and_escaping() -> None:
    long_title = "Thông báo về việc tổ chức tiêm chủng mở rộng, phòng chống dịch; lịch tháng 3 năm 2027 " * 2
    broadcasts = [spec(2, Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30)), title=long_title, items=3),
                  spec(3, Once(datetime(2027, 3, 3, 3, 3, tzinfo=UTC)), title="Diễn tập PCCC", exercise=True)]
    text = to_ical(broadcasts, dtstamp=STAMP, window_start=WINDOW[0], window_end=WINDOW[1],
                   holidays=FixedHolidays(frozenset()))
    assert text.startswith("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n") and text.endswith("END:VCALENDAR\r\n")
    assert "\n" not in text.replace("\r\n", "")
    for line in text.split("\r\n"):
        assert len(line.encode()) <= 75
    unfolded = text.replace("\r\n ", "")
    assert "BEGIN:VTIMEZONE\r\nTZID:Asia/Ho_Chi_Minh\r\nBEGIN:STANDARD" in unfolded
    assert "TZOFFSETTO:+0700" in unfolded
    assert "DTSTART;TZID=Asia/Ho_Chi_Minh:20270101T053000" in unfolded
    assert "UID:b2@loa" in unfolded and "DTSTAMP:20270115T080000Z" in unfolded
    assert "DURATION:PT30M" in unfolded and "DURATION:PT15M" in unfolded
    assert "SUMMARY:" + long_title.replace(",", "\\,").replace(";", "\\;") in unfolded
    assert f"SUMMARY:{EXERCISE_LABEL}Diễn tập PCCC" in unfolded
    assert "DESCRIPTION:1. Mục 1\\n2. Mục 2\\n3. Mục 3" in unfolded


def test_berlin_vtimezone_lists_both_changes() -> None:
    text = to_ical([spec(1, Recurring("FREQ=DAILY", datetime(2027, 1, 1, 5, 30), zone="Europe/Berlin"))],
                   dtstamp=STAMP, window_start=WINDOW[0], window_end=datetime(2027, 12, 1, tzinfo=UTC),
                   holidays=FixedHolidays(frozenset()))
    assert "BEGIN:DAYLIGHT\r\nDTSTART:20270328T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200" in text
    assert "BEGIN:STANDARD\r\nDTSTART:20271031T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100" in text


def test_folding_never_splits_a_utf8_character() -> None:
    line = "SUMMARY:" + "Thông báo khẩn cấp " * 20
    folded = fold_line(line)
    pieces = folded.split("\r\n")
    assert all(len(p.encode()) <= 75 for p in pieces)
    assert all(p.startswith(" ") for p in pieces[1:])
    assert "".join([pieces[0], *(p[1:] for p in pieces[1:])]) == line
    assert fold_line("short") == "short"
