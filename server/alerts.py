"""Alerts for operators: conditions on a device that need a person, opened and resolved by rules.

Two kinds of rule:

- **Conditions**, read from what the server last learned of a device (``DeviceStatus``): ``offline``
  (offline for longer than ``alert_offline_minutes``), ``clock_offset`` (the clock is off by more than
  ``alert_clock_offset_ms``, or NTP says it is not synchronised), ``disk_full`` (disk used at or above
  ``alert_disk_percent``) and ``amplifier_fault`` (the agent reports an amplifier relay or mixer fault).
  At most one alert per (device, rule) is open; it resolves itself when the condition clears. The
  heartbeat rules are judged only while the device is online: an offline device's last heartbeat is
  stale, so its heartbeat alerts neither open nor resolve until it reports again.
- **Events**, read from the as-run log: ``play_failed`` and ``play_skipped``. They are grouped per
  device and broadcast: while an alert for that (device, rule, broadcast) is unacknowledged, further
  failures only raise its ``count``, so a repeating item that fails every 10 minutes makes one alert,
  not a flood. An event alert stays open until someone acknowledges it (then it is resolved too).

Severity: ``offline`` and ``amplifier_fault`` are critical (the loudspeakers are silent), the rest are
warnings. Thresholds are read from the runtime's settings at each evaluation, so a change made in the
console applies at the next one.

`AlertMonitor` evaluates every device on a periodic job and, cheaply, just the devices named in live
events (heartbeats, state changes, failed plays) soon after they arrive; it publishes ``{"type":
"alert"}`` events on the live bus (with ``agent_id``, so the console's per-user filter applies) and
hands newly opened and resolved alerts to the notifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db import Database
from server.live import LiveBus
from server.models import Alert, AsRunEntry, Device, DeviceStatus
from server.settings import Settings

log = logging.getLogger(__name__)

CONDITION_RULES: tuple[str, ...] = ("offline", "amplifier_fault", "clock_offset", "disk_full")
EVENT_RULES: dict[str, str] = {"failed": "play_failed", "skipped": "play_skipped"}
"""As-run kind → rule."""
RULES: tuple[str, ...] = (*CONDITION_RULES, *EVENT_RULES.values())
SEVERITY: dict[str, str] = {"offline": "critical", "amplifier_fault": "critical", "clock_offset": "warning",
                            "disk_full": "warning", "play_failed": "warning", "play_skipped": "warning"}
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1}
HEARTBEAT_RULES = frozenset({"amplifier_fault", "clock_offset", "disk_full"})
AMPLIFIER_FAULT_PREFIXES = ("amplifier relay:", "mixer:")
"""What agents/amplifier.py reports when the relay or the mixer fails (agents/core.py update_faults)."""
FIRST_CATCH_UP = timedelta(hours=1)
"""On the first evaluation after a start without any event alert yet, failed plays this recent count."""
EVENT_DEBOUNCE_S = 1.0


@dataclass(frozen=True)
class Limits:
    offline_minutes: int
    clock_offset_ms: int
    disk_percent: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(offline_minutes=settings.alert_offline_minutes, clock_offset_ms=settings.alert_clock_offset_ms,
                   disk_percent=settings.alert_disk_percent)


@dataclass(frozen=True)
class AlertChange:
    """Something that happened to an alert, as published on the live bus."""

    action: str  # opened, resolved, updated, acknowledged
    alert_id: int
    agent_id: str
    rule: str
    severity: str

    def event(self) -> dict[str, Any]:
        return {"type": "alert", "action": self.action, "id": self.alert_id, "agent_id": self.agent_id,
                "rule": self.rule, "severity": self.severity}


# --- the rules, pure ------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def offline_condition(status: DeviceStatus | None, limits: Limits, now: datetime) -> dict[str, Any] | None:
    if status is None or status.state != "offline":
        return None
    since = status.changed_at or status.last_seen_at
    if since is None or now - since < timedelta(minutes=limits.offline_minutes):
        return None
    return {"since": since.isoformat(),
            "last_seen_at": status.last_seen_at.isoformat() if status.last_seen_at else None,
            "limit_minutes": limits.offline_minutes}


def amplifier_condition(heartbeat: Mapping[str, Any], limits: Limits) -> dict[str, Any] | None:
    faults = [str(f) for f in heartbeat.get("faults") or () if str(f).startswith(AMPLIFIER_FAULT_PREFIXES)]
    return {"faults": faults} if faults else None


def clock_condition(heartbeat: Mapping[str, Any], limits: Limits) -> dict[str, Any] | None:
    """NTP's own offset when the device knows it (accurate); else the offset against the server, which
    includes the smallest network delay seen."""
    ntp_offset = _number(heartbeat.get("ntp_offset_ms"))
    server_offset = _number(heartbeat.get("clock_offset_ms"))
    offset, source = (ntp_offset, "ntp") if ntp_offset is not None else (server_offset, "server")
    unsynced = heartbeat.get("ntp_synced") is False
    too_far = offset is not None and abs(offset) > limits.clock_offset_ms
    if not unsynced and not too_far:
        return None
    return {"offset_ms": round(offset) if offset is not None else None, "source": source,
            "ntp_synced": heartbeat.get("ntp_synced"), "limit_ms": limits.clock_offset_ms}


def disk_condition(heartbeat: Mapping[str, Any], limits: Limits) -> dict[str, Any] | None:
    free, total = _number(heartbeat.get("disk_free_bytes")), _number(heartbeat.get("disk_total_bytes"))
    if free is None or total is None or total <= 0:
        return None
    used = 100.0 * (1.0 - free / total)
    if used < limits.disk_percent:
        return None
    return {"used_percent": round(used, 1), "free_bytes": int(free), "total_bytes": int(total),
            "limit_percent": limits.disk_percent}


def conditions(status: DeviceStatus | None, limits: Limits,
               now: datetime) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The condition rules that hold now (rule → figures), and the rules that could be judged at all."""
    held: dict[str, dict[str, Any]] = {}
    judged = {"offline"}
    offline = offline_condition(status, limits, now)
    if offline is not None:
        held["offline"] = offline
    heartbeat = status.heartbeat if status is not None else None
    if status is not None and status.state == "online" and isinstance(heartbeat, dict):
        judged |= HEARTBEAT_RULES
        for rule, check in (("amplifier_fault", amplifier_condition), ("clock_offset", clock_condition),
                            ("disk_full", disk_condition)):
            figures = check(heartbeat, limits)
            if figures is not None:
                held[rule] = figures
    return held, judged


class Sortable(Protocol):
    severity: str
    opened_at: datetime
    resolved_at: datetime | None


def sort_key(alert: Sortable) -> tuple[int, int, float]:
    """Open first, critical first, newest first."""
    return (0 if alert.resolved_at is None else 1, SEVERITY_ORDER.get(alert.severity, 9),
            -alert.opened_at.timestamp())


# --- evaluation -----------------------------------------------------------------------------------

class AlertMonitor:
    def __init__(self, db: Database, live: LiveBus, *, settings: Callable[[], Settings],
                 now: Callable[[], datetime], notify: Callable[[], object] | None = None) -> None:
        self._db = db
        self._live = live
        self._settings = settings
        self._now = now
        self._notify = notify
        self._lock = threading.Lock()
        self._as_run_cursor: int | None = None
        self._listener: asyncio.Task[None] | None = None

    # --- periodic and targeted evaluation ----------------------------------------------------------

    def run(self) -> None:
        """The periodic job: every device, then the notifications due. Never raises."""
        try:
            self.evaluate()
        except Exception:
            log.exception("alert evaluation failed")
        if self._notify is not None:
            try:
                self._notify()
            except Exception:
                log.exception("alert notification failed")

    def evaluate(self, agent_ids: Collection[str] | None = None) -> list[AlertChange]:
        """Open and resolve alerts (every device, or only ``agent_ids``); publishes and returns the changes."""
        with self._lock:
            limits = Limits.of(self._settings())
            now = self._now()
            changes: list[AlertChange] = []
            with self._db.session() as db:
                self._evaluate_conditions(db, limits, now, agent_ids, changes)
                self._ingest_plays(db, now, changes)
        for change in changes:
            self._live.publish(change.event())
        return changes

    def _evaluate_conditions(self, db: Session, limits: Limits, now: datetime, agent_ids: Collection[str] | None,
                             changes: list[AlertChange]) -> None:
        query = select(Device, DeviceStatus).outerjoin(DeviceStatus, DeviceStatus.device_id == Device.id)
        open_query = select(Alert).where(Alert.resolved_at.is_(None), Alert.rule.in_(CONDITION_RULES))
        if agent_ids is not None:
            query = query.where(Device.agent_id.in_(list(agent_ids)))
            open_query = open_query.join(Device, Device.id == Alert.device_id).where(
                Device.agent_id.in_(list(agent_ids)))
        open_alerts = {(a.device_id, a.rule): a for a in db.scalars(open_query)}
        for device, status in db.execute(query).all():
            held, judged = conditions(status, limits, now)
            for rule in CONDITION_RULES:
                alert = open_alerts.get((device.id, rule))
                if rule in held and alert is None:
                    alert = Alert(device_id=device.id, rule=rule, severity=SEVERITY[rule], params=held[rule],
                                  opened_at=now)
                    db.add(alert)
                    db.flush()
                    changes.append(AlertChange("opened", alert.id, device.agent_id, rule, alert.severity))
                elif rule in held and alert is not None and alert.params != held[rule]:
                    alert.params = held[rule]
                elif rule not in held and rule in judged and alert is not None:
                    alert.resolved_at = now
                    changes.append(AlertChange("resolved", alert.id, device.agent_id, rule, alert.severity))

    def _start_cursor(self, db: Session, now: datetime) -> int:
        """Where reading the as-run log resumes after a start: past the last entry an alert counted."""
        counted = db.scalars(select(Alert.params).where(Alert.rule.in_(list(EVENT_RULES.values())))
                             .order_by(Alert.id.desc()).limit(500)).all()
        seen = [int(p["last_as_run_id"]) for p in counted if isinstance(p.get("last_as_run_id"), int)]
        if seen:
            return max(seen)
        older = db.scalar(select(func.max(AsRunEntry.id)).where(AsRunEntry.received_at < now - FIRST_CATCH_UP))
        return int(older or 0)

    def _ingest_plays(self, db: Session, now: datetime, changes: list[AlertChange]) -> None:
        if self._as_run_cursor is None:
            self._as_run_cursor = self._start_cursor(db, now)
        rows = db.execute(select(AsRunEntry, Device).join(Device, Device.id == AsRunEntry.device_id)
                          .where(AsRunEntry.id > self._as_run_cursor, AsRunEntry.kind.in_(list(EVENT_RULES)))
                          .order_by(AsRunEntry.id)).all()
        for entry, device in rows:
            rule = EVENT_RULES[entry.kind]
            candidates = db.scalars(select(Alert).where(Alert.device_id == device.id, Alert.rule == rule,
                                                        Alert.acknowledged_at.is_(None))).all()
            alert = next((a for a in candidates if a.params.get("broadcast_id") == entry.broadcast_id), None)
            figures = {"broadcast_id": entry.broadcast_id, "item_id": entry.item_id,
                       "scheduled_at": entry.scheduled_at.isoformat(), "at": entry.at.isoformat(),
                       "detail": entry.detail[:300], "last_as_run_id": entry.id}
            if alert is None:
                alert = Alert(device_id=device.id, rule=rule, severity=SEVERITY[rule], opened_at=now,
                              params={**figures, "count": 1, "first_at": entry.at.isoformat()})
                db.add(alert)
                db.flush()
                changes.append(AlertChange("opened", alert.id, device.agent_id, rule, alert.severity))
            else:
                alert.params = {**alert.params, **figures, "count": int(alert.params.get("count", 1)) + 1}
                changes.append(AlertChange("updated", alert.id, device.agent_id, rule, alert.severity))
            self._as_run_cursor = max(self._as_run_cursor, entry.id)

    # --- live events -------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen to the live bus (call on the event loop, after the bus started)."""
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    async def _listen(self) -> None:
        """Devices named in heartbeats, state changes and failed plays are evaluated about a second later."""
        pending: set[str] = set()
        flush: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        running: set[asyncio.Task[None]] = set()

        def start_evaluation() -> None:
            nonlocal flush
            flush = None
            batch = set(pending)
            pending.clear()
            task = loop.create_task(self._evaluate_soon(batch))
            running.add(task)
            task.add_done_callback(running.discard)

        async for chunk in self._live.stream():
            for agent_id in relevant_agents(chunk):
                pending.add(agent_id)
            if pending and flush is None:
                flush = loop.call_later(EVENT_DEBOUNCE_S, start_evaluation)

    async def _evaluate_soon(self, agent_ids: set[str]) -> None:
        try:
            changes = await asyncio.to_thread(self.evaluate, agent_ids)
            if self._notify is not None and any(c.action in ("opened", "resolved") for c in changes):
                await asyncio.to_thread(self._notify)
        except Exception:
            log.exception("alert evaluation on live events failed")


def relevant_agents(chunk: str) -> Iterable[str]:
    """The agent an SSE chunk of the live bus is about, when it can change an alert."""
    if not chunk.startswith("data: "):
        return ()
    try:
        event = json.loads(chunk[len("data: "):])
    except ValueError:
        return ()
    if not isinstance(event, dict) or not isinstance(event.get("agent_id"), str):
        return ()
    if event.get("type") == "device" or (event.get("type") == "asrun" and event.get("kind") in EVENT_RULES):
        return (event["agent_id"],)
    return ()


def acknowledge(db: Session, alert: Alert, *, user_id: int, comment: str, now: datetime) -> None:
    """A person has seen it; an event alert is thereby closed, a condition alert stays until it clears."""
    alert.acknowledged_at = now
    alert.acknowledged_by_id = user_id
    alert.ack_comment = comment
    if alert.rule not in CONDITION_RULES and alert.resolved_at is None:
        alert.resolved_at = now
