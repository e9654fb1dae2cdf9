"""Preemption with resume or skip, emergencies interrupting emergencies, refusal, trimming, dry runs."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schedules import (
    TICK,
    AudioAsset,
    CompiledPlans,
    Conflict,
    DeviceAgentId,
    EqualPriority,
    Occurrence,
    OnPreempt,
    PlannedItem,
    Priority,
    compile_plans,
    dry_run,
)

NOW = datetime(2027, 3, 1, 1, 0, tzinfo=UTC)
HORIZON = timedelta(hours=2)
A, B = DeviceAgentId("agent-a"), DeviceAgentId("agent-b")
N, P, E = Priority.NORMAL, Priority.PRIORITY, Priority.EMERGENCY


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def occ(broadcast_id: int, priority: Priority, start_s: float, duration_s: float, agents: Iterable[str] = (A,), *,
        stop_s: float | None = None, on_preempt: OnPreempt = "skip") -> Occurrence:
    return Occurrence(broadcast_id=broadcast_id, title=f"b{broadcast_id}", priority=priority, play_at=at(start_s),
                      audio=AudioAsset(sha256="cd" * 32, duration_ms=round(duration_s * 1000), size_bytes=1),
                      agent_ids=frozenset(DeviceAgentId(a) for a in agents),
                      stop_at=None if stop_s is None else at(stop_s), on_preempt=on_preempt)


def compile_(occurrences: Iterable[Occurrence], equal_priority: EqualPriority = "queue") -> CompiledPlans:
    return compile_plans(list(occurrences), now=NOW, horizon=HORIZON, equal_priority=equal_priority)


def spans(items: Iterable[PlannedItem]) -> list[tuple[int, float, float, bool]]:
    """(broadcast id, start s, end s, resumption) from NOW."""
    return [(i.occurrence.broadcast_id, (i.play_at - NOW).total_seconds(), (i.end - NOW).total_seconds(),
             i.resumption) for i in items]


# --- Examples ---------------------------------------------------------------------------------------

def test_emergency_preempts_and_the_programme_resumes_from_the_cut() -> None:
    programme, storm = occ(1, N, 0, 600, on_preempt="resume"), occ(2, E, 60, 30)
    compiled = compile_([programme, storm])
    items = compiled.timelines[A]
    assert spans(items) == [(1, 0, 60, False), (2, 60, 90, False), (1, 90, 630, True)]
    assert items[0].stop_at == at(60)
    assert items[2].offset_ms == 60_000 and items[2].id == f"{programme.id}-r60000"
    assert compiled.conflicts == (Conflict(A, storm.id, programme.id, "preempts"),
                                  Conflict(A, programme.id, storm.id, "resumed"))
    assert [c.rule for c in compiled.conflicts] == [
        "a higher priority (or a newer emergency) interrupts what is playing",
        "an interrupted item set to resume continues where it was cut"]


def test_skipped_programme_is_over_once_preempted() -> None:
    compiled = compile_([occ(1, N, 0, 600), occ(2, E, 60, 30)])
    assert spans(compiled.timelines[A]) == [(1, 0, 60, False), (2, 60, 90, False)]


def test_a_resumed_remainder_can_be_preempted_again_and_resumes_again() -> None:
    compiled = compile_([occ(1, N, 0, 100, on_preempt="resume"), occ(2, P, 10, 10), occ(3, E, 40, 10)])
    assert spans(compiled.timelines[A]) == [(1, 0, 10, False), (2, 10, 20, False), (1, 20, 40, True),
                                            (3, 40, 50, False), (1, 50, 120, True)]
    assert [i.offset_ms for i in compiled.timelines[A]] == [0, 0, 10_000, 0, 30_000]


def test_two_emergencies_in_a_row_both_start_on_time() -> None:
    first, second = occ(1, E, 0, 120, (A, B), on_preempt="resume"), occ(2, E, 60, 30, (A, B))
    compiled = compile_([first, second])
    for agent in (A, B):
        assert spans(compiled.timelines[agent]) == [(1, 0, 60, False), (2, 60, 90, False), (1, 90, 150, True)]
    back_to_back = compile_([occ(1, E, 0, 60), occ(2, E, 60, 30)])
    assert spans(back_to_back.timelines[A]) == [(1, 0, 60, False), (2, 60, 90, False)]
    assert back_to_back.conflicts == ()


def test_emergencies_requested_for_the_same_instant_play_newest_first() -> None:
    older, newer = occ(1, E, 0, 30), occ(2, E, 0, 20)
    compiled = compile_([older, newer])
    assert spans(compiled.timelines[A]) == [(2, 0, 20, False), (1, 20, 50, False)]
    assert compiled.conflicts == (Conflict(A, older.id, newer.id, "queued_after"),)


def test_an_item_interrupted_at_the_instant_it_would_start_waits_instead() -> None:
    # The queued item 2 would start at 60, when the emergency arrives: it never started, so nothing is cut.
    compiled = compile_([occ(1, N, 0, 60), occ(2, N, 10, 30), occ(3, E, 60, 10)])
    assert spans(compiled.timelines[A]) == [(1, 0, 60, False), (3, 60, 70, False), (2, 70, 100, False)]


def test_an_emergency_cannot_interrupt_its_own_broadcast() -> None:
    # A long emergency repeated too often queues behind itself instead of cutting itself off.
    compiled = compile_([occ(1, E, 0, 90), occ(1, E, 60, 90)])
    assert spans(compiled.timelines[A]) == [(1, 0, 90, False), (1, 90, 180, False)]


def test_equal_priority_refused_by_setting_lower_still_queued() -> None:
    first, rival, lower = occ(1, P, 0, 60), occ(2, P, 30, 10), occ(3, N, 40, 10)
    compiled = compile_([first, rival, lower], equal_priority="refuse")
    assert spans(compiled.timelines[A]) == [(1, 0, 60, False), (3, 60, 70, False)]
    assert compiled.conflicts == (Conflict(A, rival.id, first.id, "refused"),
                                  Conflict(A, lower.id, first.id, "queued_after"))
    queued = compile_([first, rival, lower])
    assert spans(queued.timelines[A]) == [(1, 0, 60, False), (2, 60, 70, False), (3, 70, 80, False)]


def test_items_of_one_broadcast_are_never_refused() -> None:
    compiled = compile_([occ(1, N, 0, 60), occ(1, N, 30, 10)], equal_priority="refuse")
    assert spans(compiled.timelines[A]) == [(1, 0, 60, False), (1, 60, 70, False)]


def test_overrun_is_trimmed_at_the_slot_end_and_never_overlaps() -> None:
    long_item, next_thing = occ(1, N, 0, 100, stop_s=60), occ(2, N, 60, 10)
    compiled = compile_([long_item, next_thing])
    assert spans(compiled.timelines[A]) == [(1, 0, 60, False), (2, 60, 70, False)]
    assert compiled.timelines[A][0].stop_at == at(60)
    assert compiled.conflicts == (Conflict(A, long_item.id, long_item.slot_id, "trimmed"),)


def test_an_item_queued_past_its_slot_end_is_dropped_and_reported() -> None:
    blocker, squeezed = occ(1, E, 0, 100), occ(2, N, 10, 30, stop_s=90)
    compiled = compile_([blocker, squeezed])
    assert spans(compiled.timelines[A]) == [(1, 0, 100, False)]
    assert compiled.conflicts == (Conflict(A, squeezed.id, blocker.id, "queued_after"),
                                  Conflict(A, squeezed.id, squeezed.slot_id, "trimmed"))


def test_a_queued_item_is_trimmed_at_its_slot_end() -> None:
    compiled = compile_([occ(1, N, 0, 50), occ(2, N, 10, 30, stop_s=70)])
    assert spans(compiled.timelines[A]) == [(1, 0, 50, False), (2, 50, 70, False)]


def test_a_resumed_remainder_is_trimmed_at_its_slot_end() -> None:
    compiled = compile_([occ(1, N, 0, 100, stop_s=100, on_preempt="resume"), occ(2, E, 50, 30)])
    assert spans(compiled.timelines[A]) == [(1, 0, 50, False), (2, 50, 80, False), (1, 80, 100, True)]


def test_dry_run_lists_the_candidates_conflicts_with_their_rules() -> None:
    programme = occ(1, N, 0, 600, (A, B), on_preempt="resume")
    relay = occ(2, N, 620, 60, (A,))         # pushed later by the programme's resumed remainder
    elsewhere = occ(3, N, 0, 60, (B,)), occ(4, N, 30, 10, (B,))
    storm = occ(9, E, 100, 60, (A,))
    found = dry_run([programme, relay, *elsewhere], [storm], now=NOW, horizon=HORIZON)
    assert found == (Conflict(A, storm.id, programme.id, "preempts"),
                     Conflict(A, programme.id, storm.id, "resumed"),
                     Conflict(A, relay.id, programme.id, "queued_after"))
    assert all(c.description for c in found)
    assert dry_run([programme], [occ(5, N, 700, 10, (A,))], now=NOW, horizon=HORIZON) == ()


# --- Properties -------------------------------------------------------------------------------------

_AGENTS = (A, B)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Occurrence], EqualPriority]:
    rows = draw(st.lists(st.tuples(
        st.sampled_from(list(Priority)), st.integers(-30, 500), st.integers(1, 120), st.integers(1, 3),
        st.none() | st.integers(1, 150), st.sampled_from(["skip", "resume"]), st.integers(0, 3)), max_size=14))
    occurrences: list[Occurrence] = []
    seen: set[tuple[int, int]] = set()
    for index, (priority, start, duration, mask, stop_after, on_preempt, shared) in enumerate(rows):
        broadcast_id = 100 + shared if shared and priority != Priority.EMERGENCY else index + 1
        if (broadcast_id, start) in seen:
            continue  # one broadcast airs once per instant
        seen.add((broadcast_id, start))
        occurrences.append(occ(broadcast_id, priority, start * 10, duration * 10,
                               [a for bit, a in enumerate(_AGENTS) if mask >> bit & 1],
                               stop_s=None if stop_after is None else (start + stop_after) * 10,
                               on_preempt=on_preempt))  # type: ignore[arg-type]
    return occurrences, draw(st.sampled_from(["queue", "refuse"]))


_SETTINGS = settings(max_examples=150, deadline=None, database=None)


@_SETTINGS
@given(scenarios())
def test_property_nothing_ever_overlaps_on_a_device(scenario: tuple[list[Occurrence], EqualPriority]) -> None:
    occurrences, setting = scenario
    compiled = compile_(occurrences, setting)
    for items in compiled.timelines.values():
        ordered = sorted(items, key=lambda i: i.play_at)
        assert ordered == list(items)
        for item in items:
            assert item.end > item.play_at
            assert item.occurrence.stop_at is None or item.end <= item.occurrence.stop_at
            assert item.play_at >= item.occurrence.play_at
        for before, after in itertools.pairwise(items):
            assert after.play_at >= before.end
        assert len({i.id for i in items}) == len(items), "ids are unique in a plan"


@_SETTINGS
@given(scenarios())
def test_property_a_resumption_continues_exactly_where_the_cut_was(
        scenario: tuple[list[Occurrence], EqualPriority]) -> None:
    occurrences, setting = scenario
    wide = compile_plans(occurrences, now=NOW - timedelta(days=1), horizon=timedelta(days=2),
                         equal_priority=setting)
    for items in wide.timelines.values():
        for occurrence in {i.occurrence for i in items}:
            parts = [i for i in items if i.occurrence == occurrence]
            runs = [list(g) for _, g in itertools.groupby(parts, key=lambda i: i.play_at)]
            assert all(len(r) == 1 for r in runs)
            # Pieces of one airing: each resumption starts at the offset where the previous piece stopped.
            for before, after in itertools.pairwise(parts):
                if after.resumption:
                    played = (before.end - before.play_at) // timedelta(milliseconds=1)
                    assert after.offset_ms == before.offset_ms + played
                    assert occurrence.on_preempt == "resume"


@st.composite
def emergency_scenarios(draw: st.DrawFn) -> list[Occurrence]:
    others, _ = draw(scenarios())
    times = draw(st.lists(st.integers(0, 500), unique=True, max_size=5))
    emergencies = [occ(1000 + index, E, start * 10 + 5, draw(st.integers(1, 80)) * 10,
                       [a for bit, a in enumerate(_AGENTS) if draw(st.integers(1, 3)) >> bit & 1],
                       on_preempt=draw(st.sampled_from(["skip", "resume"])))
                   for index, start in enumerate(times)]
    # Emergencies among the others must not share a start with the ones checked here.
    return [o for o in others if o.priority != E] + emergencies


@_SETTINGS
@given(emergency_scenarios(), st.sampled_from(["queue", "refuse"]))
def test_property_an_emergency_starts_within_one_tick_on_every_targeted_device(
        occurrences: list[Occurrence], setting: EqualPriority) -> None:
    compiled = compile_(occurrences, setting)
    for emergency in (o for o in occurrences if o.priority == E and o.play_at < NOW + HORIZON):
        for agent_id in emergency.agent_ids:
            first = next(i for i in compiled.timelines[agent_id] if i.occurrence == emergency)
            assert abs(first.play_at - emergency.play_at) <= TICK
            assert not first.resumption


@_SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_property_deterministic_in_any_order_and_idempotent(scenario: tuple[list[Occurrence], EqualPriority],
                                                            rnd: random.Random) -> None:
    occurrences, setting = scenario
    first = compile_(occurrences, setting)
    shuffled = list(occurrences)
    rnd.shuffle(shuffled)
    assert compile_(shuffled, setting) == first
    assert compile_(occurrences, setting) == first


@_SETTINGS
@given(scenarios())
def test_property_every_decision_names_a_rule_and_refused_items_are_not_played(
        scenario: tuple[list[Occurrence], EqualPriority]) -> None:
    occurrences, setting = scenario
    compiled = compile_(occurrences, setting)
    for conflict in compiled.conflicts:
        assert conflict.rule and conflict.item_id in conflict.description
        played = {i.occurrence.id for i in compiled.timelines.get(conflict.agent_id, ())}
        if conflict.resolution == "refused":
            assert setting == "refuse"
            assert conflict.item_id not in played
