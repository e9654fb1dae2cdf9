"""Scheduling an approved announcement for a time and a set of targets, with permission checks."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId, Device, DeviceAgentId, ScheduleError, resolve_targets
from server.content import get_announcement
from server.directory import area_by_code, load_tree, require
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.models import Area, Broadcast, BroadcastItem, BroadcastTarget
from server.models import Device as DeviceRow
from server.permissions import Action, Principal

PRIORITIES = ("normal", "priority", "emergency")


def create_broadcast(db: Session, principal: Principal, *, announcement_id: int, play_at: datetime | None,
                     priority: str, area_codes: list[str], agent_ids: list[str], now: datetime,
                     lead: timedelta) -> tuple[Broadcast, frozenset[DeviceAgentId]]:
    """``play_at=None`` means now (plus a short lead so every agent starts in step)."""
    if priority not in PRIORITIES:
        raise Invalid(f"priority must be one of {', '.join(PRIORITIES)}")
    announcement = get_announcement(db, principal, announcement_id)
    if announcement.review_status != "approved":
        raise Conflict("only approved announcements can be scheduled")
    if announcement.audio_status != "ready":
        raise Conflict("the announcement's audio is not ready")
    if play_at is None:
        play_at = now + lead
    elif play_at.tzinfo is None:
        raise Invalid("play_at must include a time zone offset, e.g. 2026-11-27T17:00:00+07:00")
    elif play_at <= now:
        raise Invalid("play_at is in the past")
    if not area_codes and not agent_ids:
        raise Invalid("give at least one target area or device")

    tree = load_tree(db)
    targets: list[BroadcastTarget] = []
    area_ids: list[AreaId] = []
    for code in dict.fromkeys(area_codes):
        area = area_by_code(db, code)
        require(principal, Action.SCHEDULE, area, tree, f"you may not schedule broadcasts for area {code}")
        area_ids.append(AreaId(area.id))
        targets.append(BroadcastTarget(area_id=area.id))
    device_rows = {d.agent_id: d for d in db.scalars(select(DeviceRow)).all()}
    for agent_id in dict.fromkeys(agent_ids):
        device = device_rows.get(agent_id)
        if device is None or not principal.can(Action.VIEW, AreaId(device.area_id), tree):
            raise NotFound(f"no device {agent_id}")
        if not principal.can(Action.SCHEDULE, AreaId(device.area_id), tree):
            raise Forbidden(f"you may not schedule broadcasts for device {agent_id}")
        targets.append(BroadcastTarget(device_id=device.id))

    devices = {DeviceAgentId(d.agent_id): Device(DeviceAgentId(d.agent_id), AreaId(d.area_id))
               for d in device_rows.values()}
    try:
        resolved = resolve_targets(tree, devices, area_ids, [DeviceAgentId(a) for a in agent_ids])
    except ScheduleError as exc:
        raise NotFound(str(exc)) from exc
    if not resolved:
        raise Invalid("the targets contain no loudspeaker cluster")
    broadcast = Broadcast(announcement_id=announcement.id, title=announcement.title, area_id=announcement.area_id,
                          priority=priority, play_at=play_at, status="approved", created_by=principal.user_id,
                          created_at=now)
    broadcast.items = [BroadcastItem(position=0, announcement_id=announcement.id)]
    broadcast.targets = targets
    db.add(broadcast)
    db.flush()
    return broadcast, resolved


def get_broadcast(db: Session, principal: Principal, broadcast_id: int) -> Broadcast:
    broadcast = db.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    get_announcement(db, principal, broadcast.announcement_id)  # visibility follows the content's area
    return broadcast


def cancel_broadcast(db: Session, principal: Principal, broadcast_id: int) -> Broadcast:
    broadcast = get_broadcast(db, principal, broadcast_id)
    if not principal.can(Action.SCHEDULE, AreaId(broadcast.announcement.area_id), load_tree(db)):
        raise Forbidden("cancelling needs the editor role on this area")
    if broadcast.status == "cancelled":
        raise Conflict("the broadcast is already cancelled")
    broadcast.status = "cancelled"
    return broadcast


def list_broadcasts(db: Session, principal: Principal, limit: int = 100) -> list[Broadcast]:
    from server.models import Announcement

    ids = principal.areas_for(Action.VIEW, load_tree(db))
    return list(db.scalars(select(Broadcast).join(Announcement, Announcement.id == Broadcast.announcement_id)
                           .where(Announcement.area_id.in_(ids)).order_by(Broadcast.play_at.desc())
                           .limit(limit)).all())
