"""Alerts: list those of the devices the user may see, acknowledge them with a comment.

Acknowledging needs OPERATE on the device's area. An alert of a device the user cannot see answers 404,
exactly like one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from schedules import AreaId
from server.alerts import RULES, acknowledge, sort_key
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.directory import area_by_code, get_visible_device, load_tree
from server.errors import Conflict, Forbidden, NotFound
from server.models import Alert, Area, Device, User
from server.permissions import Action, Principal

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

AlertStatus = Literal["open", "resolved", "all"]
MAX_LIMIT = 1000


class AlertPublic(BaseModel):
    id: int
    rule: str
    severity: str
    params: dict[str, Any]
    opened_at: datetime
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_comment: str
    agent_id: str
    device_name: str
    area_code: str
    area_name: str
    can_acknowledge: bool
    notified_at: datetime | None
    notify_error: str


class AlertSummary(BaseModel):
    open: int
    unacknowledged: int
    critical: int
    """Open, unacknowledged and critical."""


class AcknowledgeRequest(BaseModel):
    comment: str = Field(max_length=500)

    @field_validator("comment")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("write a comment: what was done or who takes care of it")
        return value


@dataclass(frozen=True)
class AlertFilter:
    status: AlertStatus = "open"
    unacknowledged: bool = False
    area_code: str | None = None
    agent_id: str | None = None
    rule: str | None = None


def _visible_area_ids(db: Session, principal: Principal, area_code: str | None) -> set[int]:
    tree = load_tree(db)
    visible = {int(a) for a in principal.areas_for(Action.VIEW, tree)}
    if area_code is None:
        return visible
    area = area_by_code(db, area_code)
    if area.id not in visible:
        raise NotFound(f"no area {area_code!r}")
    return {int(a) for a in tree.subtree(AreaId(area.id))}


def list_alerts(db: Session, principal: Principal, wanted: AlertFilter, *, limit: int = 500) -> list[AlertPublic]:
    """Open first, critical first, newest first."""
    if wanted.rule is not None and wanted.rule not in RULES:
        raise NotFound(f"no alert rule {wanted.rule!r}; known: {', '.join(RULES)}")
    area_ids = _visible_area_ids(db, principal, wanted.area_code)
    query = (select(Alert, Device, Area, User).join(Device, Device.id == Alert.device_id)
             .join(Area, Area.id == Device.area_id).outerjoin(User, User.id == Alert.acknowledged_by_id)
             .where(Device.area_id.in_(area_ids)))
    if wanted.agent_id is not None:
        query = query.where(Device.id == get_visible_device(db, principal, wanted.agent_id).id)
    if wanted.status == "open":
        query = query.where(Alert.resolved_at.is_(None))
    elif wanted.status == "resolved":
        query = query.where(Alert.resolved_at.is_not(None))
    if wanted.unacknowledged:
        query = query.where(Alert.acknowledged_at.is_(None))
    if wanted.rule is not None:
        query = query.where(Alert.rule == wanted.rule)
    # Open ones are few and all shown; resolved ones are history, newest first.
    rows = db.execute(query.order_by(Alert.resolved_at.is_not(None), Alert.opened_at.desc()).limit(limit)).all()
    operable = _operable_area_ids(db, principal)
    return sorted((_public(a, d, ar, u, operable) for a, d, ar, u in rows), key=sort_key)


def _operable_area_ids(db: Session, principal: Principal) -> set[int]:
    return {int(a) for a in principal.areas_for(Action.OPERATE, load_tree(db))}


def _public(alert: Alert, device: Device, area: Area, acknowledged_by: User | None,
            operable: set[int]) -> AlertPublic:
    who = (acknowledged_by.full_name or acknowledged_by.username) if acknowledged_by is not None else None
    return AlertPublic(id=alert.id, rule=alert.rule, severity=alert.severity, params=dict(alert.params),
                       opened_at=alert.opened_at, resolved_at=alert.resolved_at,
                       acknowledged_at=alert.acknowledged_at, acknowledged_by=who, ack_comment=alert.ack_comment,
                       agent_id=device.agent_id, device_name=device.name, area_code=area.code, area_name=area.name,
                       can_acknowledge=alert.acknowledged_at is None and device.area_id in operable,
                       notified_at=alert.notified_at, notify_error=alert.notify_error)


def summary(db: Session, principal: Principal) -> AlertSummary:
    area_ids = _visible_area_ids(db, principal, None)
    base = (select(func.count(Alert.id)).join(Device, Device.id == Alert.device_id)
            .where(Device.area_id.in_(area_ids), Alert.resolved_at.is_(None)))
    unacknowledged = base.where(Alert.acknowledged_at.is_(None))
    return AlertSummary(open=db.scalar(base) or 0, unacknowledged=db.scalar(unacknowledged) or 0,
                        critical=db.scalar(unacknowledged.where(Alert.severity == "critical")) or 0)


def get_visible_alert(db: Session, principal: Principal, alert_id: int) -> tuple[Alert, Device]:
    alert = db.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    device = db.get_one(Device, alert.device_id)
    try:
        get_visible_device(db, principal, device.agent_id)
    except NotFound:
        raise NotFound(f"no alert {alert_id}") from None
    return alert, device


@router.get("")
def get_alerts(db: DbSession, principal: CurrentPrincipal,
               status: AlertStatus = "open", unacknowledged: bool = False,
               area_code: Annotated[str | None, Query(max_length=32)] = None,
               agent_id: Annotated[str | None, Query(max_length=64)] = None,
               rule: Annotated[str | None, Query(max_length=32)] = None,
               limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 500) -> list[AlertPublic]:
    wanted = AlertFilter(status=status, unacknowledged=unacknowledged, area_code=area_code or None,
                         agent_id=agent_id or None, rule=rule or None)
    return list_alerts(db, principal, wanted, limit=limit)


@router.get("/summary")
def get_summary(db: DbSession, principal: CurrentPrincipal) -> AlertSummary:
    """Counts for the console's navigation badge."""
    return summary(db, principal)


@router.post("/{alert_id}/acknowledge")
def post_acknowledge(alert_id: int, body: AcknowledgeRequest, db: DbSession, principal: CurrentPrincipal,
                     runtime: RuntimeDep) -> AlertPublic:
    alert, device = get_visible_alert(db, principal, alert_id)
    if not principal.can(Action.OPERATE, AreaId(device.area_id), load_tree(db)):
        raise Forbidden("acknowledging an alert needs the operator role on the device's area")
    if alert.acknowledged_at is not None:
        raise Conflict(f"alert {alert_id} was already acknowledged")
    acknowledge(db, alert, user_id=principal.user_id, comment=body.comment, now=runtime.now())
    db.commit()
    runtime.live.publish({"type": "alert", "action": "acknowledged", "id": alert.id, "agent_id": device.agent_id,
                          "rule": alert.rule, "severity": alert.severity})
    return _public(alert, device, db.get_one(Area, device.area_id), db.get(User, principal.user_id),
                   _operable_area_ids(db, principal))
