"""Broadcasts: create (once, now, recurring, programmes, repeats), review, cancel; dry-run conflicts;
occurrence previews; live progress of an emergency; what communes did with a bulletin."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agents.protocol import AudioRef, Command, PlanItem
from schedules import AreaId, AudioAsset, DeviceAgentId, Occurrence, Priority, dry_run
from schedules.broadcasts import occurrences_between
from server import audit
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import (
    BroadcastCreate,
    BroadcastProgress,
    BroadcastPublic,
    CancelIn,
    ConflictPublic,
    DryRunPublic,
    InboxEntryPublic,
    OccurrencePublic,
    ReviewIn,
)
from server.broadcasts import (
    apply_request,
    cancel_broadcast,
    create_broadcast,
    delete_broadcast,
    get_broadcast,
    list_broadcasts,
    review_broadcast,
    submit_broadcast,
    target_codes,
    update_broadcast,
)
from server.directory import load_tree
from server.errors import Conflict as ConflictError
from server.errors import Invalid
from server.inbox import bulletin_entries, distribute_bulletin
from server.models import (
    AgentPlan,
    Announcement,
    Area,
    AsRunEntry,
    Broadcast,
    BroadcastTarget,
    DeviceStatus,
    InboxEntry,
)
from server.models import AudioAsset as AudioAssetRow
from server.models import Device as DeviceRow
from server.permissions import Principal
from server.planner import LOOKBACK
from server.runtime import Runtime
from server.schedule_mapping import agents_of, holiday_calendar, load_fleet, spec_of

router = APIRouter(prefix="/api/v1/broadcasts", tags=["broadcasts"])

DRY_RUN_ID = 2**31 - 1
"""The id a candidate broadcast carries in a dry run: newer than any stored one."""


def broadcast_public(db: Session, broadcast: Broadcast, target_devices: int = 0) -> BroadcastPublic:
    areas, devices = target_codes(db, broadcast)
    owner = db.get(Area, broadcast.area_id) if broadcast.area_id is not None else None
    return BroadcastPublic(
        id=broadcast.id, announcement_id=broadcast.announcement_id,
        announcement_ids=[i.announcement_id for i in broadcast.items], title=broadcast.title,
        area_code=owner.code if owner else None, priority=broadcast.priority, mode=broadcast.mode,
        timing=broadcast.timing, play_at=broadcast.play_at, rrule=broadcast.rrule, start_local=broadcast.start_local,
        tz=broadcast.tz, valid_until=broadcast.valid_until, exdates=list(broadcast.exdates),
        holidays=broadcast.holiday_rule, repeat_every_min=broadcast.repeat_every_min,
        repeat_count=broadcast.repeat_count, repeat_until=broadcast.repeat_until,
        slot_minutes=broadcast.slot_minutes, on_preempt=broadcast.on_preempt, exercise=broadcast.exercise,
        status=broadcast.status, review_comment=broadcast.review_comment, revision=broadcast.revision,
        created_by=broadcast.created_by, target_devices=target_devices, area_codes=areas, agent_ids=devices)


def fan_out_now(runtime: Runtime, db: Session, broadcast: Broadcast) -> None:
    """An immediate emergency goes out once per target on group topics, ahead of the plans.

    Agents recognise the item by its id when the plan that also carries it arrives, and play it once.
    """
    if len(broadcast.items) != 1 or broadcast.timing != "now":
        return  # programmes and later emergencies travel in plans only
    audio = broadcast.items[0].announcement.audio
    assert audio is not None
    occurrence_id = Occurrence(broadcast_id=broadcast.id, title=broadcast.title, priority=_priority(broadcast),
                               play_at=broadcast.play_at, audio=_asset(audio), agent_ids=frozenset()).id
    item = PlanItem(id=occurrence_id, broadcast_id=broadcast.id, title=broadcast.title,
                    priority=_priority(broadcast), play_at=broadcast.play_at,
                    audio=AudioRef(sha256=audio.sha256,
                                   url=f"{runtime.settings.effective_public_url}/api/v1/audio/{audio.sha256}",
                                   duration_ms=audio.duration_ms, size_bytes=audio.size_bytes),
                    on_preempt=broadcast.on_preempt, exercise=broadcast.exercise)  # type: ignore[arg-type]
    now = runtime.now()
    _send(runtime, db, broadcast, Command(id=uuid.uuid4().hex, name="play_now", issued_at=now,
                                          expires_at=now + timedelta(minutes=10), args={"item": item.to_dict()}))


def _send(runtime: Runtime, db: Session, broadcast: Broadcast, command: Command) -> None:
    """Send what a person's action sets off (an emergency's play_now, a cancel's stop), and keep it in the
    audit trail as the server's own act, next to the person's."""
    areas, devices = target_codes(db, broadcast)
    audit.record(db, None, "server.command", target=f"broadcast:{broadcast.id}", area_id=broadcast.area_id,
                 details={"command": command.name, "command_id": command.id, "area_codes": list(areas),
                          "agent_ids": list(devices), "expires_at": command.expires_at.isoformat()},
                 ref=command.id, username=runtime.settings.server_id)
    db.commit()
    for code in areas:
        runtime.bridge.send_command(command, group_id=f"area-{code.lower()}")
    for agent_id in devices:
        runtime.bridge.send_command(command, agent_id=agent_id)


def _priority(broadcast: Broadcast) -> Priority:
    return Priority[broadcast.priority.upper()]


def _asset(audio: AudioAssetRow) -> AudioAsset:
    return AudioAsset(audio.sha256, audio.duration_ms, audio.size_bytes)


def after_approval(runtime: Runtime, db: Session, broadcast: Broadcast) -> None:
    """What an approved broadcast sets off: a bulletin lands in inboxes, a direct one goes into plans."""
    if broadcast.mode == "bulletin":
        entries = distribute_bulletin(db, broadcast, now=runtime.now())
        db.commit()
        for entry in entries:
            if entry.broadcast_id is not None:
                runtime.planner.broadcast_changed(entry.broadcast_id)
        return
    if broadcast.priority == "emergency":
        fan_out_now(runtime, db, broadcast)
    runtime.planner.broadcast_changed(broadcast.id)


def _resolved_count(db: Session, broadcast: Broadcast) -> int:
    return len(agents_of(broadcast, load_fleet(db)))


# --- the audit trail: an emergency is recorded as such, and its refusals too ----------------------------

def _action(priority: str, action: str, emergency_action: str) -> str:
    return emergency_action if priority == "emergency" else action


def _request_details(body: BroadcastCreate) -> dict[str, Any]:
    return {"title": body.title, "priority": body.priority, "mode": body.mode,
            "announcement_ids": body.item_ids(), "area_codes": body.area_codes, "agent_ids": body.agent_ids,
            "timing": body.effective_timing().kind,
            "exercise": body.exercise, "submit": body.submit}


def _broadcast_details(db: Session, broadcast: Broadcast) -> dict[str, Any]:
    areas, devices = target_codes(db, broadcast)
    return {"title": broadcast.title, "priority": broadcast.priority, "mode": broadcast.mode,
            "timing": broadcast.timing, "play_at": broadcast.play_at.isoformat(), "status": broadcast.status,
            "announcement_ids": [i.announcement_id for i in broadcast.items], "area_codes": areas,
            "agent_ids": devices, "exercise": broadcast.exercise,
            "confirmed_by_typing": broadcast.confirmed_by_typing}


def _emergency_guard(db: Session, principal: Principal, priority: str, action: str, target: str,
                     area_id: int | None, details: dict[str, Any]) -> AbstractContextManager[None]:
    """Refused emergency attempts (no role, the area's name not typed) are kept in the trail."""
    if priority != "emergency":
        return nullcontext()
    return audit.refusals_recorded(db, principal, action, target=target, area_id=area_id, details=details,
                                   also=audit.confirm_name_refusal)


def _record(db: Session, principal: Principal, action: str, broadcast: Broadcast, **extra: Any) -> None:
    audit.record(db, principal, action, target=f"broadcast:{broadcast.id}", area_id=broadcast.area_id,
                 details={**_broadcast_details(db, broadcast), **extra}, result=broadcast.status)


@router.post("", status_code=201)
def post_broadcast(body: BroadcastCreate, db: DbSession, principal: CurrentPrincipal,
                   runtime: RuntimeDep) -> BroadcastPublic:
    action = _action(body.priority, "broadcast.create", "emergency.send")
    with _emergency_guard(db, principal, body.priority, action, "broadcast:new", None, _request_details(body)):
        refuse_if_conflicting(db, principal, body, runtime)
        broadcast, resolved = create_broadcast(db, principal, body, now=runtime.now(), settings=runtime.settings)
    _record(db, principal, action, broadcast)
    db.commit()
    if broadcast.status == "approved":
        after_approval(runtime, db, broadcast)
    return broadcast_public(db, broadcast, len(resolved))


@router.post("/dry-run")
def post_dry_run(body: BroadcastCreate, db: DbSession, principal: CurrentPrincipal,
                 runtime: RuntimeDep, exclude: int | None = None) -> DryRunPublic:
    """Every conflict saving this broadcast would cause, with the rule that resolves it; nothing saved.
    ``exclude`` leaves out a stored broadcast (the one being edited)."""
    return conflicts_of(db, principal, body, runtime, exclude)


def conflicts_of(db: Session, principal: Principal, body: BroadcastCreate, runtime: Runtime,
                 exclude: int | None) -> DryRunPublic:
    now = runtime.now()
    candidate, agents = _transient(db, principal, body, runtime, now)
    horizon = timedelta(hours=runtime.settings.horizon_hours)
    spec = spec_of(candidate, agents)
    if spec is None:
        raise Invalid("the audio of an item is not ready")
    window = (now - LOOKBACK, now + horizon)
    candidate_occurrences = occurrences_between(spec, *window, holiday_calendar())
    existing = _existing_occurrences(db, agents, exclude, window)
    conflicts = dry_run(existing, candidate_occurrences, now=now, horizon=horizon,
                        equal_priority=runtime.settings.equal_priority)
    by_id = {o.id: o for o in (*existing, *candidate_occurrences)}
    public = [ConflictPublic(
        agent_id=c.agent_id, item_id=c.item_id, other_id=c.other_id,
        broadcast_id=_bid(by_id, c.item_id), other_broadcast_id=_bid(by_id, c.other_id),
        at=by_id[c.item_id].play_at if c.item_id in by_id else None, resolution=c.resolution, rule=c.rule)
        for c in conflicts]
    for item in public:
        if item.broadcast_id == DRY_RUN_ID:
            item.broadcast_id = None
        if item.other_broadcast_id == DRY_RUN_ID:
            item.other_broadcast_id = None
    return DryRunPublic(target_devices=len(agents), occurrences=len(candidate_occurrences), conflicts=public,
                        refused=any(c.resolution == "refused" for c in conflicts))


def refuse_if_conflicting(db: Session, principal: Principal, body: BroadcastCreate, runtime: Runtime,
                          exclude: int | None = None) -> None:
    """With ``equal_priority = "refuse"`` a broadcast that would be refused on some device is not saved."""
    if runtime.settings.equal_priority != "refuse" or body.mode != "direct":
        return
    result = conflicts_of(db, principal, body, runtime, exclude)
    refused = [c for c in result.conflicts if c.resolution == "refused"]
    if refused:
        first = refused[0]
        devices = len({c.agent_id for c in refused})
        raise ConflictError(f"it overlaps broadcast {first.other_broadcast_id} of equal priority on "
                            f"{devices} device(s) ({first.rule}); choose another time (see the dry run)",
                            code="conflict_refused", resolution=first.resolution,
                            other_broadcast_id=first.other_broadcast_id, devices=devices)


def _bid(by_id: dict[str, Occurrence], item_id: str) -> int | None:
    occurrence = by_id.get(item_id)
    return occurrence.broadcast_id if occurrence else None


def _transient(db: Session, principal: Principal, body: BroadcastCreate, runtime: Runtime,
               now: datetime) -> tuple[Broadcast, frozenset[DeviceAgentId]]:
    candidate = Broadcast(created_by=principal.user_id, created_at=now)
    with db.no_autoflush:
        agents = apply_request(db, principal, candidate, body, now=now, settings=runtime.settings)
        for item in candidate.items:
            item.announcement = db.get_one(Announcement, item.announcement_id)
        candidate.id = DRY_RUN_ID
    if candidate in db:
        db.expunge(candidate)
    return candidate, agents


def _existing_occurrences(db: Session, agents: frozenset[DeviceAgentId], exclude: int | None,
                          window: tuple[datetime, datetime]) -> list[Occurrence]:
    fleet = load_fleet(db)
    found: list[Occurrence] = []
    for broadcast in db.scalars(select(Broadcast).where(Broadcast.status == "approved",
                                                        Broadcast.mode == "direct")).all():
        if broadcast.id == exclude:
            continue
        targets = agents_of(broadcast, fleet)
        if not targets & agents:
            continue
        spec = spec_of(broadcast, targets)
        if spec is not None:
            found.extend(occurrences_between(spec, *window, holiday_calendar()))
    return found


@router.get("")
def get_broadcasts(db: DbSession, principal: CurrentPrincipal,
                   status: str | None = Query(default=None, max_length=16)) -> list[BroadcastPublic]:
    return [broadcast_public(db, b) for b in list_broadcasts(db, principal, status=status)]


@router.get("/{broadcast_id}")
def get_one(broadcast_id: int, db: DbSession, principal: CurrentPrincipal) -> BroadcastPublic:
    broadcast = get_broadcast(db, principal, broadcast_id)
    return broadcast_public(db, broadcast, _resolved_count(db, broadcast))


@router.put("/{broadcast_id}")
def put_broadcast(broadcast_id: int, body: BroadcastCreate, db: DbSession, principal: CurrentPrincipal,
                  runtime: RuntimeDep) -> BroadcastPublic:
    action = "emergency.send" if body.priority == "emergency" and body.submit else "broadcast.update"
    with _emergency_guard(db, principal, body.priority, action, f"broadcast:{broadcast_id}", None,
                          _request_details(body)):
        refuse_if_conflicting(db, principal, body, runtime, exclude=broadcast_id)
        broadcast, resolved = update_broadcast(db, principal, broadcast_id, body, now=runtime.now(),
                                               settings=runtime.settings)
    _record(db, principal, action, broadcast)
    db.commit()
    if broadcast.status == "approved":
        after_approval(runtime, db, broadcast)
    return broadcast_public(db, broadcast, len(resolved))


@router.delete("/{broadcast_id}", status_code=204)
def remove_broadcast(broadcast_id: int, db: DbSession, principal: CurrentPrincipal) -> Response:
    broadcast = get_broadcast(db, principal, broadcast_id)
    _record(db, principal, "broadcast.delete", broadcast)
    delete_broadcast(db, principal, broadcast_id)
    db.commit()
    return Response(status_code=204)


@router.post("/{broadcast_id}/submit")
def post_submit(broadcast_id: int, db: DbSession, principal: CurrentPrincipal,
                runtime: RuntimeDep) -> BroadcastPublic:
    existing = get_broadcast(db, principal, broadcast_id)
    action = _action(existing.priority, "broadcast.submit", "emergency.send")
    with _emergency_guard(db, principal, existing.priority, action, f"broadcast:{broadcast_id}",
                          existing.area_id, {"title": existing.title}):
        broadcast = submit_broadcast(db, principal, broadcast_id, now=runtime.now())
    _record(db, principal, action, broadcast)
    db.commit()
    return broadcast_public(db, broadcast)


@router.post("/{broadcast_id}/review")
def post_review(broadcast_id: int, body: ReviewIn, db: DbSession, principal: CurrentPrincipal,
                runtime: RuntimeDep) -> BroadcastPublic:
    existing = get_broadcast(db, principal, broadcast_id)
    action = (_action(existing.priority, "broadcast.approve", "emergency.confirm") if body.approve
              else _action(existing.priority, "broadcast.reject", "emergency.reject"))
    with _emergency_guard(db, principal, existing.priority, action, f"broadcast:{broadcast_id}",
                          existing.area_id, {"title": existing.title, "comment": body.comment}):
        broadcast = review_broadcast(db, principal, broadcast_id, approve=body.approve, comment=body.comment,
                                     now=runtime.now(), lead=timedelta(seconds=runtime.settings.play_lead_s))
    _record(db, principal, action, broadcast, comment=broadcast.review_comment)
    db.commit()
    if broadcast.status == "approved":
        after_approval(runtime, db, broadcast)
    return broadcast_public(db, broadcast)


@router.post("/{broadcast_id}/cancel")
def post_cancel(broadcast_id: int, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                body: CancelIn | None = None) -> BroadcastPublic:
    """Stop it everywhere now (a stop command on every target, ahead of the new plans) and drop it from
    plans; optionally air a cancellation message at once on the same targets."""
    body = body or CancelIn()
    now = runtime.now()
    existing = get_broadcast(db, principal, broadcast_id)
    action = _action(existing.priority, "broadcast.cancel", "emergency.cancel")
    with _emergency_guard(db, principal, existing.priority, action, f"broadcast:{broadcast_id}",
                          existing.area_id, {"title": existing.title, "reason": body.reason}):
        broadcast = cancel_broadcast(db, principal, broadcast_id, reason=body.reason, now=now)
    message: Broadcast | None = None
    if body.message_announcement_id is not None:
        areas, devices = target_codes(db, broadcast)
        request = BroadcastCreate(
            announcement_id=body.message_announcement_id, title=f"Hủy: {broadcast.title}"[:300],
            priority="emergency" if broadcast.priority == "emergency" else "priority", area_codes=areas,
            agent_ids=devices, exercise=broadcast.exercise)
        # Cancelling is the confirmed act: the message needs no second confirmation.
        settings = runtime.settings.model_copy(update={"emergency_confirmation": "typed", "broadcast_review": False})
        owner = db.get_one(Area, broadcast.area_id) if broadcast.area_id is not None else None
        request.confirm = owner.name if owner else ""
        message, _ = create_broadcast(db, principal, request, now=now, settings=settings)
        message.status = "approved"
    _record(db, principal, action, broadcast, reason=broadcast.cancel_reason,
            message_broadcast_id=message.id if message is not None else None)
    db.commit()
    _send(runtime, db, broadcast, Command(id=uuid.uuid4().hex, name="stop", issued_at=now,
                                          expires_at=now + timedelta(minutes=10),
                                          args={"broadcast_id": broadcast.id}))
    runtime.planner.broadcast_changed(broadcast.id)
    if message is not None:
        after_approval(runtime, db, message)
    return broadcast_public(db, broadcast)


@router.get("/{broadcast_id}/occurrences")
def get_occurrences(broadcast_id: int, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                    days: int = Query(default=7, ge=1, le=60)) -> list[OccurrencePublic]:
    broadcast = get_broadcast(db, principal, broadcast_id)
    agents = agents_of(broadcast, load_fleet(db))
    spec = spec_of(broadcast, agents)
    if spec is None:
        return []
    now = runtime.now()
    return [OccurrencePublic(id=o.id, broadcast_id=o.broadcast_id, title=o.title, priority=o.priority.name.lower(),
                             play_at=o.play_at, end_at=o.end, devices=len(o.agent_ids), exercise=o.exercise)
            for o in occurrences_between(spec, now, now + timedelta(days=days), holiday_calendar())]


@router.get("/{broadcast_id}/progress")
def get_progress(broadcast_id: int, db: DbSession, principal: CurrentPrincipal) -> BroadcastProgress:
    broadcast = get_broadcast(db, principal, broadcast_id)
    targeted = _resolved_count(db, broadcast)
    kinds = dict(db.execute(select(AsRunEntry.kind, func.count(func.distinct(AsRunEntry.device_id)))
                            .where(AsRunEntry.broadcast_id == broadcast.id).group_by(AsRunEntry.kind)).all())
    device_ids = _target_device_ids(db, broadcast)
    acknowledged = db.scalar(select(func.count()).select_from(DeviceStatus)
                             .join(AgentPlan, AgentPlan.device_id == DeviceStatus.device_id)
                             .where(DeviceStatus.device_id.in_(device_ids),
                                    DeviceStatus.plan_version_acked >= AgentPlan.version)) or 0
    return BroadcastProgress(broadcast_id=broadcast.id, status=broadcast.status, targeted=targeted,
                             acknowledged=max(acknowledged, kinds.get("started", 0)),
                             started=kinds.get("started", 0), finished=kinds.get("finished", 0),
                             failed=kinds.get("failed", 0) + kinds.get("skipped", 0))


def _target_device_ids(db: Session, broadcast: Broadcast) -> list[int]:
    tree = load_tree(db)
    wanted: set[int] = set()
    for target in db.scalars(select(BroadcastTarget).where(BroadcastTarget.broadcast_id == broadcast.id)).all():
        if target.device_id is not None:
            wanted.add(target.device_id)
        elif target.area_id is not None:
            subtree = tree.subtree(AreaId(target.area_id))
            wanted |= {d.id for d in db.scalars(select(DeviceRow).where(DeviceRow.area_id.in_(subtree))).all()}
    return sorted(wanted)


@router.get("/{broadcast_id}/inbox")
def get_bulletin_inbox(broadcast_id: int, db: DbSession, principal: CurrentPrincipal) -> list[InboxEntryPublic]:
    """Per commune: what happened to this bulletin (pending, scheduled, inserted, declined + reason)."""
    bulletin = get_broadcast(db, principal, broadcast_id)
    return [inbox_public(db, e) for e in bulletin_entries(db, principal, bulletin)]


def inbox_public(db: Session, entry: InboxEntry) -> InboxEntryPublic:
    bulletin = db.get_one(Broadcast, entry.bulletin_id)
    area = db.get_one(Area, entry.area_id)
    return InboxEntryPublic(id=entry.id, bulletin_id=entry.bulletin_id, title=bulletin.title,
                            priority=bulletin.priority, area_code=area.code, area_name=area.name,
                            status=entry.status, reason=entry.reason, broadcast_id=entry.broadcast_id,
                            created_at=entry.created_at, decided_at=entry.decided_at)
