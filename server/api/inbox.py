"""A commune's inbox of bulletins from higher levels: list, schedule, decline."""

from __future__ import annotations

from fastapi import APIRouter, Query

from server.api.broadcasts import after_approval, broadcast_public, inbox_public
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import BroadcastCreate, BroadcastPublic, InboxDecision, InboxEntryPublic
from server.inbox import decline_entry, get_entry, inbox_for, schedule_entry

router = APIRouter(prefix="/api/v1/inbox", tags=["inbox"])


@router.get("")
def get_inbox(db: DbSession, principal: CurrentPrincipal,
              status: str | None = Query(default=None, max_length=16)) -> list[InboxEntryPublic]:
    return [inbox_public(db, e) for e in inbox_for(db, principal, status=status)]


@router.get("/{entry_id}")
def get_one(entry_id: int, db: DbSession, principal: CurrentPrincipal) -> InboxEntryPublic:
    return inbox_public(db, get_entry(db, principal, entry_id))


@router.post("/{entry_id}/schedule", status_code=201)
def post_schedule(entry_id: int, body: BroadcastCreate, db: DbSession, principal: CurrentPrincipal,
                  runtime: RuntimeDep) -> BroadcastPublic:
    """Air the bulletin in this commune with the timing (and optionally narrower targets) given; the
    announcement fields of the body are ignored (the bulletin's items air)."""
    _, broadcast = schedule_entry(db, principal, entry_id, body, now=runtime.now(), settings=runtime.settings)
    db.commit()
    if broadcast.status == "approved":
        after_approval(runtime, db, broadcast)
    return broadcast_public(db, broadcast)


@router.post("/{entry_id}/decline")
def post_decline(entry_id: int, body: InboxDecision, db: DbSession, principal: CurrentPrincipal,
                 runtime: RuntimeDep) -> InboxEntryPublic:
    entry = decline_entry(db, principal, entry_id, reason=body.reason, now=runtime.now())
    db.commit()
    return inbox_public(db, entry)
