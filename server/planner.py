"""Turns stored broadcasts into each agent's plan and publishes the plans that changed.

A plan is republished only when its content (items and groups) changed; its version then rises by
one. The compile itself is `schedules.PlanCompiler`, pure, deterministic and incremental.
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
from schedules import AreaId, DeviceAgentId, Occurrence, PlanCompiler, PlannedItem, ScheduleError
from schedules.broadcasts import occurrences_between
from schedules.targets import AreaTree
from server.db import Database
from server.errors import LoaError
from server.models import AgentPlan, Broadcast
from server.models import Device as DeviceRow
from server.schedule_mapping import Fleet, agents_of, holiday_calendar, load_fleet, spec_of
from server.settings import EqualPriority

log = logging.getLogger(__name__)

LOOKBACK = timedelta(hours=3)
"""Broadcasts that started this long ago may still be playing (long programmes) and stay in plans."""


def group_ids_for(tree: AreaTree, area_id: AreaId) -> tuple[str, ...]:
    """Every area above a device is a fan-out group it listens to (emergencies for a whole area)."""
    return tuple(f"area-{tree.get(a).code.lower()}" for a in reversed(tree.ancestors(area_id)))


@dataclass(frozen=True)
class PublishedPlan:
    agent_id: str
    version: int
    payload: bytes


class Planner:
    """Keeps a `PlanCompiler` of every airing broadcast; recompiles one broadcast's agents when it
    changes, everything when the horizon rolls or the fleet changes."""

    def __init__(self, db: Database, *, public_url: str, horizon: timedelta,
                 publish: Callable[[PublishedPlan], None], now: Callable[[], datetime],
                 equal_priority: Callable[[], EqualPriority] = lambda: "queue") -> None:
        self._db = db
        self._public_url = public_url
        self._horizon = horizon
        self._publish = publish
        self._now = now
        self._equal_priority = equal_priority
        """Read at every compile: the console may change the rule at run time."""
        self._lock = threading.Lock()
        self._compiler: PlanCompiler | None = None

    @property
    def equal_priority(self) -> EqualPriority:
        """The rule the plans in force were compiled with (the setting's value until the first compile)."""
        return self._compiler.equal_priority if self._compiler is not None else self._equal_priority()

    def recompile(self) -> list[PublishedPlan]:
        """Compile every device's plan from scratch; store and publish those whose content changed."""
        with self._lock, self._db.session() as db:
            now = self._now()
            fleet = load_fleet(db)
            compiler = PlanCompiler(now=now, horizon=self._horizon, equal_priority=self._equal_priority())
            for broadcast in self._airing(db, now):
                compiler.set_broadcast(broadcast.id, self._occurrences(broadcast, fleet, now))
            self._compiler = compiler
            changed = self._store(db, fleet, compiler, None, now)
        return self._send(changed)

    def broadcast_changed(self, broadcast_id: int) -> list[PublishedPlan]:
        """Recompile only the agents whose timeline the change of one broadcast affects."""
        if self._compiler is None or self._compiler.equal_priority != self._equal_priority():
            return self.recompile()
        with self._lock, self._db.session() as db:
            now = self._now()
            fleet = load_fleet(db)
            compiler = self._compiler
            affected = set(compiler.advance(now))
            broadcast = db.get(Broadcast, broadcast_id)
            if broadcast is not None and self._is_airing(broadcast, now):
                affected |= compiler.set_broadcast(broadcast_id, self._occurrences(broadcast, fleet, now))
            else:
                affected |= compiler.remove_broadcast(broadcast_id)
            changed = self._store(db, fleet, compiler, affected, now)
        return self._send(changed)

    def preview(self, agent_ids: frozenset[DeviceAgentId]) -> dict[DeviceAgentId, tuple[PlannedItem, ...]]:
        """The compiled timelines of these agents as they stand (after a recompile if none ran yet)."""
        if self._compiler is None:
            self.recompile()
        assert self._compiler is not None
        with self._lock:
            return {a: self._compiler.timeline(a) for a in agent_ids}

    def current_plans(self) -> list[PublishedPlan]:
        """Every stored plan, for republishing after a broker restart (retained state may be gone)."""
        with self._db.session() as db:
            rows = db.execute(select(AgentPlan, DeviceRow).join(DeviceRow, DeviceRow.id == AgentPlan.device_id)).all()
            return [PublishedPlan(d.agent_id, p.version, json.dumps(p.payload, ensure_ascii=False,
                                                                       separators=(",", ":")).encode())
                    for p, d in rows if p.payload is not None]

    # --- internals --------------------------------------------------------------------------------

    @staticmethod
    def _is_airing(broadcast: Broadcast, now: datetime) -> bool:
        return broadcast.status == "approved" and broadcast.mode == "direct"

    def _airing(self, db: Session, now: datetime) -> list[Broadcast]:
        return list(db.scalars(select(Broadcast).where(Broadcast.status == "approved",
                                                       Broadcast.mode == "direct")).all())

    def _occurrences(self, broadcast: Broadcast, fleet: Fleet, now: datetime) -> list[Occurrence]:
        try:
            spec = spec_of(broadcast, agents_of(broadcast, fleet))
            if spec is None:
                return []
            return occurrences_between(spec, now - LOOKBACK, now + self._horizon, holiday_calendar())
        except (ScheduleError, LoaError) as exc:
            log.error("broadcast %s cannot be expanded and is left out of plans: %s", broadcast.id, exc)
            return []

    def _store(self, db: Session, fleet: Fleet, compiler: PlanCompiler, agents: set[DeviceAgentId] | None,
               now: datetime) -> list[PublishedPlan]:
        stored = {p.device_id: p for p in db.scalars(select(AgentPlan)).all()}
        changed: list[PublishedPlan] = []
        for row in db.scalars(select(DeviceRow)).all():
            agent_id = DeviceAgentId(row.agent_id)
            if agents is not None and agent_id not in agents:
                continue
            items = tuple(self._plan_item(p) for p in compiler.timeline(agent_id) if not p.resumption)
            groups = group_ids_for(fleet.tree, AreaId(row.area_id))
            fingerprint = _fingerprint(items, groups)
            current = stored.get(row.id)
            if current is not None and current.fingerprint == fingerprint:
                continue
            if current is None:
                current = AgentPlan(device_id=row.id, version=0)
                db.add(current)
            current.version += 1
            plan = Plan(agent_id=row.agent_id, version=current.version, issued_at=now, items=items, groups=groups)
            current.fingerprint = fingerprint
            current.payload = plan.to_dict()
            current.published_at = now
            changed.append(PublishedPlan(row.agent_id, current.version, encode(plan)))
        return changed

    def _send(self, changed: list[PublishedPlan]) -> list[PublishedPlan]:
        for published in changed:  # after commit: an agent never sees a version the database lacks
            self._publish(published)
        if changed:
            log.info("published %d changed plan(s)", len(changed))
        return changed

    def _plan_item(self, planned: PlannedItem) -> PlanItem:
        occurrence = planned.occurrence
        audio = occurrence.audio
        # Only a programme's slot end is a hard stop for the agent; a cut by a preemption is the agent's
        # own decision when the preempting item arrives (it may resume the rest).
        return PlanItem(id=planned.id, broadcast_id=occurrence.broadcast_id, title=occurrence.title,
                        priority=occurrence.priority, play_at=planned.play_at,
                        audio=AudioRef(sha256=audio.sha256, url=f"{self._public_url}/api/v1/audio/{audio.sha256}",
                                       duration_ms=audio.duration_ms, size_bytes=audio.size_bytes),
                        on_preempt=occurrence.on_preempt, stop_at=occurrence.stop_at, exercise=occurrence.exercise)


def _fingerprint(items: tuple[PlanItem, ...], groups: tuple[str, ...]) -> str:
    body = json.dumps({"items": [i.to_dict() for i in items], "groups": list(groups)}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()
