"""Keep every device's timeline compiled while broadcasts change one at a time.

`PlanCompiler` gives exactly what `compile_plans` gives for the same occurrences, ``now`` and horizon, but
a change to one broadcast recompiles only the devices it targets (before or after the change), and
devices that receive the same occurrences share one computation. It holds state, but no clock and no
I/O: the caller moves ``now`` forward with `advance`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from schedules.errors import ScheduleError
from schedules.model import DeviceAgentId, Occurrence
from schedules.plans import (
    EMPTY_TIMELINE,
    CompiledPlans,
    Conflict,
    DeviceTimeline,
    EqualPriority,
    PlannedItem,
    compile_device,
)

GroupKey = tuple[int, int, int]
"""(broadcast id, revision of that broadcast, index of a group of its occurrences with the same agents)."""


class PlanCompiler:
    def __init__(self, *, now: datetime, horizon: timedelta, equal_priority: EqualPriority = "queue") -> None:
        self._now = now
        self._horizon = horizon
        self._equal_priority: EqualPriority = equal_priority
        self._revision = 0
        self._groups: dict[int, list[tuple[frozenset[DeviceAgentId], tuple[Occurrence, ...]]]] = {}
        self._agent_groups: dict[DeviceAgentId, dict[int, tuple[GroupKey, ...]]] = {}
        self._agent_key: dict[DeviceAgentId, tuple[GroupKey, ...]] = {}
        self._shared: dict[tuple[GroupKey, ...], DeviceTimeline] = {}
        self._users: dict[tuple[GroupKey, ...], int] = {}

    @property
    def now(self) -> datetime:
        return self._now

    def set_broadcast(self, broadcast_id: int, occurrences: Iterable[Occurrence]) -> frozenset[DeviceAgentId]:
        """Replace the broadcast's occurrences; returns the agents whose timeline changed."""
        return self.set_broadcasts({broadcast_id: occurrences})

    def set_broadcasts(self, changes: Mapping[int, Iterable[Occurrence]]) -> frozenset[DeviceAgentId]:
        """Several broadcasts at once (a start-up load): each device is recompiled once."""
        listed = {broadcast_id: tuple(occurrences) for broadcast_id, occurrences in changes.items()}
        for broadcast_id, found in listed.items():
            for occurrence in found:
                if occurrence.broadcast_id != broadcast_id:
                    raise ScheduleError(f"occurrence {occurrence.id} does not belong to broadcast {broadcast_id}")
        touched: set[DeviceAgentId] = set()
        for broadcast_id, found in listed.items():
            touched |= self._attach(broadcast_id, found)
        return self._refresh(touched)

    def _attach(self, broadcast_id: int, listed: tuple[Occurrence, ...]) -> set[DeviceAgentId]:
        """Record the broadcast's occurrences; returns the agents to recompile."""
        by_agents: dict[frozenset[DeviceAgentId], list[Occurrence]] = {}
        for occurrence in listed:
            by_agents.setdefault(occurrence.agent_ids, []).append(occurrence)
        touched = self._detach(broadcast_id)
        if not listed:
            return touched
        self._revision += 1
        revision = self._revision
        groups = [(agents, tuple(found)) for agents, found in by_agents.items()]
        self._groups[broadcast_id] = groups
        for index, (agents, _) in enumerate(groups):
            for agent_id in agents:
                keys = self._agent_groups.setdefault(agent_id, {})
                keys[broadcast_id] = (*keys.get(broadcast_id, ()), (broadcast_id, revision, index))
                touched.add(agent_id)
        return touched

    def remove_broadcast(self, broadcast_id: int) -> frozenset[DeviceAgentId]:
        return self._refresh(self._detach(broadcast_id))

    def advance(self, now: datetime) -> frozenset[DeviceAgentId]:
        """Move the window to [now, now + horizon); returns the agents whose timeline changed."""
        self._now = now
        old = {agent_id: self._shared[key].items for agent_id, key in self._agent_key.items()}
        self._shared = {key: self._compile(key) for key in self._users}
        return frozenset(agent_id for agent_id, key in self._agent_key.items()
                         if self._shared[key].items != old[agent_id])

    def timeline(self, agent_id: DeviceAgentId) -> tuple[PlannedItem, ...]:
        return self._device(agent_id).items

    def conflicts(self, agent_id: DeviceAgentId) -> tuple[Conflict, ...]:
        return tuple(self._device(agent_id).conflicts(agent_id))

    def occurrences(self) -> list[Occurrence]:
        return [o for broadcast_id in sorted(self._groups) for _, found in self._groups[broadcast_id] for o in found]

    def compiled(self) -> CompiledPlans:
        """Equal to `compile_plans` over `occurrences()` with the same ``now``, horizon and setting."""
        timelines: dict[DeviceAgentId, tuple[PlannedItem, ...]] = {}
        conflicts: list[Conflict] = []
        for agent_id in sorted(self._agent_key):
            device = self._shared[self._agent_key[agent_id]]
            if device.items:
                timelines[agent_id] = device.items
            conflicts.extend(device.conflicts(agent_id))
        return CompiledPlans(timelines=timelines, conflicts=tuple(conflicts))

    def _device(self, agent_id: DeviceAgentId) -> DeviceTimeline:
        key = self._agent_key.get(agent_id)
        return EMPTY_TIMELINE if key is None else self._shared[key]

    def _detach(self, broadcast_id: int) -> set[DeviceAgentId]:
        touched: set[DeviceAgentId] = set()
        for agents, _ in self._groups.pop(broadcast_id, []):
            for agent_id in agents:
                keys = self._agent_groups.get(agent_id)
                if keys is not None and keys.pop(broadcast_id, None) is not None:
                    touched.add(agent_id)
                    if not keys:
                        del self._agent_groups[agent_id]
        return touched

    def _refresh(self, agents: Iterable[DeviceAgentId]) -> frozenset[DeviceAgentId]:
        changed: set[DeviceAgentId] = set()
        # Devices that shared a timeline before usually share one after: compare each pair once.
        differs: dict[tuple[int, int], bool] = {}
        alive: list[tuple[PlannedItem, ...]] = []  # keeps the compared tuples' ids from being reused
        for agent_id in agents:
            before = self._device(agent_id).items
            old_key = self._agent_key.pop(agent_id, None)
            if old_key is not None:
                self._release(old_key)
            keys = self._agent_groups.get(agent_id)
            if keys:
                key = tuple(sorted(group for groups in keys.values() for group in groups))
                self._agent_key[agent_id] = key
                self._users[key] = self._users.get(key, 0) + 1
                if key not in self._shared:
                    self._shared[key] = self._compile(key)
            after = self._device(agent_id).items
            pair = (id(before), id(after))
            if pair not in differs:
                differs[pair] = after != before
                alive += (before, after)
            if differs[pair]:
                changed.add(agent_id)
        return frozenset(changed)

    def _release(self, key: tuple[GroupKey, ...]) -> None:
        users = self._users[key] - 1
        if users:
            self._users[key] = users
        else:
            del self._users[key]
            del self._shared[key]

    def _compile(self, key: tuple[GroupKey, ...]) -> DeviceTimeline:
        occurrences = [o for broadcast_id, _, index in key for o in self._groups[broadcast_id][index][1]]
        return compile_device(occurrences, now=self._now, until=self._now + self._horizon,
                              equal_priority=self._equal_priority)
