"""Compile occurrences into per-agent timelines: what each agent plays, when, and what yields to what.

The rule that keeps two items from ever sounding at once on one device:
- an item that starts while another is still playing and has a *higher* priority preempts it (the
  agent cuts the earlier one at the later one's start; the cut item is not resumed yet);
- an item of *equal or lower* priority waits; when the device falls silent the waiting item with the
  highest priority, then the earliest, starts.
Every such decision is returned as a `Conflict` so the API can show it before anything is saved.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from schedules.model import DeviceAgentId, Occurrence


@dataclass(frozen=True)
class PlannedItem:
    occurrence: Occurrence
    play_at: datetime
    """When the agent starts it: the occurrence's own time, or later when it was queued."""

    @property
    def id(self) -> str:
        return self.occurrence.id

    @property
    def end(self) -> datetime:
        return self.play_at + timedelta(milliseconds=self.occurrence.audio.duration_ms)


@dataclass(frozen=True)
class Conflict:
    agent_id: DeviceAgentId
    item_id: str
    other_id: str
    resolution: Literal["preempts", "queued_after"]


@dataclass(frozen=True)
class CompiledPlans:
    timelines: dict[DeviceAgentId, tuple[PlannedItem, ...]]
    conflicts: tuple[Conflict, ...]


def compile_plans(
    occurrences: Iterable[Occurrence], *, now: datetime, horizon: timedelta
) -> CompiledPlans:
    """Deterministic: the same occurrences, ``now`` and horizon always give the same plans.

    Callers pass every occurrence that may still matter (also some that began before ``now``): an item
    queued behind a long programme can still be due although its own slot has passed.
    """
    until = now + horizon
    per_agent: dict[DeviceAgentId, list[Occurrence]] = {}
    for occurrence in occurrences:
        if occurrence.play_at >= until:
            continue
        for agent_id in occurrence.agent_ids:
            per_agent.setdefault(agent_id, []).append(occurrence)

    timelines: dict[DeviceAgentId, tuple[PlannedItem, ...]] = {}
    conflicts: list[Conflict] = []
    for agent_id in sorted(per_agent):
        items, found = _timeline(agent_id, per_agent[agent_id])
        kept = tuple(item for item in items if item.end > now and item.play_at < until)
        if kept:
            timelines[agent_id] = kept
        # A decision stays relevant while its item is in the plan, even if the other item has ended.
        kept_ids = {item.id for item in kept}
        conflicts.extend(c for c in found if c.item_id in kept_ids)
    return CompiledPlans(timelines=timelines, conflicts=tuple(conflicts))


def _timeline(agent_id: DeviceAgentId, occurrences: list[Occurrence]) -> tuple[list[PlannedItem], list[Conflict]]:
    """Play the device's day forward, one item at a time, exactly as the agent will.

    An arriving item preempts what plays only with a strictly higher priority; otherwise it waits. When
    the device falls silent, the waiting item with the highest priority (then the earliest) starts.
    """
    arrivals = sorted(occurrences, key=lambda o: (o.play_at, -o.priority, o.broadcast_id))
    placed: list[PlannedItem] = []
    conflicts: list[Conflict] = []
    waiting: list[tuple[int, datetime, int, int, Occurrence]] = []
    current: PlannedItem | None = None
    index = 0
    while index < len(arrivals) or waiting:
        arrival = arrivals[index] if index < len(arrivals) else None
        if current is not None and (arrival is None or current.end <= arrival.play_at):
            ended_at, current = current.end, None  # the device falls silent before the next arrival
            if waiting:
                *_, occurrence = heapq.heappop(waiting)
                current = PlannedItem(occurrence=occurrence, play_at=ended_at)
                placed.append(current)
            continue
        assert arrival is not None
        index += 1
        if current is None:
            current = PlannedItem(occurrence=arrival, play_at=arrival.play_at)
            placed.append(current)
        elif arrival.priority > current.occurrence.priority:
            conflicts.append(Conflict(agent_id, arrival.id, current.id, "preempts"))
            current = PlannedItem(occurrence=arrival, play_at=arrival.play_at)
            placed.append(current)
        else:
            conflicts.append(Conflict(agent_id, arrival.id, current.id, "queued_after"))
            heapq.heappush(waiting, (-arrival.priority, arrival.play_at, arrival.broadcast_id, index, arrival))
    return placed, conflicts
