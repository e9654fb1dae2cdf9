"""The fleet dashboard's data: every visible cluster with its state and faults, counts per area, the map.

A device is *in fault* when it is reachable (online or playing) and its last heartbeat lists faults
(``agents.protocol.Heartbeat.faults``). An offline device's last faults are stale, so it counts as offline
only. Counts are grouped by commune for users above commune level, and by the level just below the
user's scope (villages) for a commune user: the areas the user can act on one step down.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from schedules import AreaId, AreaTree
from server.models import Area, Device, DeviceStatus
from server.permissions import Action, Principal

ABOVE_COMMUNE = frozenset({"province", "district"})
STATES = ("online", "playing", "offline", "unknown")
"""The display states, in the order the dashboard sorts them (``fault`` goes between playing and offline)."""
TILE_PLACEHOLDERS = ("{z}", "{x}", "{y}")
_ORIGIN_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?)+(?::\d{1,5})?$"
                          r"|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


def display_state(state: str, now_playing: str | None) -> str:
    """The four states the console shows: online, offline, playing, unknown."""
    if state == "online" and now_playing:
        return "playing"
    return state if state in ("online", "offline") else "unknown"


def heartbeat_faults(status: DeviceStatus | None) -> tuple[str, ...]:
    """The faults of the last heartbeat; junk in the stored JSON counts as none."""
    heartbeat = status.heartbeat if status is not None else None
    faults = heartbeat.get("faults") if isinstance(heartbeat, dict) else None
    if not isinstance(faults, list):
        return ()
    return tuple(str(f) for f in faults if isinstance(f, str) and f)


def in_fault(state: str, faults: Sequence[str]) -> bool:
    return bool(faults) and state in ("online", "playing")


def map_state(state: str, faults: Sequence[str]) -> str:
    """One colour per marker: a reachable device with faults shows as ``fault``."""
    return "fault" if in_fault(state, faults) else state


@dataclass(frozen=True)
class AreaRef:
    code: str
    name: str
    kind: str


@dataclass(frozen=True)
class FleetDevice:
    agent_id: str
    name: str
    area: AreaRef
    group: AreaRef
    state: str
    """One of ``STATES``."""
    faults: tuple[str, ...]
    now_playing: str | None
    last_seen_at: datetime | None
    latitude: float | None
    longitude: float | None

    @property
    def fault(self) -> bool:
        return in_fault(self.state, self.faults)

    @property
    def positioned(self) -> bool:
        return self.latitude is not None and self.longitude is not None


@dataclass
class Counts:
    total: int = 0
    online: int = 0
    """Every reachable device, playing or not."""
    playing: int = 0
    offline: int = 0
    fault: int = 0
    unknown: int = 0

    def add(self, device: FleetDevice) -> None:
        self.total += 1
        if device.state in ("online", "playing"):
            self.online += 1
        if device.state == "playing":
            self.playing += 1
        elif device.state == "offline":
            self.offline += 1
        elif device.state == "unknown":
            self.unknown += 1
        if device.fault:
            self.fault += 1


@dataclass
class AreaCounts:
    area: AreaRef
    counts: Counts = field(default_factory=Counts)


def _ref(tree: AreaTree, area_id: AreaId) -> AreaRef:
    area = tree.get(area_id)
    return AreaRef(code=area.code, name=area.name, kind=area.kind)


def group_area(tree: AreaTree, visible: set[AreaId], area_id: AreaId) -> AreaId:
    """The area a device is counted under (see the module docstring)."""
    chain = list(reversed(tree.ancestors(area_id)))  # from the root down to the device's area
    start = next((i for i, a in enumerate(chain) if a in visible), len(chain) - 1)
    path = chain[start:]
    if tree.get(path[0]).kind in ABOVE_COMMUNE:
        return next((a for a in path if tree.get(a).kind == "commune"), path[-1])
    return path[1] if len(path) > 1 else path[0]


def fleet_devices(rows: Iterable[tuple[Device, DeviceStatus | None, Area]], principal: Principal,
                  tree: AreaTree) -> list[FleetDevice]:
    """The dashboard's devices from ``directory.visible_devices`` rows (already limited to the user)."""
    visible = principal.areas_for(Action.VIEW, tree)
    result = []
    for device, status, _area in rows:
        area_id = AreaId(device.area_id)
        result.append(FleetDevice(
            agent_id=device.agent_id, name=device.name, area=_ref(tree, area_id),
            group=_ref(tree, group_area(tree, visible, area_id)),
            state=display_state(status.state if status else "unknown", status.now_playing if status else None),
            faults=heartbeat_faults(status), now_playing=status.now_playing if status else None,
            last_seen_at=status.last_seen_at if status else None,
            latitude=device.latitude, longitude=device.longitude))
    return result


def total_counts(devices: Iterable[FleetDevice]) -> Counts:
    counts = Counts()
    for device in devices:
        counts.add(device)
    return counts


def counts_by_area(devices: Iterable[FleetDevice]) -> list[AreaCounts]:
    """One line per group area, sorted by name."""
    groups: dict[str, AreaCounts] = {}
    for device in devices:
        groups.setdefault(device.group.code, AreaCounts(device.group)).counts.add(device)
    return sorted(groups.values(), key=lambda g: (g.area.name.casefold(), g.area.code))


def map_data(devices: Iterable[FleetDevice], areas: Iterable[Area],
             tile_url: str | None) -> dict[str, Any]:
    """What ``static/map.js`` draws: devices, area centres (where known) and the optional tile URL."""
    devices = list(devices)
    groups = {d.group.code for d in devices}
    return {
        "devices": [{"agent_id": d.agent_id, "name": d.name, "area": d.area.name, "group": d.group.code,
                     "lat": d.latitude, "lon": d.longitude, "state": map_state(d.state, d.faults),
                     "faulty": bool(d.faults)}
                    for d in devices],
        "areas": [{"code": a.code, "name": a.name, "lat": a.latitude, "lon": a.longitude}
                  for a in areas if a.code in groups],
        "tile_url": tile_url,
    }


def tile_source(tile_url: str) -> tuple[str, str] | None:
    """``(tile URL template, origin for img-src)`` when the setting is usable, else None.

    The origin goes into the Content-Security-Policy header, so anything that could end or widen a
    directive (spaces, ``;``, ``,``, quotes, wildcards) makes the setting unusable rather than unsafe.
    """
    if not tile_url:
        return None
    parsed = urlparse(tile_url)
    if parsed.scheme not in ("http", "https") or not _ORIGIN_HOST.match(parsed.netloc or ""):
        return None
    if not all(p in tile_url for p in TILE_PLACEHOLDERS) or any(c in tile_url for c in " \"'<>\\;,"):
        return None
    return tile_url, f"{parsed.scheme}://{parsed.netloc}"

