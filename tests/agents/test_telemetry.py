"""Heartbeat telemetry: CPU temperature, disk use, modem link quality; absent figures are null."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agents.core import AGENT_VERSION, AgentSettings
from agents.host import CommandOutput
from agents.protocol import Heartbeat, decode, encode
from agents.telemetry import LinkQuality, ModemProbe, cpu_temperature_c, disk_usage, parse_mmcli
from tests.agents.fakes import make_agent

DATA = Path(__file__).parent / "data"


def zone(root: Path, index: int, kind: str, millidegrees: str) -> None:
    path = root / f"thermal_zone{index}"
    path.mkdir(parents=True)
    (path / "type").write_text(kind + "\n")
    (path / "temp").write_text(millidegrees + "\n")


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    zone(tmp_path, 0, "gpu-thermal", "39000")
    zone(tmp_path, 1, "cpu-thermal", "51540")
    assert cpu_temperature_c(tmp_path) == 51.5


def test_cpu_temperature_is_null_without_thermal_zones(tmp_path: Path) -> None:
    assert cpu_temperature_c(tmp_path) is None
    zone(tmp_path, 0, "cpu-thermal", "garbage")
    assert cpu_temperature_c(tmp_path) is None


def test_disk_usage(tmp_path: Path) -> None:
    usage = disk_usage(tmp_path)
    assert usage is not None and 0 < usage[0] <= usage[1]
    assert disk_usage(tmp_path / "missing") is None


def test_mmcli_output_gives_signal_quality_and_technology() -> None:
    assert parse_mmcli((DATA / "mmcli-modem.txt").read_text()) == LinkQuality(percent=67, technology="lte")
    assert parse_mmcli("error: couldn't find modem") is None


async def test_modem_probe_without_modemmanager_is_null() -> None:
    async def missing(argv: Sequence[str]) -> CommandOutput:
        return CommandOutput(127, "", "mmcli: not found")

    assert await ModemProbe(missing).read() is None


async def test_heartbeat_carries_telemetry_and_decodes(tmp_path: Path) -> None:
    async def modem(argv: Sequence[str]) -> CommandOutput:
        return CommandOutput(0, (DATA / "mmcli-modem.txt").read_text())

    h = await make_agent(tmp_path, settings=AgentSettings(agent_id="test-agent", heartbeat_s=3600,
                                                          outbox_resend_s=3600, state_dir=tmp_path),
                         modem=ModemProbe(modem))
    try:
        h.agent.link_quality = await ModemProbe(modem).read()
        beat = decode(encode(h.agent.heartbeat()), expect=Heartbeat)
        assert isinstance(beat, Heartbeat)
        assert beat.agent_version == AGENT_VERSION and beat.link_quality_percent == 67
        assert beat.link_technology == "lte" and beat.cache_bytes > 0
        assert beat.disk_total_bytes is not None and beat.disk_free_bytes is not None
        assert beat.amplifier_on is False and beat.faults == () and beat.ntp_synced is None
    finally:
        await h.close()
