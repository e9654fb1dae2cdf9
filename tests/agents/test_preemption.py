"""Priorities on the device: resume or skip after preemption, hard stops, cancelled broadcasts,
targeted stops, drills, and the fallback file when an item cannot be played."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.core import AgentSettings
from agents.protocol import AsRunEvent, Command, Plan, PlanItem, Topics, encode
from schedules import Priority
from tests.agents.fakes import Harness, item, make_agent

AGENT = "test-agent"


def plan(version: int, *items: PlanItem) -> bytes:
    return encode(Plan(agent_id=AGENT, version=version, issued_at=datetime.now(UTC) + timedelta(microseconds=version),
                       items=items))


def events(h: Harness) -> list[AsRunEvent]:
    return [m for m in (p.message() for p in h.link.on("event")) if isinstance(m, AsRunEvent)]


def kinds(h: Harness) -> list[tuple[str, str]]:
    return [(e.item_id, e.kind) for e in events(h)]


def play_now(command_id: str, entry: PlanItem) -> bytes:
    now = datetime.now(UTC)
    return encode(Command(id=command_id, name="play_now", issued_at=now, expires_at=now + timedelta(minutes=1),
                          args={"item": entry.to_dict()}))


def command(command_id: str, name: str, **args: object) -> bytes:
    now = datetime.now(UTC)
    return encode(Command(id=command_id, name=name, issued_at=now,  # type: ignore[arg-type]
                          expires_at=now + timedelta(minutes=1), args=args))


@pytest.fixture
async def h(tmp_path: Path) -> Harness:
    harness = await make_agent(tmp_path)
    yield harness  # type: ignore[misc]
    await harness.close()


async def test_a_resumable_item_continues_where_the_emergency_cut_it(h: Harness) -> None:
    normal = item("normal", 0.05, duration_ms=1500, on_preempt="resume")
    h.agent.on_message(Topics.plan(AGENT), plan(1, normal))
    await asyncio.sleep(0.6)
    h.agent.on_message(Topics.command(AGENT), play_now("e1", item("storm", 0.0, duration_ms=300,
                                                                   priority=Priority.EMERGENCY)))
    await asyncio.sleep(2.0)
    plays = [(p.item_id, p.cancelled) for p in h.player.plays]
    assert plays == [("normal", True), ("storm", False), ("normal", False)]
    first, _storm, resumed = h.player.plays
    assert first.ended_at is not None and _storm.started_at >= first.ended_at
    assert _storm.ended_at is not None and resumed.started_at >= _storm.ended_at
    assert 450 <= resumed.offset_ms <= 800, resumed.offset_ms
    assert kinds(h) == [("normal", "started"), ("normal", "preempted"), ("storm", "started"),
                        ("storm", "finished"), ("normal", "resumed"), ("normal", "finished")]
    cut = events(h)[1]
    assert cut.offset_ms == resumed.offset_ms and "will resume" in cut.detail


async def test_an_item_that_says_skip_is_not_resumed(h: Harness) -> None:
    h.agent.on_message(Topics.plan(AGENT), plan(1, item("normal", 0.05, duration_ms=1500)))
    await asyncio.sleep(0.4)
    h.agent.on_message(Topics.command(AGENT), play_now("e1", item("storm", 0.0, duration_ms=200,
                                                                   priority=Priority.EMERGENCY)))
    await asyncio.sleep(1.0)
    assert [p.item_id for p in h.player.plays] == ["normal", "storm"]
    assert ("normal", "resumed") not in kinds(h)


async def test_the_resume_position_survives_a_restart(tmp_path: Path) -> None:
    first = await make_agent(tmp_path)
    normal = item("normal", 0.05, duration_ms=3000, on_preempt="resume")
    long_storm = item("storm", 0.0, duration_ms=5000, priority=Priority.EMERGENCY)
    first.agent.on_message(Topics.plan(AGENT), plan(1, normal))
    await asyncio.sleep(0.8)
    first.agent.on_message(Topics.command(AGENT), play_now("e1", long_storm))
    await asyncio.sleep(0.3)
    await first.close()  # the emergency is interrupted; the suspended normal item is remembered

    second = await make_agent(tmp_path)
    try:
        await asyncio.sleep(0.5)
        resumed = [p for p in second.player.plays if p.item_id == "normal"]
        assert resumed and 600 <= resumed[0].offset_ms <= 1100, resumed
        assert ("normal", "resumed") in kinds(second)
    finally:
        await second.close()


async def test_stop_at_trims_the_item_at_that_instant(h: Harness) -> None:
    entry = item("long", 0.05, duration_ms=5000)
    entry = PlanItem(**{**entry.__dict__, "stop_at": entry.play_at + timedelta(milliseconds=400)})
    h.agent.on_message(Topics.plan(AGENT), plan(1, entry))
    await asyncio.sleep(0.8)
    (played,) = h.player.plays
    assert played.cancelled and played.ended_at is not None
    assert abs(played.ended_at - entry.stop_at.timestamp()) < 0.05  # type: ignore[union-attr]
    assert kinds(h) == [("long", "started"), ("long", "trimmed")]
    assert 350 <= events(h)[1].offset_ms <= 450


async def test_an_item_past_its_stop_at_is_skipped(h: Harness) -> None:
    entry = item("old", -0.5, duration_ms=5000)
    entry = PlanItem(**{**entry.__dict__, "stop_at": entry.play_at + timedelta(milliseconds=100)})
    h.agent.on_message(Topics.plan(AGENT), plan(1, entry))
    await asyncio.sleep(0.3)
    assert h.player.plays == [] and kinds(h) == [("old", "skipped")]


async def test_a_broadcast_cancelled_while_playing_stops_at_once(h: Harness) -> None:
    playing, other = item("cancel-me", 0.05, duration_ms=5000), item("other", 30)
    h.agent.on_message(Topics.plan(AGENT), plan(1, playing, other))
    await asyncio.sleep(0.4)
    cancelled_at = datetime.now(UTC).timestamp()
    h.agent.on_message(Topics.plan(AGENT), plan(2, other))
    await asyncio.sleep(0.1)
    (played,) = h.player.plays
    assert played.cancelled and played.ended_at is not None and played.ended_at - cancelled_at < 0.05
    assert kinds(h) == [("cancel-me", "started"), ("cancel-me", "cancelled")]
    assert "no longer in plan v2" in events(h)[1].detail


async def test_stop_with_a_broadcast_id_stops_only_that_broadcast(h: Harness) -> None:
    h.agent.on_message(Topics.plan(AGENT), plan(1, item("b7", 0.05, duration_ms=3000, broadcast_id=7,
                                                         on_preempt="resume")))
    await asyncio.sleep(0.3)
    h.agent.on_message(Topics.command(AGENT), command("s1", "stop", broadcast_id=8))
    await asyncio.sleep(0.1)
    assert h.agent.now_playing is not None and h.agent.now_playing.id == "b7"
    h.agent.on_message(Topics.command(AGENT), command("s2", "stop", broadcast_id=7))
    await asyncio.sleep(0.5)
    assert h.agent.now_playing is None
    results = [p.message() for p in h.link.on("cmd/result")]
    assert [r.data.get("stopped") for r in results] == [None, "b7"]  # type: ignore[attr-defined]
    # An operator's stop is final even for a resumable item.
    assert kinds(h) == [("b7", "started"), ("b7", "preempted")]


async def test_a_drill_is_labelled_in_every_as_run_event(h: Harness) -> None:
    h.agent.on_message(Topics.plan(AGENT), plan(1, item("drill", 0.05, duration_ms=100, exercise=True)))
    await asyncio.sleep(0.4)
    assert [(e.kind, e.exercise) for e in events(h)] == [("started", True), ("finished", True)]


async def test_a_failing_item_is_replaced_by_the_fallback_file_for_its_slot(tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.mp3"
    fallback.write_bytes(b"backup programme audio" * 20)
    h = await make_agent(tmp_path, settings=AgentSettings(agent_id=AGENT, heartbeat_s=3600, outbox_resend_s=3600,
                                                          fallback_file=fallback))
    try:
        h.player.fail_items.add("broken")
        entry = item("broken", 0.05, duration_ms=600)
        h.agent.on_message(Topics.plan(AGENT), plan(1, entry))
        await asyncio.sleep(1.0)
        assert len(h.player.plays) == 2
        broken, backup = h.player.plays
        assert broken.sha256 == entry.audio.sha256 and backup.sha256 != entry.audio.sha256
        assert backup.ended_at is not None
        # The backup fills the item's slot and no more.
        assert abs(backup.ended_at - (entry.play_at.timestamp() + 0.6)) < 0.1
        assert kinds(h) == [("broken", "started"), ("broken", "failed"), ("broken", "fallback"),
                            ("broken", "finished")]
    finally:
        await h.close()


async def test_a_player_that_never_returns_is_stopped_after_the_items_end_and_the_next_item_plays(
        tmp_path: Path) -> None:
    h = await make_agent(tmp_path, settings=AgentSettings(agent_id=AGENT, heartbeat_s=3600, outbox_resend_s=3600,
                                                          play_overrun_s=0.3))
    try:
        h.player.hang_items.add("stuck")  # e.g. aplay blocked on a USB sound card that was pulled out
        stuck, after = item("stuck", 0.05, duration_ms=200), item("after", 1.0, duration_ms=100)
        h.agent.on_message(Topics.plan(AGENT), plan(1, stuck, after))
        await asyncio.sleep(1.5)
        first, second = h.player.plays
        assert first.item_id == "stuck" and first.cancelled and first.ended_at is not None
        # Stopped once the item's 0.2 s plus the 0.3 s allowance had passed, not before and not much after.
        assert 0.45 <= first.ended_at - stuck.play_at.timestamp() <= 0.7
        failed = next(e for e in events(h) if e.item_id == "stuck" and e.kind == "failed")
        assert "still running 0.3 s after the item's end" in failed.detail
        assert second.item_id == "after" and not second.cancelled
        assert kinds(h)[-2:] == [("after", "started"), ("after", "finished")]
    finally:
        await h.close()


async def test_missing_audio_plays_the_fallback_and_without_one_fails_silently(tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.mp3"
    fallback.write_bytes(b"backup programme audio" * 20)
    h = await make_agent(tmp_path / "a", preload=False, settings=AgentSettings(
        agent_id=AGENT, heartbeat_s=3600, outbox_resend_s=3600, fallback_file=fallback))
    silent = await make_agent(tmp_path / "b", preload=False)
    try:
        for harness in (h, silent):
            harness.agent.on_message(Topics.plan(AGENT), plan(1, item("absent", 0.05, duration_ms=300)))
        await asyncio.sleep(1.2)
        assert [p.sha256 for p in h.player.plays] and h.player.plays[0].sha256 != item("x", 0).audio.sha256
        assert [k for _, k in kinds(h)] == ["failed", "fallback", "finished"]
        assert silent.player.plays == [] and [k for _, k in kinds(silent)] == ["failed"]
        assert not silent.agent.amplifier.is_on
    finally:
        await h.close()
        await silent.close()
