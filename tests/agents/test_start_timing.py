"""On-time starts from a busy loop: the guarded start timer, the held wait, the paused garbage collector."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.core import AgentSettings
from agents.protocol import AsRunEvent, Plan, Topics, encode
from agents.start_timing import collection_paused, start_gate, wait_until
from tests.agents.fakes import item, make_agent


def test_wait_until_reaches_the_instant_and_not_much_later() -> None:
    at = time.time() + 0.03
    wait_until(time.time, at, limit_s=1.0)
    assert 0 <= time.time() - at < 0.005


def test_wait_until_is_bounded_when_the_clock_does_not_move() -> None:
    frozen = time.time()
    begun = time.monotonic()
    wait_until(lambda: frozen, frozen + 10, limit_s=0.02)
    assert time.monotonic() - begun < 0.5


def test_collection_pauses_nest_and_restore_the_collector() -> None:
    assert gc.isenabled()
    with collection_paused():
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_start_is_on_time_although_the_loop_is_busy_at_the_instant(tmp_path: Path) -> None:
    settings = AgentSettings(agent_id="test-agent", heartbeat_s=3600, outbox_resend_s=3600, start_guard_s=0.04)
    events: list[AsRunEvent] = []
    h = await make_agent(tmp_path, settings=settings, on_event=events.append)
    try:
        planned = item("on-time", 1.0)
        plan = Plan(agent_id="test-agent", version=1, issued_at=datetime.now(UTC), items=(planned,))
        h.agent.on_message(Topics.plan("test-agent"), encode(plan))
        play_at = planned.play_at.timestamp()
        loop = asyncio.get_running_loop()
        # Other work holds the loop from 20 ms before the instant until 30 ms after it.
        loop.call_at(loop.time() + (play_at - time.time()) - 0.02, time.sleep, 0.05)
        await asyncio.sleep(play_at - time.time() + 0.2)
    finally:
        await h.close()
    started = [e for e in events if e.kind == "started"]
    assert len(started) == 1
    lateness_ms = (started[0].at - started[0].scheduled_at).total_seconds() * 1000  # play_at as sent (ms)
    assert 0 <= lateness_ms < 20  # without the guard: >= 30


async def test_starts_due_at_one_instant_share_one_gate_in_their_order() -> None:
    at = time.time() + 0.1
    taken: list[tuple[str, float]] = []

    def take(name: str, answer: bool) -> Callable[[], bool]:
        def taker() -> bool:
            taken.append((name, time.time()))
            return answer
        return taker

    first = start_gate(at, take("first", True), now=time.time, guard_s=0.04)
    cancelled = start_gate(at, take("cancelled", True), now=time.time, guard_s=0.04)
    second = start_gate(at, take("second", False), now=time.time, guard_s=0.04)
    cancelled.cancel()
    assert await first is True and await second is False
    assert [name for name, _ in taken] == ["first", "second"]
    assert all(0 <= moment - at < 0.005 for _, moment in taken)


async def test_a_failing_start_does_not_hold_back_the_others() -> None:
    def broken() -> bool:
        raise RuntimeError("journal gone")

    at = time.time() + 0.05
    failing, fine = start_gate(at, broken, now=time.time), start_gate(at, lambda: True, now=time.time)
    assert await fine is True
    with pytest.raises(RuntimeError):
        await failing
