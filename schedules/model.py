"""Plain values of the scheduling domain: priorities, areas, devices, occurrences.

Nothing here touches a clock, a database or the network: callers pass ``now`` and data in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import NewType

AreaId = NewType("AreaId", int)
"""Primary key of a node of the administrative tree (province, commune, village, …)."""

DeviceAgentId = NewType("DeviceAgentId", str)
"""The agent id of a loudspeaker cluster (stable, hardware-derived)."""


class Priority(IntEnum):
    """The three bulletin classes of Circular 39/2020/TT-BTTTT, in preemption order."""

    NORMAL = 0
    PRIORITY = 1
    EMERGENCY = 2


@dataclass(frozen=True)
class Area:
    id: AreaId
    parent_id: AreaId | None
    code: str
    name: str
    kind: str
    """"province", "district", "commune", "village" or "group": the tree has any depth."""


@dataclass(frozen=True)
class Device:
    agent_id: DeviceAgentId
    area_id: AreaId


@dataclass(frozen=True)
class AudioAsset:
    sha256: str
    duration_ms: int
    size_bytes: int


@dataclass(frozen=True)
class Occurrence:
    """One airing of one broadcast at one UTC instant on a set of devices."""

    broadcast_id: int
    title: str
    priority: Priority
    play_at: datetime
    audio: AudioAsset
    agent_ids: frozenset[DeviceAgentId]

    @property
    def id(self) -> str:
        """Stable across recompilations, so an agent recognises an item it already knows."""
        return f"b{self.broadcast_id}-{int(self.play_at.timestamp() * 1000)}"

    @property
    def end(self) -> datetime:
        return self.play_at + timedelta(milliseconds=self.audio.duration_ms)
