"""The agent core: keeps the plan, fetches audio ahead, plays on time, reports what it did.

It is the same code in `loa agent` on a Raspberry Pi and in each simulated agent of `loa sim`; it
talks to the world only through its seams (`Link`, `Player`, `AudioCache`, `Journal`, `Clock`,
`Amplifier`, `Volume`, the host probes).

Timing convention: ``lateness = now - play_at`` (positive means late). An item is started when its
lateness reaches zero; an item whose lateness exceeds its ``max_late_ms`` when it could start is
skipped and reported, never played late and out of context. A resumed item is exempt (it was started
on time), but it is skipped when its ``stop_at`` has passed or it was suspended more than
`RESUME_WINDOW_S` ago.

Start path, in order: the audio is verified and prepared `ARM_LEAD_S` before ``play_at``; the amplifier
is switched on ``warmup_s`` before it; the checks run `PREROLL_S` before it; at ``play_at`` a loop timer
starts the output and only then, two loop turns later, the journal and the as-run outbox are written (in
the simulator a thousand agents share the loop, and none may wait behind another's work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.amplifier import Amplifier, MemoryRelay, NullMixer, Volume
from agents.cache import AudioCache, backoff_s, file_sha256
from agents.clock import UNKNOWN, Clock, NtpProbe, NtpStatus, ServerOffset, clock_faults
from agents.commands import CommandHandler
from agents.errors import FetchError, PlaybackError, ProtocolError
from agents.journal import SUSPENDED, Journal
from agents.link import Link, Will
from agents.player import Player, Prepared
from agents.protocol import (
    QOS_AT_LEAST_ONCE,
    QOS_AT_MOST_ONCE,
    AsRunEvent,
    AsRunKind,
    Command,
    EventAck,
    Heartbeat,
    NowPlaying,
    Plan,
    PlanAck,
    PlanItem,
    ServerClock,
    ServerState,
    StateMessage,
    Topics,
    decode,
    encode,
    parse_topic,
)
from agents.telemetry import LinkQuality, ModemProbe, cpu_temperature_c, disk_usage
from schedules.model import Priority

__all__ = ["AGENT_VERSION", "Agent", "AgentSettings", "Clock"]

log = logging.getLogger(__name__)

AGENT_VERSION = "0.2.0"
HANDLED_MEMORY_S = 7 * 24 * 3600
"""How long the agent remembers which item ids it handled; plans never reach that far back."""
ARM_LEAD_S = 3.0
"""Audio is verified and decoded this long before its start, so the start itself does no work."""
RESUME_WINDOW_S = 3600.0
"""A preempted item resumes only if what cut it ended within this time (an hour-long emergency makes the
rest of a routine bulletin stale)."""
MISSING_RETRY_MAX_S = 600.0
PREROLL_S = 0.25
QUIET_BEFORE_START_S = 1.5
"""Periodic work (heartbeats) is put off while a start is this close."""
"""Every check before a start (lateness, volume, amplifier) is done this long before ``play_at``; at
``play_at`` a timer only starts the output. An emergency arriving in this window waits for it to pass."""


@dataclass
class AgentSettings:
    agent_id: str
    heartbeat_s: float = 30.0
    outbox_resend_s: float = 15.0
    groups: tuple[str, ...] = ()
    """Group topics from the configuration file, on top of those the plan names."""
    fallback_file: Path | None = None
    """Played in place of an item whose audio is missing or fails to play, until the item's slot ends."""
    allow_reboot: bool = False
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    ntp_fault_ms: float = 50.0
    server_clock_fault_ms: float = 250.0
    missing_retry_s: float = 30.0
    """First delay before audio that could not be fetched is tried again (doubling, with jitter)."""
    state_dir: Path | None = None
    """Where disk use is measured for the heartbeat."""
    preroll_s: float = PREROLL_S
    """The checks before a start run this long ahead; the output itself starts from a timer at play_at."""


@dataclass
class _Running:
    item: PlanItem
    started_at: float
    offset_ms: int = 0
    task: asyncio.Task[None] = field(init=False)
    cancel_kind: AsRunKind = "preempted"
    cancel_detail: str = ""
    resumable: bool = True
    fallback: bool = False
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    settled: bool = False
    stop_timer: asyncio.TimerHandle | None = None

    def position_ms(self, now: float) -> int:
        return self.offset_ms + max(0, round((now - self.started_at) * 1000))


@dataclass
class AgentStats:
    rejected_messages: int = 0
    plans_applied: int = 0
    last_rejection: str = ""
    started_items: int = 0
    seen_commands: dict[str, float] = field(default_factory=dict)
    """Command id → when it arrived (this run); the journal remembers them across restarts."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Agent:
    def __init__(self, settings: AgentSettings, *, link: Link, player: Player, cache: AudioCache,
                 journal: Journal, clock: Clock | None = None,
                 on_event: Callable[[AsRunEvent], None] | None = None,
                 amplifier: Amplifier | None = None, volume: Volume | None = None,
                 ntp: NtpProbe | None = None, modem: ModemProbe | None = None,
                 commands: CommandHandler | None = None) -> None:
        self.settings = settings
        self._link = link
        self._player = player
        self._cache = cache
        self._journal = journal
        self._clock = clock or Clock()
        self._on_event = on_event
        # Without a configured relay there is nothing to warm up.
        self.amplifier = amplifier or Amplifier(MemoryRelay(), warmup_s=0.0, hold_s=0.0)
        self.volume = volume or Volume(NullMixer())
        self._ntp_probe = ntp
        self._modem_probe = modem
        self._commands = commands or CommandHandler()
        self.stats = AgentStats()
        self._plan: Plan | None = None
        self._extra: dict[str, PlanItem] = {}  # play_now items outside the plan
        self._prepared: dict[str, Prepared] = {}
        self._running: _Running | None = None
        self._dirty = False
        self._waiter: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._fetches: dict[str, asyncio.Task[None]] = {}
        self._session = 0
        self._seq = 0
        self._started_monotonic = time.monotonic()
        self._subscribed_groups: set[str] = set()
        self._missing: set[str] = set()
        self._fallback_sha = ""
        self.server_offset = ServerOffset()
        self.ntp: NtpStatus = UNKNOWN
        self.link_quality: LinkQuality | None = None
        self.faults: tuple[str, ...] = ()

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

    # --- plan -----------------------------------------------------------------------------------

    def _apply_plan(self, plan: Plan) -> None:
        if plan.agent_id != self.settings.agent_id:
            raise ProtocolError(f"plan for {plan.agent_id} reached {self.settings.agent_id}")
        if self._plan is not None:
            # (issued_at, version) orders plans even across a server whose database was rebuilt
            # (versions restart at 1 but are issued later); equal means a redelivery.
            incoming, current = (plan.issued_at, plan.version), (self._plan.issued_at, self._plan.version)
            if incoming == current:
                self._send_plan_ack(plan, missing=tuple(sorted(self._missing)))
                return
            if incoming < current:
                log.info("%s ignores plan v%d issued before its current v%d", plan.agent_id, plan.version,
                         self._plan.version)
                return
        self._journal.save_plan(plan.to_dict())
        self._journal.forget_handled_before(self._clock.time() - HANDLED_MEMORY_S)
        previous, self._plan = self._plan, plan
        self.stats.plans_applied += 1
        self._drop_cancelled(previous, plan)
        self._sync_groups()
        self.notify_change()
        self._prefetch(plan, ack=True)

    def _drop_cancelled(self, previous: Plan | None, plan: Plan) -> None:
        """A broadcast cancelled on the server: stop it now if it plays, forget it if it was suspended."""
        current = {item.id: item for item in plan.items}
        running = self._running
        if running is not None and running.item.id not in self._extra:
            updated = current.get(running.item.id)
            if updated is None:
                self._cancel_nowait(running, "cancelled", f"no longer in plan v{plan.version}")
            elif updated.stop_at != running.item.stop_at:
                running.item = updated
                self._arm_stop_timer(running)
        for item in previous.items if previous else ():
            if item.id not in current and self._journal.handled(item.id) == SUSPENDED:
                self._journal.clear_resume(item.id)
                self._record(item, "cancelled", detail=f"suspended item no longer in plan v{plan.version}")
                self._journal.mark_handled(item.id, "cancelled", self._clock.time())

    def _prefetch(self, plan: Plan, *, ack: bool = False) -> None:
        async def fetch_all() -> None:
            delay = self.settings.missing_retry_s
            send_ack = ack
            while True:
                missing: list[str] = []
                for item in plan.items:
                    if self._journal.handled(item.id) not in (None, SUSPENDED):
                        continue
                    try:
                        await self._cache.ensure(item.audio)
                    except FetchError as exc:
                        log.warning("%s could not prefetch %s: %s", plan.agent_id, item.id, exc)
                        missing.append(item.audio.sha256)
                self._missing = set(missing)
                if send_ack or not missing:
                    self._send_plan_ack(plan, missing=tuple(dict.fromkeys(missing)))
                    send_ack = False
                self._player.prune(self._needed_audio() | {self._fallback_sha})
                if not missing or self._plan is not plan:
                    return
                # The plan acknowledgement said "missing": keep trying, and say "ok" once all is here.
                await asyncio.sleep(backoff_s(delay))
                delay = min(delay * 2, MISSING_RETRY_MAX_S)

        key = f"plan-{plan.version}"
        self._fetches[key] = asyncio.create_task(fetch_all(), name=f"prefetch-{plan.agent_id}")
        self._fetches[key].add_done_callback(lambda _t: self._fetches.pop(key, None))

    def _needed_audio(self) -> set[str]:
        """sha256 of everything still to play: the cache never evicts these."""
        needed = {i.audio.sha256 for i in self._pending_items()}
        if self._running is not None:
            needed.add(self._running.item.audio.sha256)
        return needed

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

    def add_extra(self, item: PlanItem) -> None:
        """A ``play_now`` item: played at its ``play_at`` like a plan item, fetched at once."""
        self._extra[item.id] = item
        task = asyncio.create_task(self._arm(item), name=f"arm-{item.id}")
        self._fetches[item.id] = task
        task.add_done_callback(lambda _t: self._fetches.pop(item.id, None))
        self.notify_change()

    # --- playout --------------------------------------------------------------------------------

    def notify_change(self) -> None:
        self._dirty = True
        if self._waiter is not None:
            _resolve(self._waiter)

    async def _sleep_until(self, wall_time: float | None, task: asyncio.Task[None] | None = None) -> bool:
        """Sleep until ``wall_time`` (None: until a change) or until ``task`` ends; False if something
        changed first. A bare future and one timer: cheap enough for thousands of agents on one loop."""
        if self._dirty:
            return False
        loop = asyncio.get_running_loop()
        delay = None if wall_time is None else wall_time - self._clock.time()
        if delay is not None and delay <= 0:
            return True
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_at(loop.time() + delay, _resolve, waiter) if delay is not None else None
        done_callback = (lambda _t: _resolve(waiter)) if task is not None else None
        if task is not None and done_callback is not None:
            task.add_done_callback(done_callback)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
            if task is not None and done_callback is not None:
                task.remove_done_callback(done_callback)
        return not self._dirty

    def _pending_items(self) -> list[PlanItem]:
        # A play_now item and the plan that later carries it share one id: play it once.
        items = {i.id: i for i in self._extra.values()}
        items.update({i.id: i for i in (self._plan.items if self._plan else ())})
        running_id = self._running.item.id if self._running else None
        pending = [i for i in items.values()
                   if i.id != running_id and self._journal.handled(i.id) in (None, SUSPENDED)]
        return sorted(pending, key=lambda i: (i.play_at, -i.priority, i.id))

    def _preempts(self, item: PlanItem) -> bool:
        running = self._running
        return running is None or item.priority > running.item.priority

    async def _playout(self) -> None:
        while True:
            self._dirty = False
            pending = self._pending_items()
            now = self._clock.time()
            due = [i for i in pending if i.play_at.timestamp() <= now]
            running = self._running
            if due:
                # Among everything due: the highest priority first, then the earliest.
                best = min(due, key=lambda i: (-i.priority, i.play_at, i.id))
                if self._preempts(best):
                    await self._start(best)
                elif running is not None:
                    # Equal or lower priority never plays on top: wait for the end, or for anything new
                    # (an emergency that arrives meanwhile must not wait behind the queue).
                    await self._sleep_until(None, running.task)
                    if running.task.done():
                        self._settle(running)
                continue
            if not pending:
                if running is None:
                    self.amplifier.release()
                await self._sleep_until(None)
                continue
            upcoming = pending[0]
            at = upcoming.play_at.timestamp()
            warmup = self.amplifier.warmup_s
            if running is None and at - now > warmup:
                self.amplifier.release()
            if not await self._sleep_until(at - max(ARM_LEAD_S, warmup + 1.0)):
                continue  # something changed; look again
            await self._arm(upcoming)
            if not await self._sleep_until(at - max(warmup, self.settings.preroll_s)):
                continue
            if self._preempts(upcoming):
                # Warm the amplifier so that the first syllable is not clipped, without delaying the start.
                self.amplifier.switch_on()
            if not await self._sleep_until(at - self.settings.preroll_s):
                continue
            if self._running is None:
                await self._start(upcoming, at=at)
            elif await self._sleep_until(at) and self._preempts(upcoming):
                await self._start(upcoming)  # preempting: the cut and the start happen at play_at

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

    async def _start(self, item: PlanItem, at: float | None = None) -> None:
        """Start ``item`` at wall time ``at`` (None: now); whatever plays has a lower priority and is preempted."""
        running = self._running
        if running is not None:
            await self._cancel_running(running, "preempted", f"by {item.id}")
        now = max(self._clock.time(), at or 0.0)
        resume = self._journal.resume_point(item.id)
        offset_ms = 0
        if item.stop_at is not None and now >= item.stop_at.timestamp():
            return self._drop(item, "skipped", f"its stop_at {item.stop_at.isoformat()} has passed")
        if resume is not None:
            offset_ms, suspended_at = resume
            if now - suspended_at > RESUME_WINDOW_S:
                return self._drop(item, "skipped", f"not resumed: cut {now - suspended_at:.0f} s ago")
        else:
            lateness_ms = (now - item.play_at.timestamp()) * 1000
            if lateness_ms > item.max_late_ms:
                return self._drop(item, "skipped", f"{lateness_ms:.0f} ms late")
        prepared = self._prepared.pop(item.id, None)
        if prepared is None:
            await self._arm(item)
            prepared = self._prepared.pop(item.id, None)
        if prepared is None and self.settings.fallback_file is None:
            return self._drop(item, "failed", "audio not available")
        if self.amplifier.warmup_left_s() > (at or 0.0) - self._clock.time():
            await self.amplifier.wait_warm()  # an item announced too late for the warm-up: start after it
        if self.volume.current != self._wanted_volume(item):
            await self.volume.apply(item.priority >= Priority.EMERGENCY)
        run = _Running(item=item, started_at=0.0, offset_ms=offset_ms)
        if not await self._begin(run, prepared, at):
            return
        started = run.started_at
        self._arm_stop_timer(run)
        if prepared is not None:
            await self._after_outputs_started()
        self._journal.mark_handled(item.id, "started", started)
        if prepared is not None:
            if resume is not None:
                self._record(item, "resumed", at=started, offset_ms=offset_ms,
                             detail=f"from {offset_ms / 1000:.1f} s")
            else:
                self._record(item, "started", at=started)
        self.stats.started_items += 1
        run.announced.set()
        if run.task.done():
            self._settle(run)

    async def _begin(self, run: _Running, prepared: Prepared | None, at: float | None) -> bool:
        """Start the output at ``at`` from a loop timer, or now; False if the item is no longer wanted."""
        loop = asyncio.get_running_loop()
        begun: asyncio.Future[bool] = loop.create_future()

        def go() -> None:
            # Runs at the start instant, possibly beside thousands of other agents' timers (simulator):
            # only take the instant here; creating the task and bookkeeping follow a loop turn later.
            if self._dirty and not self._still_wanted(run.item):
                begun.set_result(False)
                return
            run.started_at = self._clock.time()
            begun.set_result(True)

        delay = (at - self._clock.time()) if at is not None else 0.0
        if delay <= 0:
            go()
        else:
            timer = loop.call_at(loop.time() + delay, go)
            try:
                await begun
            finally:
                timer.cancel()
        if not begun.result():
            return False
        run.task = asyncio.create_task(self._perform(run, prepared), name=f"play-{run.item.id}")
        self._running = run
        run.task.add_done_callback(lambda _t: self._settle(run))
        return True

    def _still_wanted(self, item: PlanItem) -> bool:
        """After a wait (warm-up, mixer), whether the item is still the one to start."""
        pending = {i.id for i in self._pending_items()}
        return item.id in pending and self._preempts(item)

    def _wanted_volume(self, item: PlanItem) -> int:
        emergency = item.priority >= Priority.EMERGENCY
        return self.volume.emergency_percent if emergency else self.volume.normal_percent

    @staticmethod
    async def _after_outputs_started() -> None:
        """Two loop turns: every output due at this instant starts before anyone's bookkeeping."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        loop.call_later(0, _resolve, turn)  # a due timer runs after the callbacks already queued
        await turn

    async def _perform(self, run: _Running, prepared: Prepared | None) -> None:
        """Play the item; if it cannot be played, the fallback file in its place until its slot ends."""
        failure = "audio not available"
        if prepared is not None:
            try:
                await self._player.play(prepared, run.offset_ms, started_at=run.started_at)
                return
            except PlaybackError as exc:
                failure = str(exc)[:400]
        fallback = self.settings.fallback_file
        if fallback is None:
            raise PlaybackError(failure)
        await run.announced.wait()  # "started" must be recorded before this play's failure
        item = run.item
        slot_end = run.started_at + (item.audio.duration_ms - run.offset_ms) / 1000
        self._record(item, "failed", detail=f"{failure}; playing the fallback file")
        backup = await self._player.prepare(fallback, item)
        run.fallback = True
        self._record(item, "fallback", detail=f"{fallback.name} instead of {item.id}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._player.play(backup), max(0.0, slot_end - self._clock.time()))

    def _arm_stop_timer(self, run: _Running) -> None:
        if run.stop_timer is not None:
            run.stop_timer.cancel()
            run.stop_timer = None
        stop_at = run.item.stop_at
        if stop_at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, stop_at.timestamp() - self._clock.time())
        run.stop_timer = loop.call_at(loop.time() + delay, self._cancel_nowait, run, "trimmed",
                                      f"hard stop at {stop_at.isoformat()}")

    def _cancel_nowait(self, run: _Running, kind: AsRunKind, detail: str) -> None:
        if run.settled or run.task.done():
            return
        run.cancel_kind, run.cancel_detail = kind, detail
        run.task.cancel()

    async def _cancel_running(self, run: _Running, kind: AsRunKind, detail: str) -> None:
        self._cancel_nowait(run, kind, detail)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run.task
        self._settle(run)  # now, not in a later callback, so events keep their order

    def _settle(self, run: _Running) -> None:
        """Record how a play ended; runs once per play whichever path notices first."""
        if run.settled or not run.announced.is_set() or not run.task.done():
            return
        run.settled = True
        if run.stop_timer is not None:
            run.stop_timer.cancel()
        if self._running is run:
            self._running = None
        item, task = run.item, run.task
        position = run.position_ms(self._clock.time())
        if task.cancelled():
            kind = run.cancel_kind
            if (kind == "preempted" and run.resumable and item.on_preempt == "resume" and not run.fallback
                    and position < item.audio.duration_ms):
                self._record(item, "preempted", detail=f"{run.cancel_detail}; will resume", offset_ms=position)
                self._journal.suspend(item.id, position, self._clock.time())
                self.notify_change()
                return
            self._record(item, kind, detail=run.cancel_detail, offset_ms=position)
            self._finish(item, kind)
            return
        exc = task.exception()
        if exc is not None:
            self._record(item, "failed", detail=str(exc)[:500], offset_ms=position)
            self._finish(item, "failed")
        else:
            self._record(item, "finished", detail="fallback file" if run.fallback else "")
            self._finish(item, "finished")

    def _drop(self, item: PlanItem, kind: AsRunKind, detail: str) -> None:
        self._record(item, kind, detail=detail)
        self._finish(item, kind)

    def _finish(self, item: PlanItem, outcome: str) -> None:
        self._journal.mark_handled(item.id, outcome, self._clock.time())
        self._journal.clear_resume(item.id)
        self._extra.pop(item.id, None)
        self.notify_change()

    def _report_interrupted(self) -> None:
        """An item marked started but never finished was cut by a crash or power loss."""
        if self._plan is None:
            return
        for item in self._plan.items:
            if self._journal.handled(item.id) == "started":
                self._record(item, "interrupted", detail="agent restarted during playback")
                self._journal.mark_handled(item.id, "interrupted", self._clock.time())

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

    # --- reporting ------------------------------------------------------------------------------

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
        soon = [t for t in (i.play_at.timestamp() for i in (self._plan.items if self._plan else ()))
                if now - 0.05 <= t <= now + QUIET_BEFORE_START_S]
        if soon:
            await asyncio.sleep(max(soon) - now + 0.2)

    async def _probe_host(self) -> None:
        """Ask chrony/timesyncd and the modem, off the heartbeat path (they are subprocesses)."""
        while True:
            try:
                if self._ntp_probe is not None:
                    self.ntp = await self._ntp_probe.read()
                if self._modem_probe is not None:
                    self.link_quality = await self._modem_probe.read()
                self.update_faults()
            except Exception:
                log.exception("host probe failed")
            await asyncio.sleep(max(10.0, self.settings.heartbeat_s))

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
