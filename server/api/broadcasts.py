"""Broadcasts: schedule approved content for a time and targets; cancel."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter

from agents.protocol import AudioRef, Command, PlanItem
from schedules import Occurrence, Priority
from schedules.model import AudioAsset
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import BroadcastCreate, BroadcastPublic
from server.broadcasts import cancel_broadcast, create_broadcast, get_broadcast, list_broadcasts
from server.models import Area, Broadcast
from server.runtime import Runtime

router = APIRouter(prefix="/api/v1/broadcasts", tags=["broadcasts"])


def broadcast_public(broadcast: Broadcast, target_devices: int = 0) -> BroadcastPublic:
    return BroadcastPublic(id=broadcast.id, announcement_id=broadcast.announcement_id,
                           title=broadcast.announcement.title, priority=broadcast.priority,
                           play_at=broadcast.play_at, status=broadcast.status, target_devices=target_devices)


def fan_out_now(runtime: Runtime, broadcast: Broadcast, area_codes: list[str], agent_ids: list[str]) -> None:
    """An immediate emergency goes out once per target area on group topics, ahead of the plans.

    Agents recognise the item by its id when the plan that also carries it arrives, and play it once.
    """
    audio = broadcast.announcement.audio
    assert audio is not None
    occurrence = Occurrence(broadcast_id=broadcast.id, title=broadcast.announcement.title,
                            priority=Priority[broadcast.priority.upper()], play_at=broadcast.play_at,
                            audio=AudioAsset(audio.sha256, audio.duration_ms, audio.size_bytes),
                            agent_ids=frozenset())
    item = PlanItem(id=occurrence.id, broadcast_id=broadcast.id, title=occurrence.title,
                    priority=occurrence.priority, play_at=broadcast.play_at,
                    audio=AudioRef(sha256=audio.sha256,
                                   url=f"{runtime.settings.effective_public_url}/api/v1/audio/{audio.sha256}",
                                   duration_ms=audio.duration_ms, size_bytes=audio.size_bytes))
    now = runtime.now()
    command = Command(id=uuid.uuid4().hex, name="play_now", issued_at=now, expires_at=now + timedelta(minutes=10),
                      args={"item": item.to_dict()})
    for code in area_codes:
        runtime.bridge.send_command(command, group_id=f"area-{code.lower()}")
    for agent_id in agent_ids:
        runtime.bridge.send_command(command, agent_id=agent_id)


@router.post("", status_code=201)
def post_broadcast(body: BroadcastCreate, db: DbSession, principal: CurrentPrincipal,
                   runtime: RuntimeDep) -> BroadcastPublic:
    broadcast, resolved = create_broadcast(
        db, principal, announcement_id=body.announcement_id, play_at=body.play_at, priority=body.priority,
        area_codes=body.area_codes, agent_ids=body.agent_ids, now=runtime.now(),
        lead=timedelta(seconds=runtime.settings.play_lead_s))
    db.commit()
    if body.play_at is None and body.priority == "emergency":
        codes = [db.get_one(Area, t.area_id).code for t in broadcast.targets if t.area_id is not None]
        fan_out_now(runtime, broadcast, codes, list(body.agent_ids))
    runtime.planner.recompile()
    return broadcast_public(broadcast, len(resolved))


@router.get("")
def get_broadcasts(db: DbSession, principal: CurrentPrincipal) -> list[BroadcastPublic]:
    return [broadcast_public(b) for b in list_broadcasts(db, principal)]


@router.get("/{broadcast_id}")
def get_one(broadcast_id: int, db: DbSession, principal: CurrentPrincipal) -> BroadcastPublic:
    return broadcast_public(get_broadcast(db, principal, broadcast_id))


@router.post("/{broadcast_id}/cancel")
def post_cancel(broadcast_id: int, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> BroadcastPublic:
    broadcast = cancel_broadcast(db, principal, broadcast_id)
    db.commit()
    runtime.planner.recompile()
    return broadcast_public(broadcast)
