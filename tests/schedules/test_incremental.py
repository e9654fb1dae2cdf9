"""PlanCompiler: incremental recompilation equals a full compile, reports exactly the changed agents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules import (
    AudioAsset,
    DeviceAgentId,
    EqualPriority,
    Occurrence,
    PlanCompiler,
    Priority,
    ScheduleError,
    compile_plans,
)

NOW = datetime(2027, 3, 1, 1, 0, tzinfo=UTC)
HORIZON = timedelta(hours=2)
AGENTS = tuple(DeviceAgentId(f"agent-{n}") for n in range(4))


def occ(broadcast_id: int, priority: Priority, start_s: int, duration_s: int, agents: frozenset[DeviceAgentId],
        *, stop_s: int | None = None, resume: bool = False) -> Occurrence:
    return Occurrence(broadcast_id=broadcast_id, title=f"b{broadcast_id}", priority=priority,
                      play_at=NOW + timedelta(seconds=start_s),
                      audio=AudioAsset(sha256="aa" * 32, duration_ms=duration_s * 1000, size_bytes=1),
                      agent_ids=agents, stop_at=None if stop_s is None else NOW + timedelta(seconds=stop_s),
                      on_preempt="resume" if resume else "skip")


@st.composite
def broadcasts(draw: st.DrawFn) -> tuple[int, list[Occurrence]]:
    broadcast_id = draw(st.integers(1, 6))
    priority = draw(st.sampled_from(list(Priority)))
    resume = draw(st.booleans())
    masks = draw(st.lists(st.integers(1, 2 ** len(AGENTS) - 1), min_size=1, max_size=2))
    starts = draw(st.lists(st.integers(-50, 800), unique=True, max_size=4))
    found = []
    for index, start in enumerate(starts):
        agents = frozenset(a for bit, a in enumerate(AGENTS) if masks[index % len(masks)] >> bit & 1)
        stop = draw(st.none() | st.integers(1, 100))
        found.append(occ(broadcast_id, priority, start * 10, draw(st.integers(1, 90)) * 10, agents,
                         stop_s=None if stop is None else (start + stop) * 10, resume=resume))
    return broadcast_id, found


_SETTINGS = settings(max_examples=120, deadline=None, database=None)


@_SETTINGS
@given(st.lists(broadcasts(), max_size=12), st.lists(st.integers(1, 6), max_size=3),
       st.sampled_from(["queue", "refuse"]), st.integers(0, 3600))
def test_property_incremental_equals_full_after_every_change(
        changes: list[tuple[int, list[Occurrence]]], removals: list[int], setting: EqualPriority,
        later_s: int) -> None:
    compiler = PlanCompiler(now=NOW, horizon=HORIZON, equal_priority=setting)
    current: dict[int, list[Occurrence]] = {}
    before = compile_plans([], now=NOW, horizon=HORIZON, equal_priority=setting)
    steps: list[tuple[str, int, list[Occurrence]]] = [("set", b, o) for b, o in changes]
    steps += [("remove", b, []) for b in removals]
    for action, broadcast_id, occurrences in steps:
        if action == "set":
            changed = compiler.set_broadcast(broadcast_id, occurrences)
            current[broadcast_id] = occurrences
        else:
            changed = compiler.remove_broadcast(broadcast_id)
            current.pop(broadcast_id, None)
        everything = [o for b in sorted(current) for o in current[b]]
        full = compile_plans(everything, now=NOW, horizon=HORIZON, equal_priority=setting)
        assert compiler.compiled() == full
        expected = {a for a in AGENTS if before.timelines.get(a, ()) != full.timelines.get(a, ())}
        assert changed == expected
        for agent_id in AGENTS:
            assert compiler.timeline(agent_id) == full.timelines.get(agent_id, ())
            assert compiler.conflicts(agent_id) == tuple(c for c in full.conflicts if c.agent_id == agent_id)
        before = full
    # Idempotent: setting the same broadcast again changes nothing.
    for broadcast_id in sorted(current):
        assert compiler.set_broadcast(broadcast_id, current[broadcast_id]) == frozenset()
    assert compiler.compiled() == before
    # Rolling the horizon equals a full compile at the new time.
    later = NOW + timedelta(seconds=later_s)
    changed = compiler.advance(later)
    full_later = compile_plans([o for b in sorted(current) for o in current[b]], now=later, horizon=HORIZON,
                               equal_priority=setting)
    assert compiler.compiled() == full_later
    assert changed == {a for a in AGENTS if before.timelines.get(a, ()) != full_later.timelines.get(a, ())}


def test_devices_with_the_same_occurrences_share_one_timeline_object() -> None:
    everyone = frozenset(AGENTS)
    compiler = PlanCompiler(now=NOW, horizon=HORIZON)
    assert compiler.set_broadcast(1, [occ(1, Priority.NORMAL, 0, 60, everyone)]) == everyone
    timelines = [compiler.timeline(a) for a in AGENTS]
    assert all(t is timelines[0] for t in timelines)
    # A change for one device recompiles that device only.
    assert compiler.set_broadcast(2, [occ(2, Priority.EMERGENCY, 30, 10, frozenset(AGENTS[:1]))]) == {AGENTS[0]}
    assert compiler.timeline(AGENTS[1]) is timelines[1]
    # A change outside the horizon changes no timeline.
    assert compiler.set_broadcast(3, [occ(3, Priority.NORMAL, 7200, 10, everyone)]) == frozenset()


def test_occurrences_must_belong_to_the_broadcast() -> None:
    compiler = PlanCompiler(now=NOW, horizon=HORIZON)
    with pytest.raises(ScheduleError, match="does not belong to broadcast 1"):
        compiler.set_broadcast(1, [occ(2, Priority.NORMAL, 0, 60, frozenset(AGENTS))])
    assert compiler.compiled().timelines == {}
