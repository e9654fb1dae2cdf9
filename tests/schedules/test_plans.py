"""compile_plans: per-agent timelines, preemption, queueing, horizon; examples and properties."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from schedules import (
    AudioAsset,
    CompiledPlans,
    Conflict,
    DeviceAgentId,
    Occurrence,
    PlannedItem,
    Priority,
    compile_plans,
)

NOW = datetime(2025, 3, 1, 1, 0, tzinfo=UTC)
HORIZON = timedelta(hours=2)
SHA = "ab" * 32
A, B, C = DeviceAgentId("agent-a"), DeviceAgentId("agent-b"), DeviceAgentId("agent-c")


def occ(broadcast_id: int, priority: Priority, start_s: int, duration_s: int,
        agents: Iterable[str] = (A,), *, title: str = "bản tin") -> Occurrence:
    return Occurrence(broadcast_id=broadcast_id, title=title, priority=priority,
                      play_at=NOW + timedelta(seconds=start_s),
                      audio=AudioAsset(sha256=SHA, duration_ms=duration_s * 1000, size_bytes=1000),
                      agent_ids=frozenset(DeviceAgentId(a) for a in agents))


def compile_(occurrences: Iterable[Occurrence], *, now: datetime = NOW) -> CompiledPlans:
    return compile_plans(list(occurrences), now=now, horizon=HORIZON)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def starts(items: Sequence[PlannedItem]) -> list[tuple[int, datetime]]:
    return [(i.occurrence.broadcast_id, i.play_at) for i in items]


# --- Examples ---------------------------------------------------------------------------------------

def test_two_non_overlapping_items_keep_their_times() -> None:
    first, second = occ(1, Priority.NORMAL, 0, 60), occ(2, Priority.NORMAL, 120, 60)
    compiled = compile_([second, first])
    assert starts(compiled.timelines[A]) == [(1, at(0)), (2, at(120))]
    assert compiled.conflicts == ()


def test_back_to_back_items_do_not_conflict() -> None:
    compiled = compile_([occ(1, Priority.NORMAL, 0, 60), occ(2, Priority.NORMAL, 60, 60)])
    assert starts(compiled.timelines[A]) == [(1, at(0)), (2, at(60))]
    assert compiled.conflicts == ()


def test_overlapping_higher_priority_item_preempts() -> None:
    programme, alert = occ(1, Priority.NORMAL, 0, 600), occ(2, Priority.EMERGENCY, 60, 30)
    compiled = compile_([programme, alert])
    assert starts(compiled.timelines[A]) == [(1, at(0)), (2, at(60))]
    assert compiled.conflicts == (Conflict(A, alert.id, programme.id, "preempts"),)


@pytest.mark.parametrize("priority", [Priority.NORMAL, Priority.PRIORITY])
def test_overlapping_equal_or_lower_priority_item_is_queued_after(priority: Priority) -> None:
    first, second = occ(1, Priority.PRIORITY, 0, 60), occ(2, priority, 30, 45)
    compiled = compile_([first, second])
    items = compiled.timelines[A]
    assert starts(items) == [(1, at(0)), (2, at(60))]
    assert items[1].play_at == items[0].end
    assert items[1].end == at(105)
    assert items[1].id == second.id  # the id keeps the occurrence's own time
    assert compiled.conflicts == (Conflict(A, second.id, first.id, "queued_after"),)


def test_queue_chains_one_after_another() -> None:
    compiled = compile_([occ(1, Priority.NORMAL, 0, 60), occ(2, Priority.NORMAL, 10, 60),
                         occ(3, Priority.NORMAL, 20, 30)])
    assert starts(compiled.timelines[A]) == [(1, at(0)), (2, at(60)), (3, at(120))]
    assert [c.resolution for c in compiled.conflicts] == ["queued_after", "queued_after"]


def test_simultaneous_start_higher_priority_goes_first() -> None:
    low, high = occ(1, Priority.NORMAL, 0, 60), occ(2, Priority.EMERGENCY, 0, 30)
    compiled = compile_([low, high])
    assert starts(compiled.timelines[A]) == [(2, at(0)), (1, at(30))]
    assert compiled.conflicts == (Conflict(A, low.id, high.id, "queued_after"),)


def test_simultaneous_start_equal_priority_orders_by_broadcast_id() -> None:
    compiled = compile_([occ(9, Priority.NORMAL, 0, 60), occ(4, Priority.NORMAL, 0, 60)])
    assert starts(compiled.timelines[A]) == [(4, at(0)), (9, at(60))]


def test_agents_are_planned_independently() -> None:
    both = occ(1, Priority.NORMAL, 0, 60, (A, B))
    only_b = occ(2, Priority.NORMAL, 30, 60, (B,))
    only_c = occ(3, Priority.NORMAL, 30, 60, (C,))
    compiled = compile_([only_c, only_b, both])
    assert list(compiled.timelines) == [A, B, C]
    assert starts(compiled.timelines[A]) == [(1, at(0))]
    assert starts(compiled.timelines[B]) == [(1, at(0)), (2, at(60))]
    assert starts(compiled.timelines[C]) == [(3, at(30))]
    assert compiled.conflicts == (Conflict(B, only_b.id, both.id, "queued_after"),)


def test_items_outside_the_window_are_dropped() -> None:
    ended_before = occ(1, Priority.NORMAL, -120, 60)
    ended_exactly_now = occ(2, Priority.NORMAL, -60, 60)
    at_horizon = occ(3, Priority.NORMAL, int(HORIZON.total_seconds()), 60)
    after_horizon = occ(4, Priority.NORMAL, int(HORIZON.total_seconds()) + 3600, 60)
    compiled = compile_([ended_before, ended_exactly_now, at_horizon, after_horizon])
    assert compiled.timelines == {}
    assert compiled.conflicts == ()


def test_items_inside_the_window_are_kept() -> None:
    still_running = occ(1, Priority.NORMAL, -30, 60)
    starts_now = occ(2, Priority.PRIORITY, 0, 10, (B,))
    last_second = occ(3, Priority.NORMAL, int(HORIZON.total_seconds()) - 1, 600, (C,))
    compiled = compile_([still_running, starts_now, last_second])
    assert starts(compiled.timelines[A]) == [(1, at(-30))]  # not moved to now
    assert starts(compiled.timelines[B]) == [(2, at(0))]
    assert starts(compiled.timelines[C]) == [(3, at(HORIZON.total_seconds() - 1))]


def test_empty_input_gives_empty_plans() -> None:
    assert compile_([]) == CompiledPlans(timelines={}, conflicts=())


def test_occurrence_id_is_stable() -> None:
    base = occ(17, Priority.NORMAL, 90, 60)
    assert base.id == f"b17-{int(NOW.timestamp()) * 1000 + 90_000}"
    # Title, priority, audio and targets may change; the id of the airing does not.
    edited = occ(17, Priority.EMERGENCY, 90, 300, (A, B), title="đã sửa")
    assert edited.id == base.id
    # The same instant written in another time zone (Asia/Ho_Chi_Minh) is the same id.
    local = Occurrence(17, "x", Priority.NORMAL, (NOW + timedelta(seconds=90)).astimezone(timezone(timedelta(hours=7))),
                       base.audio, base.agent_ids)
    assert local.id == base.id
    assert occ(18, Priority.NORMAL, 90, 60).id != base.id
    assert occ(17, Priority.NORMAL, 91, 60).id != base.id
    # Millisecond precision is kept.
    ms = Occurrence(17, "x", Priority.NORMAL, NOW + timedelta(milliseconds=1), base.audio, base.agent_ids)
    assert ms.id == f"b17-{int(NOW.timestamp()) * 1000 + 1}"


def test_item_ids_are_stable_across_recompilations() -> None:
    occurrences = [occ(1, Priority.NORMAL, 0, 60), occ(2, Priority.NORMAL, 30, 60), occ(3, Priority.EMERGENCY, 70, 5)]
    first = compile_(occurrences)
    again = compile_(list(reversed(occurrences)))
    assert [i.id for i in first.timelines[A]] == [o.id for o in occurrences]
    assert [i.id for i in again.timelines[A]] == [i.id for i in first.timelines[A]]


def test_item_does_not_preempt_a_queued_item_while_a_higher_one_plays() -> None:
    emergency = occ(1, Priority.EMERGENCY, 0, 100)
    normal = occ(2, Priority.NORMAL, 10, 10)      # queued after the emergency: [100, 110)
    priority = occ(3, Priority.PRIORITY, 50, 5)   # starts while the emergency is still on air
    compiled = compile_([emergency, normal, priority])
    placed = {i.occurrence.broadcast_id: i for i in compiled.timelines[A]}
    # A PRIORITY bulletin cannot play on top of an EMERGENCY one: it must wait for its end.
    assert placed[3].play_at >= placed[1].end
    assert Conflict(A, priority.id, normal.id, "preempts") not in compiled.conflicts


def test_recompiling_later_keeps_a_queued_item_that_has_not_played_yet() -> None:
    programme = occ(1, Priority.NORMAL, 0, 60)
    bulletin = occ(2, Priority.NORMAL, 1, 5)  # queued: [60, 65)
    assert starts(compile_([programme, bulletin]).timelines[A]) == [(1, at(0)), (2, at(60))]
    later = compile_([programme, bulletin], now=at(10))  # the programme is still on air
    assert starts(later.timelines[A]) == [(1, at(0)), (2, at(60))]


# --- Properties -------------------------------------------------------------------------------------

_AGENTS = (A, B, C)


@st.composite
def occurrence_lists(draw: st.DrawFn, priorities: Sequence[Priority] = tuple(Priority)) -> list[Occurrence]:
    # Plain integers only (cheap to generate); a coarse 10 s grid makes ties, back-to-back items and
    # overlaps common. Each row: priority index, start (x10 s from NOW), duration (x10 s), agent bitmask.
    rows = draw(st.lists(
        st.tuples(st.integers(0, len(priorities) - 1), st.integers(-90, 800), st.integers(1, 180),
                  st.integers(1, 2 ** len(_AGENTS) - 1)),
        max_size=14,
    ))
    # One occurrence per broadcast id, as the planner produces.
    return [occ(index + 1, priorities[p], start * 10, duration * 10,
                [a for bit, a in enumerate(_AGENTS) if mask >> bit & 1])
            for index, (p, start, duration, mask) in enumerate(rows)]


def _in_window(o: Occurrence) -> bool:
    return o.end > NOW and o.play_at < NOW + HORIZON


def _overlap_violations(items: Sequence[PlannedItem]) -> list[tuple[str, str]]:
    """Pairs that would sound at once on one device without the later one preempting the earlier.

    An item is cut when a strictly higher-priority item starts while it plays; within what remains of it,
    no other item may start unless it has a strictly higher priority.
    """
    bad: list[tuple[str, str]] = []
    for i in items:
        cut = min([j.play_at for j in items if j is not i and i.play_at <= j.play_at < i.end
                   and j.occurrence.priority > i.occurrence.priority] + [i.end])
        for j in items:
            if j is i or not (i.play_at <= j.play_at < cut):
                continue
            if j.occurrence.priority <= i.occurrence.priority:
                bad.append((i.id, j.id))
    return bad


_SETTINGS = settings(max_examples=60, deadline=None, database=None)


@_SETTINGS
@given(occurrence_lists(), st.randoms(use_true_random=False))
def test_property_compile_is_deterministic_in_any_order(occurrences: list[Occurrence], rnd: random.Random) -> None:
    shuffled = list(occurrences)
    rnd.shuffle(shuffled)
    assert compile_(shuffled) == compile_(occurrences)


@_SETTINGS
@given(occurrence_lists())
def test_property_compile_is_idempotent(occurrences: list[Occurrence]) -> None:
    first = compile_(occurrences)
    assert compile_(occurrences) == first
    assert compile_(tuple(occurrences)) == first
    assert compile_(iter(occurrences)) == first


@_SETTINGS
@given(occurrence_lists(priorities=[Priority.NORMAL]))
def test_property_equal_priority_items_never_overlap(occurrences: list[Occurrence]) -> None:
    compiled = compile_(occurrences)
    for items in compiled.timelines.values():
        ordered = sorted(items, key=lambda i: i.play_at)
        for before, after in itertools.pairwise(ordered):
            assert after.play_at >= before.end
        assert _overlap_violations(items) == []
    assert all(c.resolution == "queued_after" for c in compiled.conflicts)


@_SETTINGS
@given(occurrence_lists())
@example([occ(1, Priority.EMERGENCY, 0, 100), occ(2, Priority.NORMAL, 10, 10), occ(3, Priority.PRIORITY, 50, 5)])
def test_property_no_overlap_unless_the_later_item_preempts(occurrences: list[Occurrence]) -> None:
    for agent_id, items in compile_(occurrences).timelines.items():
        assert _overlap_violations(items) == [], agent_id


@_SETTINGS
@given(occurrence_lists())
def test_property_queued_items_never_start_before_their_own_time(occurrences: list[Occurrence]) -> None:
    compiled = compile_(occurrences)
    queued = {(c.agent_id, c.item_id) for c in compiled.conflicts if c.resolution == "queued_after"}
    for agent_id, items in compiled.timelines.items():
        for item in items:
            assert item.play_at >= item.occurrence.play_at
            if item.play_at != item.occurrence.play_at:
                assert (agent_id, item.id) in queued


@_SETTINGS
@given(occurrence_lists())
def test_property_every_item_belongs_to_an_occurrence_targeting_that_agent(occurrences: list[Occurrence]) -> None:
    compiled = compile_(occurrences)
    for agent_id, items in compiled.timelines.items():
        assert items, "no empty timelines"
        for item in items:
            assert item.occurrence in occurrences
            assert agent_id in item.occurrence.agent_ids
    # And, conversely, each occurrence in the window is placed exactly once on each of its agents.
    for o in occurrences:
        for agent_id in _AGENTS:
            count = sum(1 for i in compiled.timelines.get(agent_id, ()) if i.occurrence == o)
            if agent_id not in o.agent_ids or o.play_at >= NOW + HORIZON:
                assert count == 0
            elif _in_window(o) and count == 0:
                # Only an item queued behind others to a start past the horizon, or one a preemption cut
                # before now, may be left out.
                wider = compile_plans(occurrences, now=NOW - timedelta(days=1), horizon=HORIZON * 100)
                placed = [i for i in wider.timelines[agent_id] if i.occurrence == o]
                assert placed, "an item inside the horizon vanished"
                assert placed[0].play_at >= NOW + HORIZON or (
                    placed[0].stop_at is not None and placed[0].end <= NOW), "an item inside the horizon vanished"
            elif _in_window(o):
                assert count == 1
            else:  # its own slot has passed; it is still there only if it was queued past now
                assert count in (0, 1)


@_SETTINGS
@given(occurrence_lists())
def test_property_conflicts_refer_to_placed_items(occurrences: list[Occurrence]) -> None:
    compiled = compile_(occurrences)
    for conflict in compiled.conflicts:
        placed = {i.id for i in compiled.timelines[conflict.agent_id]}
        known = {o.id for o in occurrences if conflict.agent_id in o.agent_ids}
        assert conflict.item_id in placed  # the other one may have finished already
        assert conflict.other_id in known
        assert conflict.item_id != conflict.other_id


@_SETTINGS
@given(occurrence_lists(), st.integers(1, 7200))
@example([occ(1, Priority.NORMAL, 0, 60), occ(2, Priority.NORMAL, 1, 5)], 10)
def test_property_recompiling_later_keeps_items_not_yet_finished(occurrences: list[Occurrence],
                                                                 seconds: int) -> None:
    first = compile_(occurrences)
    later = compile_(occurrences, now=at(seconds))
    for agent_id, items in first.timelines.items():
        still_due = {i.id for i in items if i.end > at(seconds)}
        assert still_due <= {i.id for i in later.timelines.get(agent_id, ())}
