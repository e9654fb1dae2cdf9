"""Compile occurrences into per-agent timelines: what each agent plays, when, and what yields to what.

The rules (docs/scheduling.md, "Rules", 4) that keep two items from ever sounding at once on one device:
- an arriving item with a *higher* priority preempts what plays (an emergency also preempts an emergency
  of another broadcast: the newest information first); the cut item is over, or, when its
  ``on_preempt`` is "resume", its remainder waits to continue from the cut position;
- an item of *equal or lower* priority waits, or, with ``equal_priority="refuse"``, an item arriving while
  an equal-priority item of another broadcast plays is refused;
- when the device falls silent the waiting item with the highest priority, then the earliest, starts;
- no item plays past its ``stop_at``: it is trimmed there, or dropped if it could only start after it.
Every such decision is returned as a `Conflict` so the API can show it before anything is saved.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Literal

from schedules.model import DeviceAgentId, Occurrence, Priority

EqualPriority = Literal["queue", "refuse"]
Resolution = Literal["preempts", "queued_after", "refused", "trimmed", "resumed"]

TICK = timedelta(seconds=1)
"""The start tolerance promised for emergencies: the compiler places them exactly; an agent has a tick."""

RULES: dict[str, str] = {
    "preempts": "a higher priority (or a newer emergency) interrupts what is playing",
    "queued_after": "equal or lower priority waits until the device is free",
    "refused": "equal priority is refused while another broadcast of that priority plays",
    "trimmed": "nothing plays past the end of its slot",
    "resumed": "an interrupted item set to resume continues where it was cut",
}


@dataclass(frozen=True)
class PlannedItem:
    occurrence: Occurrence
    play_at: datetime
    """When the agent starts it: the occurrence's own time, or later when it was queued."""
    stop_at: datetime | None = None
    """Set when it stops before its natural end: trimmed at its slot end or cut by a preemption."""
    offset_ms: int = 0
    """Where in the audio it starts (non-zero for a resumption)."""
    resumption: bool = False
    """The remainder of an item that was preempted and resumes (for previews; agents resume themselves)."""

    @property
    def id(self) -> str:
        if self.resumption:
            return f"{self.occurrence.id}-r{self.offset_ms}"
        return self.occurrence.id

    @cached_property
    def natural_end(self) -> datetime:
        return self.play_at + timedelta(milliseconds=self.occurrence.audio.duration_ms - self.offset_ms)

    @cached_property
    def end(self) -> datetime:
        natural = self.natural_end
        return natural if self.stop_at is None else min(natural, self.stop_at)


@dataclass(frozen=True)
class Conflict:
    """One decision on one device: ``item_id`` is the item the decision is about (an occurrence id)."""

    agent_id: DeviceAgentId
    item_id: str
    other_id: str
    """The item it yields to or interrupts; for "trimmed", the slot whose end cuts it."""
    resolution: Resolution

    @property
    def rule(self) -> str:
        return RULES[self.resolution]

    @property
    def description(self) -> str:
        return {
            "preempts": f"{self.item_id} interrupts {self.other_id}",
            "queued_after": f"{self.item_id} waits until {self.other_id} has finished",
            "refused": f"{self.item_id} is refused: {self.other_id} of equal priority is playing",
            "trimmed": f"{self.item_id} is cut at the end of slot {self.other_id}",
            "resumed": f"{self.item_id} resumes after {self.other_id}",
        }[self.resolution] + f" ({self.rule})"


@dataclass(frozen=True)
class CompiledPlans:
    timelines: dict[DeviceAgentId, tuple[PlannedItem, ...]]
    conflicts: tuple[Conflict, ...]


Decision = tuple[str, str, Resolution]
"""A conflict without its agent: (item_id, other_id, resolution). Devices with the same occurrences share."""


@dataclass(frozen=True)
class DeviceTimeline:
    """One device's compiled window, independent of which device it is."""

    items: tuple[PlannedItem, ...]
    decisions: tuple[Decision, ...]

    def conflicts(self, agent_id: DeviceAgentId) -> list[Conflict]:
        return [Conflict(agent_id, item_id, other_id, resolution) for item_id, other_id, resolution in self.decisions]


EMPTY_TIMELINE = DeviceTimeline(items=(), decisions=())


def compile_plans(occurrences: Iterable[Occurrence], *, now: datetime, horizon: timedelta,
                  equal_priority: EqualPriority = "queue") -> CompiledPlans:
    """Deterministic: the same occurrences, ``now`` and horizon always give the same plans.

    Callers pass every occurrence that may still matter (also some that began before ``now``): an item
    queued behind a long programme can still be due although its own slot has passed.
    """
    until = now + horizon
    listed = [o for o in occurrences if o.play_at < until]
    per_agent: dict[DeviceAgentId, list[int]] = {}
    for index, occurrence in enumerate(listed):
        for agent_id in occurrence.agent_ids:
            per_agent.setdefault(agent_id, []).append(index)

    # Devices that receive exactly the same occurrences (every cluster of a commune, usually) share one
    # computation: this is what makes a province-wide compile cheap.
    shared: dict[tuple[int, ...], DeviceTimeline] = {}
    timelines: dict[DeviceAgentId, tuple[PlannedItem, ...]] = {}
    conflicts: list[Conflict] = []
    for agent_id in sorted(per_agent):
        key = tuple(per_agent[agent_id])
        compiled = shared.get(key)
        if compiled is None:
            compiled = compile_device([listed[i] for i in key], now=now, until=until, equal_priority=equal_priority)
            shared[key] = compiled
        if compiled.items:
            timelines[agent_id] = compiled.items
        conflicts.extend(compiled.conflicts(agent_id))
    return CompiledPlans(timelines=timelines, conflicts=tuple(conflicts))


def compile_device(occurrences: Sequence[Occurrence], *, now: datetime, until: datetime,
                   equal_priority: EqualPriority = "queue") -> DeviceTimeline:
    """One device's window [now, until) from the occurrences that target it (any order)."""
    return device_window(play_device(occurrences, until=until, equal_priority=equal_priority), now=now)


@dataclass(frozen=True, eq=False)
class DeviceRun:
    """The whole play-forward of one device up to ``until``, cut into *segments* at its idle points.

    A segment starts when the device is idle (nothing plays, nothing waits) before an arrival and ends at
    the next such point. What a segment places and decides depends only on its own arrivals, so a run
    recompiled after a few occurrences changed (`replay_device`) copies every segment the change does not
    reach and plays only the others again. ``now`` plays no part: `device_window` cuts the window out.
    A run never changes once built (a replay builds a new one, which may share lists with its base).
    """

    arrivals: tuple[Occurrence, ...]
    """The occurrences with ``play_at < until``, in arrival order."""
    until: datetime
    equal_priority: EqualPriority
    bounds: list[int]
    """Index in ``arrivals`` where segment k starts; the last entry is ``len(arrivals)``."""
    placed_at: list[int]
    decided_at: list[int]
    trims_at: list[int]
    """Where segment k's entries start in ``placed``, ``decisions`` and ``trims`` (one more entry each)."""
    silent_from: list[datetime | None]
    """The end of the last item segment k placed (None: it placed nothing)."""
    placed: list[PlannedItem]
    decisions: list[Decision]
    trims: list[Decision]
    """The "trimmed" decisions of items cut at their slot end, in the order of ``placed``."""


class _RunBuilder:
    def __init__(self, arrivals: tuple[Occurrence, ...], until: datetime, equal_priority: EqualPriority) -> None:
        self.run = DeviceRun(arrivals=arrivals, until=until, equal_priority=equal_priority, bounds=[0],
                             placed_at=[0], decided_at=[0], trims_at=[0], silent_from=[], placed=[], decisions=[],
                             trims=[])

    def play(self, index: int) -> int:
        """Play one segment from the idle point before ``arrivals[index]``; returns the next idle point."""
        run = self.run
        placed = run.placed
        first = len(placed)
        index = _play_segment(run.arrivals, index, run.equal_priority, placed, run.decisions, run.trims)
        run.bounds.append(index)
        run.placed_at.append(len(placed))
        run.decided_at.append(len(run.decisions))
        run.trims_at.append(len(run.trims))
        run.silent_from.append(placed[-1].end if len(placed) > first else None)
        return index

    def copy(self, base: DeviceRun, first: int, last: int, index: int) -> int:
        """Copy segments ``first`` to ``last - 1`` of ``base``, starting at the idle point before
        ``arrivals[index]``; returns the idle point after them."""
        run = self.run
        start = base.bounds[first]
        shift = index - start
        run.bounds.extend([b + shift for b in base.bounds[first + 1:last + 1]])
        for mine, theirs in ((run.placed_at, base.placed_at), (run.decided_at, base.decided_at),
                             (run.trims_at, base.trims_at)):
            delta = mine[-1] - theirs[first]
            mine.extend([n + delta for n in theirs[first + 1:last + 1]])
        run.placed.extend(base.placed[base.placed_at[first]:base.placed_at[last]])
        run.decisions.extend(base.decisions[base.decided_at[first]:base.decided_at[last]])
        run.trims.extend(base.trims[base.trims_at[first]:base.trims_at[last]])
        run.silent_from.extend(base.silent_from[first:last])
        return index + base.bounds[last] - start


def play_device(occurrences: Iterable[Occurrence], *, until: datetime,
                equal_priority: EqualPriority = "queue") -> DeviceRun:
    """Play one device's occurrences (any order) forward up to ``until``."""
    arrivals = tuple(sorted((o for o in occurrences if o.play_at < until), key=_arrival_order))
    builder = _RunBuilder(arrivals, until, equal_priority)
    index = 0
    while index < len(arrivals):
        index = builder.play(index)
    return builder.run


def replay_device(base: DeviceRun, removed: Iterable[Occurrence], added: Iterable[Occurrence], *,
                  until: datetime | None = None) -> DeviceRun:
    """`play_device` of ``base``'s occurrences without ``removed`` (the same objects) and with ``added``,
    up to ``until`` (default: the base's).

    Only the segments an arrival or a departure falls into (or that a changed arrival reaches before the
    device falls idle again) are played again; every other segment is copied. ``removed`` may only hold
    occurrences ``base`` was played with (or ones at or after its ``until``), and ``added`` none that
    ``base`` keeps; a later ``until`` adds nothing by itself: pass the occurrences it brings in ``added``.
    """
    old = base.arrivals
    if until is None:
        until = base.until
    # (index in old, 0: insert before it / 1: remove it, the inserted occurrence)
    edits: list[tuple[int, int, Occurrence | None]] = []
    if until < base.until:
        edits += [(position, 1, None) for position in range(bisect_left(old, until, key=_play_at), len(old))]
    for gone in removed:
        if gone.play_at >= until or gone.play_at >= base.until:
            continue
        position = bisect_left(old, _arrival_order(gone), key=_arrival_order)
        while old[position] is not gone:
            position += 1  # equal keys (duplicated ids); an IndexError means it was never there
        edits.append((position, 1, None))
    for new in sorted((o for o in added if o.play_at < until), key=_arrival_order):
        edits.append((bisect_left(old, _arrival_order(new), key=_arrival_order), 0, new))
    if not edits:
        return base if until == base.until else replace(base, until=until)
    edits.sort(key=lambda edit: edit[:2])  # stable: insertions at one place keep their arrival order
    arrivals: list[Occurrence] = []
    old_index: list[int] = []  # for each new arrival, its index in ``old`` (-1: added)
    done = 0
    for position, _, occurrence in edits:
        arrivals.extend(old[done:position])
        old_index.extend(range(done, position))
        if occurrence is None:
            done = position + 1
        else:
            done = position
            arrivals.append(occurrence)
            old_index.append(-1)
    arrivals.extend(old[done:])
    old_index.extend(range(done, len(old)))
    edited = sorted({position for position, _, _ in edits})

    builder = _RunBuilder(tuple(arrivals), until, base.equal_priority)
    bounds = base.bounds
    segments = len(bounds) - 1
    index = 0
    while index < len(arrivals):
        at = old_index[index]
        if at >= 0:
            first = bisect_left(bounds, at)
            if first < segments and bounds[first] == at:
                # Both runs are idle before the same arrival: copy the segments up to the next edit.
                next_edit = bisect_right(edited, at)
                limit = edited[next_edit] if next_edit < len(edited) else len(old)
                last = bisect_right(bounds, limit) - 1
                if last > first:
                    ahead = index + bounds[last] - at
                    silent = base.silent_from[last - 1]
                    if ahead < len(arrivals) and silent is not None and arrivals[ahead].play_at < silent:
                        last -= 1  # an arrival moved in before the device fell idle: play that segment
                if last > first:
                    index = builder.copy(base, first, last, index)
                    continue
        index = builder.play(index)
    return builder.run


def device_window(run: DeviceRun, *, now: datetime) -> DeviceTimeline:
    """The part of a run in [now, until), with the decisions that still matter."""
    until = run.until
    placed = run.placed
    kept = tuple(item for item in placed if item.end > now and item.play_at < until)
    kept_ids = {item.occurrence.id for item in kept}
    placed_ids = {item.occurrence.id for item in placed}
    in_window: set[str] | None = None
    # A decision stays relevant while its item is in the plan (even if the other item has ended), and a
    # decision that kept an item out of the plan while its slot is in the window.
    relevant: list[Decision] = []
    for decisions in (run.decisions, run.trims):
        for decision in decisions:
            item_id = decision[0]
            if item_id in kept_ids:
                relevant.append(decision)
            elif item_id not in placed_ids:
                if in_window is None:
                    in_window = {o.id for o in run.arrivals if o.id not in placed_ids and o.end > now}
                if item_id in in_window:
                    relevant.append(decision)
    return DeviceTimeline(items=kept, decisions=tuple(relevant))


def _play_at(o: Occurrence) -> datetime:
    return o.play_at


def _arrival_order(o: Occurrence) -> tuple[datetime, int, int, str]:
    return (o.play_at, -o.priority, o.broadcast_id, o.id)


def _preempts(arrival: Occurrence, playing: Occurrence) -> bool:
    if arrival.broadcast_id == playing.broadcast_id:
        return False  # a programme's items and a broadcast's repeats queue behind each other
    if arrival.priority == playing.priority == Priority.EMERGENCY:
        return True
    return arrival.priority > playing.priority


# (-priority, own time, broadcast id, id, sequence, occurrence, offset_ms, resumption, preempted by)
_Waiting = tuple[int, datetime, int, str, int, Occurrence, int, bool, str]


def _planned(o: Occurrence, at: datetime, offset_ms: int, resumption: bool, stop_at: datetime | None,
             natural_end: datetime) -> PlannedItem:
    """``PlannedItem(o, at, stop_at, offset_ms, resumption)`` with its cached ends already filled in.

    Built without the frozen dataclass's ``__init__`` (a third of the cost of playing a device forward):
    `PlannedItem` has no ``__post_init__`` and no slots, so the result is the same object
    (tests/schedules/test_incremental.py checks it).
    """
    item = _new_object(PlannedItem)
    fields = item.__dict__
    fields["occurrence"] = o
    fields["play_at"] = at
    fields["stop_at"] = stop_at
    fields["offset_ms"] = offset_ms
    fields["resumption"] = resumption
    fields["natural_end"] = natural_end  # what the cached properties would compute
    fields["end"] = natural_end if stop_at is None or natural_end <= stop_at else stop_at
    return item


_new_object = object.__new__


def _play_segment(arrivals: Sequence[Occurrence], index: int, equal_priority: EqualPriority,
                  placed: list[PlannedItem], decisions: list[Decision], trims: list[Decision]) -> int:
    """Play the device's time forward, one item at a time, exactly as the agent will, from an idle point
    (nothing plays, nothing waits) before ``arrivals[index]`` to the next one; returns its index.

    Appends to ``placed``, ``decisions`` and ``trims`` and never touches what was there before.
    """
    count = len(arrivals)
    trimmed: list[int] = []  # indices in placed of items whose own stop_at cut them
    waiting: list[_Waiting] = []
    sequence = 0
    heappush, heappop = heapq.heappush, heapq.heappop

    def start(entry: _Waiting, at: datetime) -> PlannedItem | None:
        o = entry[5]
        stop_at = o.stop_at
        if stop_at is not None and stop_at <= at:
            decisions.append((entry[3], o.slot_id, "trimmed"))  # it could only start after its slot ended
            return None
        offset_ms = entry[6]
        natural = at + timedelta(milliseconds=o.audio.duration_ms - offset_ms)
        if stop_at is not None and stop_at < natural:
            trimmed.append(len(placed))
        else:
            stop_at = None
        item = _planned(o, at, offset_ms, entry[7], stop_at, natural)
        if entry[7]:
            decisions.append((entry[3], entry[8], "resumed"))
        placed.append(item)
        return item

    current: PlannedItem | None = None
    while index < count or waiting:
        arrival = arrivals[index] if index < count else None
        if current is not None and (arrival is None or current.end <= arrival.play_at):
            silent_at, current = current.end, None
            while waiting and current is None:
                current = start(heappop(waiting), silent_at)
            if current is None:
                break  # idle again
            continue
        if arrival is None:
            break  # nothing plays and nothing more arrives; the queue was drained by trimming
        index += 1
        if arrival.stop_at is not None and arrival.stop_at <= arrival.play_at:
            decisions.append((arrival.id, arrival.slot_id, "trimmed"))  # a programme item beyond its slot
            if current is None:
                break  # still idle
            continue
        if current is None:
            natural = arrival.play_at + timedelta(milliseconds=arrival.audio.duration_ms)
            stop_at = arrival.stop_at
            if stop_at is not None and stop_at < natural:
                trimmed.append(len(placed))
            else:
                stop_at = None
            current = _planned(arrival, arrival.play_at, 0, False, stop_at, natural)
            placed.append(current)
            continue
        playing = current.occurrence
        if _preempts(arrival, playing):
            cut = current
            if cut.play_at == arrival.play_at:
                # Interrupted at the very instant it would start: it never started, so it simply waits.
                placed.pop()
                if trimmed and trimmed[-1] == len(placed):
                    trimmed.pop()
                if cut.resumption:  # it did not resume after all: it will when it really starts
                    decisions.remove(next(d for d in reversed(decisions)
                                          if d[0] == playing.id and d[2] == "resumed"))
                decisions.append((playing.id, arrival.id, "queued_after"))
                sequence += 1
                heappush(waiting, (-playing.priority, playing.play_at, playing.broadcast_id, playing.id, sequence,
                                   playing, cut.offset_ms, cut.resumption, arrival.id))
            else:
                placed[-1] = _planned(playing, cut.play_at, cut.offset_ms, cut.resumption, arrival.play_at,
                                      cut.natural_end)
                if trimmed and trimmed[-1] == len(placed) - 1:
                    trimmed.pop()  # the preemption comes first: the slot end does not cut it
                decisions.append((arrival.id, playing.id, "preempts"))
                if playing.on_preempt == "resume":
                    offset = cut.offset_ms + _ms(arrival.play_at - cut.play_at)
                    if offset < playing.audio.duration_ms:
                        sequence += 1
                        heappush(waiting, (-playing.priority, playing.play_at, playing.broadcast_id, playing.id,
                                           sequence, playing, offset, True, arrival.id))
            current = start((0, arrival.play_at, 0, arrival.id, 0, arrival, 0, False, ""), arrival.play_at)
        elif (equal_priority == "refuse" and arrival.priority == playing.priority
              and arrival.broadcast_id != playing.broadcast_id):
            decisions.append((arrival.id, playing.id, "refused"))
        else:
            decisions.append((arrival.id, playing.id, "queued_after"))
            sequence += 1
            heappush(waiting, (-arrival.priority, arrival.play_at, arrival.broadcast_id, arrival.id, sequence,
                               arrival, 0, False, ""))
    trims.extend((placed[i].occurrence.id, placed[i].occurrence.slot_id, "trimmed") for i in trimmed)
    return index


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def dry_run(existing: Iterable[Occurrence], candidate: Iterable[Occurrence], *, now: datetime,
            horizon: timedelta, equal_priority: EqualPriority = "queue") -> tuple[Conflict, ...]:
    """Every decision a candidate broadcast brings, before it is saved: those naming one of its items, and
    those its arrival causes elsewhere (an item pushed later behind a resumed programme, say)."""
    new = list(candidate)
    new_ids = {o.id for o in new}
    targeted = frozenset().union(*(o.agent_ids for o in new)) if new else frozenset()
    others = [o for o in existing if o.agent_ids & targeted and o.id not in new_ids]
    before = set(compile_plans(others, now=now, horizon=horizon, equal_priority=equal_priority).conflicts)
    after = compile_plans([*others, *new], now=now, horizon=horizon, equal_priority=equal_priority).conflicts
    return tuple(c for c in after
                 if c.agent_id in targeted and (c.item_id in new_ids or c.other_id in new_ids or c not in before))
