"""Health figures of the device for the heartbeat: CPU temperature, disk, cellular link quality.

Every reader returns None when the figure does not exist on this machine (no thermal zone in a
container, no modem on Wi-Fi) instead of raising: telemetry must never stop the agent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agents.host import CommandRunner, run_command

THERMAL_ROOT = Path("/sys/class/thermal")


def cpu_temperature_c(root: Path = THERMAL_ROOT) -> float | None:
    """The CPU's thermal zone in °C (the Pi has one, ``cpu-thermal``); the first zone otherwise."""
    zones = sorted(root.glob("thermal_zone*"))
    cpu_zones = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp")
    preferred = [z for z in zones if _read(z / "type").strip().lower() in cpu_zones]
    for zone in preferred + zones:
        raw = _read(zone / "temp").strip()
        try:
            return round(int(raw) / 1000, 1)
        except ValueError:
            continue
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def disk_usage(path: Path) -> tuple[int, int] | None:
    """(free bytes for the agent, total bytes) of the file system holding ``path``."""
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize


@dataclass(frozen=True)
class LinkQuality:
    percent: int | None
    technology: str = ""


def parse_mmcli(text: str) -> LinkQuality | None:
    """Parse ``mmcli -m any -K`` (ModemManager's key-value output) for signal quality and technology."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    quality = values.get("modem.generic.signal-quality.value")
    if quality is None:
        return None
    try:
        percent: int | None = max(0, min(100, int(quality)))
    except ValueError:
        percent = None
    technologies = [v for k, v in sorted(values.items())
                    if k.startswith("modem.generic.access-technologies.value") and v not in ("", "--")]
    return LinkQuality(percent=percent, technology=",".join(technologies)[:32])


class ModemProbe:
    def __init__(self, runner: CommandRunner = run_command) -> None:
        self._runner = runner

    async def read(self) -> LinkQuality | None:
        result = await self._runner(["mmcli", "-m", "any", "-K"])
        return parse_mmcli(result.stdout) if result.ok else None
