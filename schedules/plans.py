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
    placed, decisions = _play_forward([o for o in occurrences if o.play_at < until], equal_priority)
    kept = tuple(item for item in placed if item.end > now and item.play_at < until)
    kept_ids = {item.occurrence.id for item in kept}
    placed_ids = {item.occurrence.id for item in placed}
    in_window = {o.id for o in occurrences if o.play_at < until and o.end > now}
    # A decision stays relevant while its item is in the plan (even if the other item has ended), and a
    # decision that kept an item out of the plan while its slot is in the window.
    relevant = tuple(d for d in decisions
                     if d[0] in kept_ids or (d[0] not in placed_ids and d[0] in in_window))
    return DeviceTimeline(items=kept, decisions=relevant)


@dataclass(frozen=True)
class _Waiting:
    occurrence: Occurrence
    offset_ms: int = 0
    resumption: bool = False
    preempted_by: str = ""


def _arrival_order(o: Occurrence) -> tuple[datetime, int, int, str]:
    return (o.play_at, -o.priority, o.broadcast_id, o.id)


def _preempts(arrival: Occurrence, playing: Occurrence) -> bool:
    if arrival.broadcast_id == playing.broadcast_id:
        return False  # a programme's items and a broadcast's repeats queue behind each other
    if arrival.priority == playing.priority == Priority.EMERGENCY:
        return True
    return arrival.priority > playing.priority


def _play_forward(occurrences: list[Occurrence], equal_priority: EqualPriority
                  ) -> tuple[list[PlannedItem], list[Decision]]:
    """Play the device's time forward, one item at a time, exactly as the agent will."""
    arrivals = sorted(occurrences, key=_arrival_order)
    placed: list[PlannedItem] = []
    decisions: list[Decision] = []
    trimmed: list[int] = []  # indices in placed of items whose own stop_at cut them
    waiting: list[tuple[int, datetime, int, str, int, _Waiting]] = []
    sequence = 0

    def wait(entry: _Waiting) -> None:
        nonlocal sequence
        o = entry.occurrence
        sequence += 1
        heapq.heappush(waiting, (-o.priority, o.play_at, o.broadcast_id, o.id, sequence, entry))

    def start(entry: _Waiting, at: datetime) -> PlannedItem | None:
        o = entry.occurrence
        if o.stop_at is not None and o.stop_at <= at:
            decisions.append((o.id, o.slot_id, "trimmed"))  # it could only start after its slot ended
            return None
        item = PlannedItem(occurrence=o, play_at=at, offset_ms=entry.offset_ms, resumption=entry.resumption)
        if o.stop_at is not None and o.stop_at < item.natural_end:
            item = replace(item, stop_at=o.stop_at)
            trimmed.append(len(placed))
        if entry.resumption:
            decisions.append((o.id, entry.preempted_by, "resumed"))
        placed.append(item)
        return item

    current: PlannedItem | None = None
    index = 0
    while index < len(arrivals) or waiting:
        arrival = arrivals[index] if index < len(arrivals) else None
        if current is not None and (arrival is None or current.end <= arrival.play_at):
            silent_at, current = current.end, None
            while waiting and current is None:
                current = start(heapq.heappop(waiting)[-1], silent_at)
            continue
        if arrival is None:
            break  # nothing plays and nothing more arrives; the queue was drained by trimming
        index += 1
        if arrival.stop_at is not None and arrival.stop_at <= arrival.play_at:
            decisions.append((arrival.id, arrival.slot_id, "trimmed"))  # a programme item beyond its slot
            continue
        if current is None:
            current = start(_Waiting(arrival), arrival.play_at)
        elif _preempts(arrival, current.occurrence):
            cut = current
            if cut.play_at == arrival.play_at:
                # Interrupted at the very instant it would start: it never started, so it simply waits.
                placed.pop()
                if trimmed and trimmed[-1] == len(placed):
                    trimmed.pop()
                if cut.resumption:  # it did not resume after all: it will when it really starts
                    decisions.remove(next(d for d in reversed(decisions)
                                          if d[0] == cut.occurrence.id and d[2] == "resumed"))
                decisions.append((cut.occurrence.id, arrival.id, "queued_after"))
                wait(_Waiting(cut.occurrence, cut.offset_ms, cut.resumption, arrival.id))
            else:
                placed[-1] = replace(cut, stop_at=arrival.play_at)
                if trimmed and trimmed[-1] == len(placed) - 1:
                    trimmed.pop()  # the preemption comes first: the slot end does not cut it
                decisions.append((arrival.id, cut.occurrence.id, "preempts"))
                if cut.occurrence.on_preempt == "resume":
                    offset = cut.offset_ms + _ms(arrival.play_at - cut.play_at)
                    if offset < cut.occurrence.audio.duration_ms:
                        wait(_Waiting(cut.occurrence, offset, True, arrival.id))
            current = start(_Waiting(arrival), arrival.play_at)
        elif (equal_priority == "refuse" and arrival.priority == current.occurrence.priority
              and arrival.broadcast_id != current.occurrence.broadcast_id):
            decisions.append((arrival.id, current.occurrence.id, "refused"))
        else:
            decisions.append((arrival.id, current.occurrence.id, "queued_after"))
            wait(_Waiting(arrival))
    decisions.extend((placed[i].occurrence.id, placed[i].occurrence.slot_id, "trimmed") for i in trimmed)
    return placed, decisions


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
