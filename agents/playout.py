"""Playout layer of the agent: starts items on time, preempts, resumes, records how each play ended.

Timing convention: ``lateness = now - play_at`` (positive means late). An item is started when its
lateness reaches zero; an item whose lateness exceeds its ``max_late_ms`` when it could start is
skipped and reported, never played late and out of context. A resumed item is exempt (it was started
on time), but it is skipped when its ``stop_at`` has passed or it was suspended more than
`RESUME_WINDOW_S` ago.

Start path, in order: the audio is verified and prepared `ARM_LEAD_S` + 2 × pre-roll before ``play_at``;
the amplifier is switched on ``warmup_s`` before it; the checks run `PREROLL_S` before it, and from then until the start
the garbage collector is paused; right after the checks the player primes its output (`prime_output`: on
a Pi, aplay started and the sound card open, waiting for samples); ``start_guard_s`` before it the loop's
start gate opens and holds the loop until ``play_at`` (`agents.start_timing`), the instant is taken and the
output started; only then, two loop turns later, the journal and the as-run outbox are written (in the
simulator a thousand agents share the loop, and none may wait behind another's work).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from agents.agent_state import Running, resolve
from agents.errors import FetchError, PlaybackError
from agents.journal import SUSPENDED
from agents.player import Prepared, prime_output, release_output
from agents.protocol import (
    AsRunKind,
    PlanItem,
)
from agents.reporting import Reporting
from agents.start_timing import ARM_LEAD_S, collection_paused, start_gate
from schedules.model import Priority

log = logging.getLogger(__name__)

RESUME_WINDOW_S = 3600.0
"""A preempted item resumes only if what cut it ended within this time (an hour-long emergency makes the
rest of a routine bulletin stale)."""


class Playout(Reporting):
    """Decides what plays when: the playout loop, the start path, preemption and how each play ended."""

    def notify_change(self) -> None:
        self._dirty = True
        if self._waiter is not None:
            resolve(self._waiter)

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
        timer = loop.call_at(loop.time() + delay, resolve, waiter) if delay is not None else None
        done_callback = (lambda _t: resolve(waiter)) if task is not None else None
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

    def _output_at(self, item: PlanItem) -> float:
        """When the output of ``item`` starts: its play_at less the output path's delay to sound."""
        return item.play_at.timestamp() - self.settings.output_latency_s

    def _preempts(self, item: PlanItem) -> bool:
        running = self._running
        return running is None or item.priority > running.item.priority

    async def _playout(self) -> None:
        while True:
            self._dirty = False
            pending = self._pending_items()
            now = self._clock.time()
            due = [i for i in pending if self._output_at(i) <= now]
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
            at = self._output_at(upcoming)
            warmup = self.amplifier.warmup_s
            if running is None and at - now > warmup:
                self.amplifier.release()
            # Arming (fetch, verify, decode) ends before the pre-start checks begin; the simulator stretches
            # the pre-roll with the fleet's size, and the arming window follows it.
            if not await self._sleep_until(at - max(ARM_LEAD_S + 2 * self.settings.preroll_s, warmup + 1.0)):
                continue  # something changed; look again
            await self._arm(upcoming)
            if not await self._sleep_until(at - max(warmup, self.settings.preroll_s)):
                continue
            if self._preempts(upcoming):
                # Warm the amplifier so that the first syllable is not clipped, without delaying the start.
                self.amplifier.switch_on()
            if not await self._sleep_until(at - self.settings.preroll_s):
                continue
            if self._running is None or self._preempts(upcoming):
                # Preempting: the cut comes a pre-roll early so that the start itself goes through the gate,
                # in step with the neighbours (an emergency's echo between clusters matters most).
                await self._start(upcoming, at=at)
            else:
                await self._sleep_until(at)

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
        with collection_paused():
            begun = await self._checks_then_begin(item, at)
        if begun is None:
            return
        run, prepared, resumed = begun
        started = run.started_at
        self._arm_stop_timer(run)
        if prepared is not None:
            await self._after_outputs_started()
        self._journal.mark_handled(item.id, "started", started)
        if prepared is not None:
            if resumed:
                self._record(item, "resumed", at=started, offset_ms=run.offset_ms,
                             detail=f"from {run.offset_ms / 1000:.1f} s")
            else:
                self._record(item, "started", at=started)
        self.stats.started_items += 1
        run.announced.set()
        if run.task.done():
            self._settle(run)

    async def _checks_then_begin(self, item: PlanItem,
                                 at: float | None) -> tuple[Running, Prepared | None, bool] | None:
        """Every check before a start, then the start itself; None if the item is dropped or no longer wanted."""
        running = self._running
        if running is not None:
            await self._cancel_running(running, "preempted", f"by {item.id}")
        now = max(self._clock.time(), at or 0.0)
        heard = now + self.settings.output_latency_s  # when the sound of an output started now is heard
        resume = self._journal.resume_point(item.id)
        offset_ms = 0
        if item.stop_at is not None and heard >= item.stop_at.timestamp():
            self._drop(item, "skipped", f"its stop_at {item.stop_at.isoformat()} has passed")
            return None
        if resume is not None:
            offset_ms, suspended_at = resume
            if now - suspended_at > RESUME_WINDOW_S:
                self._drop(item, "skipped", f"not resumed: cut {now - suspended_at:.0f} s ago")
                return None
        else:
            lateness_ms = (heard - item.play_at.timestamp()) * 1000
            if lateness_ms > item.max_late_ms:
                self._drop(item, "skipped", f"{lateness_ms:.0f} ms late")
                return None
        prepared = self._prepared.pop(item.id, None)
        if prepared is None:
            await self._arm(item)
            prepared = self._prepared.pop(item.id, None)
        if prepared is None and self.settings.fallback_file is None:
            self._drop(item, "failed", "audio not available")
            return None
        if self.amplifier.warmup_left_s() > (at or 0.0) - self._clock.time():
            await self.amplifier.wait_warm()  # an item announced too late for the warm-up: start after it
        if self.volume.current != self._wanted_volume(item):
            await self.volume.apply(item.priority >= Priority.EMERGENCY)
        run = Running(item=item, started_at=0.0, offset_ms=offset_ms)
        # Within the pre-roll: the output process started and the sound card opened before the instant.
        primed = prepared is not None and await prime_output(self._player, prepared, offset_ms)
        begun = False
        try:
            begun = await self._begin(run, prepared, at)
        finally:
            if primed and not begun and prepared is not None:
                release_output(self._player, prepared)  # no output process left holding the sound card
        if not begun:
            return None
        return run, prepared, resume is not None

    async def _begin(self, run: Running, prepared: Prepared | None, at: float | None) -> bool:
        """Start the output at ``at`` through the loop's start gate, or now; False if the item is no longer
        wanted. The gate opens ``start_guard_s`` early and holds the loop until ``at`` (`agents.start_timing`)."""

        def take_instant() -> bool:
            # Runs at the start instant, possibly beside thousands of other agents (simulator): only take
            # the instant here; creating the task and bookkeeping follow a loop turn later.
            if self._dirty and not self._still_wanted(run.item):
                return False
            run.started_at = self._clock.time() + self.settings.output_latency_s  # heard from then
            return True

        if at is None or at <= self._clock.time():
            begun = take_instant()
        else:
            begun = await start_gate(at, take_instant, now=self._clock.time, guard_s=self.settings.start_guard_s)
        if not begun:
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
        loop.call_later(0, resolve, turn)  # a due timer runs after the callbacks already queued
        await turn

    async def _perform(self, run: Running, prepared: Prepared | None) -> None:
        """Play the item; if it cannot be played, the fallback file in its place until its slot ends."""
        failure = "audio not available"
        if prepared is not None:
            # A player that never returns (aplay blocked on a sound card that went away) must not hold the
            # loudspeakers for ever: the event loop is alive, so the watchdog would not notice.
            allowed_s = (run.item.audio.duration_ms - run.offset_ms) / 1000 + self.settings.play_overrun_s
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for runs the play in a new task, one loop
                # turn later, and the first samples are written at the start instant.
                async with asyncio.timeout(allowed_s):
                    await self._player.play(prepared, run.offset_ms, started_at=run.started_at)
                return
            except TimeoutError:
                failure = f"the player was still running {self.settings.play_overrun_s:g} s after the item's end"
                log.error("%s: %s (%s); stopped it", self.settings.agent_id, failure, run.item.id)
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

    def _arm_stop_timer(self, run: Running) -> None:
        if run.stop_timer is not None:
            run.stop_timer.cancel()
            run.stop_timer = None
        stop_at = run.item.stop_at
        if stop_at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, stop_at.timestamp() - self.settings.output_latency_s - self._clock.time())
        run.stop_timer = loop.call_at(loop.time() + delay, self._cancel_nowait, run, "trimmed",
                                      f"hard stop at {stop_at.isoformat()}")

    def _cancel_nowait(self, run: Running, kind: AsRunKind, detail: str) -> None:
        if run.settled or run.task.done():
            return
        run.cancel_kind, run.cancel_detail = kind, detail
        run.task.cancel()

    async def _cancel_running(self, run: Running, kind: AsRunKind, detail: str) -> None:
        self._cancel_nowait(run, kind, detail)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run.task
        self._settle(run)  # now, not in a later callback, so events keep their order

    def _settle(self, run: Running) -> None:
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
