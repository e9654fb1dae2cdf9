"""Console pages for scheduling: the schedule form, the broadcast list and approval queue, the inbox of
bulletins from higher levels, and the emergency page.

Pages only read (with the same services the API uses) and render; every change goes through API v1 from
``static/schedule.js`` with the CSRF header: ``POST /api/v1/broadcasts`` (and ``/dry-run`` first),
``/review``, ``/cancel``, ``/progress``, ``/occurrences``, ``/api/v1/inbox/{id}/schedule|decline``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId, AreaTree
from server.api.broadcasts import inbox_public
from server.api.deps import DbSession, RuntimeDep
from server.api.schemas import InboxEntryPublic
from server.broadcasts import list_broadcasts, target_codes
from server.console.i18n import translate
from server.console.routes import (
    DEFAULT_TIMEZONE,
    AnnouncementCard,
    _cards,
    _page_context,
    _render,
    _to_login,
    active_session,
    format_local,
)
from server.content import list_announcements
from server.directory import load_tree, visible_areas, visible_devices
from server.inbox import inbox_for
from server.models import Announcement, Area, Broadcast, Device
from server.permissions import Action, Principal

router = APIRouter(include_in_schema=False)

WEEKDAYS = [("MO", "thứ Hai"), ("TU", "thứ Ba"), ("WE", "thứ Tư"), ("TH", "thứ Năm"), ("FR", "thứ Sáu"),
            ("SA", "thứ Bảy"), ("SU", "Chủ nhật")]
"""Codes and Vietnamese day names; templates and the functions below pass the names through ``_()``."""
_DAY_NAMES = dict(WEEKDAYS)
_ORDER = [code for code, _ in WEEKDAYS]


# --- readable timing ---------------------------------------------------------------------------------
# These read the request's language (server.console.i18n), so they are called while a page renders.

def _day(code: str) -> str:
    return translate(_DAY_NAMES[code])


def _days_text(days: list[str]) -> str:
    days = sorted(set(days), key=_ORDER.index)
    if days == _ORDER:
        return translate("hằng ngày")
    index = [_ORDER.index(d) for d in days]
    if len(days) >= 3 and index == list(range(index[0], index[-1] + 1)):
        return translate("các ngày %(first)s–%(last)s", first=_day(days[0]), last=_day(days[-1]))
    return translate("các ngày %(days)s", days=", ".join(_day(d) for d in days))


def describe_rrule(rrule: str) -> str:
    """A few common RFC 5545 rules in words ("các ngày thứ Hai–thứ Sáu"); others as they are."""
    parts = dict(p.split("=", 1) for p in rrule.upper().split(";") if "=" in p)
    freq, interval = parts.get("FREQ", ""), int(parts.get("INTERVAL", "1") or 1)
    byday = [re.sub(r"^[+-]?\d+", "", d) for d in parts.get("BYDAY", "").split(",") if d]
    if any(d not in _DAY_NAMES for d in byday) or set(parts) - {"FREQ", "INTERVAL", "BYDAY"}:
        return rrule
    if freq == "DAILY" and not byday:
        return translate("hằng ngày") if interval == 1 else translate("cách %(n)s ngày một lần", n=interval)
    if freq == "WEEKLY" and byday and interval == 1:
        return _days_text(byday)
    if freq == "DAILY" and byday and interval == 1:
        return _days_text(byday)
    return rrule


def _local_date(iso_date: str) -> str:
    year, month, day = iso_date[:10].split("-")
    return f"{day}/{month}/{year}"


def describe_timing(b: Broadcast, timezone: str = DEFAULT_TIMEZONE) -> str:
    """How the console says when a broadcast airs: "05:30 các ngày thứ Hai–thứ Sáu, từ 01/12/2026"."""
    if b.timing == "now":
        text = translate("Phát ngay")
    elif b.timing == "recurring" and b.start_local:
        text = translate("%(time)s %(rule)s, từ %(date)s", time=b.start_local[11:16], rule=describe_rrule(b.rrule),
                         date=_local_date(b.start_local))
        if b.valid_until:
            text += translate(" đến %(date)s", date=_local_date(b.valid_until))
        if b.holiday_rule == "skip":
            text += translate(" (nghỉ ngày lễ)")
        elif b.holiday_rule == "only":
            text += translate(" (chỉ ngày lễ)")
        if b.exdates:
            dates = ", ".join(_local_date(d) for d in b.exdates[:5]) + ("…" if len(b.exdates) > 5 else "")
            text += translate(", trừ %(dates)s", dates=dates)
    else:
        text = format_local(b.play_at, timezone)[:16]
    if b.repeat_every_min:
        text += translate("; lặp lại mỗi %(n)s phút", n=b.repeat_every_min)
        if b.repeat_count:
            text += translate(", %(n)s lần", n=b.repeat_count)
        if b.repeat_until is not None:
            text += translate(", đến %(time)s", time=format_local(b.repeat_until, timezone)[:16])
    if b.slot_minutes:
        text += translate("; khung %(n)s phút", n=b.slot_minutes)
    return text


# --- the area tree, indented ---------------------------------------------------------------------------

@dataclass(frozen=True)
class AreaOption:
    area: Area
    depth: int


def indented_areas(tree: AreaTree, areas: list[Area]) -> list[AreaOption]:
    """Areas in tree order (parents before children), each with its depth below the shallowest one."""
    paths = {a.id: [tree.get(x).code for x in reversed(tree.ancestors(AreaId(a.id)))] for a in areas}
    if not areas:
        return []
    top = min(len(p) for p in paths.values())
    ordered = sorted(areas, key=lambda a: paths[a.id])
    return [AreaOption(a, len(paths[a.id]) - top) for a in ordered]


def _schedule_scope(db: Session, principal: Principal) -> tuple[AreaTree, list[AreaOption], list[tuple[Device, Area]]]:
    tree = load_tree(db)
    areas = [a for a in visible_areas(db, principal) if principal.can(Action.SCHEDULE, AreaId(a.id), tree)]
    ids = {a.id for a in areas}
    devices = [(d, a) for d, _s, a in visible_devices(db, principal) if d.area_id in ids]
    return tree, indented_areas(tree, areas), devices


def _schedulable(db: Session, principal: Principal) -> list[AnnouncementCard]:
    return [c for c in _cards(db, principal, list_announcements(db, principal)) if c.schedulable]


def _today(runtime: Any) -> tuple[str, str]:
    text = format_local(runtime.now(), runtime.settings.timezone or DEFAULT_TIMEZONE)
    return text[:10], text[11:16]


# --- pages -------------------------------------------------------------------------------------------

@router.get("/console/schedule", response_model=None)
def get_schedule_page(request: Request, db: DbSession, runtime: RuntimeDep,
                      announcement_id: int | None = None) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    _tree, areas, devices = _schedule_scope(db, active.principal)
    if not areas:
        return _render(request, "refusal.html", {**_page_context(active), "status": 403}, runtime, status_code=403)
    today, now_time = _today(runtime)
    return _render(request, "schedule.html", {
        **_page_context(active), "cards": _schedulable(db, active.principal), "areas": areas, "devices": devices,
        "bulletin_allowed": any(o.area.kind == "province" for o in areas), "weekdays": WEEKDAYS,
        "chosen": announcement_id, "today": today, "now_time": now_time,
    }, runtime)


@dataclass(frozen=True)
class BroadcastView:
    broadcast: Broadcast
    timezone: str
    items: list[Announcement]
    target_names: list[str]
    can_review: bool
    can_cancel: bool

    @property
    def timing_text(self) -> str:
        """Worded when the page renders, in the page's language."""
        return describe_timing(self.broadcast, self.timezone)


def broadcast_views(db: Session, principal: Principal, tree: AreaTree, timezone: str) -> list[BroadcastView]:
    views: list[BroadcastView] = []
    broadcasts = list_broadcasts(db, principal)
    names = {a.code: a.name for a in db.scalars(select(Area)).all()}
    for b in broadcasts:
        owner = AreaId(b.area_id) if b.area_id is not None else AreaId(b.announcement.area_id)
        areas = [AreaId(t.area_id) for t in b.targets if t.area_id is not None] + [owner]
        codes, agents = target_codes(db, b)
        can_review = (b.status == "submitted" and b.created_by != principal.user_id
                      and all(principal.can(Action.APPROVE, a, tree) for a in areas))
        can_cancel = b.status == "approved" and (principal.can(Action.SCHEDULE, owner, tree)
                                                 or principal.can(Action.APPROVE, owner, tree))
        views.append(BroadcastView(b, timezone, [i.announcement for i in b.items],
                                   [names.get(c, c) for c in codes] + agents, can_review, can_cancel))
    return views


@router.get("/console/broadcasts", response_model=None)
def get_broadcasts_page(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    tree = load_tree(db)
    views = broadcast_views(db, active.principal, tree, runtime.settings.timezone or DEFAULT_TIMEZONE)
    queue = [v for v in views if v.can_review]
    return _render(request, "broadcasts.html", {
        **_page_context(active), "views": views, "queue": queue,
        "can_schedule": bool(active.principal.areas_for(Action.SCHEDULE, tree)),
    }, runtime)


@router.get("/console/inbox", response_model=None)
def get_inbox_page(request: Request, db: DbSession, runtime: RuntimeDep) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    tree = load_tree(db)
    rows = inbox_for(db, active.principal)
    entries: list[InboxEntryPublic] = [inbox_public(db, e) for e in rows]
    decidable = {e.id: active.principal.can(Action.SCHEDULE, AreaId(e.area_id), tree) for e in rows}
    sent = [b for b in list_broadcasts(db, active.principal) if b.mode == "bulletin"]
    today, _ = _today(runtime)
    return _render(request, "inbox.html", {
        **_page_context(active), "entries": entries, "decidable": decidable, "sent": sent, "today": today,
        "timezone_name": runtime.settings.timezone or DEFAULT_TIMEZONE, "describe_timing": describe_timing,
    }, runtime)


@router.get("/console/emergency", response_model=None)
def get_emergency_page(request: Request, db: DbSession, runtime: RuntimeDep,
                       announcement_id: int | None = None) -> Response:
    active = active_session(request, db, runtime)
    if active is None:
        return _to_login(request)
    _tree, areas, _devices = _schedule_scope(db, active.principal)
    if not areas:
        return _render(request, "refusal.html", {**_page_context(active), "status": 403}, runtime, status_code=403)
    now = runtime.now()
    recent = [b for b in list_broadcasts(db, active.principal)
              if b.priority == "emergency" and b.status in ("approved", "submitted")
              and (now - b.play_at).total_seconds() < 24 * 3600]
    return _render(request, "emergency.html", {
        **_page_context(active), "cards": _schedulable(db, active.principal), "areas": areas,
        "chosen": announcement_id, "recent": recent,
        "confirmation": runtime.settings.emergency_confirmation,
    }, runtime)
