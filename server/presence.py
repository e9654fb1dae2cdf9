"""Online state of one agent as a pure state machine (Sparkplug B's session rules).

Inputs are the agent's messages; outputs are the new state and what the server should do. The rule
that matters: a death counts only when its session equals the last birth's, so the last will of an
old connection that the broker delivers late can never mark a reconnected agent offline. When the
retained state on the broker is left wrong by such a will, the server asks the agent for a rebirth
instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

PresenceState = Literal["unknown", "online", "offline"]


@dataclass(frozen=True)
class Presence:
    state: PresenceState = "unknown"
    session: int = 0
    last_seq: int = 0
    last_seen_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    presence: Presence
    changed: bool = False
    request_rebirth: bool = False
    gap: int = 0
    """Messages missed within the session according to the sequence numbers."""


def on_birth(current: Presence, session: int, seq: int, at: datetime) -> Decision:
    if session < current.session:
        return Decision(current)  # a stale retained birth of an older connection
    new = Presence(state="online", session=session, last_seq=seq, last_seen_at=at)
    return Decision(new, changed=current.state != "online" or session != current.session)


def on_death(current: Presence, session: int, at: datetime) -> Decision:
    if session < current.session:
        # A late will; the broker's retained state is now wrong, so ask for a fresh birth.
        return Decision(current, request_rebirth=current.state == "online")
    if session == current.session and current.state == "offline":
        return Decision(current)
    new = Presence(state="offline", session=session, last_seq=current.last_seq if session == current.session else 0,
                   last_seen_at=current.last_seen_at)
    return Decision(new, changed=True)


def on_message(current: Presence, session: int, seq: int, at: datetime) -> Decision:
    """Any other message (heartbeat, event, ack) from the agent."""
    if session < current.session:
        return Decision(current)  # from a session already replaced
    if session > current.session or current.state != "online":
        # Alive, but we never saw this session's birth: trust the message, ask for the birth.
        new = Presence(state="online", session=session, last_seq=seq, last_seen_at=at)
        return Decision(new, changed=current.state != "online", request_rebirth=True)
    gap = seq - current.last_seq - 1 if seq > current.last_seq else 0
    return Decision(replace(current, last_seq=max(seq, current.last_seq), last_seen_at=at), gap=max(gap, 0))


def on_silence(current: Presence, now: datetime, timeout: timedelta) -> Decision:
    """No message for longer than ``timeout`` (e.g. three heartbeats): offline, even without a will."""
    if current.state == "online" and current.last_seen_at is not None and now - current.last_seen_at > timeout:
        return Decision(replace(current, state="offline"), changed=True)
    return Decision(current)
