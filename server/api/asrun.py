"""The as-run log: what each loudspeaker cluster reported it played."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from server.api.deps import CurrentPrincipal, DbSession, get_runtime
from server.api.schemas import AsRunPublic
from server.reports import AsRunFilter, as_run, parse_local_date
from server.runtime import Runtime

router = APIRouter(prefix="/api/v1/as-run", tags=["as-run"])

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


@router.get("")
def list_as_run(db: DbSession, principal: CurrentPrincipal,
                broadcast_id: Annotated[int | None, Query(gt=0)] = None,
                agent_id: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=5000)] = 200,
                area_code: Annotated[str | None, Query(max_length=32, description="an area and all below it")] = None,
                category: Annotated[str | None, Query(max_length=32, description="see server/categories.py")] = None,
                date_from: Annotated[str | None, Query(max_length=10, description="first local day, yyyy-mm-dd "
                                                                                    "or dd/mm/yyyy")] = None,
                date_to: Annotated[str | None, Query(max_length=10, description="last local day (inclusive)")] = None,
                runtime: Annotated[Runtime | None, Depends(get_runtime)] = None) -> list[AsRunPublic]:
    """Newest first. Dates are local days in the installation's time zone (Asia/Ho_Chi_Minh)."""
    timezone = runtime.settings.timezone if runtime is not None else DEFAULT_TIMEZONE
    wanted = AsRunFilter(area_code=area_code or None, agent_id=agent_id or None, broadcast_id=broadcast_id,
                         category=category or None,
                         date_from=parse_local_date(date_from) if date_from else None,
                         date_to=parse_local_date(date_to) if date_to else None)
    return [AsRunPublic(event_id=r.event_id, agent_id=r.agent_id, broadcast_id=r.broadcast_id, item_id=r.item_id,
                        kind=r.kind, at=r.at, scheduled_at=r.scheduled_at, detail=r.detail)
            for r in as_run(db, principal, wanted, timezone=timezone or DEFAULT_TIMEZONE, limit=limit)]
