"""Broadcasts as the domain sees them, and their expansion into occurrences.

A broadcast is one item or a programme (ordered items in a slot), with a priority, a timing, the agents
it targets, an optional slot length and an optional repeat policy. Expansion is pure: the caller passes
the window and the holiday calendar. Needs python-dateutil (server extra) through `schedules.timing`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from schedules.calendars import HolidayCalendar
from schedules.errors import ScheduleError
from schedules.model import AudioAsset, DeviceAgentId, Occurrence, OnPreempt, Priority
from schedules.timing import Once, Recurring, Timing, slot_starts

__all__ = [
    "BroadcastSpec", "ProgrammeItem", "ProgrammeSlot", "RepeatPolicy", "next_programme_slot",
    "occurrences_between", "priority_bulletin_for", "slot_times",
]

MIN_REPEAT_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class ProgrammeItem:
    title: str
    audio: AudioAsset


@dataclass(frozen=True)
class RepeatPolicy:
    """Air each slot again every ``every``: ``times`` airings in all (the first included) and/or while
    the start is before ``until`` (UTC). Storm bulletins: every 2 h while the bulletin is in force."""

    every: timedelta
    times: int | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.every < MIN_REPEAT_INTERVAL:
            raise ScheduleError(f"a repeat interval must be at least {MIN_REPEAT_INTERVAL}, not {self.every}")
        if self.times is None and self.until is None:
            raise ScheduleError("a repeat policy needs a number of airings, an end time, or both")
        if self.times is not None and self.times < 1:
            raise ScheduleError(f"a repeat policy airs at least once, not {self.times} times")
        if self.until is not None and self.until.tzinfo is None:
            raise ScheduleError("a repeat policy's end time must carry its time zone (UTC)")

    def starts(self, first: datetime) -> list[datetime]:
        found: list[datetime] = []
        at = first
        while (self.times is None or len(found) < self.times) and (self.until is None or at < self.until):
            found.append(at)
            at += self.every
        return found

    def span(self) -> timedelta | None:
        """From the first airing to the last, when bounded by a count."""
        return None if self.times is None else self.every * (self.times - 1)


@dataclass(frozen=True)
class BroadcastSpec:
    broadcast_id: int
    title: str
    priority: Priority
    items: tuple[ProgrammeItem, ...]
    """One item, or a programme's items in airing order."""
    timing: Timing
    agent_ids: frozenset[DeviceAgentId]
    max_duration: timedelta | None = None
    """Length of the slot: items still playing at its end are trimmed there."""
    repeat: RepeatPolicy | None = None
    on_preempt: OnPreempt = "skip"
    exercise: bool = False

    def __post_init__(self) -> None:
        if not self.items:
            raise ScheduleError("a broadcast needs at least one item")
        if self.max_duration is not None and self.max_duration <= timedelta(0):
            raise ScheduleError(f"a slot length must be positive, not {self.max_duration}")
        if isinstance(self.timing, Recurring) and self.repeat is not None and self.repeat.times is None:
            raise ScheduleError("a recurring broadcast repeats a bounded number of times per slot: set times")
        if self.on_preempt not in ("skip", "resume"):
            raise ScheduleError(f"on_preempt must be skip or resume, not {self.on_preempt!r}")

    @property
    def is_programme(self) -> bool:
        return len(self.items) > 1

    @property
    def content_duration(self) -> timedelta:
        return timedelta(milliseconds=sum(item.audio.duration_ms for item in self.items))

    @property
    def slot_duration(self) -> timedelta:
        """What a calendar shows: the slot length, or the items' total length."""
        return self.max_duration or self.content_duration


@dataclass(frozen=True)
class ProgrammeSlot:
    broadcast_id: int
    play_at: datetime
    stop_at: datetime | None
    agent_ids: frozenset[DeviceAgentId]


def slot_times(spec: BroadcastSpec, start: datetime, end: datetime, holidays: HolidayCalendar) -> list[datetime]:
    """Every slot start (repeats included) with ``start <= t < end``, sorted."""
    if isinstance(spec.timing, Once):
        anchors = [spec.timing.at] if spec.timing.at < end else []
    else:
        span = spec.repeat.span() if spec.repeat is not None else timedelta(0)
        assert span is not None  # BroadcastSpec refuses unbounded repeats of recurring slots
        anchors = slot_starts(spec.timing, start - span, end, holidays)
    found: set[datetime] = set()
    for anchor in anchors:
        for at in spec.repeat.starts(anchor) if spec.repeat is not None else [anchor]:
            if start <= at < end:
                found.add(at)
    return sorted(found)


def occurrences_between(spec: BroadcastSpec, start: datetime, end: datetime,
                        holidays: HolidayCalendar) -> list[Occurrence]:
    """The occurrences of every slot that starts in [start, end); a programme's items back to back."""
    found: list[Occurrence] = []
    for slot in slot_times(spec, start, end, holidays):
        stop_at = slot + spec.max_duration if spec.max_duration is not None else None
        offset = timedelta(0)
        for index, item in enumerate(spec.items):
            found.append(Occurrence(
                broadcast_id=spec.broadcast_id, title=item.title, priority=spec.priority, play_at=slot + offset,
                audio=item.audio, agent_ids=spec.agent_ids, stop_at=stop_at, on_preempt=spec.on_preempt,
                exercise=spec.exercise, slot_at=slot if spec.is_programme else None,
                item_index=index if spec.is_programme else None))
            offset += timedelta(milliseconds=item.audio.duration_ms)
    return found


def next_programme_slot(programmes: Iterable[BroadcastSpec], *, now: datetime, holidays: HolidayCalendar,
                        within: timedelta = timedelta(days=8)) -> ProgrammeSlot | None:
    """The first programme slot that starts at or after ``now`` (ties: the lowest broadcast id).

    The caller passes the programmes of the area the bulletin is for; a priority bulletin is then
    scheduled at that slot's start and plays ahead of the programme's items by the priority rule.
    """
    best: ProgrammeSlot | None = None
    for spec in programmes:
        starts = slot_times(spec, now, now + within, holidays)
        if not starts:
            continue
        candidate = ProgrammeSlot(
            broadcast_id=spec.broadcast_id, play_at=starts[0], agent_ids=spec.agent_ids,
            stop_at=starts[0] + spec.max_duration if spec.max_duration is not None else None)
        if best is None or (candidate.play_at, candidate.broadcast_id) < (best.play_at, best.broadcast_id):
            best = candidate
    return best


def priority_bulletin_for(slot: ProgrammeSlot, *, broadcast_id: int, title: str, items: tuple[ProgrammeItem, ...],
                          agent_ids: frozenset[DeviceAgentId] | None = None, exercise: bool = False) -> BroadcastSpec:
    """A priority bulletin placed at the start of ``slot`` on the slot's agents (or those of them named)."""
    targets = slot.agent_ids if agent_ids is None else slot.agent_ids & agent_ids
    return BroadcastSpec(broadcast_id=broadcast_id, title=title, priority=Priority.PRIORITY, items=items,
                         timing=Once(slot.play_at), agent_ids=targets, exercise=exercise)
