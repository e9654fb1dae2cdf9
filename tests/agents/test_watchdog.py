"""sd_notify over a real unix datagram socket, and the watchdog interval systemd asks for."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.watchdog import keep_alive, notify, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(2)
    yield server, path
    server.close()


def test_notify_sends_the_message_as_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    server, path = notify_socket
    assert notify("READY=1", path)
    assert server.recv(100) == b"READY=1"


def test_notify_uses_the_environment_and_is_a_no_op_outside_systemd(
        notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    server, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify("WATCHDOG=1")
    assert server.recv(100) == b"WATCHDOG=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("WATCHDOG=1")
    assert not notify("WATCHDOG=1", str(Path(path).with_name("gone.sock")))  # logged, never raised


def test_abstract_namespace_socket() -> None:
    name = f"loa-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        assert notify("READY=1", "@" + name)
        assert server.recv(100) == b"READY=1"


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_process() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None


async def test_pings_stop_when_the_agent_is_unhealthy(notify_socket: tuple[socket.socket, str]) -> None:
    server, path = notify_socket
    server.setblocking(False)
    healthy = True
    task = asyncio.create_task(keep_alive(0.05, lambda: healthy, path))
    await asyncio.sleep(0.22)
    pings = []
    while True:
        try:
            pings.append(server.recv(100))
        except BlockingIOError:
            break
    assert len(pings) >= 3 and set(pings) == {b"WATCHDOG=1"}
    healthy = False
    await asyncio.sleep(0.2)
    with pytest.raises(BlockingIOError):
        server.recv(100)
    task.cancel()
