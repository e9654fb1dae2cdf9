"""The server's side of the MQTT protocol: publishes plans and commands, ingests what agents report.

Incoming messages are only queued on the event loop; a worker thread validates them and writes them
to the database in batches, then acknowledges as-run events. A broken message is logged and dropped.
On every (re)connection the server republishes its birth and every current plan, so a broker that
lost its retained messages (the embedded one keeps them in memory) is made whole again.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.errors import ProtocolError
from agents.link import BrokerAddress, MqttLink, Will
from agents.protocol import (
    QOS_AT_LEAST_ONCE,
    AsRunEvent,
    Command,
    CommandResult,
    EventAck,
    Heartbeat,
    PlanAck,
    ServerClock,
    ServerState,
    StateMessage,
    Topics,
    decode,
    encode,
    parse_topic,
)
from server import presence
from server.db import Database
from server.device_commands import record_answer
from server.live import LiveBus
from server.models import AsRunEntry, Broadcast, Device, DeviceStatus
from server.planner import PublishedPlan
from server.telemetry import TelemetryRecorder

log = logging.getLogger(__name__)

MAX_COMMAND_RESULTS = 10_000
"""Command results kept in memory for the console to read back (oldest dropped first)."""


@dataclass
class BridgeStats:
    received: int = 0
    rejected: int = 0
    last_rejection: str = ""
    events_stored: int = 0
    events_duplicate: int = 0
    rebirths_requested: int = 0
    command_results: dict[str, CommandResult] = field(default_factory=dict)


class MqttBridge:
    def __init__(self, *, db: Database, address: BrokerAddress, server_id: str, live: LiveBus,
                 now: Callable[[], datetime], current_plans: Callable[[], list[PublishedPlan]],
                 heartbeat_timeout: timedelta = timedelta(seconds=95),
                 telemetry: TelemetryRecorder | None = None) -> None:
        self._db = db
        self.telemetry = telemetry or TelemetryRecorder(300)
        self._address = address
        self._server_id = server_id
        self._live = live
        self._now = now
        self._current_plans = current_plans
        self._heartbeat_timeout = heartbeat_timeout
        self._session = uuid.uuid4().hex[:12]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: MqttLink | None = None
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=100_000)
        self._worker: threading.Thread | None = None
        self.stats = BridgeStats()

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._link = MqttLink(client_id=self._server_id, address=self._address, on_message=self._enqueue,
                              on_connect=self._on_connected, clean_session=False)
        offline = ServerState(state="offline", session=self._session)
        self._link.set_will(Will(Topics.SERVER_STATE, encode(offline), qos=1, retain=True))
        self._link.subscribe([(t, QOS_AT_LEAST_ONCE) for t in Topics.SERVER_SUBSCRIPTIONS])
        self._worker = threading.Thread(target=self._ingest_loop, name="mqtt-ingest", daemon=True)
        self._worker.start()
        await self._link.start()

    async def wait_connected(self, timeout_s: float) -> bool:
        return self._link is not None and await self._link.wait_connected(timeout_s)

    async def stop(self) -> None:
        if self._link is not None:
            if self._link.connected:
                offline = ServerState(state="offline", session=self._session)
                self._link.publish(Topics.SERVER_STATE, encode(offline), qos=1, retain=True)
            await self._link.stop()
        self._inbox.put(None)
        if self._worker is not None:
            await asyncio.to_thread(self._worker.join, 10)

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    # --- publishing (thread-safe) ---------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        link, loop = self._link, self._loop
        if link is None or loop is None:
            return
        if _running_loop() is loop:
            link.publish(topic, payload, qos=QOS_AT_LEAST_ONCE, retain=retain)
        else:
            loop.call_soon_threadsafe(lambda: link.publish(topic, payload, qos=QOS_AT_LEAST_ONCE, retain=retain))

    def publish_plan(self, plan: PublishedPlan) -> None:
        self._publish(Topics.plan(plan.agent_id), plan.payload, retain=True)

    def clear_plan(self, agent_id: str) -> None:
        """Remove a removed device's retained plan from the broker (an empty retained message does that)."""
        self._publish(Topics.plan(agent_id), b"", retain=True)

    def publish_clock(self) -> None:
        """A time sample for the agents' offset estimate: stamped on the loop thread right before it is
        handed to the socket, QoS 0 and not retained (a late or stored sample would only mislead)."""
        link, loop = self._link, self._loop
        if link is None or loop is None:
            return

        def send() -> None:
            link.publish(Topics.SERVER_CLOCK, encode(ServerClock(server_time=self._now())), qos=0, retain=False)

        loop.call_soon_threadsafe(send)

    def send_command(self, command: Command, *, agent_id: str | None = None, group_id: str | None = None) -> None:
        """Commands are never retained: a command for an offline agent must not fire hours later."""
        topic = Topics.command(agent_id) if agent_id else Topics.group_command(group_id or "")
        self._publish(topic, encode(command))

    def _on_connected(self) -> None:
        assert self._link is not None
        online = ServerState(state="online", session=self._session)
        self._link.publish(Topics.SERVER_STATE, encode(online), qos=1, retain=True)
        def republish() -> None:
            plans = self._current_plans()
            for plan in plans:
                self._publish(Topics.plan(plan.agent_id), plan.payload, retain=True)

        threading.Thread(target=republish, name="plan-republish", daemon=True).start()

    # --- ingest ---------------------------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes) -> None:
        try:
            self._inbox.put_nowait((topic, payload))
        except queue.Full:
            self.stats.rejected += 1
            log.error("ingest queue full; dropping a message on %s", topic)

    def _ingest_loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 500:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._inbox.put(None)
                    break
                batch.append(item)
            try:
                self._ingest_batch(batch)
            except Exception:
                log.exception("ingest batch of %d failed; processing one by one", len(batch))
                for message in batch:
                    try:
                        self._ingest_batch([message])
                    except Exception:
                        self.stats.rejected += 1
                        log.exception("dropping message on %s", message[0])

    def _ingest_batch(self, batch: list[tuple[str, bytes]]) -> None:
        acks: dict[str, list[str]] = {}
        updates: list[dict[str, Any]] = []
        rebirths: list[str] = []
        with self._db.session() as db:
            devices = {d.agent_id: d for d in db.scalars(select(Device)).all()}
            for topic, payload in batch:
                self.stats.received += 1
                try:
                    self._ingest_one(db, devices, topic, payload, acks, updates, rebirths)
                except ProtocolError as exc:
                    self.stats.rejected += 1
                    self.stats.last_rejection = f"{topic}: {exc}"
                    log.warning("rejected message on %s: %s", topic, exc)
            self.telemetry.flush(db)
        for agent_id, ids in acks.items():
            self._publish(Topics.event_ack(agent_id), encode(EventAck(event_ids=tuple(ids))))
        for agent_id in rebirths:
            self.stats.rebirths_requested += 1
            self.send_command(self._command("rebirth"), agent_id=agent_id)
        for update in updates:
            self._live.publish(update)

    def _command(self, name: str, args: dict[str, Any] | None = None) -> Command:
        now = self._now()
        return Command(id=uuid.uuid4().hex, name=name, issued_at=now,  # type: ignore[arg-type]
                       expires_at=now + timedelta(minutes=5), args=args or {})

    def _ingest_one(self, db: Session, devices: dict[str, Device], topic: str, payload: bytes,
                    acks: dict[str, list[str]], updates: list[dict[str, Any]], rebirths: list[str]) -> None:
        parsed = parse_topic(topic)
        if parsed.scope != "agent":
            raise ProtocolError(f"server does not ingest {topic}")
        device = devices.get(parsed.target)
        if device is None:
            raise ProtocolError(f"unknown agent {parsed.target}")
        if parsed.leaf == "state" and not payload:
            return  # a cleared retained state
        message = decode(payload)
        agent_id = getattr(message, "agent_id", None)
        if agent_id != parsed.target:
            raise ProtocolError(f"payload agent_id {agent_id!r} does not match topic {parsed.target}")
        status = db.get(DeviceStatus, device.id)
        if status is None:
            status = DeviceStatus(device_id=device.id)
            db.add(status)
        now = self._now()
        current = presence.Presence(state=status.state if status.state in ("online", "offline") else "unknown",  # type: ignore[arg-type]
                                    session=status.session, last_seq=status.last_seq,
                                    last_seen_at=status.last_seen_at)
        decision: presence.Decision
        if parsed.leaf == "state" and isinstance(message, StateMessage):
            if message.state == "online":
                decision = presence.on_birth(current, message.session, message.seq, now)
                status.agent_version = message.agent_version
            else:
                decision = presence.on_death(current, message.session, now)
        elif parsed.leaf == "heartbeat" and isinstance(message, Heartbeat):
            decision = presence.on_message(current, message.session, message.seq, now)
            if message.session >= current.session:
                status.heartbeat = message.to_dict()
                status.now_playing = message.now_playing.item_id if message.now_playing else None
                self.telemetry.heartbeat(device.id, message, now)
        elif parsed.leaf == "event" and isinstance(message, AsRunEvent):
            decision = presence.on_message(current, message.session, message.seq, now)
            self._store_event(db, device, message, status, updates)
            acks.setdefault(device.agent_id, []).append(message.event_id)
        elif parsed.leaf == "plan/ack" and isinstance(message, PlanAck):
            decision = presence.Decision(current)
            if message.status == "ok":
                status.plan_version_acked = max(status.plan_version_acked, message.version)
            updates.append({"type": "plan_ack", "agent_id": device.agent_id, "version": message.version,
                            "status": message.status})
        elif parsed.leaf == "cmd/result" and isinstance(message, CommandResult):
            decision = presence.Decision(current)
            results = self.stats.command_results
            results[message.id] = message
            while len(results) > MAX_COMMAND_RESULTS:
                results.pop(next(iter(results)))
            record_answer(db, message)
            updates.append({"type": "cmd_result", "agent_id": device.agent_id, "id": message.id,
                            "status": message.status, "error": message.error})
        else:
            raise ProtocolError(f"a {message.type} message does not belong on {parsed.leaf}")
        new = decision.presence
        status.state, status.session, status.last_seq = new.state, new.session, new.last_seq
        status.last_seen_at = new.last_seen_at
        if decision.changed:
            status.changed_at = now
            if new.state == "offline":
                status.now_playing = None
                self.telemetry.offline(device.id, now)
        if decision.request_rebirth:
            rebirths.append(device.agent_id)
        if decision.changed or parsed.leaf in ("heartbeat", "event"):
            faults = (status.heartbeat or {}).get("faults") or []
            updates.append({"type": "device", "agent_id": device.agent_id, "state": status.state,
                            "now_playing": status.now_playing, "session": status.session,
                            "faults": [str(f) for f in faults] if status.state != "offline" else [],
                            "last_seen_at": status.last_seen_at.isoformat() if status.last_seen_at else None})

    def _store_event(self, db: Session, device: Device, event: AsRunEvent, status: DeviceStatus,
                     updates: list[dict[str, Any]]) -> None:
        if db.scalar(select(AsRunEntry.id).where(AsRunEntry.event_id == event.event_id)) is not None:
            self.stats.events_duplicate += 1
            return
        broadcast_id = event.broadcast_id if db.get(Broadcast, event.broadcast_id) is not None else None
        db.add(AsRunEntry(event_id=event.event_id, device_id=device.id, broadcast_id=broadcast_id,
                          item_id=event.item_id, kind=event.kind, at=event.at, scheduled_at=event.scheduled_at,
                          audio_sha256=event.audio_sha256, detail=event.detail, received_at=self._now()))
        db.flush()
        self.stats.events_stored += 1
        if event.kind == "started":
            status.now_playing = event.item_id
        elif status.now_playing == event.item_id:
            status.now_playing = None
        updates.append({"type": "asrun", "event_id": event.event_id, "agent_id": device.agent_id,
                        "kind": event.kind, "item_id": event.item_id, "broadcast_id": broadcast_id,
                        "at": event.at.isoformat(),
                        "scheduled_at": event.scheduled_at.isoformat(), "detail": event.detail})

    # --- silence --------------------------------------------------------------------------------

    def sweep_silent(self) -> int:
        """Mark online devices that have said nothing for too long as offline; returns how many."""
        now = self._now()
        changed: list[str] = []
        with self._db.session() as db:
            rows = db.execute(select(DeviceStatus, Device).join(Device, Device.id == DeviceStatus.device_id)
                              .where(DeviceStatus.state == "online")).all()
            for status, device in rows:
                current = presence.Presence(state="online", session=status.session, last_seq=status.last_seq,
                                            last_seen_at=status.last_seen_at)
                decision = presence.on_silence(current, now, self._heartbeat_timeout)
                if decision.changed:
                    status.state, status.changed_at, status.now_playing = "offline", now, None
                    changed.append(device.agent_id)
                    self.telemetry.offline(device.id, now)
            self.telemetry.flush(db)
        for agent_id in changed:
            self._live.publish({"type": "device", "agent_id": agent_id, "state": "offline", "now_playing": None})
        return len(changed)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
