"""Compile occurrences into per-agent timelines: what each agent plays, when, and what yields to what.

The rule that keeps two items from ever sounding at once on one device:
- an item that starts while another is still playing and has a *higher* priority preempts it (the
  agent cuts the earlier one at the later one's start);
- an item of *equal or lower* priority is queued: it starts when the one before it ends.
Every such decision is returned as a `Conflict` so the API can show it before anything is saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
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
    """Deterministic: the same occurrences, ``now`` and horizon always give the same plans."""
    until = now + horizon
    per_agent: dict[DeviceAgentId, list[Occurrence]] = {}
    for occurrence in occurrences:
        if occurrence.end <= now or occurrence.play_at >= until:
            continue
        for agent_id in occurrence.agent_ids:
            per_agent.setdefault(agent_id, []).append(occurrence)

    timelines: dict[DeviceAgentId, tuple[PlannedItem, ...]] = {}
    conflicts: list[Conflict] = []
    for agent_id in sorted(per_agent):
        items, found = _timeline(agent_id, per_agent[agent_id])
        timelines[agent_id] = items
        conflicts.extend(found)
    return CompiledPlans(timelines=timelines, conflicts=tuple(conflicts))


def _timeline(agent_id: DeviceAgentId, occurrences: list[Occurrence]) -> tuple[tuple[PlannedItem, ...], list[Conflict]]:
    ordered = sorted(occurrences, key=lambda o: (o.play_at, -o.priority, o.broadcast_id))
    placed: list[PlannedItem] = []
    conflicts: list[Conflict] = []
    for occurrence in ordered:
        item = PlannedItem(occurrence=occurrence, play_at=occurrence.play_at)
        if placed and item.play_at < placed[-1].end:
            previous = placed[-1]
            if occurrence.priority > previous.occurrence.priority:
                conflicts.append(Conflict(agent_id, item.id, previous.id, "preempts"))
            else:
                item = replace(item, play_at=previous.end)
                conflicts.append(Conflict(agent_id, item.id, previous.id, "queued_after"))
        placed.append(item)
    return tuple(placed), conflicts
