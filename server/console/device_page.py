"""What the device page shows beyond the details and as-run: the current plan and the command panel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from schedules import AreaId
from server.api.devices import device_plan
from server.device_commands import playable_announcements
from server.directory import load_tree
from server.models import Device, DeviceStatus
from server.permissions import Action, Principal


def device_page_context(db: Session, principal: Principal, device: Device, status: DeviceStatus | None,
                        now: datetime) -> dict[str, Any]:
    """The plan for everyone who may see the device; the command panel only for OPERATE on its area."""
    tree = load_tree(db)
    can_operate = principal.can(Action.OPERATE, AreaId(device.area_id), tree)
    heartbeat = (status.heartbeat if status else None) or {}
    return {
        "plan": device_plan(db, device, now),
        "can_operate": can_operate,
        "playable": playable_announcements(db, principal, device, tree) if can_operate else [],
        "volume_percent": heartbeat.get("volume_percent"),
        "amplifier_on": heartbeat.get("amplifier_on"),
    }
