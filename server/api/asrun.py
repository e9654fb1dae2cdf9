"""The as-run log: what each loudspeaker cluster reported it played."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from server.api.deps import CurrentPrincipal, DbSession
from server.api.schemas import AsRunPublic
from server.directory import load_tree
from server.models import AsRunEntry, Device
from server.permissions import Action

router = APIRouter(prefix="/api/v1/as-run", tags=["as-run"])


@router.get("")
def list_as_run(db: DbSession, principal: CurrentPrincipal,
                broadcast_id: Annotated[int | None, Query(gt=0)] = None,
                agent_id: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[AsRunPublic]:
    area_ids = principal.areas_for(Action.VIEW, load_tree(db))
    query = (select(AsRunEntry, Device.agent_id).join(Device, Device.id == AsRunEntry.device_id)
             .where(Device.area_id.in_(area_ids)))
    if broadcast_id is not None:
        query = query.where(AsRunEntry.broadcast_id == broadcast_id)
    if agent_id is not None:
        query = query.where(Device.agent_id == agent_id)
    rows = db.execute(query.order_by(AsRunEntry.at.desc(), AsRunEntry.id.desc()).limit(limit)).all()
    return [AsRunPublic(event_id=e.event_id, agent_id=aid, broadcast_id=e.broadcast_id, item_id=e.item_id,
                        kind=e.kind, at=e.at, scheduled_at=e.scheduled_at, detail=e.detail) for e, aid in rows]
