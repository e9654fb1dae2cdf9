"""Bulletins sent down from a higher level (Circular 39/2020/TT-BTTTT) as they land in communes.

- normal: waits in each commune's inbox; the commune schedules it (when it likes) or declines it with a
  reason the sender sees;
- priority: inserted automatically at the start of the commune's next programme (it plays ahead of the
  normal items by the priority rule); a commune with no programme in the next days keeps it pending;
- emergency: never an inbox matter, it airs directly (refused as a bulletin by `server.broadcasts`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId, AreaTree
from schedules.broadcasts import next_programme_slot
from server import audit
from server.api.schemas import BroadcastCreate
from server.broadcasts import create_broadcast
from server.directory import load_tree
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.models import Area, Broadcast, BroadcastItem, BroadcastTarget, InboxEntry
from server.permissions import Action, Principal
from server.schedule_mapping import holiday_calendar, spec_of
from server.settings import Settings


def receiving_communes(db: Session, tree: AreaTree, bulletin: Broadcast) -> list[Area]:
    """The communes a bulletin reaches: those in its target areas' subtrees, or above a target that lies
    below a commune (a village)."""
    found: dict[int, Area] = {}
    areas = {a.id: a for a in db.scalars(select(Area)).all()}
    for target in bulletin.targets:
        if target.area_id is None:
            continue
        for area_id in tree.subtree(AreaId(target.area_id)):
            if areas[area_id].kind == "commune":
                found[area_id] = areas[area_id]
        for area_id in tree.ancestors(AreaId(target.area_id)):
            if areas[area_id].kind == "commune":
                found[area_id] = areas[area_id]
    return [found[k] for k in sorted(found)]


def distribute_bulletin(db: Session, bulletin: Broadcast, *, now: datetime) -> list[InboxEntry]:
    """Put an approved bulletin into every receiving commune's inbox (and a priority one on air)."""
    tree = load_tree(db)
    entries: list[InboxEntry] = []
    for commune in receiving_communes(db, tree, bulletin):
        entry = InboxEntry(bulletin_id=bulletin.id, area_id=commune.id, status="pending", created_at=now)
        db.add(entry)
        db.flush()
        if bulletin.priority == "priority":
            _insert_into_next_programme(db, tree, bulletin, entry, commune, now)
        entries.append(entry)
    return entries


def _insert_into_next_programme(db: Session, tree: AreaTree, bulletin: Broadcast, entry: InboxEntry,
                                commune: Area, now: datetime) -> None:
    programmes = [b for b in db.scalars(select(Broadcast).where(
        Broadcast.status == "approved", Broadcast.mode == "direct", Broadcast.timing == "recurring",
        Broadcast.slot_minutes.is_not(None))).all()
        if b.area_id is not None and (tree.contains(AreaId(commune.id), AreaId(b.area_id))
                                      or tree.contains(AreaId(b.area_id), AreaId(commune.id)))]
    specs = [s for s in (spec_of(b, frozenset()) for b in programmes) if s is not None]
    slot = next_programme_slot(specs, now=now, holidays=holiday_calendar())
    if slot is None:
        entry.reason = "no programme in the next days: schedule it by hand"
        return
    broadcast = Broadcast(
        title=bulletin.title, area_id=commune.id, announcement_id=bulletin.announcement_id,
        priority="priority", mode="direct", timing="once", play_at=slot.play_at, status="approved",
        exercise=bulletin.exercise, on_preempt="skip", created_by=bulletin.created_by, created_at=now,
        reviewed_by=bulletin.reviewed_by, reviewed_at=now,
        review_comment=f"inserted from bulletin {bulletin.id} into programme {slot.broadcast_id}")
    broadcast.items = [BroadcastItem(position=i.position, announcement_id=i.announcement_id) for i in bulletin.items]
    broadcast.targets = [BroadcastTarget(area_id=commune.id)]
    db.add(broadcast)
    db.flush()
    entry.status = "inserted"
    entry.broadcast_id = broadcast.id
    entry.decided_at = now


def inbox_for(db: Session, principal: Principal, *, status: str | None = None) -> list[InboxEntry]:
    ids = principal.areas_for(Action.VIEW, load_tree(db))
    query = select(InboxEntry).where(InboxEntry.area_id.in_(ids))
    if status:
        query = query.where(InboxEntry.status == status)
    return list(db.scalars(query.order_by(InboxEntry.created_at.desc(), InboxEntry.id.desc()).limit(500)).all())


def get_entry(db: Session, principal: Principal, entry_id: int) -> InboxEntry:
    entry = db.get(InboxEntry, entry_id)
    if entry is None or not principal.can(Action.VIEW, AreaId(entry.area_id), load_tree(db)):
        raise NotFound(f"no inbox entry {entry_id}")
    return entry


def _decidable(db: Session, principal: Principal, entry_id: int) -> InboxEntry:
    entry = get_entry(db, principal, entry_id)
    if not principal.can(Action.SCHEDULE, AreaId(entry.area_id), load_tree(db)):
        raise Forbidden("deciding on the inbox needs the editor role on this commune")
    if entry.status != "pending":
        raise Conflict(f"this bulletin is already {entry.status}")
    return entry


def decline_entry(db: Session, principal: Principal, entry_id: int, *, reason: str, now: datetime) -> InboxEntry:
    entry = _decidable(db, principal, entry_id)
    if not reason.strip():
        raise Invalid("say why the bulletin is declined (the sender sees it)")
    entry.status = "declined"
    entry.reason = reason.strip()
    entry.decided_by = principal.user_id
    entry.decided_at = now
    audit.record(db, principal, "inbox.decline", target=f"broadcast:{entry.bulletin_id}", area_id=entry.area_id,
                 details={"reason": entry.reason})
    return entry


def schedule_entry(db: Session, principal: Principal, entry_id: int, body: BroadcastCreate, *, now: datetime,
                   settings: Settings) -> tuple[InboxEntry, Broadcast]:
    """The commune airs the bulletin: its own broadcast, with the bulletin's items, on its own areas."""
    entry = _decidable(db, principal, entry_id)
    bulletin = db.get_one(Broadcast, entry.bulletin_id)
    commune = db.get_one(Area, entry.area_id)
    tree = load_tree(db)
    for code in body.area_codes:
        area = db.scalar(select(Area).where(Area.code == code))
        if area is None or not tree.contains(AreaId(commune.id), AreaId(area.id)):
            raise Invalid(f"{code} is not part of {commune.name}")
    request = body.model_copy(update={
        "announcement_id": None, "announcement_ids": [i.announcement_id for i in bulletin.items],
        "title": body.title or bulletin.title, "mode": "direct",
        "priority": "normal" if body.priority == "emergency" else body.priority,
        "area_codes": body.area_codes or ([] if body.agent_ids else [commune.code])})
    broadcast, _ = create_broadcast(db, principal, request, now=now, settings=settings)
    entry.status = "scheduled"
    entry.broadcast_id = broadcast.id
    entry.decided_by = principal.user_id
    entry.decided_at = now
    # The commune's own broadcast airs on its loudspeakers: recorded like any broadcast created.
    audit.record(db, principal, "inbox.schedule", target=f"broadcast:{broadcast.id}", area_id=entry.area_id,
                 details={"bulletin_id": entry.bulletin_id, "title": broadcast.title,
                          "area_codes": list(request.area_codes), "agent_ids": list(request.agent_ids)},
                 result=broadcast.status)
    return entry, broadcast


def bulletin_entries(db: Session, principal: Principal, bulletin: Broadcast) -> list[InboxEntry]:
    """What each commune did with a bulletin (the sender's view)."""
    del principal  # visibility of the bulletin itself was checked by the caller
    return list(db.scalars(select(InboxEntry).where(InboxEntry.bulletin_id == bulletin.id)
                           .order_by(InboxEntry.area_id)).all())
