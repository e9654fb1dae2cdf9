"""iCalendar (RFC 5545) export of broadcasts: plain text generation, no dependency.

A recurring broadcast becomes one VEVENT with ``DTSTART;TZID=``, its RRULE and EXDATEs for the slots the
domain leaves out (validity window, exception dates, skipped holidays), limited to the export window with
UNTIL. What an RRULE cannot say (holidays only, repeats within a slot, a one-off with repeats) is written
as explicit dates (DTSTART plus RDATE) within the window. A VTIMEZONE is generated from the zone's
transitions so that calendar programs need no tz database of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from schedules.broadcasts import BroadcastSpec, slot_times
from schedules.calendars import HolidayCalendar
from schedules.timing import Once, Recurring

__all__ = ["EXERCISE_LABEL", "fold_line", "to_ical"]

EXERCISE_LABEL = "[DIỄN TẬP] "
"""Put before the title of an exercise/test broadcast wherever it is shown."""

_FOLD_AT = 75  # octets per line, CRLF excluded (RFC 5545 section 3.1)


def to_ical(broadcasts: Iterable[BroadcastSpec], *, dtstamp: datetime, window_start: datetime,
            window_end: datetime, holidays: HolidayCalendar, name: str = "Loa", uid_domain: str = "loa") -> str:
    """A VCALENDAR of the broadcasts, exact for every start in [window_start, window_end)."""
    events: list[list[str]] = []
    zones: dict[str, ZoneInfo] = {}
    earliest = window_start
    for spec in sorted(broadcasts, key=lambda b: b.broadcast_id):
        lines = _event(spec, dtstamp=dtstamp, window_start=window_start, window_end=window_end,
                       holidays=holidays, uid_domain=uid_domain)
        if lines is None:
            continue
        events.append(lines)
        if isinstance(spec.timing, Recurring) and any(line.startswith("RRULE:") for line in lines):
            zones[spec.timing.zone] = spec.timing.tz
            earliest = min(earliest, spec.timing.to_utc(spec.timing.dtstart_local))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Loa//Commune loudspeakers//VI", "CALSCALE:GREGORIAN",
             f"X-WR-CALNAME:{_text(name)}"]
    for zone_name in sorted(zones):
        lines.extend(_vtimezone(zone_name, zones[zone_name], earliest, window_end))
    for event in events:
        lines.extend(event)
    lines.append("END:VCALENDAR")
    return "".join(fold_line(line) + "\r\n" for line in lines)


def fold_line(line: str) -> str:
    """Fold at 75 octets without splitting a UTF-8 character; continuation lines start with a space."""
    pieces: list[str] = []
    current = ""
    size = 0
    limit = _FOLD_AT
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            pieces.append(current)
            current, size, limit = "", 0, _FOLD_AT - 1  # the leading space counts
        current += char
        size += width
    pieces.append(current)
    return "\r\n ".join(pieces)


def _event(spec: BroadcastSpec, *, dtstamp: datetime, window_start: datetime, window_end: datetime,
           holidays: HolidayCalendar, uid_domain: str) -> list[str] | None:
    summary = (EXERCISE_LABEL if spec.exercise else "") + spec.title
    head = ["BEGIN:VEVENT", f"UID:b{spec.broadcast_id}@{uid_domain}", f"DTSTAMP:{_utc(dtstamp)}",
            f"SUMMARY:{_text(summary)}", f"DURATION:{_duration(spec.slot_duration)}",
            f"PRIORITY:{_ical_priority(spec)}"]
    if spec.items and len(spec.items) > 1:
        head.append("DESCRIPTION:" + _text("\n".join(f"{i + 1}. {item.title}" for i, item in enumerate(spec.items))))
    timing = spec.timing
    if isinstance(timing, Recurring) and spec.repeat is None and timing.holiday_rule != "only":
        body = _recurring(timing, window_end, holidays)
    else:
        starts = slot_times(spec, window_start, window_end, holidays) if not (
            isinstance(timing, Once) and spec.repeat is None) else [timing.at]
        if not starts:
            return None
        body = [f"DTSTART:{_utc(starts[0])}"]
        if len(starts) > 1:
            body.append("RDATE:" + ",".join(_utc(s) for s in starts[1:]))
    return [*head, *body, "END:VEVENT"]


def _recurring(timing: Recurring, window_end: datetime, holidays: HolidayCalendar) -> list[str]:
    last_local = timing.to_local(window_end)
    starts = timing.local_starts(timing.dtstart_local, last_local)
    until = window_end - timedelta(seconds=1)  # RFC 5545 UNTIL is inclusive; the window is not
    if timing.valid_until is not None:
        end_of_validity = datetime.combine(timing.valid_until + timedelta(days=1), datetime.min.time())
        until = min(until, timing.to_utc(end_of_validity) - timedelta(seconds=1))
    parts = [p for p in timing.rule_text.split(";") if not p.startswith(("COUNT=", "UNTIL="))]
    rule_until = _rule_until(timing)
    if rule_until is not None:
        until = min(until, rule_until)
    parts.append(f"UNTIL={_utc(until)}")
    zone = timing.zone
    lines = [f"DTSTART;TZID={zone}:{timing.dtstart_local:%Y%m%dT%H%M%S}", "RRULE:" + ";".join(parts)]
    excluded = [s for s in starts if timing.to_utc(s) <= until and not timing.airs_on(s.date(), holidays)]
    if not starts or starts[0] != timing.dtstart_local:
        # RFC 5545 counts DTSTART as the first instance even when the rule does not match it; dateutil and
        # Loa do not, so calendar programs are told explicitly.
        excluded.insert(0, timing.dtstart_local)
    if excluded:
        lines.append(f"EXDATE;TZID={zone}:" + ",".join(f"{s:%Y%m%dT%H%M%S}" for s in excluded))
    return lines


def _rule_until(timing: Recurring) -> datetime | None:
    """The rule's own last start (UTC), from its UNTIL or its COUNT."""
    for part in timing.rule_text.split(";"):
        if part.startswith("UNTIL="):
            return datetime.strptime(part[len("UNTIL="):], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if timing.has_count:
        local = timing.local_starts(timing.dtstart_local, datetime.max.replace(year=9998))
        return timing.to_utc(local[-1]) if local else None
    return None


def _vtimezone(name: str, zone: tzinfo, first: datetime, last: datetime) -> list[str]:
    lines = ["BEGIN:VTIMEZONE", f"TZID:{name}"]
    start = first - timedelta(days=1)
    offset = _offset(zone, start)
    observances = [(start, offset, offset, zone.tzname(start.astimezone(zone)) or "",
                    bool(start.astimezone(zone).dst()))]
    day = start
    while day < last + timedelta(days=1):
        following = day + timedelta(days=1)
        if _offset(zone, following) != offset:
            low, high = day, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if _offset(zone, middle) == offset else (low, middle)
            new = _offset(zone, high)
            local = high.astimezone(zone)
            observances.append((high, offset, new, zone.tzname(local) or "", bool(local.dst())))
            offset = new
        day = following
    for instant, before, after, abbreviation, daylight in observances:
        kind = "DAYLIGHT" if daylight else "STANDARD"
        lines += [f"BEGIN:{kind}", f"DTSTART:{(instant + before).replace(tzinfo=None):%Y%m%dT%H%M%S}",
                  f"TZOFFSETFROM:{_hhmm(before)}", f"TZOFFSETTO:{_hhmm(after)}"]
        if abbreviation:
            lines.append(f"TZNAME:{_text(abbreviation)}")
        lines.append(f"END:{kind}")
    lines.append("END:VTIMEZONE")
    return lines


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _hhmm(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _utc(instant: datetime) -> str:
    return f"{instant.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _duration(length: timedelta) -> str:
    seconds = max(1, round(length.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + (
        f"{seconds}S" if seconds or not (hours or minutes) else "")


def _ical_priority(spec: BroadcastSpec) -> int:
    # RFC 5545: 1 is the highest, 9 the lowest.
    return {0: 9, 1: 5, 2: 1}[int(spec.priority)]


def _text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))
