"""The NTP probe against a real chronyd: one serving time on a private port, one following it.

Both daemons run with ``-x`` (they never touch this machine's clock) and private command sockets, so the
test disturbs nothing. The probe under test is the agent's own `NtpProbe`; the only difference from a Pi
is where ``chronyc`` finds its daemon (``-h <socket>``), added by the runner below.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from agents.clock import NtpProbe, NtpStatus
from agents.host import CommandOutput, run_command

pytestmark = pytest.mark.skipif(
    shutil.which("chronyd") is None or shutil.which("chronyc") is None or os.geteuid() != 0,
    reason="needs chrony (Debian package chrony; .ci/run installs it) and root to run private daemons")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_chronyd(folder: Path, lines: list[str]) -> subprocess.Popen[bytes]:
    folder.mkdir(mode=0o700, parents=True)  # chronyd refuses a command socket in a directory others can use
    config = folder / "chrony.conf"
    config.write_text("\n".join([*lines, f"bindcmdaddress {folder}/chronyd.sock", "cmdport 0",
                                 f"pidfile {folder}/chronyd.pid", f"driftfile {folder}/drift", ""]))
    return subprocess.Popen(["chronyd", "-d", "-x", "-u", "root", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(socket of a client that follows a local server, socket of a client whose server never answers)."""
    serving, silent = free_udp_port(), free_udp_port()
    processes = [
        start_chronyd(tmp_path / "server", ["local stratum 8", "allow 127.0.0.1", f"port {serving}"]),
        start_chronyd(tmp_path / "client", [f"server 127.0.0.1 port {serving} iburst minpoll -4 maxpoll -4",
                                            "port 0"]),
        start_chronyd(tmp_path / "lost", [f"server 127.0.0.1 port {silent} iburst minpoll -4 maxpoll -4",
                                          "port 0"]),
    ]
    try:
        yield tmp_path / "client" / "chronyd.sock", tmp_path / "lost" / "chronyd.sock"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=5)


def probe_for(sock: Path) -> NtpProbe:
    async def runner(argv: Sequence[str], timeout_s: float = 10.0) -> CommandOutput:
        if argv[0] == "timedatectl":  # not on this machine; the probe must not need it
            return CommandOutput(returncode=127, stdout="", stderr="no timedatectl here")
        return await run_command(["chronyc", "-h", str(sock), *argv[1:]], timeout_s)

    return NtpProbe(runner)


async def read_until(probe: NtpProbe, synced: bool, timeout_s: float = 20.0) -> NtpStatus:
    deadline = time.monotonic() + timeout_s
    status = await probe.read()
    while status.synced is not synced and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        status = await probe.read()
    return status


def human_offset_ms(sock: Path) -> float:
    """chronyc's own reading of the same figure: 'System time : X seconds fast|slow of NTP time'."""
    text = subprocess.run(["chronyc", "-h", str(sock), "tracking"], capture_output=True, text=True,
                          check=True).stdout
    match = re.search(r"System time\s*:\s*([\d.]+) seconds (fast|slow)", text)
    assert match, text
    value = float(match.group(1)) * 1000
    return value if match.group(2) == "fast" else -value


async def test_a_synchronised_chrony_gives_source_server_and_offset(daemons: tuple[Path, Path]) -> None:
    following, _ = daemons
    status = await read_until(probe_for(following), synced=True)
    assert (status.source, status.synced, status.server) == ("chrony", True, "127.0.0.1")
    assert status.offset_ms is not None and abs(status.offset_ms) < 50
    # Matches chronyc's human-readable line (both clocks are this machine's, so the offset is µs and its
    # sign is checked by the recorded samples in test_clock.py, not here).
    assert abs(status.offset_ms - human_offset_ms(following)) < 1.0


async def test_chrony_without_a_reachable_server_is_not_synchronised(daemons: tuple[Path, Path]) -> None:
    _, lost = daemons
    await asyncio.sleep(1.0)  # a few polls at 1/16 s, all unanswered
    status = await probe_for(lost).read()
    assert (status.source, status.synced) == ("chrony", False)
