"""The as-run log filtered for people, and the monthly report per area.

A *play* is one plan item on one device (``device``, ``item_id``); its events (started, finished, …)
tell how it went:

- **aired** when the device reported ``started`` or ``finished``; it *completed* with ``finished``,
  else it was *interrupted* (preempted by a more urgent item, stopped, or still playing);
- **failed** or **skipped** when it never started (``failed``/``skipped``, or ``preempted`` before its turn).

Minutes aired are the time from ``started`` to the play's last event (the audio's length when only
``finished`` arrived). The success rate is aired ÷ (aired + failed + skipped). A broadcast's category is
its (first) announcement's; events without a known broadcast count under "Khác". Months and dates are
local days in the installation's time zone (Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from schedules import AreaId
from server.categories import CATEGORIES, OTHER, category_label, known_category
from server.directory import area_by_code, load_tree, require
from server.errors import Invalid, NotFound
from server.models import Announcement, Area, AsRunEntry, AudioAsset, Broadcast, Device
from server.permissions import Action, Principal

AIRED_KINDS = frozenset({"started", "finished"})
END_KINDS = frozenset({"finished", "preempted", "interrupted", "failed"})
MAX_REPORT_EVENTS = 500_000
"""A guard against a month that would not fit in memory (a province has ~10^4 clusters × a few plays a day)."""


# --- months and local days -----------------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """``2026-11`` (API) or ``11/2026`` (console)."""
        text = text.strip()
        match = re.fullmatch(r"(\d{4})-(\d{1,2})", text) or re.fullmatch(r"(\d{1,2})/(\d{4})", text)
        if match is None:
            raise Invalid("Tháng không hợp lệ: hãy nhập mm/yyyy (ví dụ 11/2026).")
        first, second = match.groups()
        year, month = (int(first), int(second)) if "-" in text else (int(second), int(first))
        if not 1 <= month <= 12 or not 2000 <= year <= 2100:
            raise Invalid("Tháng không hợp lệ: hãy nhập mm/yyyy (ví dụ 11/2026).")
        return cls(year, month)

    @classmethod
    def of(cls, moment: datetime, timezone: str) -> Month:
        local = moment.astimezone(ZoneInfo(timezone))
        return cls(local.year, local.month)

    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """[first local midnight, next month's first local midnight) as aware datetimes."""
        return local_midnight(self.first_day(), timezone), local_midnight(self.next().first_day(), timezone)

    @property
    def label(self) -> str:
        return f"{self.month:02d}/{self.year}"

    @property
    def iso(self) -> str:
        return f"{self.year}-{self.month:02d}"


def local_midnight(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone))


def parse_local_date(text: str) -> date:
    """``dd/mm/yyyy`` (console) or ``yyyy-mm-dd`` (API)."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
        match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
        if match:
            day, month, year = (int(g) for g in match.groups())
            return date(year, month, day)
    except ValueError:
        pass
    raise Invalid(f"Ngày không hợp lệ: {text[:20]} (hãy nhập dd/mm/yyyy).")


# --- the as-run log ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AsRunFilter:
    area_code: str | None = None
    agent_id: str | None = None
    broadcast_id: int | None = None
    category: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    """Inclusive local days."""


@dataclass(frozen=True)
class AsRunRow:
    event_id: str
    agent_id: str
    device_name: str
    area_code: str
    broadcast_id: int | None
    item_id: str
    kind: str
    at: datetime
    scheduled_at: datetime
    detail: str
    category: str
    title: str


_Query = TypeVar("_Query", bound=Select)


def _category_column(query: _Query) -> _Query:
    """Joins the broadcast's (first) announcement, whose category and title the rows carry."""
    return (query.outerjoin(Broadcast, Broadcast.id == AsRunEntry.broadcast_id)
            .outerjoin(Announcement, Announcement.id == Broadcast.announcement_id))


def _scope_ids(db: Session, principal: Principal, area_code: str | None) -> set[int]:
    tree = load_tree(db)
    visible = principal.areas_for(Action.VIEW, tree)
    if area_code is None:
        return {int(a) for a in visible}
    area = db.scalar(select(Area).where(Area.code == area_code))
    if area is None or AreaId(area.id) not in visible:
        raise NotFound(f"no area {area_code}")
    return {int(a) for a in tree.subtree(AreaId(area.id))}


def as_run(db: Session, principal: Principal, wanted: AsRunFilter, *, timezone: str,
           limit: int = 200) -> list[AsRunRow]:
    """The newest entries first, only from devices in the user's areas (an invisible area is 404)."""
    if wanted.category is not None and wanted.category not in CATEGORIES:
        raise Invalid(f"Lĩnh vực không hợp lệ: {wanted.category[:40]}")
    if wanted.date_from and wanted.date_to and wanted.date_from > wanted.date_to:
        raise Invalid("Ngày bắt đầu phải trước hoặc bằng ngày kết thúc.")
    area_ids = _scope_ids(db, principal, wanted.area_code)
    query = _category_column(
        select(AsRunEntry, Device, Area, Announcement.category, Announcement.title)
        .join(Device, Device.id == AsRunEntry.device_id).join(Area, Area.id == Device.area_id)
        .where(Device.area_id.in_(area_ids)))
    if wanted.broadcast_id is not None:
        query = query.where(AsRunEntry.broadcast_id == wanted.broadcast_id)
    if wanted.agent_id is not None:
        query = query.where(Device.agent_id == wanted.agent_id)
    if wanted.category is not None:
        if wanted.category == OTHER:
            query = query.where((Announcement.category == OTHER) | (Announcement.category.is_(None))
                                | Announcement.category.not_in(list(CATEGORIES)))
        else:
            query = query.where(Announcement.category == wanted.category)
    if wanted.date_from is not None:
        query = query.where(AsRunEntry.at >= local_midnight(wanted.date_from, timezone))
    if wanted.date_to is not None:
        query = query.where(AsRunEntry.at < local_midnight(wanted.date_to + timedelta(days=1), timezone))
    rows = db.execute(query.order_by(AsRunEntry.at.desc(), AsRunEntry.id.desc()).limit(limit)).all()
    return [AsRunRow(event_id=e.event_id, agent_id=d.agent_id, device_name=d.name, area_code=a.code,
                     broadcast_id=e.broadcast_id, item_id=e.item_id, kind=e.kind, at=e.at,
                     scheduled_at=e.scheduled_at, detail=e.detail, category=known_category(cat or OTHER),
                     title=title or "") for e, d, a, cat, title in rows]


# --- the monthly report --------------------------------------------------------------------------------

@dataclass
class Tally:
    """Counts for one line of the report."""

    broadcast_ids: set[int] = field(default_factory=set)
    plays: int = 0
    completed: int = 0
    interrupted: int = 0
    failed: int = 0
    skipped: int = 0
    milliseconds: int = 0

    @property
    def broadcasts(self) -> int:
        return len(self.broadcast_ids)

    @property
    def aired(self) -> int:
        return self.completed + self.interrupted

    @property
    def minutes(self) -> float:
        return round(self.milliseconds / 60_000, 1)

    @property
    def success_rate(self) -> float | None:
        """Percent of plays that aired, or None when nothing was due."""
        due = self.aired + self.failed + self.skipped
        return round(100 * self.aired / due, 1) if due else None


@dataclass(frozen=True)
class ReportLine:
    key: str
    label: str
    tally: Tally


@dataclass(frozen=True)
class MonthlyReport:
    area_code: str
    area_name: str
    area_kind: str
    month: Month
    generated_at: datetime
    timezone: str
    devices: int
    by_category: list[ReportLine]
    by_area: list[ReportLine]
    total: Tally


@dataclass
class _Play:
    device_id: int
    broadcast_id: int | None
    category: str
    kinds: set[str] = field(default_factory=set)
    started_at: datetime | None = None
    last_at: datetime | None = None
    audio_sha256: str = ""

    def outcome(self) -> str:
        if "finished" in self.kinds:
            return "completed"
        if "started" in self.kinds:
            return "interrupted"
        return "failed" if "failed" in self.kinds else "skipped"


def _add(tally: Tally, play: _Play, milliseconds: int) -> None:
    tally.plays += 1
    if play.broadcast_id is not None:
        tally.broadcast_ids.add(play.broadcast_id)
    outcome = play.outcome()
    setattr(tally, outcome, getattr(tally, outcome) + 1)
    if outcome in ("completed", "interrupted"):
        tally.milliseconds += milliseconds


def monthly_report(db: Session, principal: Principal, area_code: str, month: Month, *, now: datetime,
                   timezone: str) -> MonthlyReport:
    area = area_by_code(db, area_code)
    tree = load_tree(db)
    require(principal, Action.VIEW, area, tree, "")
    start, end = month.bounds(timezone)
    subtree = tree.subtree(AreaId(area.id))
    children = sorted((c for c in db.scalars(select(Area).where(Area.parent_id == area.id))),
                      key=lambda a: a.code)
    child_of: dict[int, int] = {}
    for child in children:
        for below in tree.subtree(AreaId(child.id)):
            child_of[int(below)] = child.id
    devices = {d.id: d for d in db.scalars(select(Device).where(Device.area_id.in_(subtree)))}
    query = _category_column(
        select(AsRunEntry, Device, Area, Announcement.category, Announcement.title)
        .join(Device, Device.id == AsRunEntry.device_id).join(Area, Area.id == Device.area_id)
        .where(Device.area_id.in_(subtree), AsRunEntry.at >= start, AsRunEntry.at < end))
    rows = db.execute(query.order_by(AsRunEntry.at, AsRunEntry.id).limit(MAX_REPORT_EVENTS + 1)).all()
    if len(rows) > MAX_REPORT_EVENTS:
        raise Invalid("Quá nhiều sự kiện trong tháng cho một báo cáo; hãy chọn địa bàn nhỏ hơn.")
    plays: dict[tuple[int, str], _Play] = {}
    for entry, device, _area, category, _title in rows:
        play = plays.setdefault((device.id, entry.item_id),
                                _Play(device.id, entry.broadcast_id, known_category(category or OTHER)))
        play.kinds.add(entry.kind)
        play.audio_sha256 = play.audio_sha256 or entry.audio_sha256
        if entry.kind == "started" and play.started_at is None:
            play.started_at = entry.at
        if entry.kind in END_KINDS or entry.kind == "started":
            play.last_at = entry.at if play.last_at is None else max(play.last_at, entry.at)
    durations = dict(db.execute(select(AudioAsset.sha256, AudioAsset.duration_ms).where(
        AudioAsset.sha256.in_({p.audio_sha256 for p in plays.values() if p.audio_sha256}))).all())

    by_category: dict[str, Tally] = {code: Tally() for code in CATEGORIES}
    by_area: dict[int, Tally] = defaultdict(Tally)
    total = Tally()
    for play in plays.values():
        if play.started_at is not None and play.last_at is not None and play.last_at > play.started_at:
            milliseconds = int((play.last_at - play.started_at).total_seconds() * 1000)
        else:
            milliseconds = int(durations.get(play.audio_sha256, 0)) if "finished" in play.kinds else 0
        device_area = devices[play.device_id].area_id if play.device_id in devices else area.id
        for tally in (by_category[play.category], by_area[child_of.get(device_area, area.id)], total):
            _add(tally, play, milliseconds)
    area_lines = [ReportLine(c.code, c.name, by_area.get(c.id, Tally())) for c in children]
    if area.id in by_area or not children:
        area_lines.append(ReportLine(area.code, f"{area.name} (trực tiếp)" if children else area.name,
                                     by_area.get(area.id, Tally())))
    return MonthlyReport(
        area_code=area.code, area_name=area.name, area_kind=area.kind, month=month, generated_at=now,
        timezone=timezone, devices=len(devices),
        by_category=[ReportLine(code, category_label(code), t) for code, t in by_category.items()],
        by_area=area_lines, total=total)


def report_areas(db: Session, principal: Principal) -> list[Area]:
    """Areas a user may report on, in code order."""
    ids = principal.areas_for(Action.VIEW, load_tree(db))
    return list(db.scalars(select(Area).where(Area.id.in_(ids)).order_by(Area.code)))
