"""Turns stored broadcasts into each agent's plan and publishes the plans that changed.

A plan is republished only when its content (items and groups) changed; its version then rises by
one. The compile itself is `schedules.compile_plans`, pure and deterministic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.protocol import AudioRef, Plan, PlanItem, encode
from schedules import AreaId, AudioAsset, Device, DeviceAgentId, Occurrence, Priority, compile_plans, resolve_targets
from schedules.targets import AreaTree
from server.db import Database
from server.directory import load_tree
from server.models import AgentPlan, Announcement, Broadcast
from server.models import Device as DeviceRow

log = logging.getLogger(__name__)

LOOKBACK = timedelta(hours=3)
"""Broadcasts that started this long ago may still be playing (long programmes) and stay in plans."""


def group_ids_for(tree: AreaTree, area_id: AreaId) -> tuple[str, ...]:
    """Every area above a device is a fan-out group it listens to (emergencies for a whole area)."""
    return tuple(f"area-{tree.get(a).code.lower()}" for a in reversed(tree.ancestors(area_id)))


def occurrences_from(db: Session, tree: AreaTree, devices: dict[DeviceAgentId, Device], now: datetime,
                     horizon: timedelta) -> list[Occurrence]:
    rows = db.scalars(
        select(Broadcast).join(Announcement, Announcement.id == Broadcast.announcement_id)
        .where(Broadcast.status == "approved", Broadcast.play_at >= now - LOOKBACK,
               Broadcast.play_at < now + horizon, Announcement.audio_status == "ready",
               Announcement.review_status == "approved")
    ).all()
    device_ids = {d.id: d.agent_id for d in db.scalars(select(DeviceRow)).all()}
    found: list[Occurrence] = []
    for broadcast in rows:
        audio = broadcast.announcement.audio
        if audio is None:
            continue
        agents = resolve_targets(
            tree, devices,
            [AreaId(t.area_id) for t in broadcast.targets if t.area_id is not None],
            [DeviceAgentId(device_ids[t.device_id]) for t in broadcast.targets
             if t.device_id is not None and t.device_id in device_ids])
        found.append(Occurrence(
            broadcast_id=broadcast.id, title=broadcast.announcement.title,
            priority=Priority[broadcast.priority.upper()], play_at=broadcast.play_at,
            audio=AudioAsset(sha256=audio.sha256, duration_ms=audio.duration_ms, size_bytes=audio.size_bytes),
            agent_ids=agents))
    return found


@dataclass(frozen=True)
class PublishedPlan:
    agent_id: str
    version: int
    payload: bytes


class Planner:
    def __init__(self, db: Database, *, public_url: str, horizon: timedelta,
                 publish: Callable[[PublishedPlan], None], now: Callable[[], datetime]) -> None:
        self._db = db
        self._public_url = public_url
        self._horizon = horizon
        self._publish = publish
        self._now = now
        self._lock = threading.Lock()

    def recompile(self) -> list[PublishedPlan]:
        """Compile every device's plan; store and publish those whose content changed."""
        with self._lock, self._db.session() as db:
            now = self._now()
            tree = load_tree(db)
            device_rows = db.scalars(select(DeviceRow)).all()
            devices = {DeviceAgentId(d.agent_id): Device(DeviceAgentId(d.agent_id), AreaId(d.area_id))
                       for d in device_rows}
            compiled = compile_plans(occurrences_from(db, tree, devices, now, self._horizon),
                                     now=now, horizon=self._horizon)
            stored = {p.device_id: p for p in db.scalars(select(AgentPlan)).all()}
            changed: list[PublishedPlan] = []
            for row in device_rows:
                timeline = compiled.timelines.get(DeviceAgentId(row.agent_id), ())
                items = tuple(PlanItem(
                    id=p.id, broadcast_id=p.occurrence.broadcast_id, title=p.occurrence.title,
                    priority=p.occurrence.priority, play_at=p.play_at,
                    audio=AudioRef(sha256=p.occurrence.audio.sha256,
                                   url=f"{self._public_url}/api/v1/audio/{p.occurrence.audio.sha256}",
                                   duration_ms=p.occurrence.audio.duration_ms,
                                   size_bytes=p.occurrence.audio.size_bytes))
                    for p in timeline)
                groups = group_ids_for(tree, AreaId(row.area_id))
                fingerprint = _fingerprint(items, groups)
                current = stored.get(row.id)
                if current is not None and current.fingerprint == fingerprint:
                    continue
                if current is None:
                    current = AgentPlan(device_id=row.id, version=0)
                    db.add(current)
                current.version += 1
                plan = Plan(agent_id=row.agent_id, version=current.version, issued_at=now, items=items,
                            groups=groups)
                current.fingerprint = fingerprint
                current.payload = plan.to_dict()
                current.published_at = now
                changed.append(PublishedPlan(row.agent_id, current.version, encode(plan)))
        for published in changed:  # after commit: an agent never sees a version the database lacks
            self._publish(published)
        if changed:
            log.info("published %d changed plan(s)", len(changed))
        return changed

    def current_plans(self) -> list[PublishedPlan]:
        """Every stored plan, for republishing after a broker restart (retained state may be gone)."""
        with self._db.session() as db:
            rows = db.execute(select(AgentPlan, DeviceRow).join(DeviceRow, DeviceRow.id == AgentPlan.device_id)).all()
            return [PublishedPlan(d.agent_id, p.version, json.dumps(p.payload, ensure_ascii=False,
                                                                       separators=(",", ":")).encode())
                    for p, d in rows if p.payload is not None]


def _fingerprint(items: tuple[PlanItem, ...], groups: tuple[str, ...]) -> str:
    body = json.dumps({"items": [i.to_dict() for i in items], "groups": list(groups)}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
