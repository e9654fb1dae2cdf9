"""Broadcasts: what airs where and when, their approval, and their cancellation.

Life cycle: draft → submitted → approved (airs as scheduled) | rejected; approved → cancelled. An
approver other than the author approves. An emergency is approved at once when its sender types the
owning area's name (``emergency_confirmation = "typed"``), or waits for a second person like any other
broadcast (``"second_person"``). Every target is checked against the caller's roles on its area.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId, AreaTree, Device, DeviceAgentId, ScheduleError, resolve_targets
from server.api.schemas import BroadcastCreate
from server.directory import area_by_code, load_tree, require
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.models import Announcement, Area, Broadcast, BroadcastItem, BroadcastTarget
from server.models import Device as DeviceRow
from server.permissions import Action, Principal
from server.schedule_mapping import validate_timing
from server.settings import Settings

EDITABLE = ("draft", "submitted", "rejected")


@dataclass(frozen=True)
class Targets:
    rows: list[BroadcastTarget]
    area_ids: list[AreaId]
    agents: frozenset[DeviceAgentId]
    owner: Area


def usable_announcement(db: Session, principal: Principal, tree: AreaTree, announcement_id: int) -> Announcement:
    """Content the caller may put on air: visible to them, or approved content of a higher level
    (a province bulletin a commune airs)."""
    announcement = db.get(Announcement, announcement_id)
    if announcement is None:
        raise NotFound(f"no announcement {announcement_id}")
    visible = principal.can(Action.VIEW, AreaId(announcement.area_id), tree)
    from_above = announcement.review_status == "approved" and any(
        tree.contains(AreaId(announcement.area_id), area_id)
        for area_id in principal.areas_for(Action.SCHEDULE, tree))
    if not visible and not from_above:
        raise NotFound(f"no announcement {announcement_id}")
    return announcement


def resolve_broadcast_targets(db: Session, principal: Principal, tree: AreaTree, area_codes: list[str],
                              agent_ids: list[str]) -> Targets:
    if not area_codes and not agent_ids:
        raise Invalid("give at least one target area or device")
    rows: list[BroadcastTarget] = []
    area_ids: list[AreaId] = []
    owners: list[AreaId] = []
    for code in dict.fromkeys(area_codes):
        area = area_by_code(db, code)
        require(principal, Action.SCHEDULE, area, tree, f"you may not schedule broadcasts for area {code}")
        if area.id not in area_ids:
            area_ids.append(AreaId(area.id))
            rows.append(BroadcastTarget(area_id=area.id))
    device_rows = {d.agent_id: d for d in db.scalars(select(DeviceRow)).all()}
    for agent_id in dict.fromkeys(agent_ids):
        device = device_rows.get(agent_id)
        if device is None or not principal.can(Action.VIEW, AreaId(device.area_id), tree):
            raise NotFound(f"no device {agent_id}")
        if not principal.can(Action.SCHEDULE, AreaId(device.area_id), tree):
            raise Forbidden(f"you may not schedule broadcasts for device {agent_id}")
        rows.append(BroadcastTarget(device_id=device.id))
        owners.append(AreaId(device.area_id))
    devices = {DeviceAgentId(d.agent_id): Device(DeviceAgentId(d.agent_id), AreaId(d.area_id))
               for d in device_rows.values()}
    try:
        agents = resolve_targets(tree, devices, area_ids, [DeviceAgentId(a) for a in agent_ids])
    except ScheduleError as exc:
        raise NotFound(str(exc)) from exc
    owner_id = common_ancestor(tree, area_ids + owners)
    return Targets(rows, area_ids, agents, db.get_one(Area, owner_id))


def common_ancestor(tree: AreaTree, area_ids: list[AreaId]) -> AreaId:
    """The lowest area containing all of them: the broadcast belongs to it."""
    chains = [tree.ancestors(a) for a in area_ids]
    shared = set(chains[0]).intersection(*chains[1:]) if chains else set()
    for candidate in chains[0]:
        if candidate in shared:
            return candidate
    return chains[0][-1]  # separate roots: the first target's root


def apply_request(db: Session, principal: Principal, broadcast: Broadcast, body: BroadcastCreate, *, now: datetime,
           settings: Settings) -> frozenset[DeviceAgentId]:
    tree = load_tree(db)
    item_ids = body.item_ids()
    if not item_ids:
        raise Invalid("give the announcement to air (announcement_id or announcement_ids)")
    announcements = [usable_announcement(db, principal, tree, i) for i in dict.fromkeys(item_ids)]
    for announcement in announcements:
        if announcement.review_status != "approved":
            raise Conflict(f"announcement {announcement.id} is not approved yet")
        if announcement.audio_status != "ready":
            raise Conflict(f"the audio of announcement {announcement.id} is not ready")
    if body.mode == "bulletin" and body.priority == "emergency":
        raise Invalid("an emergency airs directly; it is never left in an inbox")
    if body.mode == "bulletin" and body.agent_ids:
        raise Invalid("a bulletin goes to areas (their communes' inboxes), not to single devices")
    targets = resolve_broadcast_targets(db, principal, tree, body.area_codes, body.agent_ids)
    if body.mode == "direct" and not targets.agents:
        raise Invalid("the targets contain no loudspeaker cluster")
    timing = body.effective_timing()
    validated = validate_timing(timing, body.repeat, now=now, lead=timedelta(seconds=settings.play_lead_s))

    broadcast.title = body.title.strip() or announcements[0].title
    broadcast.area_id = targets.owner.id
    broadcast.announcement_id = announcements[0].id
    if broadcast.id is not None:  # replacing: old rows must go before new ones take their positions
        broadcast.items.clear()
        broadcast.targets.clear()
        db.flush()
    broadcast.items = [BroadcastItem(position=i, announcement_id=a.id) for i, a in enumerate(announcements)]
    broadcast.targets = targets.rows
    broadcast.priority = body.priority
    broadcast.mode = body.mode
    broadcast.timing = timing.kind
    broadcast.play_at = validated.first_at
    broadcast.rrule = validated.rrule
    broadcast.start_local = validated.start_local
    broadcast.tz = timing.tz
    broadcast.valid_until = timing.valid_until
    broadcast.exdates = sorted(set(timing.exdates))
    broadcast.holiday_rule = timing.holidays
    broadcast.repeat_every_min = body.repeat.every_minutes if body.repeat else None
    broadcast.repeat_count = body.repeat.count if body.repeat else None
    broadcast.repeat_until = body.repeat.until if body.repeat else None
    broadcast.slot_minutes = body.slot_minutes
    broadcast.on_preempt = body.on_preempt
    broadcast.exercise = body.exercise
    broadcast.updated_at = now

    if not body.submit:
        broadcast.status = "draft"
    elif body.priority == "emergency" and settings.emergency_confirmation == "typed":
        if body.confirm.strip().casefold() != targets.owner.name.strip().casefold():
            raise Invalid(f"to send an emergency at once, type the area's name exactly: {targets.owner.name}",
                          code="confirm_name", name=targets.owner.name)
        broadcast.status = "approved"
        broadcast.confirmed_by_typing = True
        broadcast.reviewed_by = principal.user_id
        broadcast.reviewed_at = now
    elif not settings.broadcast_review and body.priority != "emergency":
        broadcast.status = "approved"
    else:
        broadcast.status = "submitted"
        broadcast.submitted_at = now
    return targets.agents


def create_broadcast(db: Session, principal: Principal, body: BroadcastCreate, *, now: datetime,
                     settings: Settings) -> tuple[Broadcast, frozenset[DeviceAgentId]]:
    broadcast = Broadcast(created_by=principal.user_id, created_at=now)
    agents = apply_request(db, principal, broadcast, body, now=now, settings=settings)
    db.add(broadcast)
    db.flush()
    return broadcast, agents


def update_broadcast(db: Session, principal: Principal, broadcast_id: int, body: BroadcastCreate, *,
                     now: datetime, settings: Settings) -> tuple[Broadcast, frozenset[DeviceAgentId]]:
    broadcast = get_broadcast(db, principal, broadcast_id)
    _require_owner_role(db, principal, broadcast, Action.SCHEDULE, "editing needs the editor role on this area")
    if broadcast.status not in EDITABLE:
        raise Conflict(f"a broadcast that is {broadcast.status} cannot be edited; cancel it and create another")
    agents = apply_request(db, principal, broadcast, body, now=now, settings=settings)
    broadcast.revision += 1
    broadcast.review_comment = ""
    db.flush()
    return broadcast, agents


def delete_broadcast(db: Session, principal: Principal, broadcast_id: int) -> None:
    broadcast = get_broadcast(db, principal, broadcast_id)
    _require_owner_role(db, principal, broadcast, Action.SCHEDULE, "deleting needs the editor role on this area")
    if broadcast.status not in EDITABLE:
        raise Conflict("only drafts, submitted or rejected broadcasts can be deleted; cancel an approved one")
    db.delete(broadcast)


def review_broadcast(db: Session, principal: Principal, broadcast_id: int, *, approve: bool, comment: str,
                     now: datetime, lead: timedelta = timedelta(seconds=2)) -> Broadcast:
    broadcast = get_broadcast(db, principal, broadcast_id)
    tree = load_tree(db)
    areas = [AreaId(broadcast.area_id)] if broadcast.area_id is not None else []
    areas += [AreaId(t.area_id) for t in broadcast.targets if t.area_id is not None]
    if not all(principal.can(Action.APPROVE, a, tree) for a in areas):
        raise Forbidden("approving needs the approver role on the broadcast's area and targets")
    if broadcast.created_by == principal.user_id:
        raise Forbidden("a broadcast is approved by someone other than its author")
    if broadcast.status != "submitted":
        raise Conflict(f"only submitted broadcasts can be reviewed (this one is {broadcast.status})")
    if not approve and not comment.strip():
        raise Invalid("say why the broadcast is rejected (comment)")
    if approve and broadcast.timing != "recurring" and broadcast.repeat_every_min is None \
            and broadcast.play_at <= now and broadcast.timing != "now":
        raise Conflict("its time has passed; edit the time and submit it again")
    if approve and broadcast.timing == "now":
        broadcast.play_at = now + lead  # "now" means when it is approved, not when it was written
    broadcast.status = "approved" if approve else "rejected"
    broadcast.review_comment = comment.strip()
    broadcast.reviewed_by = principal.user_id
    broadcast.reviewed_at = now
    return broadcast


def submit_broadcast(db: Session, principal: Principal, broadcast_id: int, *, now: datetime) -> Broadcast:
    broadcast = get_broadcast(db, principal, broadcast_id)
    _require_owner_role(db, principal, broadcast, Action.SCHEDULE, "submitting needs the editor role on this area")
    if broadcast.status not in ("draft", "rejected"):
        raise Conflict(f"a broadcast that is {broadcast.status} cannot be submitted")
    broadcast.status = "submitted"
    broadcast.submitted_at = now
    return broadcast


def cancel_broadcast(db: Session, principal: Principal, broadcast_id: int, *, reason: str = "",
                     now: datetime | None = None) -> Broadcast:
    broadcast = get_broadcast(db, principal, broadcast_id)
    tree = load_tree(db)
    owner = AreaId(broadcast.area_id) if broadcast.area_id is not None else AreaId(broadcast.announcement.area_id)
    if not (principal.can(Action.SCHEDULE, owner, tree) or principal.can(Action.APPROVE, owner, tree)):
        raise Forbidden("cancelling needs the editor or approver role on this area")
    if broadcast.status == "cancelled":
        raise Conflict("the broadcast is already cancelled")
    broadcast.status = "cancelled"
    broadcast.cancelled_by = principal.user_id
    broadcast.cancelled_at = now
    broadcast.cancel_reason = reason.strip()
    return broadcast


def get_broadcast(db: Session, principal: Principal, broadcast_id: int) -> Broadcast:
    broadcast = db.get(Broadcast, broadcast_id)
    if broadcast is None:
        raise NotFound(f"no broadcast {broadcast_id}")
    owner = broadcast.area_id if broadcast.area_id is not None else broadcast.announcement.area_id
    if not principal.can(Action.VIEW, AreaId(owner), load_tree(db)):
        raise NotFound(f"no broadcast {broadcast_id}")
    return broadcast


def list_broadcasts(db: Session, principal: Principal, *, status: str | None = None,
                    limit: int = 200) -> list[Broadcast]:
    ids = principal.areas_for(Action.VIEW, load_tree(db))
    query = select(Broadcast).where(Broadcast.area_id.in_(ids))
    if status:
        query = query.where(Broadcast.status == status)
    return list(db.scalars(query.order_by(Broadcast.play_at.desc()).limit(limit)).all())


def target_codes(db: Session, broadcast: Broadcast) -> tuple[list[str], list[str]]:
    areas = [db.get_one(Area, t.area_id).code for t in broadcast.targets if t.area_id is not None]
    devices = [db.get_one(DeviceRow, t.device_id).agent_id for t in broadcast.targets if t.device_id is not None]
    return areas, devices


def _require_owner_role(db: Session, principal: Principal, broadcast: Broadcast, action: Action,
                        refusal: str) -> None:
    if broadcast.area_id is None or not principal.can(action, AreaId(broadcast.area_id), load_tree(db)):
        raise Forbidden(refusal)
