"""Keeps Mosquitto's password file in step with the registered devices (setting ``broker_password_file``).

Every agent logs in to the broker with its agent id and its secret. When the server manages the file, a
registration, a new secret or a removal takes effect on the broker at once: the file is rewritten from
the database and the broker told to re-read it (``broker_reload_command``, or a systemd path unit that
reloads Mosquitto when the file changes, deploy/mosquitto/loa-broker-reload.path). Until then a rotated
secret, the usual answer to a leaked one, would still open the broker.

The file holds, in order: the lines of ``broker_static_password_file`` (accounts the server does not
manage), the server's own account (``broker_username``/``broker_password``) unless that file has it, and
one line per device. A device registered before the server managed the file has no stored hash; its
line is carried over from the current file until its secret is rotated. Mosquitto's own format is
written ("$7$", PBKDF2-SHA512), so ``mosquitto_passwd`` still works on the static file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from sqlalchemy import select

from server.db import Database
from server.models import Device
from server.security import mosquitto_password_hash, verify_mosquitto_hash
from server.settings import Settings

log = logging.getLogger(__name__)

SyncOutcome = Literal["manual", "unchanged", "updated", "failed"]
"""manual: the server does not manage the file; unchanged: already in step; updated: written and the
broker reloaded; failed: the file could not be read or written, or the reload failed (logged)."""

_LINE = re.compile(r"^([^:\s#][^:]*):(\S+)$")
_RELOAD_TIMEOUT_S = 15.0


class BrokerAccountsError(Exception):
    """The password file could not be composed (a malformed static file, for example)."""


class BrokerAccounts:
    def __init__(self, settings: Callable[[], Settings], db: Database) -> None:
        self._settings = settings  # read at each use: the runtime may replace its settings
        self.db = db
        self._lock = threading.Lock()  # two requests at once: each writes what the database holds then

    @property
    def settings(self) -> Settings:
        return self._settings()

    def sync(self) -> SyncOutcome:
        """Rewrite the password file if it differs from the database's devices, then reload the broker.

        Never raises: the callers are API requests whose own change is already committed, and the next
        sync (every start of the server, every later change) repairs a failed one.
        """
        target = self.settings.broker_password_file
        if target is None:
            return "manual"
        with self._lock:
            try:
                try:
                    before: str | None = target.read_text("utf-8")
                except FileNotFoundError:
                    before = None
                content = self._compose(_parse_lines(before or "", target))
                if content == before:
                    return "unchanged"
                _write_atomically(target, content)
            except (OSError, UnicodeError, BrokerAccountsError) as exc:
                log.error("broker password file %s not updated: %s", target, exc)
                return "failed"
            log.info("broker password file %s updated", target)
            return "updated" if self._reload() else "failed"

    def _compose(self, current: dict[str, str]) -> str:
        lines: dict[str, str] = {}
        static = self.settings.broker_static_password_file
        if static is not None:
            lines.update(_parse_lines(static.read_text("utf-8"), static))
        user, password = self.settings.broker_username, self.settings.broker_password
        if user and password and user not in lines:
            kept = current.get(user)  # the same hash as last time when it still matches: no needless reload
            lines[user] = kept if kept and verify_mosquitto_hash(kept, password) else mosquitto_password_hash(password)
        reserved = set(lines)
        with self.db.session() as db:
            devices = db.execute(select(Device.agent_id, Device.broker_password_hash).order_by(Device.agent_id)).all()
        for agent_id, password_hash in devices:
            if agent_id in reserved:
                log.error("device %s has the name of a broker account the server does not manage: not written",
                          agent_id)
                continue
            line = password_hash or current.get(agent_id)
            if line is None:
                log.warning("device %s has no broker account: issue it a new secret", agent_id)
                continue
            lines[agent_id] = line
        return "".join(f"{name}:{value}\n" for name, value in lines.items())

    def _reload(self) -> bool:
        command = self.settings.broker_reload_command
        if not command:
            return True
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=_RELOAD_TIMEOUT_S,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("broker reload command %s failed: %s", command, exc)
            return False
        if done.returncode != 0:
            log.error("broker reload command %s exited %d: %s", command, done.returncode,
                      done.stderr.decode("utf-8", "replace").strip()[-300:])
            return False
        return True


def _parse_lines(text: str, path: Path) -> dict[str, str]:
    """username -> hash from a Mosquitto password file's text (blank lines and # comments skipped)."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise BrokerAccountsError(f"{path}, line {number}: not 'username:hash'")
        entries[match.group(1)] = match.group(2)
    return entries


def _write_atomically(path: Path, content: str) -> None:
    """Replace `path` by a complete new file, keeping its mode and group (the broker must still read it)."""
    try:
        before = path.stat()
        mode, gid = before.st_mode & 0o777, before.st_gid
    except FileNotFoundError:
        mode, gid = 0o640, -1
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(name, mode)
        if gid >= 0:
            with contextlib.suppress(PermissionError):  # possible only for a member of that group
                os.chown(name, -1, gid)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
