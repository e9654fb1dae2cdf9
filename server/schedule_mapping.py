"""Between stored broadcasts and the scheduling domain: validation of timings, and rows → specs.

Everything that decides *when* lives in `schedules`; this module only translates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId, AreaTree, AudioAsset, Device, DeviceAgentId, Priority, ScheduleError, resolve_targets
from schedules.broadcasts import BroadcastSpec, ProgrammeItem, RepeatPolicy
from schedules.calendars import HolidayCalendar, VietnamHolidays
from schedules.timing import Once, Recurring, slot_starts
from server.api.schemas import RepeatIn, TimingIn
from server.directory import load_tree
from server.errors import Invalid
from server.models import Broadcast
from server.models import Device as DeviceRow

FIRST_SLOT_SEARCH = timedelta(days=400)
"""How far ahead a recurrence must air at least once to be accepted."""


@dataclass(frozen=True)
class ValidatedTiming:
    first_at: datetime
    rrule: str
    start_local: str


@cache
def holiday_calendar() -> HolidayCalendar:
    return VietnamHolidays()


def _parse_date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise Invalid(f"{name} must be a date like 2026-12-31, not {text!r}") from exc


def recurring_of(rrule: str, start_local: str, tz: str, valid_until: str | None, exdates: list[str],
                 holiday_rule: str) -> Recurring:
    try:
        start = datetime.fromisoformat(start_local)
    except ValueError as exc:
        raise Invalid(f"start must be a local time like 2026-12-01T05:30, not {start_local!r}") from exc
    if start.tzinfo is not None:
        raise Invalid("start is a local wall-clock time: give the zone in tz, not an offset")
    try:
        return Recurring(rrule, start, zone=tz,
                         valid_until=_parse_date(valid_until, "valid_until") if valid_until else None,
                         exception_dates=frozenset(_parse_date(d, "exdates") for d in exdates),
                         holiday_rule=holiday_rule)  # type: ignore[arg-type]
    except ScheduleError as exc:
        raise Invalid(str(exc)) from exc


def validate_timing(timing: TimingIn, repeat: RepeatIn | None, *, now: datetime, lead: timedelta) -> ValidatedTiming:
    if timing.kind == "now":
        first = now + lead
        rrule = start_local = ""
    elif timing.kind == "once":
        if timing.at is None:
            raise Invalid("a one-off broadcast needs its time (timing.at)")
        if timing.at.tzinfo is None:
            raise Invalid("the time must include a time zone offset, e.g. 2026-11-27T17:00:00+07:00")
        if timing.at <= now:
            raise Invalid("the time is in the past")
        first, rrule, start_local = timing.at, "", ""
    else:
        if not timing.rrule or not timing.start:
            raise Invalid("a recurring broadcast needs rrule (e.g. FREQ=DAILY) and start (local time)")
        recurring = recurring_of(timing.rrule, timing.start, timing.tz, timing.valid_until, timing.exdates,
                                 timing.holidays)
        starts = slot_starts(recurring, now, now + FIRST_SLOT_SEARCH, holiday_calendar())
        if not starts:
            raise Invalid("the rule never airs between now and its end (check valid_until, exdates, holidays)")
        first = starts[0]
        rrule = timing.rrule.strip().removeprefix("RRULE:")
        start_local = datetime.fromisoformat(timing.start).isoformat(timespec="seconds")
    if repeat is not None:
        if repeat.count is None and repeat.until is None:
            raise Invalid("a repeat needs count or until")
        if repeat.until is not None and repeat.until.tzinfo is None:
            raise Invalid("repeat.until must include a time zone offset")
        if repeat.until is not None and repeat.until <= first:
            raise Invalid("repeat.until is before the first airing")
    return ValidatedTiming(first, rrule, start_local)


def spec_of(broadcast: Broadcast, agents: frozenset[DeviceAgentId]) -> BroadcastSpec | None:
    """The domain's view of a stored broadcast; None while any item has no audio yet."""
    items: list[ProgrammeItem] = []
    for item in broadcast.items:
        audio = item.announcement.audio
        if audio is None:
            return None
        items.append(ProgrammeItem(item.announcement.title,
                                   AudioAsset(audio.sha256, audio.duration_ms, audio.size_bytes)))
    if broadcast.timing == "recurring":
        timing: Once | Recurring = recurring_of(broadcast.rrule, broadcast.start_local, broadcast.tz,
                                                broadcast.valid_until, list(broadcast.exdates),
                                                broadcast.holiday_rule)
    else:
        timing = Once(broadcast.play_at)
    repeat = None
    if broadcast.repeat_every_min:
        repeat = RepeatPolicy(every=timedelta(minutes=broadcast.repeat_every_min), times=broadcast.repeat_count,
                              until=broadcast.repeat_until)
    return BroadcastSpec(
        broadcast.id, broadcast.title, Priority[broadcast.priority.upper()], tuple(items), timing, agents,
        max_duration=timedelta(minutes=broadcast.slot_minutes) if broadcast.slot_minutes else None,
        repeat=repeat, on_preempt=broadcast.on_preempt,  # type: ignore[arg-type]
        exercise=broadcast.exercise)


@dataclass(frozen=True)
class Fleet:
    """The area tree and every device, as target resolution needs them."""

    tree: AreaTree
    devices: Mapping[DeviceAgentId, Device]
    agent_by_device_id: Mapping[int, DeviceAgentId]


def load_fleet(db: Session) -> Fleet:
    rows = db.scalars(select(DeviceRow)).all()
    return Fleet(load_tree(db), {DeviceAgentId(d.agent_id): Device(DeviceAgentId(d.agent_id), AreaId(d.area_id))
                                 for d in rows}, {d.id: DeviceAgentId(d.agent_id) for d in rows})


def agents_of(broadcast: Broadcast, fleet: Fleet) -> frozenset[DeviceAgentId]:
    tree = fleet.tree
    area_ids = [AreaId(t.area_id) for t in broadcast.targets if t.area_id is not None and AreaId(t.area_id) in tree]
    agent_ids = [fleet.agent_by_device_id[t.device_id] for t in broadcast.targets
                 if t.device_id is not None and t.device_id in fleet.agent_by_device_id]
    return resolve_targets(tree, fleet.devices, area_ids, agent_ids)
