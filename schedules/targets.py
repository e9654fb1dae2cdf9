"""Resolve a broadcast's targets (areas and single devices) into the set of agents that play it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from schedules.errors import ScheduleError
from schedules.model import Area, AreaId, Device, DeviceAgentId


class AreaTree:
    """The administrative tree (any depth), indexed for subtree queries.

    ``aliases`` maps retired area codes to the code that replaced them (communes merged on 1 July 2025 keep
    their old 5-digit codes valid as targets); chains of mergers are followed.
    """

    def __init__(self, areas: Iterable[Area], aliases: Mapping[str, str] | None = None) -> None:
        self._areas: dict[AreaId, Area] = {area.id: area for area in areas}
        self._children: dict[AreaId, list[AreaId]] = {}
        self._by_code: dict[str, AreaId] = {}
        for area in self._areas.values():
            if area.parent_id is not None:
                self._children.setdefault(area.parent_id, []).append(area.id)
            self._by_code[area.code] = area.id
        self._aliases: dict[str, str] = dict(aliases or {})

    def area_for_code(self, code: str) -> Area:
        """The area with this code, or the one it was merged into."""
        seen: list[str] = []
        current = code
        while current not in self._by_code:
            if current in seen or current not in self._aliases:
                via = f" (via {' -> '.join(seen)})" if len(seen) > 1 else ""
                raise ScheduleError(f"unknown area code {code}{via}")
            seen.append(current)
            current = self._aliases[current]
        return self._areas[self._by_code[current]]

    def codes_merged_into(self, area_id: AreaId) -> set[str]:
        """Every retired code that now resolves to this area."""
        target = self.get(area_id).code
        return {old for old in self._aliases if old not in self._by_code and self._resolves_to(old, target)}

    def _resolves_to(self, code: str, target: str) -> bool:
        try:
            return self.area_for_code(code).code == target
        except ScheduleError:
            return False

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


def resolve_area_codes(tree: AreaTree, codes: Iterable[str]) -> list[AreaId]:
    """Area ids for target codes, old (merged) codes included; unknown codes are refused."""
    return [tree.area_for_code(code).id for code in codes]


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
