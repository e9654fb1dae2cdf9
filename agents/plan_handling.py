"""Plan layer of the agent: accepts newer plans, drops what the server cancelled, fetches audio ahead."""

from __future__ import annotations

import asyncio
import logging

from agents.cache import backoff_s
from agents.errors import FetchError, ProtocolError
from agents.journal import SUSPENDED
from agents.playout import Playout
from agents.protocol import (
    QOS_AT_LEAST_ONCE,
    Plan,
    PlanAck,
    PlanItem,
    Topics,
    encode,
)

log = logging.getLogger(__name__)

HANDLED_MEMORY_S = 7 * 24 * 3600
"""How long the agent remembers which item ids it handled; plans never reach that far back."""
MISSING_RETRY_MAX_S = 600.0


class PlanHandling(Playout):
    """Keeps the newest plan (stored in the journal), its group subscriptions, and its audio in the cache."""

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
