"""Reading the audit trail (server/audit.py writes it): a filtered, paged list, newest first, and CSV.

Admins only, and only for their areas: an admin of a root area (the province) sees every event; any other
admin sees the events in the areas they manage and those of the users they manage (every role of the user
inside their areas), plus their own. Events tied to no area and no such user (a log-in failure under an
unknown name, a setting) are for the province's admins alone. Non-admins get 403.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from schedules import AreaId
from server.accounts import admin_scope
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.directory import area_by_code, load_tree
from server.errors import Invalid, NotFound
from server.models import Area, AuditEvent, User
from server.permissions import Action, Principal
from server.reports import local_midnight, parse_local_date

router = APIRouter(prefix="/api/v1", tags=["audit"])

DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"
CSV_MAX_ROWS = 100_000


@dataclass(frozen=True)
class AuditFilter:
    date_from: str | None = None
    """First day (dd/mm/yyyy or yyyy-mm-dd, local) or an ISO instant."""
    date_to: str | None = None
    """Last day, inclusive (dd/mm/yyyy or yyyy-mm-dd, local) or an ISO instant (exclusive)."""
    action: str | None = None
    """An action code (``device.command``) or a family (``emergency``: every ``emergency.*``)."""
    user: str | None = None
    area_code: str | None = None
    """The area and everything below it."""
    target: str | None = None
    """Part of the target (``XA-01`` finds ``device:XA-01``)."""
    outcome: str | None = None


def _instant(text: str, timezone: str, *, end: bool) -> datetime:
    text = text.strip()
    if "T" in text or " " in text:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise Invalid(f"Thời điểm không hợp lệ: {text[:40]} (dd/mm/yyyy hoặc ISO 8601).") from exc
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo(timezone))
    day: date = parse_local_date(text)
    return local_midnight(day + timedelta(days=1) if end else day, timezone)


def visible_to(db: Session, principal: Principal) -> ColumnElement[bool] | None:
    """The condition on events ``principal`` may read (None: all of them); Forbidden for non-admins."""
    scope = admin_scope(db, principal)
    roots = set(db.scalars(select(Area.id).where(Area.parent_id.is_(None))).all())
    if roots and roots <= scope.area_ids:
        return None
    users = [u.id for u in db.scalars(select(User)).all() if scope.manages(u)] + [principal.user_id]
    return or_(AuditEvent.area_id.in_(scope.area_ids), AuditEvent.user_id.in_(users))


def select_events(db: Session, principal: Principal, wanted: AuditFilter, timezone: str
                  ) -> Select[AuditEvent]:
    query = select(AuditEvent)
    allowed = visible_to(db, principal)
    if allowed is not None:
        query = query.where(allowed)
    if wanted.date_from:
        query = query.where(AuditEvent.at >= _instant(wanted.date_from, timezone, end=False))
    if wanted.date_to:
        query = query.where(AuditEvent.at < _instant(wanted.date_to, timezone, end=True))
    if wanted.action:
        action = wanted.action.strip()
        query = query.where(AuditEvent.action == action if "." in action
                            else AuditEvent.action.startswith(action + ".", autoescape=True))
    if wanted.user:
        query = query.where(func.lower(AuditEvent.username) == wanted.user.strip().lower())
    if wanted.area_code:
        area = area_by_code(db, wanted.area_code.strip())
        tree = load_tree(db)
        if not principal.can(Action.VIEW, AreaId(area.id), tree):
            raise NotFound(f"no area {wanted.area_code}")
        query = query.where(AuditEvent.area_id.in_(tree.subtree(AreaId(area.id))))
    if wanted.target:
        query = query.where(AuditEvent.target.contains(wanted.target.strip(), autoescape=True))
    if wanted.outcome:
        query = query.where(AuditEvent.outcome == wanted.outcome.strip())
    return query


@dataclass(frozen=True)
class AuditPage:
    total: int
    page: int
    per_page: int
    events: list[AuditEvent]
    area_codes: dict[int, tuple[str, str]]
    """area id → (code, name) of the areas the events name."""


def list_events(db: Session, principal: Principal, wanted: AuditFilter, *, timezone: str, page: int = 1,
                per_page: int = 50) -> AuditPage:
    query = select_events(db, principal, wanted, timezone)
    total = db.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(db.scalars(query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all())
    return AuditPage(total=total, page=page, per_page=per_page, events=rows, area_codes=_areas(db, rows))


def _areas(db: Session, rows: list[AuditEvent]) -> dict[int, tuple[str, str]]:
    ids = {r.area_id for r in rows if r.area_id is not None}
    if not ids:
        return {}
    return {a.id: (a.code, a.name) for a in db.scalars(select(Area).where(Area.id.in_(ids))).all()}


class AuditEventPublic(BaseModel):
    id: int
    at: datetime
    user_id: int | None
    username: str
    action: str
    area_code: str | None
    area_name: str | None
    target: str
    details: dict[str, Any]
    outcome: str
    """ok | refused | failed | pending | no_answer."""
    result: str


class AuditPagePublic(BaseModel):
    total: int
    page: int
    per_page: int
    events: list[AuditEventPublic]


def event_public(event: AuditEvent, areas: dict[int, tuple[str, str]]) -> AuditEventPublic:
    code, name = areas.get(event.area_id, (None, None)) if event.area_id is not None else (None, None)
    return AuditEventPublic(id=event.id, at=event.at, user_id=event.user_id, username=event.username,
                            action=event.action, area_code=code, area_name=name, target=event.target,
                            details=event.details, outcome=event.outcome, result=event.result)


Text = Annotated[str | None, Query(max_length=64)]
DateText = Annotated[str | None, Query(max_length=40, description="dd/mm/yyyy, yyyy-mm-dd (local day) or ISO 8601")]


def audit_filter(date_from: DateText = None, date_to: DateText = None, action: Text = None, user: Text = None,
                 area_code: Annotated[str | None, Query(max_length=32)] = None,
                 target: Annotated[str | None, Query(max_length=200)] = None, outcome: Text = None) -> AuditFilter:
    return AuditFilter(date_from=date_from or None, date_to=date_to or None, action=action or None,
                       user=user or None, area_code=area_code or None, target=target or None,
                       outcome=outcome or None)


def _timezone(runtime: RuntimeDep) -> str:
    return runtime.settings.timezone or DEFAULT_TIMEZONE


@router.get("/audit")
def get_audit(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
              date_from: DateText = None, date_to: DateText = None, action: Text = None, user: Text = None,
              area_code: Annotated[str | None, Query(max_length=32)] = None,
              target: Annotated[str | None, Query(max_length=200)] = None, outcome: Text = None,
              page: Annotated[int, Query(ge=1, le=100_000)] = 1,
              per_page: Annotated[int, Query(ge=1, le=500)] = 50) -> AuditPagePublic:
    """Newest first. Dates are local days in the installation's time zone (Asia/Ho_Chi_Minh)."""
    wanted = audit_filter(date_from, date_to, action, user, area_code, target, outcome)
    found = list_events(db, principal, wanted, timezone=_timezone(runtime), page=page, per_page=per_page)
    return AuditPagePublic(total=found.total, page=found.page, per_page=found.per_page,
                           events=[event_public(e, found.area_codes) for e in found.events])


CSV_HEADER = ("Thời gian", "Người thực hiện", "Thao tác", "Mã địa bàn", "Đối tượng", "Kết quả", "Ghi chú",
              "Chi tiết")


@router.get("/audit.csv", response_class=Response)
def get_audit_csv(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                  date_from: DateText = None, date_to: DateText = None, action: Text = None, user: Text = None,
                  area_code: Annotated[str | None, Query(max_length=32)] = None,
                  target: Annotated[str | None, Query(max_length=200)] = None, outcome: Text = None) -> Response:
    """The same events as ``/audit`` (newest first, at most 100,000), UTF-8 with a byte-order mark for Excel;
    times are ``dd/mm/yyyy HH:MM:SS`` local, actions and outcomes their codes, details JSON."""
    timezone = _timezone(runtime)
    wanted = audit_filter(date_from, date_to, action, user, area_code, target, outcome)
    found = list_events(db, principal, wanted, timezone=timezone, per_page=CSV_MAX_ROWS)
    zone = ZoneInfo(timezone)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for event in found.events:
        code = found.area_codes.get(event.area_id, ("", ""))[0] if event.area_id is not None else ""
        writer.writerow([event.at.astimezone(zone).strftime("%d/%m/%Y %H:%M:%S"), event.username, event.action,
                         code, event.target, event.outcome, event.result,
                         json.dumps(event.details, ensure_ascii=False, sort_keys=True)])
    stamp = datetime.now(zone).strftime("%Y%m%d-%H%M")
    return Response(out.getvalue().encode("utf-8-sig"), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="nhat-ky-thao-tac-{stamp}.csv"',
                             "Cache-Control": "no-store"})
