"""What will play where: an area's occurrences for the coming days, and its iCalendar export."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId
from schedules.broadcasts import BroadcastSpec, occurrences_between
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import OccurrencePublic
from server.directory import area_by_code, load_tree, require
from server.models import Area, Broadcast
from server.permissions import Action, Principal
from server.schedule_mapping import agents_of, holiday_calendar, load_fleet, spec_of

router = APIRouter(prefix="/api/v1/schedule", tags=["schedule"])


def area_specs(db: Session, principal: Principal, area_code: str) -> tuple[Area, list[BroadcastSpec]]:
    """Every airing broadcast that reaches a device of this area, restricted to those devices."""
    area = area_by_code(db, area_code)
    tree = load_tree(db)
    require(principal, Action.VIEW, area, tree, f"you may not see the schedule of {area_code}")
    fleet = load_fleet(db)
    subtree = tree.subtree(AreaId(area.id))
    local = frozenset(a for a, d in fleet.devices.items() if d.area_id in subtree)
    specs: list[BroadcastSpec] = []
    for broadcast in db.scalars(select(Broadcast).where(Broadcast.status == "approved", Broadcast.mode == "direct")
                                .order_by(Broadcast.id)).all():
        reached = agents_of(broadcast, fleet) & local
        spec = spec_of(broadcast, reached) if reached else None
        if spec is not None:
            specs.append(spec)
    return area, specs


@router.get("")
def get_schedule(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                 area_code: str = Query(min_length=1, max_length=32),
                 days: int = Query(default=7, ge=1, le=62)) -> list[OccurrencePublic]:
    """Every occurrence in the area in the next ``days`` days, in time order."""
    _, specs = area_specs(db, principal, area_code)
    now = runtime.now()
    found = [o for spec in specs for o in occurrences_between(spec, now - timedelta(hours=3),
                                                              now + timedelta(days=days), holiday_calendar())
             if o.end > now]
    found.sort(key=lambda o: (o.play_at, o.id))
    return [OccurrencePublic(id=o.id, broadcast_id=o.broadcast_id, title=o.title, priority=o.priority.name.lower(),
                             play_at=o.play_at, end_at=o.end, devices=len(o.agent_ids), exercise=o.exercise)
            for o in found]


@router.get("/ical")
def get_ical(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
             area_code: str = Query(min_length=1, max_length=32),
             days: int = Query(default=31, ge=1, le=366)) -> Response:
    """The area's schedule as an RFC 5545 calendar (recurring broadcasts keep their RRULE)."""
    from schedules.ical import to_ical

    area, specs = area_specs(db, principal, area_code)
    now = runtime.now()
    body = to_ical(specs, dtstamp=now, window_start=now, window_end=now + timedelta(days=days),
                   holidays=holiday_calendar(), name=f"Loa – {area.name}")
    return Response(content=body, media_type="text/calendar; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="loa-{area.code}.ics"'})
