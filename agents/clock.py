"""Time on the device: the injected wall clock, the offset seen against the server, the NTP daemon's view.

Sign convention, everywhere in this module: ``offset = local clock − reference clock`` (positive: the
agent's clock is ahead, so it would start items early).

Two independent views, because either can be wrong alone:

- `ServerOffset`: the minimum over recent ``server/clock`` samples of (local receive time −
  server_time). A sample is delayed by the network, never advanced, so the minimum is the best estimate
  and it stays biased by the smallest one-way delay seen (a few ms on Wi-Fi, tens on 3G/4G). Like
  Snapcast's time provider, but the minimum rather than the median because MQTT adds only positive
  queueing delay.
- `NtpStatus`: what chrony (``chronyc -c tracking``) or systemd-timesyncd (``timedatectl``) says.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from agents.host import CommandRunner, run_command


class Clock:
    """Wall-clock time in seconds since the epoch. Replaced in tests; on the Pi, kept by chrony."""

    def time(self) -> float:
        return time.time()


class ServerOffset:
    """Clock offset against the server from the most recent ``window`` samples."""

    def __init__(self, window: int = 30) -> None:
        self._samples: deque[float] = deque(maxlen=window)

    def add(self, received_at: float, server_time: float) -> None:
        self._samples.append(received_at - server_time)

    @property
    def samples(self) -> int:
        return len(self._samples)

    @property
    def offset_ms(self) -> int | None:
        return round(min(self._samples) * 1000) if self._samples else None


@dataclass(frozen=True)
class NtpStatus:
    source: str
    """``chrony``, ``timesyncd`` or empty when neither answered."""
    synced: bool | None
    offset_ms: float | None = None
    """local − NTP time; chrony only (timesyncd does not expose its offset)."""
    server: str = ""


UNKNOWN = NtpStatus(source="", synced=None)


def parse_chrony_tracking(text: str) -> NtpStatus | None:
    """Parse ``chronyc -c tracking`` (one CSV line of 14 fields).

    Field 5 is chrony's "System time" correction in seconds, positive when the system clock is *slow*
    (chrony's client prints ``correction > 0 ? "slow" : "fast"``), hence the minus sign below.
    Field 14 is the leap status, ``Not synchronised`` when chrony has no usable source.
    """
    line = text.strip().splitlines()[0] if text.strip() else ""
    fields = line.split(",")
    if len(fields) < 14:
        return None
    try:
        correction_s = float(fields[4])
        reference = int(fields[0], 16)
    except ValueError:
        return None
    synced = fields[13].strip() != "Not synchronised" and reference != 0
    return NtpStatus(source="chrony", synced=synced, offset_ms=round(-correction_s * 1000, 3),
                     server=fields[1].strip())


def parse_key_values(text: str) -> dict[str, str]:
    """``KEY=value`` lines as printed by ``timedatectl show`` and ``timedatectl show-timesync``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            values[key.strip()] = value.strip()
    return values


def parse_timedatectl(show: str, show_timesync: str = "") -> NtpStatus | None:
    """``timedatectl show -p NTPSynchronized`` (plus ``show-timesync`` for the server's name)."""
    flag = parse_key_values(show).get("NTPSynchronized")
    if flag not in ("yes", "no"):
        return None
    timesync = parse_key_values(show_timesync)
    server = timesync.get("ServerName") or timesync.get("ServerAddress") or ""
    return NtpStatus(source="timesyncd", synced=flag == "yes", server=server)


class NtpProbe:
    """Asks chrony first, then timesyncd; `UNKNOWN` when neither is there (a dev machine, a container)."""

    def __init__(self, runner: CommandRunner = run_command) -> None:
        self._runner = runner

    async def read(self) -> NtpStatus:
        chrony = await self._runner(["chronyc", "-c", "tracking"])
        if chrony.ok:
            parsed = parse_chrony_tracking(chrony.stdout)
            if parsed is not None:
                return parsed
        show = await self._runner(["timedatectl", "show", "-p", "NTPSynchronized"])
        if show.ok:
            details = await self._runner(["timedatectl", "show-timesync"])
            parsed = parse_timedatectl(show.stdout, details.stdout if details.ok else "")
            if parsed is not None:
                return parsed
        return UNKNOWN


def clock_faults(ntp: NtpStatus, server_offset_ms: int | None, server_samples: int, *,
                 ntp_fault_ms: float, server_fault_ms: float, min_samples: int = 3) -> list[str]:
    """Faults to raise about time; empty when the clock can be trusted for synchronised starts."""
    faults: list[str] = []
    if ntp.synced is False:
        faults.append(f"clock not synchronised ({ntp.source})")
    if ntp.offset_ms is not None and abs(ntp.offset_ms) > ntp_fault_ms:
        faults.append(f"clock offset {ntp.offset_ms:+.0f} ms per {ntp.source} (limit {ntp_fault_ms:.0f} ms)")
    # A single sample may have sat in a queue; require a few before accusing the clock.
    if server_offset_ms is not None and server_samples >= min_samples and abs(server_offset_ms) > server_fault_ms:
        faults.append(f"clock offset {server_offset_ms:+d} ms against the server (limit {server_fault_ms:.0f} ms)")
    return faults
