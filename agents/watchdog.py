"""systemd's notification protocol (``sd_notify``): READY=1 once started, WATCHDOG=1 while healthy.

A few lines over the ``$NOTIFY_SOCKET`` unix datagram socket instead of a dependency. The unit sets
``WatchdogSec=``; systemd restarts the agent when the pings stop, e.g. when its event loop is blocked
or its playout task died. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(message: str, socket_path: str | None = None) -> bool:
    """Send one notification; False when there is no socket to send to or sending failed."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):  # an abstract-namespace socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %r failed: %s", message, exc)
        return False
    return True


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` (systemd's advice), or None when no watchdog is armed for this process."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2_000_000)
    except ValueError:
        return None


async def keep_alive(interval_s: float, healthy: Callable[[], bool], socket_path: str | None = None) -> None:
    """Ping the watchdog every ``interval_s`` while ``healthy()``; stop pinging (and let systemd restart
    us) as soon as it is not."""
    while True:
        if healthy():
            notify("WATCHDOG=1", socket_path)
        else:
            log.error("agent unhealthy: withholding the watchdog ping so that systemd restarts it")
        await asyncio.sleep(interval_s)
