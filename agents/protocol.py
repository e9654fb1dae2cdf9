"""Protocol v1: the MQTT contract between the Loa server and its agents.

`docs/protocol.md` is the normative text; this module is its one implementation, imported by both the
server and the agent so the two can never disagree about a topic name or a field.

Every payload is a UTF-8 JSON object with ``"schema": 1`` and a ``"type"``. Decoding is strict: an
unknown schema version, a missing field, a wrong type or an oversized payload raises `ProtocolError`
with a readable reason, and callers log and drop the message (a broken message never crashes anyone).
Times on the wire are UTC ISO 8601 strings with milliseconds and a ``Z`` suffix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NewType

from agents.errors import ProtocolError
from schedules.model import Priority

SCHEMA_VERSION = 1
ROOT = "loa/v1"
MAX_PAYLOAD_BYTES = 1024 * 1024
"""Plans for a 48 h horizon are a few tens of kilobytes (2,000 items fit); anything larger is refused unread."""

AgentId = NewType("AgentId", str)
"""A stable hardware-derived identity (e.g. ``tq-08740-c01``), never an IP address."""

_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_GROUP_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

QOS_AT_MOST_ONCE = 0
QOS_AT_LEAST_ONCE = 1


def valid_agent_id(value: str) -> bool:
    return bool(_AGENT_ID.match(value))


def valid_group_id(value: str) -> bool:
    return bool(_GROUP_ID.match(value))


# --- Topics -----------------------------------------------------------------------------------------

class Topics:
    """Topic names of protocol v1 (see docs/protocol.md, section "Topic tree")."""

    @staticmethod
    def agent(agent_id: str, leaf: str) -> str:
        if not valid_agent_id(agent_id):
            raise ProtocolError(f"invalid agent id {agent_id!r}")
        return f"{ROOT}/agent/{agent_id}/{leaf}"

    @classmethod
    def state(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "state")

    @classmethod
    def heartbeat(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "heartbeat")

    @classmethod
    def plan(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "plan")

    @classmethod
    def plan_ack(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "plan/ack")

    @classmethod
    def event(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "event")

    @classmethod
    def event_ack(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "event/ack")

    @classmethod
    def command(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "cmd")

    @classmethod
    def command_result(cls, agent_id: str) -> str:
        return cls.agent(agent_id, "cmd/result")

    @staticmethod
    def group_command(group_id: str) -> str:
        if not valid_group_id(group_id):
            raise ProtocolError(f"invalid group id {group_id!r}")
        return f"{ROOT}/group/{group_id}/cmd"

    SERVER_STATE = f"{ROOT}/server/state"
    SERVER_CLOCK = f"{ROOT}/server/clock"
    """Server time samples (QoS 0, never retained): agents estimate their clock offset from them."""

    # What the server subscribes to (one wildcard per agent-published leaf).
    SERVER_SUBSCRIPTIONS = (
        f"{ROOT}/agent/+/state",
        f"{ROOT}/agent/+/heartbeat",
        f"{ROOT}/agent/+/plan/ack",
        f"{ROOT}/agent/+/event",
        f"{ROOT}/agent/+/cmd/result",
    )


@dataclass(frozen=True)
class ParsedTopic:
    scope: Literal["agent", "group", "server"]
    target: str
    leaf: str


def parse_topic(topic: str) -> ParsedTopic:
    """Split a v1 topic into (scope, agent or group id, leaf); raise ProtocolError on anything else."""
    prefix = ROOT + "/"
    if not topic.startswith(prefix):
        raise ProtocolError(f"topic {topic!r} is not under {ROOT}")
    parts = topic[len(prefix):].split("/")
    if parts in (["server", "state"], ["server", "clock"]):
        return ParsedTopic("server", "", parts[1])
    if len(parts) >= 3 and parts[0] == "agent" and valid_agent_id(parts[1]):
        return ParsedTopic("agent", parts[1], "/".join(parts[2:]))
    if len(parts) >= 3 and parts[0] == "group" and valid_group_id(parts[1]):
        return ParsedTopic("group", parts[1], "/".join(parts[2:]))
    raise ProtocolError(f"topic {topic!r} is not a protocol v1 topic")


# --- Time -------------------------------------------------------------------------------------------

def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ProtocolError("naive datetime on the wire; every time must be UTC-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProtocolError(f"{name} is not an ISO 8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise ProtocolError(f"{name} has no time zone: {value!r}")
    return moment.astimezone(UTC)


# --- Field readers ----------------------------------------------------------------------------------

def _get(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if name not in data or data[name] is None:
        if optional:
            return None
        raise ProtocolError(f"missing field {name!r}")
    value = data[name]
    # bool is an int in Python; never accept it where a number is meant.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError(f"field {name!r} must be {_kind_name(kind)}, got a boolean")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {name!r} must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _int(data: Mapping[str, Any], name: str, *, minimum: int = 0, optional: bool = False) -> int:
    value = _get(data, name, int, optional=optional)
    if value is None:
        return minimum
    if value < minimum:
        raise ProtocolError(f"field {name!r} must be >= {minimum}")
    return int(value)


def _str(data: Mapping[str, Any], name: str, *, max_len: int = 512, optional: bool = False) -> str:
    value = _get(data, name, str, optional=optional)
    if value is None:
        return ""
    if len(value) > max_len:
        raise ProtocolError(f"field {name!r} is longer than {max_len} characters")
    return str(value)


def _sha256(data: Mapping[str, Any], name: str) -> str:
    value = _str(data, name, max_len=64)
    if not _SHA256.match(value):
        raise ProtocolError(f"field {name!r} must be 64 lowercase hex characters")
    return value


def _groups(data: Mapping[str, Any]) -> tuple[str, ...]:
    groups = _get(data, "groups", list, optional=True) or []
    if len(groups) > 64:
        raise ProtocolError("at most 64 groups")
    for group in groups:
        if not isinstance(group, str) or not valid_group_id(group):
            raise ProtocolError(f"invalid group id {group!r}")
    return tuple(groups)


def _priority(data: Mapping[str, Any], name: str = "priority") -> Priority:
    value = _str(data, name, max_len=16)
    try:
        return Priority[value.upper()]
    except KeyError as exc:
        raise ProtocolError(f"field {name!r} must be one of normal, priority, emergency") from exc


def _bool(data: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProtocolError(f"field {name!r} must be a boolean")
    return value


def _optional_number(data: Mapping[str, Any], name: str, *, integer: bool = False) -> Any:
    value = data.get(name)
    if value is None:
        return None
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value != value:  # NaN != NaN
        raise ProtocolError(f"field {name!r} must be {'an integer' if integer else 'a number'} or null")
    return value


def _faults(data: Mapping[str, Any]) -> tuple[str, ...]:
    faults = _get(data, "faults", list, optional=True) or []
    if len(faults) > 32 or not all(isinstance(f, str) and 0 < len(f) <= 200 for f in faults):
        raise ProtocolError("faults must be a list of at most 32 short strings")
    return tuple(faults)


# --- Messages ---------------------------------------------------------------------------------------

PreemptRule = Literal["skip", "resume"]
PREEMPT_RULES: tuple[str, ...] = ("skip", "resume")

@dataclass(frozen=True)
class AudioRef:
    """Where an agent fetches one audio file over HTTP, and how it recognises the right bytes."""

    sha256: str
    url: str
    duration_ms: int
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "url": self.url, "duration_ms": self.duration_ms,
                "size_bytes": self.size_bytes}

    @classmethod
    def from_dict(cls, data: object) -> AudioRef:
        if not isinstance(data, dict):
            raise ProtocolError("audio must be an object")
        url = _str(data, "url", max_len=2048)
        if not url.startswith(("http://", "https://")):
            raise ProtocolError("audio.url must be an http(s) URL")
        return cls(sha256=_sha256(data, "sha256"), url=url,
                   duration_ms=_int(data, "duration_ms", minimum=1),
                   size_bytes=_int(data, "size_bytes", minimum=1))


@dataclass(frozen=True)
class PlanItem:
    """One occurrence an agent must play at an absolute UTC instant."""

    id: str
    broadcast_id: int
    title: str
    priority: Priority
    play_at: datetime
    audio: AudioRef
    max_late_ms: int = 30_000
    """Started later than this after ``play_at`` the item is skipped (reported), not played late."""
    on_preempt: PreemptRule = "skip"
    """What the agent does with this item once a higher priority cut it: forget it, or continue it from
    the position where it was cut as soon as nothing higher plays (the position survives a restart)."""
    stop_at: datetime | None = None
    """A hard end: the agent stops the item at this instant (reported ``trimmed``) and never starts or
    resumes it at or after it."""
    exercise: bool = False
    """A drill: carried into the as-run events so the server can label them."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "broadcast_id": self.broadcast_id, "title": self.title,
            "priority": self.priority.name.lower(), "play_at": format_time(self.play_at),
            "audio": self.audio.to_dict(), "max_late_ms": self.max_late_ms}
        # Optional fields are left out at their defaults: older agents and stored plans stay byte-identical.
        if self.on_preempt != "skip":
            data["on_preempt"] = self.on_preempt
        if self.stop_at is not None:
            data["stop_at"] = format_time(self.stop_at)
        if self.exercise:
            data["exercise"] = True
        return data

    @classmethod
    def from_dict(cls, data: object) -> PlanItem:
        if not isinstance(data, dict):
            raise ProtocolError("plan item must be an object")
        on_preempt = _str(data, "on_preempt", max_len=8, optional=True) or "skip"
        if on_preempt not in PREEMPT_RULES:
            raise ProtocolError("on_preempt must be 'skip' or 'resume'")
        stop_at = data.get("stop_at")
        return cls(id=_str(data, "id", max_len=128), broadcast_id=_int(data, "broadcast_id"),
                   title=_str(data, "title", max_len=300, optional=True),
                   priority=_priority(data), play_at=parse_time(data.get("play_at"), "play_at"),
                   audio=AudioRef.from_dict(data.get("audio")),
                   max_late_ms=_int(data, "max_late_ms") if data.get("max_late_ms") is not None else 30_000,
                   on_preempt=on_preempt,  # type: ignore[arg-type]
                   stop_at=parse_time(stop_at, "stop_at") if stop_at is not None else None,
                   exercise=_bool(data, "exercise"))


@dataclass(frozen=True)
class Plan:
    """The retained, versioned list of everything one agent will play in the horizon."""

    agent_id: str
    version: int
    issued_at: datetime
    items: tuple[PlanItem, ...]
    groups: tuple[str, ...] = ()
    """Group topics the agent must also listen to for fan-out commands (emergencies)."""
    type: Literal["plan"] = "plan"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "plan", "agent_id": self.agent_id,
                "version": self.version, "issued_at": format_time(self.issued_at),
                "groups": list(self.groups), "items": [item.to_dict() for item in self.items]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        items = _get(data, "items", list)
        if len(items) > 2000:
            raise ProtocolError("a plan may hold at most 2000 items")
        return cls(agent_id=_str(data, "agent_id", max_len=64), version=_int(data, "version"),
                   issued_at=parse_time(data.get("issued_at"), "issued_at"),
                   items=tuple(PlanItem.from_dict(item) for item in items), groups=_groups(data))


@dataclass(frozen=True)
class PlanAck:
    agent_id: str
    version: int
    status: Literal["ok", "error"]
    error: str = ""
    missing: tuple[str, ...] = ()
    """sha256 of audio the agent could not fetch yet (it keeps retrying)."""
    type: Literal["plan_ack"] = "plan_ack"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "plan_ack", "agent_id": self.agent_id,
                "version": self.version, "status": self.status, "error": self.error,
                "missing": list(self.missing)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanAck:
        status = _str(data, "status", max_len=8)
        if status not in ("ok", "error"):
            raise ProtocolError("status must be 'ok' or 'error'")
        missing = _get(data, "missing", list, optional=True) or []
        if not all(isinstance(m, str) and _SHA256.match(m) for m in missing):
            raise ProtocolError("missing must list sha256 strings")
        return cls(agent_id=_str(data, "agent_id", max_len=64), version=_int(data, "version"),
                   status=status,  # type: ignore[arg-type]
                   error=_str(data, "error", max_len=1000, optional=True), missing=tuple(missing))


AgentState = Literal["online", "offline"]


@dataclass(frozen=True)
class StateMessage:
    """Birth (``online``, retained) or death (``offline``, the last will) of one agent session.

    ``session`` rises on every connect and is stored by the agent across restarts. The server accepts a
    death only when its session equals the last birth's, so a late last will of an old connection can
    never mark a reconnected agent offline (Sparkplug B's bdSeq idea).
    """

    agent_id: str
    state: AgentState
    session: int
    seq: int = 0
    sent_at: datetime | None = None
    agent_version: str = ""
    plan_version: int = 0
    groups: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    """What is wrong on the device right now (e.g. ``clock offset 812 ms``); the birth is republished
    whenever the list changes, so the retained state always carries the current faults."""
    type: Literal["state"] = "state"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "state", "agent_id": self.agent_id,
                "state": self.state, "session": self.session, "seq": self.seq,
                "sent_at": format_time(self.sent_at) if self.sent_at else None,
                "agent_version": self.agent_version, "plan_version": self.plan_version,
                "groups": list(self.groups), "faults": list(self.faults)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateMessage:
        state = _str(data, "state", max_len=8)
        if state not in ("online", "offline"):
            raise ProtocolError("state must be 'online' or 'offline'")
        sent_at = data.get("sent_at")
        return cls(agent_id=_str(data, "agent_id", max_len=64), state=state,  # type: ignore[arg-type]
                   session=_int(data, "session"), seq=_int(data, "seq", optional=True),
                   sent_at=parse_time(sent_at, "sent_at") if sent_at is not None else None,
                   agent_version=_str(data, "agent_version", max_len=64, optional=True),
                   plan_version=_int(data, "plan_version", optional=True), groups=_groups(data),
                   faults=_faults(data))


@dataclass(frozen=True)
class NowPlaying:
    item_id: str
    broadcast_id: int
    started_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "broadcast_id": self.broadcast_id,
                "started_at": format_time(self.started_at)}

    @classmethod
    def from_dict(cls, data: object) -> NowPlaying:
        if not isinstance(data, dict):
            raise ProtocolError("now_playing must be an object or null")
        return cls(item_id=_str(data, "item_id", max_len=128), broadcast_id=_int(data, "broadcast_id"),
                   started_at=parse_time(data.get("started_at"), "started_at"))


@dataclass(frozen=True)
class Heartbeat:
    """Periodic health report (QoS 0: a lost one is replaced by the next)."""

    agent_id: str
    session: int
    seq: int
    sent_at: datetime
    uptime_s: int
    plan_version: int
    now_playing: NowPlaying | None = None
    cache_bytes: int = 0
    outbox_pending: int = 0
    volume_percent: int = 0
    amplifier_on: bool = False
    clock_offset_ms: int | None = None
    """Local clock minus server clock, estimated from ``server/clock`` samples (positive: the agent is
    ahead); it includes the smallest one-way network delay seen. Null until samples arrived."""
    agent_version: str = ""
    cpu_temp_c: float | None = None
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    ntp_synced: bool | None = None
    """What chrony or systemd-timesyncd says; null when neither can be asked."""
    ntp_offset_ms: float | None = None
    link_quality_percent: int | None = None
    """Signal quality reported by a cellular modem (ModemManager); null without one."""
    link_technology: str = ""
    faults: tuple[str, ...] = ()
    type: Literal["heartbeat"] = "heartbeat"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "heartbeat", "agent_id": self.agent_id,
                "session": self.session, "seq": self.seq, "sent_at": format_time(self.sent_at),
                "uptime_s": self.uptime_s, "plan_version": self.plan_version,
                "now_playing": self.now_playing.to_dict() if self.now_playing else None,
                "cache_bytes": self.cache_bytes, "outbox_pending": self.outbox_pending,
                "volume_percent": self.volume_percent, "amplifier_on": self.amplifier_on,
                "clock_offset_ms": self.clock_offset_ms, "agent_version": self.agent_version,
                "cpu_temp_c": self.cpu_temp_c, "disk_free_bytes": self.disk_free_bytes,
                "disk_total_bytes": self.disk_total_bytes, "ntp_synced": self.ntp_synced,
                "ntp_offset_ms": self.ntp_offset_ms, "link_quality_percent": self.link_quality_percent,
                "link_technology": self.link_technology, "faults": list(self.faults)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Heartbeat:
        now_playing = data.get("now_playing")
        offset = data.get("clock_offset_ms")
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
            raise ProtocolError("clock_offset_ms must be an integer or null")
        amplifier = data.get("amplifier_on", False)
        if not isinstance(amplifier, bool):
            raise ProtocolError("amplifier_on must be a boolean")
        return cls(agent_id=_str(data, "agent_id", max_len=64), session=_int(data, "session"),
                   seq=_int(data, "seq"), sent_at=parse_time(data.get("sent_at"), "sent_at"),
                   uptime_s=_int(data, "uptime_s"), plan_version=_int(data, "plan_version"),
                   now_playing=NowPlaying.from_dict(now_playing) if now_playing is not None else None,
                   cache_bytes=_int(data, "cache_bytes", optional=True),
                   outbox_pending=_int(data, "outbox_pending", optional=True),
                   volume_percent=_int(data, "volume_percent", optional=True),
                   amplifier_on=amplifier, clock_offset_ms=offset,
                   agent_version=_str(data, "agent_version", max_len=64, optional=True),
                   cpu_temp_c=_optional_number(data, "cpu_temp_c"),
                   disk_free_bytes=_optional_number(data, "disk_free_bytes", integer=True),
                   disk_total_bytes=_optional_number(data, "disk_total_bytes", integer=True),
                   ntp_synced=data.get("ntp_synced") if data.get("ntp_synced") is None
                   else _bool(data, "ntp_synced"),
                   ntp_offset_ms=_optional_number(data, "ntp_offset_ms"),
                   link_quality_percent=_optional_number(data, "link_quality_percent", integer=True),
                   link_technology=_str(data, "link_technology", max_len=32, optional=True),
                   faults=_faults(data))


AsRunKind = Literal["started", "finished", "failed", "skipped", "preempted", "interrupted", "resumed", "trimmed",
                    "cancelled", "fallback"]
AS_RUN_KINDS: tuple[str, ...] = ("started", "finished", "failed", "skipped", "preempted", "interrupted", "resumed",
                                 "trimmed", "cancelled", "fallback")


@dataclass(frozen=True)
class AsRunEvent:
    """What an agent actually did with a plan item; kept in its outbox until the server acks ``event_id``."""

    event_id: str
    agent_id: str
    item_id: str
    broadcast_id: int
    kind: AsRunKind
    at: datetime
    scheduled_at: datetime
    audio_sha256: str
    session: int = 0
    seq: int = 0
    detail: str = ""
    offset_ms: int = 0
    """Position in the audio at this event: where a ``resumed`` play starts, where a cut stopped it."""
    exercise: bool = False
    """Copied from the plan item: this was a drill."""
    type: Literal["asrun"] = "asrun"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "asrun", "event_id": self.event_id,
                "agent_id": self.agent_id, "item_id": self.item_id, "broadcast_id": self.broadcast_id,
                "kind": self.kind, "at": format_time(self.at),
                "scheduled_at": format_time(self.scheduled_at), "audio_sha256": self.audio_sha256,
                "session": self.session, "seq": self.seq, "detail": self.detail,
                "offset_ms": self.offset_ms, "exercise": self.exercise}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AsRunEvent:
        kind = _str(data, "kind", max_len=16)
        if kind not in AS_RUN_KINDS:
            raise ProtocolError(f"kind must be one of {', '.join(AS_RUN_KINDS)}")
        return cls(event_id=_str(data, "event_id", max_len=64), agent_id=_str(data, "agent_id", max_len=64),
                   item_id=_str(data, "item_id", max_len=128), broadcast_id=_int(data, "broadcast_id"),
                   kind=kind,  # type: ignore[arg-type]
                   at=parse_time(data.get("at"), "at"),
                   scheduled_at=parse_time(data.get("scheduled_at"), "scheduled_at"),
                   audio_sha256=_sha256(data, "audio_sha256"), session=_int(data, "session", optional=True),
                   seq=_int(data, "seq", optional=True), detail=_str(data, "detail", max_len=1000, optional=True),
                   offset_ms=_int(data, "offset_ms", optional=True), exercise=_bool(data, "exercise"))


@dataclass(frozen=True)
class EventAck:
    """The server has stored these as-run events; the agent may forget them."""

    event_ids: tuple[str, ...]
    type: Literal["event_ack"] = "event_ack"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "event_ack", "event_ids": list(self.event_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventAck:
        ids = _get(data, "event_ids", list)
        if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
            raise ProtocolError("event_ids must be a list of strings")
        return cls(event_ids=tuple(ids))


CommandName = Literal["play_now", "stop", "set_volume", "resync", "rebirth", "amplifier", "reboot"]
COMMAND_NAMES: tuple[str, ...] = ("play_now", "stop", "set_volume", "resync", "rebirth", "amplifier", "reboot")


@dataclass(frozen=True)
class Command:
    """A one-shot order with an id (duplicates ignored) and an expiry (late ones refused). Never retained."""

    id: str
    name: CommandName
    issued_at: datetime
    expires_at: datetime
    args: Mapping[str, Any] = field(default_factory=dict)
    type: Literal["cmd"] = "cmd"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "cmd", "id": self.id, "name": self.name,
                "issued_at": format_time(self.issued_at), "expires_at": format_time(self.expires_at),
                "args": dict(self.args)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Command:
        name = _str(data, "name", max_len=32)
        if name not in COMMAND_NAMES:
            raise ProtocolError(f"unknown command {name!r}")
        args = _get(data, "args", dict, optional=True) or {}
        return cls(id=_str(data, "id", max_len=64), name=name,  # type: ignore[arg-type]
                   issued_at=parse_time(data.get("issued_at"), "issued_at"),
                   expires_at=parse_time(data.get("expires_at"), "expires_at"), args=args)

    def play_item(self) -> PlanItem:
        """The item a ``play_now`` command carries in ``args.item``."""
        return PlanItem.from_dict(self.args.get("item"))


@dataclass(frozen=True)
class CommandResult:
    id: str
    agent_id: str
    status: Literal["ok", "error"]
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str = ""
    type: Literal["cmd_result"] = "cmd_result"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "cmd_result", "id": self.id, "agent_id": self.agent_id,
                "status": self.status, "data": dict(self.data), "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommandResult:
        status = _str(data, "status", max_len=8)
        if status not in ("ok", "error"):
            raise ProtocolError("status must be 'ok' or 'error'")
        return cls(id=_str(data, "id", max_len=64), agent_id=_str(data, "agent_id", max_len=64),
                   status=status,  # type: ignore[arg-type]
                   data=_get(data, "data", dict, optional=True) or {},
                   error=_str(data, "error", max_len=1000, optional=True))


@dataclass(frozen=True)
class ServerState:
    state: AgentState
    session: str
    type: Literal["server_state"] = "server_state"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "server_state", "state": self.state, "session": self.session}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerState:
        state = _str(data, "state", max_len=8)
        if state not in ("online", "offline"):
            raise ProtocolError("state must be 'online' or 'offline'")
        return cls(state=state, session=_str(data, "session", max_len=64))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ServerClock:
    """The server's wall clock at publication; published every few seconds, QoS 0, never retained
    (a retained or queued sample would be stale by the time it is read)."""

    server_time: datetime
    type: Literal["clock"] = "clock"

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "type": "clock", "server_time": format_time(self.server_time)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerClock:
        return cls(server_time=parse_time(data.get("server_time"), "server_time"))


Message = (Plan | PlanAck | StateMessage | Heartbeat | AsRunEvent | EventAck | Command | CommandResult
           | ServerState | ServerClock)

_DECODERS: dict[str, Any] = {
    "plan": Plan, "plan_ack": PlanAck, "state": StateMessage, "heartbeat": Heartbeat, "asrun": AsRunEvent,
    "event_ack": EventAck, "cmd": Command, "cmd_result": CommandResult, "server_state": ServerState,
    "clock": ServerClock,
}


def encode(message: Message) -> bytes:
    return json.dumps(message.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()


def decode(payload: bytes, *, expect: type[Message] | tuple[type[Message], ...] | None = None) -> Message:
    """Parse and validate one payload; raise ProtocolError saying what is wrong."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"payload is not UTF-8 JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("payload must be a JSON object")
    schema = data.get("schema")
    if type(schema) is not int or schema != SCHEMA_VERSION:
        raise ProtocolError(f"unsupported schema version {schema!r} (this side speaks {SCHEMA_VERSION})")
    kind = data.get("type")
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    message: Message = decoder.from_dict(data)
    if expect is not None and not isinstance(message, expect):
        raise ProtocolError(f"unexpected message type {kind!r} on this topic")
    return message


def now_utc() -> datetime:
    return datetime.now(UTC)
