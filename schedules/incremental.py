"""Keep every device's timeline compiled while broadcasts change one at a time.

`PlanCompiler` gives exactly what `compile_plans` gives for the same occurrences, ``now`` and horizon, but
a change to one broadcast recompiles only the devices it targets (before or after the change), devices
that receive the same occurrences share one computation, and each computation replays the device's
previous run (`schedules.plans.replay_device`): only the stretches between two idle points that the
change reaches are played again. It holds state, but no clock and no I/O: the caller moves ``now``
forward with `advance`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from schedules.errors import ScheduleError
from schedules.model import DeviceAgentId, Occurrence
from schedules.plans import (
    EMPTY_TIMELINE,
    CompiledPlans,
    Conflict,
    DeviceRun,
    DeviceTimeline,
    EqualPriority,
    PlannedItem,
    device_window,
    play_device,
    replay_device,
)

GroupKey = tuple[int, int, int]
"""(broadcast id, revision of that broadcast, index of a group of its occurrences with the same agents)."""


class PlanCompiler:
    _replay_share = 0.5
    """A device is replayed from its previous run while the occurrences that left and arrived are at most
    this share of its arrivals; beyond that it is played from the start."""

    def __init__(self, *, now: datetime, horizon: timedelta, equal_priority: EqualPriority = "queue") -> None:
        self._now = now
        self._horizon = horizon
        self._equal_priority: EqualPriority = equal_priority
        self._revision = 0
        self._revisions: dict[int, int] = {}
        self._retired: dict[tuple[int, int], list[tuple[frozenset[DeviceAgentId], tuple[Occurrence, ...]]]] = {}
        """Groups replaced or removed since the last refresh, by (broadcast id, revision): what left."""
        self._groups: dict[int, list[tuple[frozenset[DeviceAgentId], tuple[Occurrence, ...]]]] = {}
        self._agent_groups: dict[DeviceAgentId, dict[int, tuple[GroupKey, ...]]] = {}
        self._agent_key: dict[DeviceAgentId, tuple[GroupKey, ...]] = {}
        self._shared: dict[tuple[GroupKey, ...], DeviceTimeline] = {}
        self._runs: dict[tuple[GroupKey, ...], DeviceRun] = {}
        self._users: dict[tuple[GroupKey, ...], int] = {}

    @property
    def now(self) -> datetime:
        return self._now

    @property
    def equal_priority(self) -> EqualPriority:
        return self._equal_priority

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
        return self._refresh(touched, listed.keys())

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
        self._revisions[broadcast_id] = revision
        agent_groups = self._agent_groups
        for index, (agents, _) in enumerate(groups):
            own = ((broadcast_id, revision, index),)  # one tuple for all its agents: cheap to build and hash
            for agent_id in agents:
                keys = agent_groups.get(agent_id)
                if keys is None:
                    agent_groups[agent_id] = {broadcast_id: own}
                else:
                    earlier = keys.get(broadcast_id)
                    keys[broadcast_id] = own if earlier is None else earlier + own
            touched |= agents
        return touched

    def remove_broadcast(self, broadcast_id: int) -> frozenset[DeviceAgentId]:
        return self._refresh(self._detach(broadcast_id), (broadcast_id,))

    def advance(self, now: datetime) -> frozenset[DeviceAgentId]:
        """Move the window to [now, now + horizon); returns the agents whose timeline changed.

        A device's play-forward does not depend on ``now``: each run is kept and only extended (or cut)
        to the new end of the window, and the window is cut out of it again.
        """
        self._now = now
        until = now + self._horizon
        differs: dict[tuple[GroupKey, ...], bool] = {}
        for key in self._users:
            before = self._shared[key]
            run = self._runs[key]
            added = ([o for o in self._occurrences(key) if run.until <= o.play_at < until]
                     if run.until < until else [])
            run = self._runs[key] = replay_device(run, (), added, until=until)
            after = self._shared[key] = device_window(run, now=now)
            differs[key] = after.items != before.items
        return frozenset(agent_id for agent_id, key in self._agent_key.items() if differs[key])

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
        groups = self._groups.pop(broadcast_id, [])
        if groups:
            self._retired[(broadcast_id, self._revisions.pop(broadcast_id))] = groups
        for agents, _ in groups:
            for agent_id in agents:
                keys = self._agent_groups.get(agent_id)
                if keys is not None and keys.pop(broadcast_id, None) is not None:
                    touched.add(agent_id)
                    if not keys:
                        del self._agent_groups[agent_id]
        return touched

    def _refresh(self, agents: Iterable[DeviceAgentId], broadcasts: Collection[int]) -> frozenset[DeviceAgentId]:
        """Recompile the agents whose groups of these broadcasts changed; returns those whose timeline did."""
        # Agents that had the same key and got the same groups of the changed broadcasts get the same new
        # key: group them, so that keys are built, counted and compared once per move, not once per agent.
        few = sorted(broadcasts) if len(broadcasts) <= 8 else None
        moves: dict[object, tuple[tuple[GroupKey, ...] | None, tuple[GroupKey, ...] | None, list[DeviceAgentId]]] = {}
        agent_key = self._agent_key
        agent_groups = self._agent_groups
        for agent_id in agents:
            old_key = agent_key.get(agent_id)
            keys = agent_groups.get(agent_id)
            key: tuple[GroupKey, ...] | None = None
            if few is None:
                key = self._key_of(keys)
                signature: object = (id(old_key), key)
            # A key is a function of the old key (the groups of the other broadcasts) and these groups.
            elif not keys:
                signature = id(old_key)
            elif len(few) == 1:
                signature = (id(old_key), keys.get(few[0]))
            else:
                signature = (id(old_key), *(keys.get(b) for b in few))
            move = moves.get(signature)
            if move is None:
                move = moves[signature] = (old_key, key if few is None else self._key_of(keys), [])
            move[2].append(agent_id)

        changed: set[DeviceAgentId] = set()
        for old_key, key, movers in moves.values():
            if key == old_key:
                continue
            before = EMPTY_TIMELINE if old_key is None else self._shared[old_key]
            base = None if old_key is None else self._runs[old_key]
            if key is None:
                for agent_id in movers:
                    del agent_key[agent_id]
                after = EMPTY_TIMELINE
            else:
                for agent_id in movers:
                    agent_key[agent_id] = key
                self._users[key] = self._users.get(key, 0) + len(movers)
                if key not in self._shared:
                    self._shared[key], self._runs[key] = self._compile(key, old_key, base)
                after = self._shared[key]
            if old_key is not None:
                self._release(old_key, len(movers))
            if after.items is not before.items and after.items != before.items:
                changed.update(movers)
        self._retired.clear()
        return frozenset(changed)

    @staticmethod
    def _key_of(keys: dict[int, tuple[GroupKey, ...]] | None) -> tuple[GroupKey, ...] | None:
        if not keys:
            return None
        return tuple(sorted(group for groups in keys.values() for group in groups))

    def _release(self, key: tuple[GroupKey, ...], count: int = 1) -> None:
        users = self._users[key] - count
        if users:
            self._users[key] = users
        else:
            del self._users[key]
            del self._shared[key]
            del self._runs[key]

    def _occurrences(self, groups: Iterable[GroupKey]) -> list[Occurrence]:
        return [o for broadcast_id, _, index in groups for o in self._groups[broadcast_id][index][1]]

    def _compile(self, key: tuple[GroupKey, ...], old_key: tuple[GroupKey, ...] | None = None,
                 base: DeviceRun | None = None) -> tuple[DeviceTimeline, DeviceRun]:
        """Compile a key; by replaying the run of ``old_key`` when only a few of its occurrences differ."""
        until = self._now + self._horizon
        run: DeviceRun | None = None
        if base is not None and old_key is not None and base.until == until:
            old = set(old_key)
            new = set(key)
            removed = [o for broadcast_id, revision, index in sorted(old - new)
                       for o in self._retired[(broadcast_id, revision)][index][1]]
            added = self._occurrences(sorted(new - old))
            if len(removed) + len(added) <= len(base.arrivals) * self._replay_share:
                run = replay_device(base, removed, added)
        if run is None:
            run = play_device(self._occurrences(key), until=until, equal_priority=self._equal_priority)
        return device_window(run, now=self._now), run
