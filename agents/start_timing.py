"""Starting output at an exact wall-clock instant from an asyncio loop that may be busy at that instant.

A loop timer runs when the loop next gets round to it: behind a long callback (a journal write, a garbage
collection, in the simulator a thousand other agents' work) it runs late, and every agent of a shared
loop runs late together. So a start goes through the loop's start gate (`start_gate`): one timer per
start instant and loop fires `START_GUARD_S` early, and then holds the loop until the instant
(`wait_until`: it sleeps, then busy-waits the last `SPIN_S` on the wall clock that ``play_at`` is given
in). Nothing else can run on the loop in between. At the instant the gate asks each agent due then, in
the order they came, whether it still starts and lets it take its own start instant, then wakes them;
on a Pi that is one agent, in the simulator a thousand agents sharing the loop start together (a
barrier) instead of one timer callback after the other behind whatever the loop was doing.

The cyclic garbage collector is paused (`collection_paused`) while a start is prepared and taken: with
thousands of agents in one process a full collection is a pause of tens of ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import weakref
from collections.abc import Callable, Iterator

ARM_LEAD_S = 3.0
"""Audio is verified and decoded this long before its start, so the start itself does no work."""
PREROLL_S = 0.25
"""Every check before a start (lateness, volume, amplifier) is done this long before ``play_at``; then only
the start timer is left. An emergency arriving in this window waits for it to pass."""
START_GUARD_S = 0.04
"""The start timer fires this long before ``play_at``; from then on the loop is held until ``play_at``."""
SPIN_S = 0.003
"""The last part of the wait is a busy wait: a sleeping thread is woken a little late, a spinning one is not."""
WAIT_SLACK_S = 0.01
"""A held wait never lasts longer than the guard plus this (a wall clock that jumps, a test's fake clock)."""


def wait_until(now: Callable[[], float], at: float, *, limit_s: float, spin_s: float = SPIN_S) -> None:
    """Block the thread (and so the event loop) until ``now() >= at``, at most ``limit_s`` of real time."""
    deadline = time.monotonic() + limit_s
    while True:
        left = at - now()
        if left <= 0:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if left > spin_s:
            time.sleep(min(left - spin_s, remaining))


class _CollectorPause:
    """Counts the starts in progress in this process; the collector is off while there is one."""

    holders = 0
    was_enabled = False


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Keep the cyclic garbage collector off for the duration; nests across many agents in one process."""
    if _CollectorPause.holders == 0:
        _CollectorPause.was_enabled = gc.isenabled()
        gc.disable()
    _CollectorPause.holders += 1
    try:
        yield
    finally:
        _CollectorPause.holders -= 1
        if _CollectorPause.holders == 0 and _CollectorPause.was_enabled:
            gc.enable()


class _Gate:
    """The starts due at one instant on one loop: who decides, and whom to wake with the answer."""

    def __init__(self) -> None:
        self.entries: list[tuple[Callable[[], bool], asyncio.Future[bool]]] = []


_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Gate]] = weakref.WeakKeyDictionary()


def start_gate(at: float, take_instant: Callable[[], bool], *, now: Callable[[], float],
               guard_s: float = START_GUARD_S) -> asyncio.Future[bool]:
    """Call ``take_instant`` at wall time ``at`` (read from ``now``) and resolve to its answer.

    Starts due at the same ``at`` on the same loop share the gate that the first of them opened (its
    clock and guard)."""
    loop = asyncio.get_running_loop()
    gates = _GATES.setdefault(loop, {})
    gate = gates.get(at)
    if gate is None:
        gate = gates[at] = _Gate()
        delay = max(0.0, at - now() - guard_s)
        loop.call_at(loop.time() + delay, _open, gates, at, now, guard_s + WAIT_SLACK_S)
    future: asyncio.Future[bool] = loop.create_future()
    gate.entries.append((take_instant, future))
    return future


def _open(gates: dict[float, _Gate], at: float, now: Callable[[], float], limit_s: float) -> None:
    gate = gates.pop(at)
    entries = [(take, future) for take, future in gate.entries if not future.done()]
    if not entries:
        return
    wait_until(now, at, limit_s=limit_s)
    answers: list[bool | BaseException] = []
    for take, _future in entries:  # every instant first, then the wake-ups
        try:
            answers.append(take())
        except Exception as exc:
            answers.append(exc)
    for (_take, future), answer in zip(entries, answers, strict=True):
        if future.done():
            continue
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
