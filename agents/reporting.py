"""Reporting layer of the agent: as-run events through the journal's outbox, birth, heartbeats, faults.

Periodic work here (heartbeats, outbox resends, host probes) keeps clear of a start that is due
(`Reporting._keep_clear_of_starts`): the start must not share its instant with other work.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

from agents.agent_state import AgentState
from agents.clock import clock_faults
from agents.protocol import (
    QOS_AT_LEAST_ONCE,
    QOS_AT_MOST_ONCE,
    AsRunEvent,
    AsRunKind,
    Heartbeat,
    NowPlaying,
    PlanItem,
    StateMessage,
    Topics,
    encode,
)
from agents.telemetry import cpu_temperature_c, disk_usage

log = logging.getLogger(__name__)

AGENT_VERSION = "0.2.0"
QUIET_BEFORE_START_S = 1.5
"""Periodic work (heartbeats, outbox resends, host probes) is put off while a start is this close."""


class Reporting(AgentState):
    """Tells the server what happened: as-run events (kept in the journal until acknowledged), the retained
    birth with the faults, heartbeats."""

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def publish_birth(self) -> None:
        birth = StateMessage(
            agent_id=self.settings.agent_id, state="online", session=self._session, seq=self._next_seq(),
            sent_at=datetime.now(UTC), agent_version=AGENT_VERSION,
            plan_version=self._plan.version if self._plan else 0, groups=tuple(sorted(self._subscribed_groups)),
            faults=self.faults)
        self._link.publish(Topics.state(self.settings.agent_id), encode(birth), qos=QOS_AT_LEAST_ONCE, retain=True)

    def _record(self, item: PlanItem, kind: AsRunKind, *, at: float | None = None, detail: str = "",
                offset_ms: int = 0) -> None:
        moment = datetime.fromtimestamp(at if at is not None else self._clock.time(), UTC)
        event = AsRunEvent(
            event_id=uuid.uuid4().hex, agent_id=self.settings.agent_id, item_id=item.id,
            broadcast_id=item.broadcast_id, kind=kind, at=moment, scheduled_at=item.play_at,
            audio_sha256=item.audio.sha256, session=self._session, seq=self._next_seq(), detail=detail[:1000],
            offset_ms=offset_ms, exercise=item.exercise)
        payload = encode(event)
        self._journal.add_event(event.event_id, moment.timestamp(), payload)
        self._link.publish(Topics.event(self.settings.agent_id), payload, qos=QOS_AT_LEAST_ONCE)
        if self._on_event is not None:
            self._on_event(event)

    def _flush_outbox(self) -> None:
        for _event_id, payload in self._journal.pending_events():
            if not self._link.publish(Topics.event(self.settings.agent_id), payload, qos=QOS_AT_LEAST_ONCE):
                return

    async def _resend_outbox(self) -> None:
        """Events not acknowledged are sent again; the server stores each event id once."""
        while True:
            await asyncio.sleep(self.settings.outbox_resend_s)
            await self._keep_clear_of_starts()
            if self._link.connected:
                self._flush_outbox()

    def update_faults(self) -> bool:
        """Recompute the fault list; on a change, log it and republish the (retained) birth. True if changed."""
        faults = [f for f in (self.amplifier.fault, self.volume.fault) if f]
        faults += clock_faults(self.ntp, self.server_offset.offset_ms, self.server_offset.samples,
                               ntp_fault_ms=self.settings.ntp_fault_ms,
                               server_fault_ms=self.settings.server_clock_fault_ms)
        if self._missing:
            faults.append(f"audio not fetched: {len(self._missing)} file(s)")
        if tuple(faults) == self.faults:
            return False
        raised = set(faults) - set(self.faults)
        for fault in sorted(raised):
            log.warning("%s fault: %s", self.settings.agent_id, fault)
        self.faults = tuple(faults)
        if self._link.connected:
            self.publish_birth()
        return True

    def heartbeat(self) -> Heartbeat:
        running = self._running
        now = self._clock.time()
        disk = disk_usage(self.settings.state_dir) if self.settings.state_dir is not None else None
        quality = self.link_quality
        return Heartbeat(
            agent_id=self.settings.agent_id, session=self._session, seq=self._next_seq(),
            sent_at=datetime.fromtimestamp(now, UTC), uptime_s=int(time.monotonic() - self._started_monotonic),
            plan_version=self._plan.version if self._plan else 0,
            now_playing=NowPlaying(item_id=running.item.id, broadcast_id=running.item.broadcast_id,
                                   started_at=datetime.fromtimestamp(running.started_at, UTC))
            if running else None,
            cache_bytes=self._cache.total_bytes(), outbox_pending=self._journal.pending_count(),
            volume_percent=self.volume.current if self.volume.current is not None else self.volume.normal_percent,
            amplifier_on=self.amplifier.is_on, clock_offset_ms=self.server_offset.offset_ms,
            agent_version=AGENT_VERSION, cpu_temp_c=cpu_temperature_c(),
            disk_free_bytes=disk[0] if disk else None, disk_total_bytes=disk[1] if disk else None,
            ntp_synced=self.ntp.synced, ntp_offset_ms=self.ntp.offset_ms,
            link_quality_percent=quality.percent if quality else None,
            link_technology=quality.technology if quality else "", faults=self.faults)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            await self._keep_clear_of_starts()
            self.update_faults()
            if self._link.connected:
                self._link.publish(Topics.heartbeat(self.settings.agent_id), encode(self.heartbeat()),
                                   qos=QOS_AT_MOST_ONCE)

    async def _keep_clear_of_starts(self) -> None:
        """Periodic work waits until just after a start that is due within the next moments: the start must
        not share its instant with other work (one Pi core; thousands of agents on one loop in the
        simulator)."""
        now = self._clock.time()
        items = [*(self._plan.items if self._plan else ()), *self._extra.values()]
        soon = [t for t in (i.play_at.timestamp() for i in items) if now - 0.05 <= t <= now + QUIET_BEFORE_START_S]
        if soon:
            await asyncio.sleep(max(soon) - now + 0.2)

    async def _probe_host(self) -> None:
        """Ask chrony/timesyncd and the modem, off the heartbeat path (they are subprocesses)."""
        while True:
            await self._keep_clear_of_starts()  # the probes start subprocesses
            try:
                if self._ntp_probe is not None:
                    self.ntp = await self._ntp_probe.read()
                if self._modem_probe is not None:
                    self.link_quality = await self._modem_probe.read()
                self.update_faults()
            except Exception:
                log.exception("host probe failed")
            await asyncio.sleep(max(10.0, self.settings.heartbeat_s))
