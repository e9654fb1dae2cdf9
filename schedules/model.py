"""Plain values of the scheduling domain: priorities, areas, devices, occurrences.

Nothing here touches a clock, a database or the network: callers pass ``now`` and data in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from functools import cached_property
from typing import Literal, NewType

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


OnPreempt = Literal["skip", "resume"]
"""What happens to an item cut by a higher priority: it is over, or its remainder plays afterwards."""


def epoch_ms(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


@dataclass(frozen=True)
class Occurrence:
    """One airing of one item of one broadcast at one UTC instant on a set of devices."""

    broadcast_id: int
    title: str
    priority: Priority
    play_at: datetime
    audio: AudioAsset
    agent_ids: frozenset[DeviceAgentId]
    stop_at: datetime | None = None
    """Hard stop (UTC): the end of the programme slot. The item never plays past it."""
    on_preempt: OnPreempt = "skip"
    exercise: bool = False
    """An exercise/test airing, labelled as such wherever it is shown."""
    slot_at: datetime | None = None
    """Start of the programme slot this item belongs to (None for a single item)."""
    item_index: int | None = None
    """Position of the item in its programme (None for a single item)."""

    # cached_property writes the instance's __dict__ directly, so it works on a frozen dataclass; the id is
    # asked for many times per compile.
    @cached_property
    def id(self) -> str:
        """Stable across recompilations, so an agent recognises an item it already knows.

        A programme item is named by its slot and position, not its own start: a longer first item must
        not rename the items after it.
        """
        if self.item_index is None:
            return f"b{self.broadcast_id}-{epoch_ms(self.play_at)}"
        return f"{self.slot_id}-{self.item_index}"

    @cached_property
    def slot_id(self) -> str:
        """The programme slot (or, for a single item, the item itself)."""
        return f"b{self.broadcast_id}-{epoch_ms(self.slot_at or self.play_at)}"

    @property
    def end(self) -> datetime:
        """When it stops if it starts on time: its natural end, or its hard stop if earlier."""
        natural = self.play_at + timedelta(milliseconds=self.audio.duration_ms)
        return natural if self.stop_at is None else min(natural, self.stop_at)
