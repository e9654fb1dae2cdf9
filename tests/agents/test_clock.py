"""Clock offset: server samples (minimum filter), chrony and timesyncd outputs, faults in state and heartbeat."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.clock import (
    NtpProbe,
    NtpStatus,
    ServerOffset,
    clock_faults,
    parse_chrony_tracking,
    parse_timedatectl,
)
from agents.core import AgentSettings
from agents.host import CommandOutput
from agents.protocol import Heartbeat, ServerClock, StateMessage, Topics, encode
from tests.agents.fakes import make_agent

DATA = Path(__file__).parent / "data"


def sample(name: str) -> str:
    return (DATA / name).read_text()


def test_chrony_tracking_synced_gives_offset_local_minus_ntp() -> None:
    status = parse_chrony_tracking(sample("chronyc-tracking-synced.csv"))
    # chrony's correction is -12.345 µs ("fast"): the local clock is ahead by 0.012 ms.
    assert status == NtpStatus(source="chrony", synced=True, offset_ms=0.012, server="192.168.1.1")


def test_chrony_slow_clock_is_a_negative_offset_and_a_fault() -> None:
    status = parse_chrony_tracking(sample("chronyc-tracking-slow.csv"))
    assert status is not None and status.offset_ms == -81.2 and status.synced
    faults = clock_faults(status, None, 0, ntp_fault_ms=50, server_fault_ms=250)
    assert faults == ["clock offset -81 ms per chrony (limit 50 ms)"]


def test_chrony_not_synchronised() -> None:
    status = parse_chrony_tracking(sample("chronyc-tracking-unsynced.csv"))
    assert status is not None and status.synced is False
    assert clock_faults(status, None, 0, ntp_fault_ms=50, server_fault_ms=250) == [
        "clock not synchronised (chrony)"]


def test_garbage_from_chrony_is_not_a_status() -> None:
    assert parse_chrony_tracking("") is None
    assert parse_chrony_tracking("506 Cannot talk to daemon") is None
    assert parse_chrony_tracking("x,y,z,a,b,c,d,e,f,g,h,i,j,Normal") is None


def test_timesyncd_status() -> None:
    status = parse_timedatectl(sample("timedatectl-show-ntp.txt"), sample("timedatectl-show-timesync.txt"))
    assert status == NtpStatus(source="timesyncd", synced=True, offset_ms=None, server="0.debian.pool.ntp.org")
    assert parse_timedatectl("NTPSynchronized=no\n") == NtpStatus(source="timesyncd", synced=False)
    assert parse_timedatectl("Failed to connect to bus") is None


async def test_probe_asks_chrony_first_then_timesyncd_then_gives_up() -> None:
    outputs: dict[str, CommandOutput] = {}
    asked: list[str] = []

    async def runner(argv: Sequence[str]) -> CommandOutput:
        asked.append(" ".join(argv))
        return outputs.get(" ".join(argv), CommandOutput(127, "", "not found"))

    probe = NtpProbe(runner)
    assert (await probe.read()).source == ""
    outputs["timedatectl show -p NTPSynchronized"] = CommandOutput(0, sample("timedatectl-show-ntp.txt"))
    assert (await probe.read()).source == "timesyncd"
    outputs["chronyc -c tracking"] = CommandOutput(0, sample("chronyc-tracking-synced.csv"))
    asked.clear()
    assert (await probe.read()).source == "chrony" and asked == ["chronyc -c tracking"]


def test_server_offset_is_the_minimum_over_recent_samples() -> None:
    offset = ServerOffset(window=3)
    assert offset.offset_ms is None
    for received, sent in ((100.130, 100.0), (110.040, 110.0), (120.300, 120.0)):
        offset.add(received, sent)
    assert offset.offset_ms == 40  # delays only add: the smallest is the best estimate
    offset.add(130.2, 130.0)
    offset.add(140.2, 140.0)
    assert offset.offset_ms == 200  # the 40 ms sample has left the window


def test_one_sample_is_not_enough_to_accuse_the_clock() -> None:
    unknown = NtpStatus(source="", synced=None)
    assert clock_faults(unknown, 900, 1, ntp_fault_ms=50, server_fault_ms=250) == []
    assert clock_faults(unknown, 900, 3, ntp_fault_ms=50, server_fault_ms=250) == [
        "clock offset +900 ms against the server (limit 250 ms)"]


async def test_agent_measures_offset_from_server_clock_and_raises_a_fault(tmp_path: Path) -> None:
    h = await make_agent(tmp_path, settings=AgentSettings(agent_id="test-agent", heartbeat_s=3600,
                                                          outbox_resend_s=3600, server_clock_fault_ms=100))
    try:
        for _ in range(3):
            # The server's clock is 500 ms behind ours: we look 500 ms ahead.
            server_time = datetime.now(UTC) - timedelta(milliseconds=500)
            h.agent.on_message(Topics.SERVER_CLOCK, encode(ServerClock(server_time=server_time)))
            await asyncio.sleep(0.01)
        assert h.agent.update_faults()
        heartbeat = h.agent.heartbeat()
        assert isinstance(heartbeat, Heartbeat) and heartbeat.clock_offset_ms is not None
        assert 495 <= heartbeat.clock_offset_ms <= 530
        assert heartbeat.faults and "against the server" in heartbeat.faults[0]
        birth = [p.message() for p in h.link.on("state")][-1]
        assert isinstance(birth, StateMessage) and birth.faults == heartbeat.faults
        assert h.link.subscriptions[Topics.SERVER_CLOCK] == 0
        h.agent.on_message(Topics.SERVER_CLOCK, b'{"schema": 1, "type": "clock", "server_time": "yesterday"}')
        assert h.agent.stats.rejected_messages == 1
    finally:
        await h.close()
