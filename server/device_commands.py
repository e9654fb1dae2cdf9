"""Commands an operator sends to one loudspeaker cluster from the console: validated, built, tracked.

Only ``play_now`` (of an approved announcement whose audio is ready, from the device's own area or one
above it, visible to the sender — never arbitrary audio), ``stop``, ``set_volume``, ``amplifier`` and
``resync`` are offered; ``reboot`` and ``rebirth`` are not. Commands live for one minute: an agent that
receives one later refuses it, so an order can never fire long after the operator gave up on it.
Sent commands are kept in a bounded in-memory log (who, what, when) for the acknowledgement read-back,
and each is written to the audit trail (``audit_events``, action ``device.command``, ``ref`` = its id),
where the agent's answer is stored when it arrives: the read-back survives a restart of the server.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agents.protocol import AudioRef, Command, CommandResult, PlanItem
from schedules import AreaId, AreaTree, Priority
from server import audit
from server.errors import Invalid, NotFound
from server.models import Announcement, AuditEvent, Device
from server.permissions import Action, Principal

log = logging.getLogger(__name__)

ConsoleCommand = Literal["play_now", "stop", "set_volume", "amplifier", "resync"]
CONSOLE_COMMANDS: tuple[str, ...] = ("play_now", "stop", "set_volume", "amplifier", "resync")
COMMAND_LIFETIME = timedelta(seconds=60)
PLAY_NOW_MAX_LATE_MS = 60_000
"""A play_now item may start this late (its audio is fetched first); later the agent skips and reports it."""
AMPLIFIER_STATES: tuple[str, ...] = ("on", "off", "auto")

CommandStatus = Literal["pending", "ok", "refused", "no_answer"]


@dataclass(frozen=True)
class SentCommand:
    id: str
    agent_id: str
    name: str
    args: Mapping[str, Any]
    sent_by: str
    issued_at: datetime
    expires_at: datetime


class CommandLog:
    """The last ``capacity`` commands sent from the console (oldest dropped first); thread-safe."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, SentCommand] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, sent: SentCommand) -> None:
        with self._lock:
            self._entries[sent.id] = sent
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def get(self, command_id: str) -> SentCommand | None:
        with self._lock:
            return self._entries.get(command_id)


def command_status(sent: SentCommand, result: CommandResult | None, now: datetime) -> CommandStatus:
    if result is not None:
        return "ok" if result.status == "ok" else "refused"
    return "no_answer" if now > sent.expires_at else "pending"


# --- validation ----------------------------------------------------------------------------------------

def _only(args: Mapping[str, Any], allowed: set[str], name: str) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise Invalid(f"{name} does not take {', '.join(unknown)}")


def _integer(args: Mapping[str, Any], key: str, name: str) -> int:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{name} needs args.{key}, an integer")
    return value


def validated_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments sent to the agent for every command but play_now (see `play_item`)."""
    if name == "set_volume":
        _only(args, {"percent"}, name)
        percent = _integer(args, "percent", name)
        if not 0 <= percent <= 100:
            raise Invalid("set_volume: percent must be from 0 to 100")
        return {"percent": percent, "level": "normal"}
    if name == "amplifier":
        _only(args, {"state"}, name)
        state = args.get("state")
        if state not in AMPLIFIER_STATES:
            raise Invalid("amplifier: state must be 'on', 'off' or 'auto'")
        return {"state": state}
    if name in ("stop", "resync"):
        _only(args, set(), name)
        return {}
    raise Invalid(f"unknown command {name!r}; one of {', '.join(CONSOLE_COMMANDS)}")


# --- play now --------------------------------------------------------------------------------------------

def playable_announcements(db: Session, principal: Principal, device: Device, tree: AreaTree,
                           limit: int = 200) -> list[Announcement]:
    """Approved announcements with ready audio that may air on this device: owned by the device's area or
    an area above it, and visible to the user. Newest first."""
    lineage = [a for a in tree.ancestors(AreaId(device.area_id)) if principal.can(Action.VIEW, a, tree)]
    if not lineage:
        return []
    rows = db.scalars(select(Announcement).where(Announcement.area_id.in_(lineage),
                                                 Announcement.review_status == "approved",
                                                 Announcement.audio_status == "ready",
                                                 Announcement.audio_sha256.is_not(None))
                      .order_by(Announcement.created_at.desc(), Announcement.id.desc()).limit(limit))
    return list(rows.unique())


def play_item(db: Session, principal: Principal, device: Device, tree: AreaTree, args: Mapping[str, Any], *,
              command_id: str, now: datetime, public_url: str) -> PlanItem:
    _only(args, {"announcement_id"}, "play_now")
    announcement_id = _integer(args, "announcement_id", "play_now")
    announcement = db.get(Announcement, announcement_id)
    lineage = set(tree.ancestors(AreaId(device.area_id)))
    if (announcement is None or announcement.area_id not in lineage
            or not principal.can(Action.VIEW, AreaId(announcement.area_id), tree)):
        raise NotFound(f"no announcement {announcement_id} for this device's area")
    if announcement.review_status != "approved":
        raise Invalid("play_now: the announcement is not approved")
    audio = announcement.audio
    if announcement.audio_status != "ready" or audio is None:
        raise Invalid("play_now: the announcement's audio is not ready")
    return PlanItem(id=f"op-{command_id[:24]}", broadcast_id=0, title=announcement.title[:300],
                    priority=Priority.NORMAL, play_at=now,
                    audio=AudioRef(sha256=audio.sha256, url=f"{public_url}/api/v1/audio/{audio.sha256}",
                                   duration_ms=audio.duration_ms, size_bytes=audio.size_bytes),
                    max_late_ms=PLAY_NOW_MAX_LATE_MS)


def build_command(db: Session, principal: Principal, device: Device, tree: AreaTree, name: str,
                  args: Mapping[str, Any], *, now: datetime, public_url: str) -> Command:
    """A validated command for ``device``; the caller has checked OPERATE on its area."""
    command_id = uuid.uuid4().hex
    if name == "play_now":
        item = play_item(db, principal, device, tree, args, command_id=command_id, now=now, public_url=public_url)
        wire_args: dict[str, Any] = {"item": item.to_dict()}
    else:
        wire_args = validated_args(name, args)
    return Command(id=command_id, name=name, issued_at=now, expires_at=now + COMMAND_LIFETIME,  # type: ignore[arg-type]
                   args=wire_args)


def record_sent(db: Session, commands: CommandLog, command: Command, device: Device, principal: Principal,
                args: Mapping[str, Any]) -> SentCommand:
    """Keep a sent command for its read-back, in memory and in the audit trail (outcome pending)."""
    sent = SentCommand(id=command.id, agent_id=device.agent_id, name=command.name, args=dict(args),
                       sent_by=principal.username, issued_at=command.issued_at, expires_at=command.expires_at)
    commands.add(sent)
    audit.record(db, principal, "device.command", target=f"device:{device.agent_id}", area_id=device.area_id,
                 details={"command": command.name, "args": dict(args), "issued_at": command.issued_at.isoformat(),
                          "expires_at": command.expires_at.isoformat()},
                 outcome="pending", ref=command.id)
    log.info("command %s %s %s sent to %s by %s", command.id, command.name, dict(args), device.agent_id,
             principal.username)
    return sent


def stored_command(db: Session, command_id: str) -> AuditEvent | None:
    """The audit event of a command sent from the console."""
    return db.scalar(select(AuditEvent).where(AuditEvent.ref == command_id[:64],
                                              AuditEvent.action == "device.command"))


def sent_from_event(event: AuditEvent) -> SentCommand:
    """A sent command rebuilt from its audit event (after a restart emptied the in-memory log)."""
    details = event.details
    return SentCommand(id=event.ref or "", agent_id=event.target.removeprefix("device:"),
                       name=str(details.get("command", "")), args=dict(details.get("args") or {}),
                       sent_by=event.username, issued_at=datetime.fromisoformat(details["issued_at"]),
                       expires_at=datetime.fromisoformat(details["expires_at"]))


def record_answer(db: Session, result: CommandResult) -> None:
    """Store an agent's answer on its command's audit event (no-op for commands not sent from the console)."""
    outcome = "ok" if result.status == "ok" else "refused"
    db.execute(update(AuditEvent).where(AuditEvent.ref == result.id[:64], AuditEvent.action == "device.command",
                                        AuditEvent.outcome.in_(("pending", "no_answer")))
               .values(outcome=outcome, result=result.error[:2000]).execution_options(synchronize_session=False))


def record_no_answer(event: AuditEvent) -> None:
    """The command expired unanswered (noticed when it is read back)."""
    if event.outcome == "pending":
        event.outcome = "no_answer"
