"""The agent's SQLite journal: session counter, plan, outbox and handled items, across reopening."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.journal import Journal


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite3"  # the directory does not exist yet


@pytest.fixture
def journal(path: Path) -> Iterator[Journal]:
    opened = Journal(path)
    opened.start()
    yield opened
    opened.stop()


def reopen(path: Path) -> Journal:
    again = Journal(path)
    again.start()
    return again


def test_start_creates_the_directory_and_uses_wal(journal: Journal, path: Path) -> None:
    assert path.exists()
    assert journal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_not_started_journal_refuses_use(path: Path) -> None:
    idle = Journal(path)
    with pytest.raises(RuntimeError, match="not started"):
        idle.next_session()
    idle.start()
    idle.stop()
    idle.stop()  # stopping twice is harmless
    with pytest.raises(RuntimeError, match="not started"):
        idle.pending_count()


# --- Session counter --------------------------------------------------------------------------------

def test_session_counter_rises(journal: Journal) -> None:
    assert [journal.next_session() for _ in range(3)] == [1, 2, 3]


def test_session_counter_rises_across_reopen(journal: Journal, path: Path) -> None:
    first = journal.next_session()
    journal.stop()
    second = reopen(path)
    try:
        assert second.next_session() == first + 1
    finally:
        second.stop()
    third = reopen(path)
    try:
        assert third.next_session() == first + 2
    finally:
        third.stop()


# --- Plan -------------------------------------------------------------------------------------------

def test_plan_absent_until_saved(journal: Journal) -> None:
    assert journal.load_plan() is None


def test_plan_saved_and_loaded(journal: Journal) -> None:
    plan = {"schema": 1, "type": "plan", "version": 3, "items": [{"id": "b1-0", "title": "Thông báo mưa lũ"}],
            "groups": ["area-01"]}
    journal.save_plan(plan)
    assert journal.load_plan() == plan
    newer = dict(plan, version=4, items=[])
    journal.save_plan(newer)
    assert journal.load_plan() == newer


def test_settings_saved_and_loaded(journal: Journal) -> None:
    assert journal.get_setting("volume") is None
    journal.put_setting("volume", "80")
    journal.put_setting("volume", "65")
    assert journal.get_setting("volume") == "65"


# --- Outbox -----------------------------------------------------------------------------------------

def test_outbox_add_pending_ack_count(journal: Journal) -> None:
    assert journal.pending_count() == 0
    assert journal.pending_events() == []
    journal.add_event("e-2", 20.0, b'{"n":2}')
    journal.add_event("e-1", 10.0, '{"title":"Bản tin"}'.encode())
    journal.add_event("e-3", 30.0, b'{"n":3}')
    assert journal.pending_count() == 3
    # Oldest first, payload bytes unchanged.
    assert journal.pending_events() == [("e-1", '{"title":"Bản tin"}'.encode()), ("e-2", b'{"n":2}'),
                                        ("e-3", b'{"n":3}')]
    assert journal.pending_events(limit=2) == journal.pending_events()[:2]
    assert journal.ack_events(["e-1", "e-3", "unknown"]) == 2
    assert journal.pending_events() == [("e-2", b'{"n":2}')]
    assert journal.pending_count() == 1
    assert journal.ack_events([]) == 0
    assert journal.ack_events(["e-1"]) == 0  # acking twice is harmless


def test_outbox_duplicate_event_id_is_ignored(journal: Journal) -> None:
    journal.add_event("e-1", 10.0, b'{"first":true}')
    journal.add_event("e-1", 5.0, b'{"second":true}')
    assert journal.pending_count() == 1
    assert journal.pending_events() == [("e-1", b'{"first":true}')]


def test_outbox_acks_many_at_once(journal: Journal) -> None:
    ids = [f"e-{n}" for n in range(1200)]  # more than SQLite's historical 999 bound parameters
    for n, event_id in enumerate(ids):
        journal.add_event(event_id, float(n), b"{}")
    assert journal.pending_count() == 1200
    assert len(journal.pending_events()) == 500  # the default limit
    assert journal.ack_events(ids) == 1200
    assert journal.pending_count() == 0


# --- Handled items ----------------------------------------------------------------------------------

def test_handled_items(journal: Journal) -> None:
    assert journal.handled("b1-0") is None
    journal.mark_handled("b1-0", "started", 100.0)
    assert journal.handled("b1-0") == "started"
    journal.mark_handled("b1-0", "finished", 160.0)
    assert journal.handled("b1-0") == "finished"
    journal.mark_handled("b2-0", "skipped", 50.0)
    journal.forget_handled_before(100.0)
    assert journal.handled("b2-0") is None
    assert journal.handled("b1-0") == "finished"


# --- Durability -------------------------------------------------------------------------------------

def test_everything_survives_closing_and_reopening(journal: Journal, path: Path) -> None:
    session = journal.next_session()
    journal.save_plan({"version": 9, "items": []})
    journal.put_setting("volume", "70")
    journal.add_event("e-1", 1.0, b'{"kind":"started"}')
    journal.add_event("e-2", 2.0, b'{"kind":"finished"}')
    journal.ack_events(["e-1"])
    journal.mark_handled("b1-0", "finished", 3.0)
    journal.stop()

    again = reopen(path)
    try:
        assert again.load_plan() == {"version": 9, "items": []}
        assert again.get_setting("volume") == "70"
        assert again.pending_events() == [("e-2", b'{"kind":"finished"}')]
        assert again.handled("b1-0") == "finished"
        assert again.next_session() == session + 1
    finally:
        again.stop()


def test_a_simulated_agents_memory_journal_opens_no_file_and_its_sessions_still_rise(path: Path) -> None:
    first = Journal(path, durable=False, in_memory=True)
    first.start()
    sessions = [first.next_session(), first.next_session()]
    first.stop()
    again = Journal(path, durable=False, in_memory=True)
    again.start()
    sessions.append(again.next_session())
    again.stop()
    assert sessions[0] < sessions[1] < sessions[2]  # a restarted simulator's births are not taken as stale
    assert not path.parent.exists()
