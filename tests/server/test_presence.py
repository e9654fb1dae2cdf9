"""The Sparkplug-style presence state machine: births, deaths, messages and silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from server.presence import Decision, Presence, on_birth, on_death, on_message, on_silence

T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=90)


def online(session: int = 5, seq: int = 10, at: datetime = T0) -> Presence:
    return Presence(state="online", session=session, last_seq=seq, last_seen_at=at)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- Births -----------------------------------------------------------------------------------------

def test_birth_from_unknown_goes_online() -> None:
    decision = on_birth(Presence(), session=1, seq=0, at=T0)
    assert decision == Decision(Presence("online", 1, 0, T0), changed=True)


def test_birth_after_offline_goes_online_with_the_new_session() -> None:
    offline = Presence(state="offline", session=3, last_seq=40, last_seen_at=T0)
    decision = on_birth(offline, session=4, seq=0, at=later(5))
    assert decision.presence == Presence("online", 4, 0, later(5))
    assert decision.changed
    assert not decision.request_rebirth


def test_birth_of_a_newer_session_while_online_is_a_change() -> None:
    decision = on_birth(online(session=5), session=6, seq=0, at=later(1))
    assert decision.presence == Presence("online", 6, 0, later(1))
    assert decision.changed


def test_repeated_birth_of_the_same_session_is_not_a_change() -> None:
    decision = on_birth(online(session=5, seq=10), session=5, seq=11, at=later(1))
    assert decision.presence.state == "online"
    assert decision.presence.session == 5
    assert not decision.changed


def test_stale_birth_of_an_older_session_is_ignored() -> None:
    current = online(session=5)
    decision = on_birth(current, session=4, seq=0, at=later(1))
    assert decision == Decision(current)
    offline = Presence(state="offline", session=5, last_seq=3, last_seen_at=T0)
    assert on_birth(offline, session=2, seq=0, at=later(1)) == Decision(offline)


# --- Deaths -----------------------------------------------------------------------------------------

def test_late_death_of_an_older_session_is_ignored_and_asks_for_rebirth() -> None:
    current = online(session=5)
    decision = on_death(current, session=4, at=later(1))
    assert decision.presence == current
    assert not decision.changed
    assert decision.request_rebirth


def test_late_death_of_an_older_session_while_offline_asks_nothing() -> None:
    current = Presence(state="offline", session=5, last_seq=1, last_seen_at=T0)
    assert on_death(current, session=4, at=later(1)) == Decision(current)


def test_death_of_the_current_session_goes_offline() -> None:
    decision = on_death(online(session=5, seq=10), session=5, at=later(30))
    assert decision.presence == Presence("offline", 5, 10, T0)  # last seen stays the last message
    assert decision.changed
    assert not decision.request_rebirth


def test_second_death_of_the_current_session_is_not_a_change() -> None:
    dead = on_death(online(session=5), session=5, at=later(1)).presence
    assert on_death(dead, session=5, at=later(2)) == Decision(dead)


def test_death_of_an_unseen_newer_session_goes_offline() -> None:
    decision = on_death(online(session=5, seq=10), session=6, at=later(1))
    assert decision.presence == Presence("offline", 6, 0, T0)
    assert decision.changed


def test_birth_death_rebirth_sequence() -> None:
    presence = Presence()
    presence = on_birth(presence, 1, 0, T0).presence
    presence = on_birth(presence, 2, 0, later(10)).presence   # reconnect
    late_will = on_death(presence, 1, later(11))               # the old connection's will, delivered late
    assert late_will.presence.state == "online" and late_will.request_rebirth
    presence = on_death(late_will.presence, 2, later(20)).presence
    assert presence.state == "offline" and presence.session == 2


# --- Other messages (heartbeats, events, acks) ------------------------------------------------------

def test_heartbeat_from_unknown_newer_session_goes_online_and_asks_for_rebirth() -> None:
    offline = Presence(state="offline", session=5, last_seq=3, last_seen_at=T0)
    decision = on_message(offline, session=6, seq=7, at=later(1))
    assert decision.presence == Presence("online", 6, 7, later(1))
    assert decision.changed
    assert decision.request_rebirth


def test_heartbeat_from_never_seen_agent_goes_online_and_asks_for_rebirth() -> None:
    decision = on_message(Presence(), session=1, seq=1, at=T0)
    assert decision.presence == Presence("online", 1, 1, T0)
    assert decision.changed and decision.request_rebirth


def test_heartbeat_from_newer_session_while_online_asks_for_rebirth() -> None:
    decision = on_message(online(session=5), session=6, seq=2, at=later(1))
    assert decision.presence == Presence("online", 6, 2, later(1))
    assert decision.request_rebirth


def test_heartbeat_of_the_current_session_while_offline_comes_back_online() -> None:
    dead = Presence(state="offline", session=5, last_seq=10, last_seen_at=T0)
    decision = on_message(dead, session=5, seq=11, at=later(1))
    assert decision.presence.state == "online"
    assert decision.changed and decision.request_rebirth


def test_heartbeat_from_an_older_session_is_ignored() -> None:
    current = online(session=5)
    assert on_message(current, session=4, seq=99, at=later(1)) == Decision(current)


def test_in_order_heartbeat_updates_seq_and_last_seen_without_gap() -> None:
    decision = on_message(online(seq=10), session=5, seq=11, at=later(30))
    assert decision == Decision(online(seq=11, at=later(30)))
    assert decision.gap == 0 and not decision.changed and not decision.request_rebirth


def test_sequence_gap_is_reported() -> None:
    decision = on_message(online(seq=10), session=5, seq=14, at=later(30))
    assert decision.gap == 3
    assert decision.presence.last_seq == 14
    assert not decision.changed


def test_duplicate_or_older_seq_is_no_gap_and_does_not_go_back() -> None:
    for seq in (10, 7):
        decision = on_message(online(seq=10), session=5, seq=seq, at=later(30))
        assert decision.gap == 0
        assert decision.presence.last_seq == 10
        assert decision.presence.last_seen_at == later(30)


# --- Silence ----------------------------------------------------------------------------------------

def test_silence_longer_than_timeout_goes_offline() -> None:
    current = online(session=5, seq=10, at=T0)
    decision = on_silence(current, now=T0 + TIMEOUT + timedelta(seconds=1), timeout=TIMEOUT)
    assert decision.presence == Presence("offline", 5, 10, T0)
    assert decision.changed


def test_silence_shorter_than_timeout_changes_nothing() -> None:
    current = online(at=T0)
    for gap in (timedelta(0), timedelta(seconds=30), TIMEOUT):
        assert on_silence(current, now=T0 + gap, timeout=TIMEOUT) == Decision(current)


def test_silence_does_not_touch_agents_that_are_not_online() -> None:
    far = T0 + timedelta(days=1)
    for current in (Presence(), Presence(state="offline", session=2, last_seq=1, last_seen_at=T0),
                    Presence(state="online", session=2, last_seq=1, last_seen_at=None)):
        assert on_silence(current, now=far, timeout=TIMEOUT) == Decision(current)


def test_silence_after_offline_then_message_brings_it_back() -> None:
    silent = on_silence(online(session=5, seq=10), now=later(600), timeout=TIMEOUT).presence
    assert silent.state == "offline"
    back = on_message(silent, session=5, seq=11, at=later(601))
    assert back.presence.state == "online" and back.changed
