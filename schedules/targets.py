"""Resolve a broadcast's targets (areas and single devices) into the set of agents that play it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from schedules.errors import ScheduleError
from schedules.model import Area, AreaId, Device, DeviceAgentId


class AreaTree:
    """The administrative tree (any depth), indexed for subtree queries."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self._areas: dict[AreaId, Area] = {area.id: area for area in areas}
        self._children: dict[AreaId, list[AreaId]] = {}
        for area in self._areas.values():
            if area.parent_id is not None:
                self._children.setdefault(area.parent_id, []).append(area.id)

    def __contains__(self, area_id: object) -> bool:
        return area_id in self._areas

    def get(self, area_id: AreaId) -> Area:
        try:
            return self._areas[area_id]
        except KeyError as exc:
            raise ScheduleError(f"unknown area {area_id}") from exc

    def subtree(self, area_id: AreaId) -> set[AreaId]:
        """The area and every area below it."""
        self.get(area_id)
        found: set[AreaId] = set()
        stack = [area_id]
        while stack:
            current = stack.pop()
            if current in found:
                continue  # a cycle in stored data must not loop forever
            found.add(current)
            stack.extend(self._children.get(current, ()))
        return found

    def ancestors(self, area_id: AreaId) -> list[AreaId]:
        """From the area itself up to the root."""
        chain: list[AreaId] = []
        current: AreaId | None = area_id
        while current is not None and current not in chain:
            chain.append(current)
            current = self.get(current).parent_id
        return chain

    def contains(self, ancestor: AreaId, area_id: AreaId) -> bool:
        return ancestor in self.ancestors(area_id)


def resolve_targets(
    tree: AreaTree,
    devices: Mapping[DeviceAgentId, Device],
    area_ids: Iterable[AreaId],
    agent_ids: Iterable[DeviceAgentId],
) -> frozenset[DeviceAgentId]:
    """Every device in the given areas' subtrees plus the single devices named."""
    chosen: set[DeviceAgentId] = set()
    wanted_areas: set[AreaId] = set()
    for area_id in area_ids:
        wanted_areas |= tree.subtree(area_id)
    for device in devices.values():
        if device.area_id in wanted_areas:
            chosen.add(device.agent_id)
    for agent_id in agent_ids:
        if agent_id not in devices:
            raise ScheduleError(f"unknown device {agent_id}")
        chosen.add(agent_id)
    return frozenset(chosen)
