"""Amplifier relay (gpiozero MockFactory), warm-up before audio, hold after it, and the two volume levels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agents.amplifier import AmixerMixer, Amplifier, FileMixer, GpioRelay, MemoryRelay, Volume
from agents.errors import HardwareError
from agents.host import CommandOutput
from agents.protocol import Command, CommandResult, Plan, PlanItem, Topics, encode
from schedules import Priority
from tests.agents.fakes import Harness, item, make_agent

AGENT = "test-agent"


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    factory = MockFactory()
    previous = Device.pin_factory
    Device.pin_factory = factory
    yield factory
    Device.pin_factory = previous
    factory.reset()


def plan(*items: PlanItem) -> bytes:
    return encode(Plan(agent_id=AGENT, version=1, issued_at=datetime.now(UTC), items=items))


def test_gpio_relay_drives_the_pin_and_starts_off(mock_pins: MockFactory) -> None:
    relay = GpioRelay(17)
    relay.start()
    pin = mock_pins.pin(17)
    assert pin.state is False
    relay.set(True)
    assert pin.state is True
    relay.stop()
    assert pin.state is False


def test_an_active_low_relay_inverts_the_pin(mock_pins: MockFactory) -> None:
    relay = GpioRelay(27, active_high=False)
    relay.start()
    assert mock_pins.pin(27).state is True  # off
    relay.set(True)
    assert mock_pins.pin(27).state is False
    relay.stop()


def test_a_missing_gpio_is_a_hardware_error_not_a_crash(mock_pins: MockFactory) -> None:
    relay = GpioRelay(17)
    with pytest.raises(HardwareError):
        relay.set(True)  # not started
    amplifier = Amplifier(GpioRelay(17), warmup_s=0)
    relay_in_use = GpioRelay(17)
    relay_in_use.start()
    amplifier.start()  # GPIO 17 is taken: reported as a fault
    assert "amplifier relay" in amplifier.fault
    relay_in_use.stop()


async def test_relay_goes_on_warmup_before_a_known_item_and_off_after_the_hold(tmp_path: Path,
                                                                               mock_pins: MockFactory) -> None:
    switches: list[tuple[float, bool]] = []

    class TimedRelay(GpioRelay):
        def set(self, on: bool) -> None:
            super().set(on)
            switches.append((time.time(), bool(mock_pins.pin(17).state)))

    h = await make_agent(tmp_path, amplifier=Amplifier(TimedRelay(17), warmup_s=0.5, hold_s=0.3))
    try:
        entry = item("i1", 1.2, duration_ms=200)
        h.agent.on_message(Topics.plan(AGENT), plan(entry))
        await asyncio.sleep(2.0)
        (played,) = h.player.plays
        assert [s for _, s in switches] == [False, True, False]  # off when the agent starts
        (on_at, _), (off_at, _) = switches[1:]
        # On warm-up before play_at, and the start itself is not delayed.
        assert 0.45 <= entry.play_at.timestamp() - on_at <= 0.6, entry.play_at.timestamp() - on_at
        assert abs(played.started_at - entry.play_at.timestamp()) < 0.03
        assert played.ended_at is not None and 0.25 <= off_at - played.ended_at <= 0.45
        assert not h.agent.amplifier.is_on and mock_pins.pin(17).state is False
    finally:
        await h.close()


async def test_back_to_back_items_keep_the_relay_on(tmp_path: Path) -> None:
    relay = MemoryRelay()
    h = await make_agent(tmp_path, amplifier=Amplifier(relay, warmup_s=0.2, hold_s=0.5))
    try:
        h.agent.on_message(Topics.plan(AGENT), plan(item("a", 0.5, duration_ms=200), item("b", 0.9, duration_ms=200)))
        await asyncio.sleep(2.0)
        assert [p.item_id for p in h.player.plays] == ["a", "b"]
        assert [on for _, on in relay.switches] == [True, False]
    finally:
        await h.close()


async def test_an_unannounced_item_starts_after_the_warm_up(tmp_path: Path) -> None:
    h = await make_agent(tmp_path, amplifier=Amplifier(MemoryRelay(), warmup_s=0.4, hold_s=0.1))
    try:
        now = datetime.now(UTC)
        storm = item("storm", 0.0, duration_ms=100, priority=Priority.EMERGENCY)
        h.agent.on_message(Topics.command(AGENT), encode(Command(
            id="c1", name="play_now", issued_at=now, expires_at=now + timedelta(minutes=1),
            args={"item": storm.to_dict()})))
        await asyncio.sleep(0.9)
        (played,) = h.player.plays
        assert 0.38 <= played.started_at - storm.play_at.timestamp() <= 0.5
    finally:
        await h.close()


async def test_emergencies_play_at_the_emergency_level_and_normal_items_at_the_normal_one(tmp_path: Path) -> None:
    levels: list[int] = []

    class RecordingMixer(FileMixer):
        async def set_percent(self, percent: int) -> None:
            levels.append(percent)
            await super().set_percent(percent)

    mixer = RecordingMixer(tmp_path / "mixer")
    h = await make_agent(tmp_path, volume=Volume(mixer, normal_percent=60, emergency_percent=95))
    try:
        h.agent.on_message(Topics.plan(AGENT), plan(item("n1", 0.1, duration_ms=100),
                                                    item("e1", 0.4, duration_ms=100, priority=Priority.EMERGENCY),
                                                    item("n2", 0.7, duration_ms=100)))
        await asyncio.sleep(1.2)
        assert [p.item_id for p in h.player.plays] == ["n1", "e1", "n2"]
        assert levels == [60, 95, 60]
        assert mixer.path.read_text().strip() == "60"
        assert h.agent.heartbeat().volume_percent == 60
    finally:
        await h.close()


async def test_amixer_backend_runs_amixer_and_a_failure_becomes_a_fault() -> None:
    calls: list[list[str]] = []

    async def runner(argv: list[str]) -> CommandOutput:  # type: ignore[override]
        calls.append(list(argv))
        return CommandOutput(1 if argv[-1] == "99%" else 0, "", "amixer: Unable to find simple control")

    volume = Volume(AmixerMixer(card="1", control="Speaker", runner=runner))  # type: ignore[arg-type]
    await volume.set(70)
    assert calls == [["amixer", "-q", "-c", "1", "sset", "Speaker", "70%"]] and volume.current == 70
    await volume.set(99)
    assert volume.current == 70 and "Unable to find simple control" in volume.fault


@pytest.fixture
async def h(tmp_path: Path) -> Harness:
    harness = await make_agent(tmp_path, amplifier=Amplifier(MemoryRelay(), warmup_s=0.0, hold_s=0.05))
    yield harness  # type: ignore[misc]
    await harness.close()


def amplifier_command(command_id: str, state: str) -> bytes:
    now = datetime.now(UTC)
    return encode(Command(id=command_id, name="amplifier", issued_at=now, expires_at=now + timedelta(minutes=1),
                          args={"state": state}))


async def test_amplifier_command_holds_the_relay_until_auto(h: Harness) -> None:
    h.agent.on_message(Topics.command(AGENT), amplifier_command("a1", "on"))
    await asyncio.sleep(0.2)
    assert h.agent.amplifier.is_on and h.agent.heartbeat().amplifier_on
    h.agent.on_message(Topics.command(AGENT), amplifier_command("a2", "auto"))
    await asyncio.sleep(0.2)
    assert not h.agent.amplifier.is_on
    h.agent.on_message(Topics.command(AGENT), amplifier_command("a3", "sideways"))
    results = [p.message() for p in h.link.on("cmd/result")]
    assert [(r.status, r.data.get("forced")) for r in results if isinstance(r, CommandResult)][:2] == [
        ("ok", True), ("ok", False)]
    assert isinstance(results[2], CommandResult) and results[2].status == "error"


async def test_amplifier_off_is_refused_while_an_emergency_plays(h: Harness) -> None:
    h.agent.on_message(Topics.plan(AGENT), plan(item("storm", 0.05, duration_ms=1000, priority=Priority.EMERGENCY)))
    await asyncio.sleep(0.3)
    h.agent.on_message(Topics.command(AGENT), amplifier_command("a1", "off"))
    (result,) = [p.message() for p in h.link.on("cmd/result")]
    assert isinstance(result, CommandResult) and result.status == "error" and "emergency" in result.error
    assert h.agent.amplifier.is_on
