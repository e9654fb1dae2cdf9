"""The agent core: keeps the plan, fetches audio ahead, plays on time, reports what it did.

It is the same code in `loa agent` on a Raspberry Pi and in each simulated agent of `loa sim`; it
talks to the world only through its seams (`Link`, `Player`, `AudioCache`, `Journal`, `Clock`,
`Amplifier`, `Volume`, the host probes). `Agent` is the top of a stack of layers, one module each:
`agents.agent_state` (settings, seams, state), `agents.reporting` (as-run outbox, heartbeats, faults),
`agents.playout` (on-time starts, preemption; its docstring gives the timing convention and the start
path), `agents.plan_handling` (plans, prefetch); here: the lifecycle and the link callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from agents.agent_state import AgentSettings, AgentStats
from agents.cache import file_sha256
from agents.clock import Clock
from agents.errors import ProtocolError
from agents.link import Link, Will
from agents.plan_handling import PlanHandling
from agents.protocol import (
    QOS_AT_LEAST_ONCE,
    QOS_AT_MOST_ONCE,
    Command,
    EventAck,
    Plan,
    PlanItem,
    ServerClock,
    ServerState,
    StateMessage,
    Topics,
    decode,
    encode,
    parse_topic,
)
from agents.reporting import AGENT_VERSION
from agents.start_timing import PREROLL_S

log = logging.getLogger(__name__)

__all__ = ["AGENT_VERSION", "PREROLL_S", "Agent", "AgentSettings", "AgentStats", "Clock"]


class Agent(PlanHandling):
    """One agent: starts and stops its tasks, and routes what arrives on the link to the layers below."""

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the plan kept on disk and start the playout; the link may connect later."""
        self._cache.start()
        self._cache.protect(self._needed_audio)
        self.amplifier.start()
        saved_volume = self._journal.get_setting("volume_normal")
        if saved_volume is not None and saved_volume.isdigit():
            self.volume.normal_percent = min(100, int(saved_volume))
        fallback = self.settings.fallback_file
        if fallback is not None:
            try:
                self._fallback_sha = await asyncio.to_thread(file_sha256, fallback)
            except OSError as exc:
                log.warning("fallback file %s unreadable: %s", fallback, exc)
        saved = self._journal.load_plan()
        if saved is not None:
            try:
                self._plan = Plan.from_dict(saved)
            except ProtocolError as exc:
                log.warning("stored plan unreadable (%s); waiting for the server's", exc)
        self._report_interrupted()
        if self._plan is not None:
            self._prefetch(self._plan)
        agent_id = self.settings.agent_id
        self._tasks = [
            asyncio.create_task(self._playout(), name=f"playout-{agent_id}"),
            asyncio.create_task(self._heartbeats(), name=f"heartbeat-{agent_id}"),
            asyncio.create_task(self._resend_outbox(), name=f"outbox-{agent_id}"),
        ]
        if self._ntp_probe is not None or self._modem_probe is not None:
            self._tasks.append(asyncio.create_task(self._probe_host(), name=f"probe-{agent_id}"))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._fetches.values()]
        running = self._running
        if running is not None:
            running.cancel_kind = "interrupted"
            running.cancel_detail = "agent stopped during playback"
            running.resumable = False
            tasks.append(running.task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if running is not None:
            running.announced.set()
            self._settle(running)  # record it now, while the journal is still open
        self.amplifier.stop()

    @property
    def healthy(self) -> bool:
        """False once the playout task died: the watchdog then stops pinging and systemd restarts us."""
        return bool(self._tasks) and not self._tasks[0].done()

    # --- link callbacks -------------------------------------------------------------------------

    def before_connect(self) -> None:
        """Called before every connection attempt: a new session number goes into the will."""
        self._session = self._journal.next_session()
        self._seq = 0
        death = StateMessage(agent_id=self.settings.agent_id, state="offline", session=self._session)
        self._link.set_will(Will(Topics.state(self.settings.agent_id), encode(death), qos=1, retain=True))

    def on_connected(self) -> None:
        agent_id = self.settings.agent_id
        self._link.subscribe([
            (Topics.plan(agent_id), QOS_AT_LEAST_ONCE),
            (Topics.command(agent_id), QOS_AT_LEAST_ONCE),
            (Topics.event_ack(agent_id), QOS_AT_LEAST_ONCE),
            (Topics.SERVER_STATE, QOS_AT_LEAST_ONCE),
            # QoS 0: a clock sample queued during an outage would only be stale.
            (Topics.SERVER_CLOCK, QOS_AT_MOST_ONCE),
        ])
        self._sync_groups()
        self.publish_birth()
        self._flush_outbox()

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            self._dispatch(topic, payload)
        except ProtocolError as exc:
            self.stats.rejected_messages += 1
            self.stats.last_rejection = f"{topic}: {exc}"
            log.warning("%s rejected a message on %s: %s", self.settings.agent_id, topic, exc)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        parsed = parse_topic(topic)
        if parsed.scope == "server":
            if parsed.leaf == "clock":
                sample = decode(payload, expect=ServerClock)
                assert isinstance(sample, ServerClock)
                self.server_offset.add(self._clock.time(), sample.server_time.timestamp())
                return
            message = decode(payload, expect=ServerState)
            assert isinstance(message, ServerState)
            if message.state == "online":
                self._flush_outbox()  # the server may have missed events while it was down
            return
        if parsed.scope == "group":
            if parsed.leaf != "cmd":
                raise ProtocolError(f"no such group topic leaf {parsed.leaf!r}")
            command = decode(payload, expect=Command)
            assert isinstance(command, Command)
            self._commands.handle(self, command)
            return
        if parsed.target != self.settings.agent_id:
            raise ProtocolError(f"message for {parsed.target} reached {self.settings.agent_id}")
        if parsed.leaf == "plan":
            if not payload:
                return  # a cleared retained plan
            plan = decode(payload, expect=Plan)
            assert isinstance(plan, Plan)
            self._apply_plan(plan)
        elif parsed.leaf == "cmd":
            command = decode(payload, expect=Command)
            assert isinstance(command, Command)
            self._commands.handle(self, command)
        elif parsed.leaf == "event/ack":
            ack = decode(payload, expect=EventAck)
            assert isinstance(ack, EventAck)
            self._journal.ack_events(list(ack.event_ids))
        else:
            raise ProtocolError(f"agent does not handle topic leaf {parsed.leaf!r}")
    # --- operations used by commands ------------------------------------------------------------

    def stop_playing(self, detail: str, broadcast_id: int | None = None) -> str | None:
        """Stop what plays (never resumed); None when nothing matching plays."""
        run = self._running
        if run is None or (broadcast_id is not None and run.item.broadcast_id != broadcast_id):
            return None
        run.resumable = False
        self._cancel_nowait(run, "preempted", detail)
        return run.item.id

    def resubscribe_plan(self) -> None:
        self._link.unsubscribe([Topics.plan(self.settings.agent_id)])
        self._link.subscribe([(Topics.plan(self.settings.agent_id), QOS_AT_LEAST_ONCE)])

    def remember_command(self, command_id: str) -> bool:
        """True the first time a command id is seen, in this run or (via the journal) an earlier one."""
        key = f"cmd:{command_id}"
        if command_id in self.stats.seen_commands or self._journal.handled(key) is not None:
            return False
        now = self._clock.time()
        self.stats.seen_commands[command_id] = now
        while len(self.stats.seen_commands) > 1000:
            del self.stats.seen_commands[next(iter(self.stats.seen_commands))]
        self._journal.mark_handled(key, "seen", now)
        return True

    def save_volume(self, percent: int) -> None:
        self._journal.put_setting("volume_normal", str(percent))

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def link(self) -> Link:
        return self._link

    # --- introspection for tests and the simulator ----------------------------------------------

    @property
    def plan_version(self) -> int:
        return self._plan.version if self._plan else 0

    @property
    def now_playing(self) -> PlanItem | None:
        return self._running.item if self._running else None

    @property
    def volume_percent(self) -> int:
        """The normal output level (what ``set_volume`` sets by default)."""
        return self.volume.normal_percent

def utc_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
