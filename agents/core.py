"""The agent core: keeps the plan, fetches audio ahead, plays on time, reports what it did.

It is the same code in `loa agent` on a Raspberry Pi and in each simulated agent of `loa sim`; it
talks to the world only through its seams (`Link`, `Player`, `AudioCache`, `Journal`, `Clock`).

Timing convention: ``lateness = now - play_at`` (positive means late). An item is started when its
lateness reaches zero; an item whose lateness exceeds its ``max_late_ms`` when it could start is
skipped and reported, never played late and out of context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agents.cache import AudioCache
from agents.errors import AgentError, FetchError, PlaybackError, ProtocolError
from agents.journal import Journal
from agents.link import Link, Will
from agents.player import Player, Prepared
from agents.protocol import (
    QOS_AT_LEAST_ONCE,
    QOS_AT_MOST_ONCE,
    AsRunEvent,
    AsRunKind,
    Command,
    CommandResult,
    EventAck,
    Heartbeat,
    NowPlaying,
    Plan,
    PlanAck,
    PlanItem,
    ServerState,
    StateMessage,
    Topics,
    decode,
    encode,
    parse_topic,
)

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
HANDLED_MEMORY_S = 7 * 24 * 3600
"""How long the agent remembers which item ids it handled; plans never reach that far back."""
ARM_LEAD_S = 3.0
"""Audio is verified and decoded this long before its start, so the start itself does no work."""


class Clock:
    """Wall-clock time in seconds since the epoch. Replaced in tests; on the Pi, kept by chrony."""

    def time(self) -> float:
        return time.time()


@dataclass
class AgentSettings:
    agent_id: str
    heartbeat_s: float = 30.0
    outbox_resend_s: float = 15.0
    groups: tuple[str, ...] = ()
    """Group topics from the configuration file, on top of those the plan names."""


@dataclass
class _Running:
    item: PlanItem
    task: asyncio.Task[None]
    started_at: float
    cancel_kind: AsRunKind = "preempted"
    cancel_detail: str = ""
    settled: bool = False


@dataclass
class AgentStats:
    rejected_messages: int = 0
    plans_applied: int = 0
    last_rejection: str = ""
    started_items: int = 0
    seen_commands: OrderedDict[str, float] = field(default_factory=OrderedDict)


class Agent:
    def __init__(self, settings: AgentSettings, *, link: Link, player: Player, cache: AudioCache,
                 journal: Journal, clock: Clock | None = None,
                 on_event: Callable[[AsRunEvent], None] | None = None) -> None:
        self.settings = settings
        self._link = link
        self._player = player
        self._cache = cache
        self._journal = journal
        self._clock = clock or Clock()
        self._on_event = on_event
        self.stats = AgentStats()
        self._plan: Plan | None = None
        self._extra: dict[str, PlanItem] = {}  # play_now items outside the plan
        self._prepared: dict[str, Prepared] = {}
        self._running: _Running | None = None
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self._session = 0
        self._seq = 0
        self._started_monotonic = time.monotonic()
        self._subscribed_groups: set[str] = set()
        self.volume_percent = 80

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the plan kept on disk and start the playout; the link may connect later."""
        self._cache.start()
        saved = self._journal.load_plan()
        if saved is not None:
            try:
                self._plan = Plan.from_dict(saved)
            except ProtocolError as exc:
                log.warning("stored plan unreadable (%s); waiting for the server's", exc)
        self._report_interrupted()
        if self._plan is not None:
            self._prefetch(self._plan)
        self._tasks = [
            asyncio.create_task(self._playout(), name=f"playout-{self.settings.agent_id}"),
            asyncio.create_task(self._heartbeats(), name=f"heartbeat-{self.settings.agent_id}"),
            asyncio.create_task(self._resend_outbox(), name=f"outbox-{self.settings.agent_id}"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._fetches.values()]
        running = self._running
        if running is not None:
            running.cancel_kind = "interrupted"
            running.cancel_detail = "agent stopped during playback"
            tasks.append(running.task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if running is not None:
            self._settle(running)  # record it now, while the journal is still open

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
        ])
        self._sync_groups()
        self._publish_birth()
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
            self._handle_command(command)
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
            self._handle_command(command)
        elif parsed.leaf == "event/ack":
            ack = decode(payload, expect=EventAck)
            assert isinstance(ack, EventAck)
            self._journal.ack_events(list(ack.event_ids))
        else:
            raise ProtocolError(f"agent does not handle topic leaf {parsed.leaf!r}")

    # --- plan -----------------------------------------------------------------------------------

    def _apply_plan(self, plan: Plan) -> None:
        if plan.agent_id != self.settings.agent_id:
            raise ProtocolError(f"plan for {plan.agent_id} reached {self.settings.agent_id}")
        if self._plan is not None:
            # (issued_at, version) orders plans even across a server whose database was rebuilt
            # (versions restart at 1 but are issued later); equal means a redelivery.
            incoming, current = (plan.issued_at, plan.version), (self._plan.issued_at, self._plan.version)
            if incoming == current:
                self._send_plan_ack(plan)
                return
            if incoming < current:
                log.info("%s ignores plan v%d issued before its current v%d", plan.agent_id, plan.version,
                         self._plan.version)
                return
        self._journal.save_plan(plan.to_dict())
        self._journal.forget_handled_before(self._clock.time() - HANDLED_MEMORY_S)
        self._plan = plan
        self.stats.plans_applied += 1
        self._sync_groups()
        self._changed.set()
        self._prefetch(plan, ack=True)

    def _prefetch(self, plan: Plan, *, ack: bool = False) -> None:
        async def fetch_all() -> None:
            missing: list[str] = []
            for item in plan.items:
                if self._journal.handled(item.id) is not None:
                    continue
                try:
                    await self._cache.ensure(item.audio)
                except FetchError as exc:
                    log.warning("%s could not prefetch %s: %s", plan.agent_id, item.id, exc)
                    missing.append(item.audio.sha256)
            if ack:
                self._send_plan_ack(plan, missing=tuple(dict.fromkeys(missing)))

        key = f"plan-{plan.version}"
        self._fetches[key] = asyncio.create_task(fetch_all(), name=f"prefetch-{plan.agent_id}")
        self._fetches[key].add_done_callback(lambda _t: self._fetches.pop(key, None))

    def _send_plan_ack(self, plan: Plan, *, missing: tuple[str, ...] = ()) -> None:
        ack = PlanAck(agent_id=self.settings.agent_id, version=plan.version,
                      status="error" if missing else "ok",
                      error="audio not fetched yet" if missing else "", missing=missing)
        self._link.publish(Topics.plan_ack(self.settings.agent_id), encode(ack), qos=QOS_AT_LEAST_ONCE)

    def _sync_groups(self) -> None:
        wanted = set(self.settings.groups) | set(self._plan.groups if self._plan else ())
        added, removed = wanted - self._subscribed_groups, self._subscribed_groups - wanted
        if added:
            self._link.subscribe([(Topics.group_command(g), QOS_AT_LEAST_ONCE) for g in sorted(added)])
        if removed:
            self._link.unsubscribe([Topics.group_command(g) for g in sorted(removed)])
        self._subscribed_groups = wanted

    # --- playout --------------------------------------------------------------------------------

    def _pending_items(self) -> list[PlanItem]:
        # A play_now item and the plan that later carries it share one id: play it once.
        items = {i.id: i for i in self._extra.values()}
        items.update({i.id: i for i in (self._plan.items if self._plan else ())})
        running_id = self._running.item.id if self._running else None
        pending = [i for i in items.values() if i.id != running_id and self._journal.handled(i.id) is None]
        return sorted(pending, key=lambda i: (i.play_at, -i.priority, i.id))

    async def _playout(self) -> None:
        while True:
            self._changed.clear()
            pending = self._pending_items()
            now = self._clock.time()
            due = [i for i in pending if i.play_at.timestamp() <= now]
            if due:
                # Among everything due: the highest priority first, then the earliest.
                best = min(due, key=lambda i: (-i.priority, i.play_at, i.id))
                running = self._running
                if running is None or best.priority > running.item.priority:
                    await self._start(best)
                else:
                    # Equal or lower priority never plays on top: wait for the end, or for anything new
                    # (an emergency that arrives meanwhile must not wait behind the queue).
                    await self._wait_end_or_change(running)
                continue
            if not pending:
                await self._changed.wait()
                continue
            upcoming = pending[0]
            if not await self._sleep_until(upcoming.play_at.timestamp() - ARM_LEAD_S):
                continue  # something changed; look again
            await self._arm(upcoming)
            await self._sleep_until(upcoming.play_at.timestamp())

    async def _wait_end_or_change(self, running: _Running) -> None:
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({running.task, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
        if running.task.done():
            self._settle(running)

    async def _sleep_until(self, wall_time: float) -> bool:
        """Sleep until ``wall_time``; False if the plan changed first."""
        delay = wall_time - self._clock.time()
        if delay <= 0:
            return True
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=delay)
        except TimeoutError:
            return True
        return False

    async def _arm(self, item: PlanItem) -> None:
        if item.id in self._prepared:
            return
        try:
            path = await self._cache.ensure(item.audio)
            if not await asyncio.to_thread(self._cache.verify, item.audio.sha256):
                path = await self._cache.ensure(item.audio)
            self._prepared[item.id] = await self._player.prepare(path, item)
        except (FetchError, PlaybackError) as exc:
            log.warning("%s cannot arm %s: %s", self.settings.agent_id, item.id, exc)

    async def _start(self, item: PlanItem) -> None:
        """Start ``item`` now; whatever plays has a lower priority and is preempted."""
        running = self._running
        if running is not None:
            await self._cancel_running(running, "preempted", f"by {item.id}")
        lateness_ms = (self._clock.time() - item.play_at.timestamp()) * 1000
        if lateness_ms > item.max_late_ms:
            self._record(item, "skipped", detail=f"{lateness_ms:.0f} ms late")
            self._finish(item, "skipped")
            return
        prepared = self._prepared.pop(item.id, None)
        if prepared is None:
            await self._arm(item)
            prepared = self._prepared.pop(item.id, None)
        if prepared is None:
            self._record(item, "failed", detail="audio not available")
            self._finish(item, "failed")
            return
        started = self._clock.time()
        task = asyncio.create_task(self._player.play(prepared), name=f"play-{item.id}")
        running = _Running(item=item, task=task, started_at=started)
        self._running = running
        self._journal.mark_handled(item.id, "started", started)
        self._record(item, "started", at=started)
        self.stats.started_items += 1
        task.add_done_callback(lambda _t: self._settle(running))

    async def _cancel_running(self, running: _Running, kind: AsRunKind, detail: str) -> None:
        running.cancel_kind, running.cancel_detail = kind, detail
        running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task
        self._settle(running)  # now, not in a later callback, so events keep their order

    def _settle(self, running: _Running) -> None:
        """Record how a play ended; runs once per play whichever path notices first."""
        if running.settled:
            return
        running.settled = True
        if self._running is running:
            self._running = None
        item, task = running.item, running.task
        if task.cancelled():
            self._record(item, running.cancel_kind, detail=running.cancel_detail)
            self._finish(item, running.cancel_kind)
            return
        exc = task.exception()
        if exc is not None:
            self._record(item, "failed", detail=str(exc)[:500])
            self._finish(item, "failed")
        else:
            self._record(item, "finished")
            self._finish(item, "finished")

    def _finish(self, item: PlanItem, outcome: str) -> None:
        self._journal.mark_handled(item.id, outcome, self._clock.time())
        self._extra.pop(item.id, None)
        self._changed.set()

    def _report_interrupted(self) -> None:
        """An item marked started but never finished was cut by a crash or power loss."""
        if self._plan is None:
            return
        for item in self._plan.items:
            if self._journal.handled(item.id) == "started":
                self._record(item, "interrupted", detail="agent restarted during playback")
                self._journal.mark_handled(item.id, "interrupted", self._clock.time())

    # --- commands -------------------------------------------------------------------------------

    def _handle_command(self, command: Command) -> None:
        seen = self.stats.seen_commands
        if command.id in seen:
            return  # duplicate delivery (QoS 1) or a group and a direct copy of one order
        seen[command.id] = self._clock.time()
        while len(seen) > 1000:
            seen.popitem(last=False)
        if command.expires_at.timestamp() < self._clock.time():
            self._reply(command, error=f"expired at {command.expires_at.isoformat()}")
            return
        try:
            data = self._execute(command)
        except (AgentError, ValueError, TypeError) as exc:
            self._reply(command, error=str(exc))
        else:
            self._reply(command, data=data)

    def _execute(self, command: Command) -> dict[str, object]:
        if command.name == "play_now":
            item = command.play_item()
            self._extra[item.id] = item
            self._cache_fetch_soon(item)
            self._changed.set()
            return {"item_id": item.id}
        if command.name == "stop":
            if self._running is not None:
                self._running.cancel_detail = f"stopped by command {command.id}"
                self._running.task.cancel()
            return {}
        if command.name == "set_volume":
            volume = command.args.get("percent")
            if not isinstance(volume, int) or isinstance(volume, bool) or not 0 <= volume <= 100:
                raise ValueError("percent must be an integer from 0 to 100")
            self.volume_percent = volume
            return {"percent": volume}
        if command.name == "resync":
            self._link.unsubscribe([Topics.plan(self.settings.agent_id)])
            self._link.subscribe([(Topics.plan(self.settings.agent_id), QOS_AT_LEAST_ONCE)])
            return {}
        if command.name == "rebirth":
            self._publish_birth()
            return {}
        raise ValueError(f"unsupported command {command.name}")

    def _cache_fetch_soon(self, item: PlanItem) -> None:
        task = asyncio.create_task(self._arm(item), name=f"arm-{item.id}")
        self._fetches[item.id] = task
        task.add_done_callback(lambda _t: self._fetches.pop(item.id, None))

    def _reply(self, command: Command, *, data: dict[str, object] | None = None, error: str = "") -> None:
        if error:
            log.warning("%s refused command %s (%s): %s", self.settings.agent_id, command.id, command.name, error)
        result = CommandResult(id=command.id, agent_id=self.settings.agent_id,
                               status="error" if error else "ok", data=data or {}, error=error)
        self._link.publish(Topics.command_result(self.settings.agent_id), encode(result), qos=QOS_AT_LEAST_ONCE)

    # --- reporting ------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _publish_birth(self) -> None:
        birth = StateMessage(
            agent_id=self.settings.agent_id, state="online", session=self._session, seq=self._next_seq(),
            sent_at=datetime.now(UTC), agent_version=AGENT_VERSION,
            plan_version=self._plan.version if self._plan else 0, groups=tuple(sorted(self._subscribed_groups)))
        self._link.publish(Topics.state(self.settings.agent_id), encode(birth), qos=QOS_AT_LEAST_ONCE, retain=True)

    def _record(self, item: PlanItem, kind: AsRunKind, *, at: float | None = None, detail: str = "") -> None:
        moment = datetime.fromtimestamp(at if at is not None else self._clock.time(), UTC)
        event = AsRunEvent(
            event_id=uuid.uuid4().hex, agent_id=self.settings.agent_id, item_id=item.id,
            broadcast_id=item.broadcast_id, kind=kind, at=moment, scheduled_at=item.play_at,
            audio_sha256=item.audio.sha256, session=self._session, seq=self._next_seq(), detail=detail)
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
            if self._link.connected:
                self._flush_outbox()

    def heartbeat(self) -> Heartbeat:
        running = self._running
        now = self._clock.time()
        return Heartbeat(
            agent_id=self.settings.agent_id, session=self._session, seq=self._next_seq(),
            sent_at=datetime.fromtimestamp(now, UTC), uptime_s=int(time.monotonic() - self._started_monotonic),
            plan_version=self._plan.version if self._plan else 0,
            now_playing=NowPlaying(item_id=running.item.id, broadcast_id=running.item.broadcast_id,
                                   started_at=datetime.fromtimestamp(running.started_at, UTC))
            if running else None,
            cache_bytes=self._cache.total_bytes(), outbox_pending=self._journal.pending_count(),
            volume_percent=self.volume_percent, amplifier_on=running is not None)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            if self._link.connected:
                self._link.publish(Topics.heartbeat(self.settings.agent_id), encode(self.heartbeat()),
                                   qos=QOS_AT_MOST_ONCE)

    # --- introspection for tests and the simulator ----------------------------------------------

    @property
    def plan_version(self) -> int:
        return self._plan.version if self._plan else 0

    @property
    def now_playing(self) -> PlanItem | None:
        return self._running.item if self._running else None


def utc_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
