"""PlanCompiler: incremental recompilation equals a full compile, reports exactly the changed agents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedules import (
    AudioAsset,
    CompiledPlans,
    DeviceAgentId,
    EqualPriority,
    Occurrence,
    PlanCompiler,
    PlannedItem,
    Priority,
    ScheduleError,
    compile_plans,
)
from schedules.plans import DeviceRun, _planned, device_window, play_device, replay_device

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
    _check_incremental_equals_full(PlanCompiler(now=NOW, horizon=HORIZON, equal_priority=setting),
                                   changes, removals, setting, later_s)


class _AlwaysReplaying(PlanCompiler):
    _replay_share = 1e9  # replay every device from its previous run, however much changed


@_SETTINGS
@given(st.lists(broadcasts(), max_size=12), st.lists(st.integers(1, 6), max_size=3),
       st.sampled_from(["queue", "refuse"]), st.integers(0, 3600))
def test_property_replaying_from_the_previous_run_equals_full_after_every_change(
        changes: list[tuple[int, list[Occurrence]]], removals: list[int], setting: EqualPriority,
        later_s: int) -> None:
    _check_incremental_equals_full(_AlwaysReplaying(now=NOW, horizon=HORIZON, equal_priority=setting),
                                   changes, removals, setting, later_s)


def _check_incremental_equals_full(compiler: PlanCompiler, changes: list[tuple[int, list[Occurrence]]],
                                   removals: list[int], setting: EqualPriority, later_s: int) -> None:
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


def _run_fields(run: DeviceRun) -> tuple[object, ...]:
    return (run.arrivals, run.until, run.bounds, run.placed_at, run.decided_at, run.trims_at, run.silent_from,
            run.placed, run.decisions, run.trims)


@_SETTINGS
@given(st.lists(broadcasts(), min_size=1, max_size=10), st.data(), st.sampled_from(["queue", "refuse"]),
       st.integers(-1800, 1800), st.integers(0, 7200))
def test_property_a_replayed_run_equals_a_run_played_from_the_start(
        found: list[tuple[int, list[Occurrence]]], data: st.DataObject, setting: EqualPriority, shift_s: int,
        now_s: int) -> None:
    """replay_device copies the untouched segments of a device's run and plays the others: the result is
    the run `play_device` gives for the new occurrences, segment for segment, and so is its window."""
    before = list({o.id: o for _, occurrences in found for o in occurrences}.values())
    removed = data.draw(st.lists(st.sampled_from(before), unique_by=lambda o: o.id) if before else st.just([]))
    kept = [o for o in before if all(o is not r for r in removed)]
    _, fresh = data.draw(broadcasts())
    kept_ids = {o.id for o in kept}
    added = list({o.id: o for o in fresh if o.id not in kept_ids}.values())
    until = NOW + HORIZON
    base = play_device(before, until=until, equal_priority=setting)
    later = until + timedelta(seconds=shift_s)
    # A later end brings the kept occurrences between the two ends in (the caller passes them as added).
    newly_in = [o for o in kept if until <= o.play_at < later]
    replayed = replay_device(base, removed, added + newly_in, until=later)
    expected = play_device(kept + added, until=later, equal_priority=setting)
    assert _run_fields(replayed) == _run_fields(expected)
    now = NOW + timedelta(seconds=now_s - 3600)
    assert device_window(replayed, now=now) == device_window(expected, now=now)


def test_a_province_wide_change_replays_only_what_it_reaches() -> None:
    """Moving one broadcast late in the window keeps the earlier items (the same objects) of every device."""
    everyone = frozenset(AGENTS)
    compiler = PlanCompiler(now=NOW, horizon=HORIZON)
    programme = [occ(1, Priority.NORMAL, start, 300, everyone, stop_s=start + 240, resume=True)
                 for start in range(0, 6000, 600)]
    compiler.set_broadcast(1, programme)
    compiler.set_broadcast(2, [occ(2, Priority.EMERGENCY, 100, 30, frozenset(AGENTS[:2]))])
    before = {a: compiler.timeline(a) for a in AGENTS}
    assert compiler.set_broadcast(3, [occ(3, Priority.EMERGENCY, 4900, 60, everyone)]) == everyone
    for agent_id in AGENTS:
        after = compiler.timeline(agent_id)
        assert after[:8] == before[agent_id][:8]
        assert all(a is b for a, b in zip(after[:8], before[agent_id][:8], strict=True))
    assert compiler.compiled() == _full(compiler)
    # Moving it again, and rolling the window forward, still equal a full compile.
    compiler.set_broadcast(3, [occ(3, Priority.EMERGENCY, 5150, 60, everyone)])
    assert compiler.compiled() == _full(compiler)
    compiler.advance(NOW + timedelta(minutes=45))
    assert compiler.compiled() == _full(compiler)


def _full(compiler: PlanCompiler) -> CompiledPlans:
    return compile_plans(compiler.occurrences(), now=compiler.now, horizon=HORIZON)


def test_planned_items_built_by_the_compiler_are_ordinary_planned_items() -> None:
    o = occ(1, Priority.NORMAL, 0, 60, frozenset(AGENTS), stop_s=30)
    cut = NOW + timedelta(seconds=30)
    built = _planned(o, NOW, 500, True, cut, NOW + timedelta(milliseconds=59_500))
    plain = PlannedItem(occurrence=o, play_at=NOW, stop_at=cut, offset_ms=500, resumption=True)
    assert built == plain
    assert repr(built) == repr(plain)
    assert hash(built) == hash(plain)
    assert (built.natural_end, built.end, built.id) == (plain.natural_end, plain.end, plain.id)
    assert vars(built) == vars(plain)
