"""The agent's durable memory: session counter, current plan, as-run outbox, items already handled,
positions of preempted items to resume, command ids already obeyed.

One SQLite file in WAL mode with ``synchronous=FULL``: a power cut mid-write loses at most the
transaction in flight, never the file. The seam exists so the core never writes files itself.
``durable=False`` (``synchronous=NORMAL``) survives a crash of the process but not of the machine; the
simulator uses it, a thousand agents sharing one disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    event_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS handled (
    item_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS resume (
    item_id TEXT PRIMARY KEY,
    offset_ms INTEGER NOT NULL,
    suspended_at REAL NOT NULL
);
"""

SUSPENDED = "suspended"
"""``handled`` outcome of an item cut by a higher priority that will resume (its position is in ``resume``)."""


class Journal:
    def __init__(self, path: Path, *, durable: bool = True, in_memory: bool = False) -> None:
        self._path = path
        self._durable = durable
        self._in_memory = in_memory
        """The simulator's agents: one file descriptor each is their MQTT socket and nothing else (a file
        journal holds three: database, WAL, shared memory), so that 10,000 fit under a 20,000-descriptor
        limit. Nothing survives a restart but the session counter, which then starts from the wall clock."""
        self._db: sqlite3.Connection | None = None
        self._handled: dict[str, str] = {}
        """A read cache of the ``handled`` table: the playout asks about every item on every change."""

    def start(self) -> None:
        if self._in_memory:
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._db.executescript(_SCHEMA)
            self._put("session", str(time.time_ns() // 1000))  # in µs: above any session of an earlier run
            self._handled = {}
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._handled = {str(k): str(v) for k, v in self._db.execute("SELECT item_id, outcome FROM handled")}

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("journal not started")
        return self._db

    # --- meta -----------------------------------------------------------------------------------

    def _get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def next_session(self) -> int:
        """A number that rises on every connection attempt, across restarts."""
        session = int(self._get("session") or 0) + 1
        self._put("session", str(session))
        return session

    def load_plan(self) -> dict[str, Any] | None:
        raw = self._get("plan")
        return None if raw is None else dict(json.loads(raw))

    def save_plan(self, plan: dict[str, Any]) -> None:
        self._put("plan", json.dumps(plan, ensure_ascii=False))

    def get_setting(self, key: str) -> str | None:
        return self._get(f"setting:{key}")

    def put_setting(self, key: str, value: str) -> None:
        self._put(f"setting:{key}", value)

    # --- outbox ---------------------------------------------------------------------------------

    def add_event(self, event_id: str, created_at: float, payload: bytes) -> None:
        self.db.execute("INSERT OR IGNORE INTO outbox(event_id, created_at, payload) VALUES (?, ?, ?)",
                        (event_id, created_at, payload.decode()))

    def pending_events(self, limit: int = 500) -> list[tuple[str, bytes]]:
        rows = self.db.execute("SELECT event_id, payload FROM outbox ORDER BY created_at LIMIT ?",
                               (limit,)).fetchall()
        return [(str(r[0]), str(r[1]).encode()) for r in rows]

    def ack_events(self, event_ids: list[str]) -> int:
        if not event_ids:
            return 0
        marks = ",".join("?" * len(event_ids))
        return self.db.execute(f"DELETE FROM outbox WHERE event_id IN ({marks})", event_ids).rowcount

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    # --- handled items --------------------------------------------------------------------------

    def mark_handled(self, item_id: str, outcome: str, at: float) -> None:
        self.db.execute("INSERT INTO handled(item_id, outcome, at) VALUES (?, ?, ?) "
                        "ON CONFLICT(item_id) DO UPDATE SET outcome = excluded.outcome, at = excluded.at",
                        (item_id, outcome, at))
        self._handled[item_id] = outcome

    def handled(self, item_id: str) -> str | None:
        return self._handled.get(item_id)

    def forget_handled_before(self, at: float) -> None:
        self.db.execute("DELETE FROM handled WHERE at < ?", (at,))
        self.db.execute("DELETE FROM resume WHERE suspended_at < ?", (at,))
        self._handled = {str(k): str(v) for k, v in self.db.execute("SELECT item_id, outcome FROM handled")}

    # --- resume positions -----------------------------------------------------------------------

    def suspend(self, item_id: str, offset_ms: int, at: float) -> None:
        """Remember where a resumable item was cut; it is pending again (outcome ``suspended``)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO resume(item_id, offset_ms, suspended_at) VALUES (?, ?, ?) "
                            "ON CONFLICT(item_id) DO UPDATE SET offset_ms = excluded.offset_ms, "
                            "suspended_at = excluded.suspended_at", (item_id, offset_ms, at))
            self.db.execute("INSERT INTO handled(item_id, outcome, at) VALUES (?, ?, ?) "
                            "ON CONFLICT(item_id) DO UPDATE SET outcome = excluded.outcome, at = excluded.at",
                            (item_id, SUSPENDED, at))
        self._handled[item_id] = SUSPENDED

    def resume_point(self, item_id: str) -> tuple[int, float] | None:
        """(offset in ms, when it was cut) of a suspended item."""
        if self._handled.get(item_id) != SUSPENDED:
            return None
        row = self.db.execute("SELECT offset_ms, suspended_at FROM resume WHERE item_id = ?", (item_id,)).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    def clear_resume(self, item_id: str) -> None:
        self.db.execute("DELETE FROM resume WHERE item_id = ?", (item_id,))
