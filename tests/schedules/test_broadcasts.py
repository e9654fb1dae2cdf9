"""Broadcasts: programmes back to back in a slot, repeat policies, ids, and priority bulletins."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schedules import AudioAsset, Conflict, DeviceAgentId, Priority, ScheduleError, compile_plans
from schedules.broadcasts import (
    BroadcastSpec,
    ProgrammeItem,
    RepeatPolicy,
    next_programme_slot,
    occurrences_between,
    priority_bulletin_for,
    slot_times,
)
from schedules.calendars import NO_HOLIDAYS, FixedHolidays
from schedules.timing import Once, Recurring

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
A, B = DeviceAgentId("cluster-a"), DeviceAgentId("cluster-b")
MONDAY = (datetime(2027, 3, 1, tzinfo=HCM), datetime(2027, 3, 2, tzinfo=HCM))  # Monday 1 March 2027, local


def item(title: str, minutes: float) -> ProgrammeItem:
    return ProgrammeItem(title, AudioAsset(sha256="ef" * 32, duration_ms=round(minutes * 60_000), size_bytes=1))


def morning_programme(broadcast_id: int = 1, *, max_minutes: float | None = 30,
                      items: tuple[ProgrammeItem, ...] | None = None) -> BroadcastSpec:
    return BroadcastSpec(
        broadcast_id=broadcast_id, title="Chương trình buổi sáng", priority=Priority.NORMAL,
        items=items or (item("Thời sự", 10), item("Nông nghiệp", 12), item("Nhạc", 6)),
        timing=Recurring("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", datetime(2027, 1, 4, 5, 30)),
        agent_ids=frozenset({A, B}), max_duration=None if max_minutes is None else timedelta(minutes=max_minutes))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_programme_items_are_back_to_back_in_their_slot_with_stable_ids() -> None:
    spec = morning_programme()
    found = occurrences_between(spec, *MONDAY, NO_HOLIDAYS)
    slot = datetime(2027, 3, 1, 5, 30, tzinfo=HCM)
    assert [o.play_at for o in found] == [slot, slot + timedelta(minutes=10), slot + timedelta(minutes=22)]
    assert {o.stop_at for o in found} == {slot + timedelta(minutes=30)}
    slot_ms = int(slot.timestamp() * 1000)
    assert [o.id for o in found] == [f"b1-{slot_ms}-0", f"b1-{slot_ms}-1", f"b1-{slot_ms}-2"]
    # A longer first item moves the later items but not their ids.
    longer = morning_programme(items=(item("Thời sự", 11), item("Nông nghiệp", 12), item("Nhạc", 6)))
    assert [o.id for o in occurrences_between(longer, *MONDAY, NO_HOLIDAYS)] == [
        o.id for o in found]


def test_a_single_item_keeps_todays_id_format() -> None:
    at = utc(2027, 3, 1, 2)
    spec = BroadcastSpec(7, "Thông báo", Priority.NORMAL, (item("Thông báo", 2),), Once(at), frozenset({A}))
    (only,) = occurrences_between(spec, utc(2027, 3, 1), utc(2027, 3, 2), NO_HOLIDAYS)
    assert only.id == f"b7-{int(at.timestamp() * 1000)}"
    assert only.stop_at is None and only.item_index is None


def test_programme_overrun_is_trimmed_at_the_slot_end() -> None:
    spec = morning_programme(max_minutes=15)  # 10 + 12 + 6 minutes of content in a 15-minute slot
    occurrences = occurrences_between(spec, *MONDAY, NO_HOLIDAYS)
    slot = datetime(2027, 3, 1, 5, 30, tzinfo=HCM)
    compiled = compile_plans(occurrences, now=slot - timedelta(hours=1), horizon=timedelta(hours=4))
    timeline = compiled.timelines[A]
    assert [(i.occurrence.item_index, i.play_at, i.end) for i in timeline] == [
        (0, slot, slot + timedelta(minutes=10)), (1, slot + timedelta(minutes=10), slot + timedelta(minutes=15))]
    assert [c.resolution for c in compiled.conflicts if c.agent_id == A] == ["trimmed", "trimmed"]
    assert {c.other_id for c in compiled.conflicts} == {occurrences[0].slot_id}


def test_priority_bulletin_is_inserted_into_the_next_morning_programme() -> None:
    evening = replace(morning_programme(2), timing=Recurring("FREQ=DAILY", datetime(2027, 1, 1, 17, 0)))
    programmes = [morning_programme(1), evening]
    now = datetime(2027, 3, 5, 18, 0, tzinfo=HCM)  # Friday evening: next weekday morning is Monday
    slot = next_programme_slot(programmes, now=now, holidays=NO_HOLIDAYS)
    assert slot is not None and slot.broadcast_id == 2  # the daily 17:00 one comes first (Saturday)
    weekday_only = next_programme_slot(programmes[:1], now=now, holidays=NO_HOLIDAYS)
    assert weekday_only is not None
    monday = datetime(2027, 3, 8, 5, 30, tzinfo=HCM)
    assert weekday_only.play_at == monday and weekday_only.stop_at == monday + timedelta(minutes=30)

    bulletin = priority_bulletin_for(weekday_only, broadcast_id=50, title="Bản tin ưu tiên của tỉnh",
                                     items=(item("Bản tin ưu tiên", 5),), agent_ids=frozenset({A}))
    assert bulletin.priority == Priority.PRIORITY and bulletin.agent_ids == {A}
    window = (monday - timedelta(hours=1), monday + timedelta(hours=1))
    occurrences = [*occurrences_between(programmes[0], *window, NO_HOLIDAYS),
                   *occurrences_between(bulletin, *window, NO_HOLIDAYS)]
    compiled = compile_plans(occurrences, now=window[0], horizon=timedelta(hours=2))
    on_a = compiled.timelines[A]
    # The bulletin plays at the programme's start, ahead of its items; the tail is trimmed at the slot end.
    assert [(i.occurrence.broadcast_id, i.play_at - monday, i.end - monday) for i in on_a] == [
        (50, timedelta(0), timedelta(minutes=5)), (1, timedelta(minutes=5), timedelta(minutes=15)),
        (1, timedelta(minutes=15), timedelta(minutes=27)), (1, timedelta(minutes=27), timedelta(minutes=30))]
    assert Conflict(A, occurrences[0].id, on_a[0].id, "queued_after") in compiled.conflicts
    # The device not targeted by the bulletin plays the programme as planned.
    assert compiled.timelines[B][0].play_at == monday


def test_no_programme_ahead_gives_none() -> None:
    ended = BroadcastSpec(3, "x", Priority.NORMAL, (item("x", 1),), Once(utc(2027, 1, 1)), frozenset({A}))
    assert next_programme_slot([ended], now=utc(2027, 3, 1), holidays=NO_HOLIDAYS) is None


def test_storm_bulletin_repeats_every_two_hours_while_in_force() -> None:
    issued = utc(2027, 9, 1, 1, 0)
    storm = BroadcastSpec(9, "Bão số 3", Priority.EMERGENCY, (item("Tin bão", 3),), Once(issued), frozenset({A}),
                          repeat=RepeatPolicy(every=timedelta(hours=2), until=issued + timedelta(hours=9)))
    starts = [o.play_at for o in occurrences_between(storm, issued - timedelta(days=1), issued + timedelta(days=1),
                                                      NO_HOLIDAYS)]
    assert starts == [issued + timedelta(hours=h) for h in (0, 2, 4, 6, 8)]
    # A window that begins after the first airing still sees the later repeats.
    assert slot_times(storm, issued + timedelta(hours=3), issued + timedelta(days=1), NO_HOLIDAYS) == [
        issued + timedelta(hours=h) for h in (4, 6, 8)]


def test_repeat_n_times_per_recurring_slot_across_midnight_follows_its_slot() -> None:
    spec = BroadcastSpec(4, "Nhắc lịch tiêm", Priority.NORMAL, (item("x", 1),),
                         Recurring("FREQ=DAILY", datetime(2027, 1, 1, 22, 0), holiday_rule="skip"), frozenset({A}),
                         repeat=RepeatPolicy(every=timedelta(hours=1), times=3))
    holidays = FixedHolidays(frozenset({date(2027, 3, 2)}))
    starts = slot_times(spec, datetime(2027, 3, 1, 12, tzinfo=HCM), datetime(2027, 3, 4, tzinfo=HCM), holidays)
    assert [f"{s.astimezone(HCM):%d %H:%M}" for s in starts] == [
        "01 22:00", "01 23:00", "02 00:00",  # the repeat after midnight belongs to the slot of the 1st
        "03 22:00", "03 23:00"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: RepeatPolicy(every=timedelta(seconds=30), times=3), "at least"),
    (lambda: RepeatPolicy(every=timedelta(hours=2)), "number of airings"),
    (lambda: RepeatPolicy(every=timedelta(hours=2), times=0), "at least once"),
    (lambda: RepeatPolicy(every=timedelta(hours=2), until=datetime(2027, 1, 1)), "time zone"),
    (lambda: BroadcastSpec(1, "x", Priority.NORMAL, (), Once(utc(2027, 1, 1)), frozenset()), "at least one item"),
    (lambda: morning_programme(max_minutes=0), "positive"),
    (lambda: BroadcastSpec(1, "x", Priority.NORMAL, (item("x", 1),), Recurring("FREQ=DAILY", datetime(2027, 1, 1)),
                           frozenset(), repeat=RepeatPolicy(every=timedelta(hours=2), until=utc(2027, 2, 1))),
     "bounded number"),
])
def test_invalid_broadcasts_are_refused(make: object, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        make()  # type: ignore[operator]
