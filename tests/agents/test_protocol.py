"""Protocol v1 (agents/protocol.py): topics, every message's round trip, and strict decoding.

Tests are named after the sections of the protocol: topic tree, envelope, time, plan, plan ack, state
(birth and will), heartbeat, as-run event, event ack, command, command result, server state.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agents.errors import ProtocolError
from agents.protocol import (
    AS_RUN_KINDS,
    COMMAND_NAMES,
    MAX_PAYLOAD_BYTES,
    ROOT,
    AsRunEvent,
    AudioRef,
    Command,
    CommandResult,
    EventAck,
    Heartbeat,
    Message,
    NowPlaying,
    ParsedTopic,
    Plan,
    PlanAck,
    PlanItem,
    ServerState,
    StateMessage,
    Topics,
    decode,
    encode,
    format_time,
    parse_time,
    parse_topic,
)
from schedules.model import Priority

AGENT = "tq-08740-c01"
SHA = "0123456789abcdef" * 4
SHA2 = "fedcba9876543210" * 4
T = datetime(2025, 3, 1, 6, 0, 0, 123000, tzinfo=UTC)


def later(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


AUDIO = AudioRef(sha256=SHA, url=f"https://loa.example.gov.vn/api/v1/audio/{SHA}", duration_ms=61_000,
                 size_bytes=480_000)
ITEM = PlanItem(id="b7-1740808800123", broadcast_id=7, title="Thông báo lịch tiêm chủng mở rộng",
                priority=Priority.PRIORITY, play_at=T, audio=AUDIO, max_late_ms=15_000)
ITEM2 = PlanItem(id="b8-1740812400000", broadcast_id=8, title="", priority=Priority.EMERGENCY,
                 play_at=later(3600), audio=AudioRef(SHA2, "http://10.0.0.1:8000/a", 1, 1))

PLAN = Plan(agent_id=AGENT, version=3, issued_at=T, items=(ITEM, ITEM2), groups=("area-01", "area-01.b_2"))
PLAN_ACK_OK = PlanAck(agent_id=AGENT, version=3, status="ok")
PLAN_ACK_ERROR = PlanAck(agent_id=AGENT, version=3, status="error", error="audio missing", missing=(SHA, SHA2))
BIRTH = StateMessage(agent_id=AGENT, state="online", session=12, seq=0, sent_at=T, agent_version="0.1.0",
                     plan_version=3)
WILL = StateMessage(agent_id=AGENT, state="offline", session=12)
HEARTBEAT = Heartbeat(agent_id=AGENT, session=12, seq=44, sent_at=T, uptime_s=3600, plan_version=3,
                      now_playing=NowPlaying(item_id=ITEM.id, broadcast_id=7, started_at=later(-5)),
                      cache_bytes=10_000_000, outbox_pending=2, volume_percent=80, amplifier_on=True,
                      clock_offset_ms=-12)
HEARTBEAT_IDLE = Heartbeat(agent_id=AGENT, session=1, seq=1, sent_at=T, uptime_s=0, plan_version=0)
ASRUN = AsRunEvent(event_id="e-1", agent_id=AGENT, item_id=ITEM.id, broadcast_id=7, kind="finished",
                   at=later(61), scheduled_at=T, audio_sha256=SHA, session=12, seq=45, detail="ok")
EVENT_ACK = EventAck(event_ids=("e-1", "e-2"))
COMMAND = Command(id="c-1", name="set_volume", issued_at=T, expires_at=later(300), args={"percent": 70})
PLAY_NOW = Command(id="c-2", name="play_now", issued_at=T, expires_at=later(60), args={"item": ITEM.to_dict()})
COMMAND_RESULT = CommandResult(id="c-1", agent_id=AGENT, status="ok", data={"volume": 70})
COMMAND_FAILED = CommandResult(id="c-1", agent_id=AGENT, status="error", error="mixer not found")
SERVER_ONLINE = ServerState(state="online", session="s-abc")

SAMPLES: dict[str, Message] = {
    "plan": PLAN, "plan_empty": Plan(agent_id=AGENT, version=0, issued_at=T, items=()),
    "plan_ack_ok": PLAN_ACK_OK, "plan_ack_error": PLAN_ACK_ERROR, "birth": BIRTH, "will": WILL,
    "heartbeat": HEARTBEAT, "heartbeat_idle": HEARTBEAT_IDLE, "asrun": ASRUN, "event_ack": EVENT_ACK,
    "command": COMMAND, "play_now": PLAY_NOW, "command_result": COMMAND_RESULT,
    "command_failed": COMMAND_FAILED, "server_state": SERVER_ONLINE,
}


def wire(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode(message))
    return data


def dumps(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False).encode()


_DELETE = object()


def mutated(message: Message, path: tuple[str | int, ...], value: object = _DELETE) -> bytes:
    """The message's wire form with one (possibly nested) field replaced or removed."""
    data: Any = copy.deepcopy(wire(message))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return dumps(data)


def rejects(payload: bytes, *fragments: str) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(payload)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- Topic tree -------------------------------------------------------------------------------------

AGENT_TOPICS = [
    (Topics.state, "state"), (Topics.heartbeat, "heartbeat"), (Topics.plan, "plan"),
    (Topics.plan_ack, "plan/ack"), (Topics.event, "event"), (Topics.event_ack, "event/ack"),
    (Topics.command, "cmd"), (Topics.command_result, "cmd/result"),
]


@pytest.mark.parametrize(("build", "leaf"), AGENT_TOPICS, ids=[leaf for _, leaf in AGENT_TOPICS])
def test_topic_tree_agent_topics_parse_back(build: Any, leaf: str) -> None:
    topic = build(AGENT)
    assert topic == f"loa/v1/agent/{AGENT}/{leaf}"
    assert parse_topic(topic) == ParsedTopic("agent", AGENT, leaf)


def test_topic_tree_group_and_server_topics_parse_back() -> None:
    assert Topics.group_command("area-01.b_2") == "loa/v1/group/area-01.b_2/cmd"
    assert parse_topic(Topics.group_command("area-01.b_2")) == ParsedTopic("group", "area-01.b_2", "cmd")
    assert Topics.SERVER_STATE == "loa/v1/server/state"
    assert parse_topic(Topics.SERVER_STATE) == ParsedTopic("server", "", "state")


def test_topic_tree_server_subscriptions_cover_agent_published_leaves() -> None:
    published = {Topics.state(AGENT), Topics.heartbeat(AGENT), Topics.plan_ack(AGENT), Topics.event(AGENT),
                 Topics.command_result(AGENT)}
    concrete = {sub.replace("+", AGENT) for sub in Topics.SERVER_SUBSCRIPTIONS}
    assert concrete == published
    for topic in concrete:
        assert parse_topic(topic).scope == "agent"


@pytest.mark.parametrize("topic", [
    "", "loa", "loa/v1", "loa/v1/", "loa/v2/agent/tq-1/state", "other/v1/agent/tq-1/state",
    "/loa/v1/agent/tq-1/state", "loa/v1agent/tq-1/state", "loa/v1/agent/tq-1", "loa/v1/agent/Tq-1/state",
    "loa/v1/agent/+/state", "loa/v1/agent/#", "loa/v1/agent//state", "loa/v1/device/tq-1/state",
    "loa/v1/group/Area 1/cmd", "loa/v1/group/g", "loa/v1/server/status", "loa/v1/server/state/extra",
    "LOA/V1/server/state",
])
def test_topic_tree_parse_topic_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(ProtocolError, match="topic"):
        parse_topic(topic)


@pytest.mark.parametrize("agent_id", ["", "TQ-1", "tq-A1", "tq/1", "+", "#", "tq+1", "tq#1", "-tq", "_tq",
                                      "tq 1", "tq.1", "a" * 64, "điện"])
def test_topic_tree_agent_refuses_invalid_agent_ids(agent_id: str) -> None:
    with pytest.raises(ProtocolError, match="invalid agent id"):
        Topics.agent(agent_id, "state")
    with pytest.raises(ProtocolError):
        Topics.heartbeat(agent_id)


def test_topic_tree_agent_accepts_boundary_ids() -> None:
    assert Topics.state("a" * 63) == f"{ROOT}/agent/{'a' * 63}/state"
    assert Topics.state("0") == f"{ROOT}/agent/0/state"
    assert Topics.state("tq_1-x") == f"{ROOT}/agent/tq_1-x/state"


@pytest.mark.parametrize("group_id", ["", "Area", "a/b", "+", "#", ".area", "a" * 64])
def test_topic_tree_group_refuses_invalid_group_ids(group_id: str) -> None:
    with pytest.raises(ProtocolError, match="invalid group id"):
        Topics.group_command(group_id)


# --- Envelope: every message round-trips; strict decoding -------------------------------------------

@pytest.mark.parametrize("name", list(SAMPLES))
def test_envelope_every_message_round_trips(name: str) -> None:
    message = SAMPLES[name]
    payload = encode(message)
    assert decode(payload) == message
    assert decode(payload, expect=type(message)) == message
    assert encode(decode(payload)) == payload
    data = json.loads(payload)
    assert data["schema"] == 1
    assert data["type"] == message.type


def test_envelope_encoding_is_compact_utf8() -> None:
    payload = encode(PLAN)
    assert b", " not in payload and b": " not in payload
    assert "Thông báo".encode() in payload  # not \\u-escaped


def test_envelope_rejects_invalid_json() -> None:
    rejects(b'{"schema": 1, "type": ', "not UTF-8 JSON")
    rejects(b"", "not UTF-8 JSON")
    rejects(b"{'schema': 1}", "not UTF-8 JSON")


def test_envelope_rejects_non_utf8_bytes() -> None:
    rejects(b'{"schema":1,"type":"\xff"}', "not UTF-8 JSON")
    rejects('{"schema":1,"type":"server_state","state":"online","session":"é"}'.encode("latin-1"),
            "not UTF-8 JSON")


def test_envelope_rejects_utf16_payload() -> None:
    rejects(json.dumps(SERVER_ONLINE.to_dict()).encode("utf-16"), "UTF-8")


@pytest.mark.parametrize("payload", [b"[]", b'[{"schema":1,"type":"event_ack","event_ids":[]}]', b'"plan"', b"1",
                                     b"null"])
def test_envelope_rejects_non_objects(payload: bytes) -> None:
    rejects(payload, "must be a JSON object")


@pytest.mark.parametrize("schema", [2, 0, "1", None])
def test_envelope_rejects_other_schema_versions(schema: object) -> None:
    rejects(mutated(SERVER_ONLINE, ("schema",), schema), "unsupported schema version", repr(schema))
    rejects(mutated(SERVER_ONLINE, ("schema",)), "unsupported schema version None")




@pytest.mark.parametrize("kind", ["bogus", "Plan", "", 5, None, ["plan"]])
def test_envelope_rejects_unknown_type(kind: object) -> None:
    rejects(mutated(SERVER_ONLINE, ("type",), kind), "unknown message type", repr(kind))
    rejects(mutated(SERVER_ONLINE, ("type",)), "unknown message type None")


def test_envelope_rejects_oversized_payload() -> None:
    body = encode(SERVER_ONLINE)
    exact = body[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(body)) + b"}"
    assert len(exact) == MAX_PAYLOAD_BYTES
    assert decode(exact) == SERVER_ONLINE  # the limit itself is allowed
    rejects(exact[:-1] + b" }", f"{MAX_PAYLOAD_BYTES + 1} bytes exceeds {MAX_PAYLOAD_BYTES}")
    rejects(b"x" * (MAX_PAYLOAD_BYTES * 4), "exceeds")  # refused unread, not as invalid JSON


def test_envelope_expect_rejects_the_wrong_message_type() -> None:
    with pytest.raises(ProtocolError, match="unexpected message type 'heartbeat'"):
        decode(encode(HEARTBEAT), expect=Plan)
    with pytest.raises(ProtocolError, match="unexpected message type 'plan'"):
        decode(encode(PLAN), expect=(Command, ServerState))
    assert decode(encode(COMMAND), expect=(Command, ServerState)) == COMMAND


def test_envelope_checks_the_payload_before_the_expected_type() -> None:
    with pytest.raises(ProtocolError, match="missing field 'session'"):
        decode(mutated(HEARTBEAT, ("session",)), expect=Plan)


_REQUIRED: list[tuple[str, tuple[str | int, ...]]] = [
    ("plan", ("agent_id",)), ("plan", ("version",)), ("plan", ("issued_at",)), ("plan", ("items",)),
    ("plan", ("items", 0, "id")), ("plan", ("items", 0, "broadcast_id")), ("plan", ("items", 0, "priority")),
    ("plan", ("items", 0, "play_at")), ("plan", ("items", 0, "audio")),
    ("plan", ("items", 1, "audio", "sha256")), ("plan", ("items", 1, "audio", "url")),
    ("plan", ("items", 1, "audio", "duration_ms")), ("plan", ("items", 1, "audio", "size_bytes")),
    ("plan_ack_ok", ("agent_id",)), ("plan_ack_ok", ("version",)), ("plan_ack_ok", ("status",)),
    ("birth", ("agent_id",)), ("birth", ("state",)), ("birth", ("session",)),
    ("heartbeat", ("agent_id",)), ("heartbeat", ("session",)), ("heartbeat", ("seq",)),
    ("heartbeat", ("sent_at",)), ("heartbeat", ("uptime_s",)), ("heartbeat", ("plan_version",)),
    ("heartbeat", ("now_playing", "item_id")), ("heartbeat", ("now_playing", "broadcast_id")),
    ("heartbeat", ("now_playing", "started_at")),
    ("asrun", ("event_id",)), ("asrun", ("agent_id",)), ("asrun", ("item_id",)), ("asrun", ("broadcast_id",)),
    ("asrun", ("kind",)), ("asrun", ("at",)), ("asrun", ("scheduled_at",)), ("asrun", ("audio_sha256",)),
    ("event_ack", ("event_ids",)),
    ("command", ("id",)), ("command", ("name",)), ("command", ("issued_at",)), ("command", ("expires_at",)),
    ("command_result", ("id",)), ("command_result", ("agent_id",)), ("command_result", ("status",)),
    ("server_state", ("state",)), ("server_state", ("session",)),
]


@pytest.mark.parametrize(("name", "path"), _REQUIRED, ids=[f"{n}-{'.'.join(map(str, p))}" for n, p in _REQUIRED])
def test_envelope_rejects_missing_fields(name: str, path: tuple[str | int, ...]) -> None:
    field = str(path[-1])
    rejects(mutated(SAMPLES[name], path), field)
    rejects(mutated(SAMPLES[name], path, None), field)  # null is as good as missing


_OPTIONAL: dict[type, set[str]] = {
    Plan: {"groups"}, PlanAck: {"error", "missing"},
    StateMessage: {"seq", "sent_at", "agent_version", "plan_version", "groups", "faults"},
    Heartbeat: {"now_playing", "cache_bytes", "outbox_pending", "volume_percent", "amplifier_on",
                "clock_offset_ms", "agent_version", "cpu_temp_c", "disk_free_bytes", "disk_total_bytes",
                "ntp_synced", "ntp_offset_ms", "link_quality_percent", "link_technology", "faults"},
    AsRunEvent: {"session", "seq", "detail", "offset_ms", "exercise"}, EventAck: set(), Command: {"args"},
    CommandResult: {"data", "error"}, ServerState: set(),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_envelope_optional_fields_may_be_omitted_or_null(name: str) -> None:
    message = SAMPLES[name]
    data = wire(message)
    optional = _OPTIONAL[type(message)]
    required = {k: v for k, v in data.items() if k not in optional}
    omitted = decode(dumps(required))
    nullable = optional - {"amplifier_on"}  # a boolean: may be omitted (false), not null
    nulled = decode(dumps(required | dict.fromkeys(nullable)))
    assert type(omitted) is type(message)
    assert omitted == nulled


def test_envelope_optional_plan_item_fields_take_their_defaults() -> None:
    data = wire(PLAN)
    del data["items"][0]["title"], data["items"][0]["max_late_ms"]
    decoded = decode(dumps(data))
    assert isinstance(decoded, Plan)
    assert decoded.items[0].title == ""
    assert decoded.items[0].max_late_ms == 30_000


# --- Time -------------------------------------------------------------------------------------------

def test_time_is_utc_with_milliseconds_and_z() -> None:
    assert format_time(T) == "2025-03-01T06:00:00.123Z"
    hanoi = timezone(timedelta(hours=7))
    assert format_time(T.astimezone(hanoi)) == "2025-03-01T06:00:00.123Z"
    assert format_time(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00.000Z"
    assert parse_time("2025-03-01T13:00:00.123+07:00", "t") == T
    assert parse_time("2025-03-01T06:00:00.123Z", "t").tzinfo == UTC


def test_time_naive_datetime_is_refused_both_ways() -> None:
    with pytest.raises(ProtocolError, match="naive datetime"):
        format_time(datetime(2025, 3, 1, 6, 0))
    with pytest.raises(ProtocolError, match="naive"):
        encode(Plan(agent_id=AGENT, version=1, issued_at=datetime(2025, 3, 1), items=()))
    rejects(mutated(PLAN, ("issued_at",), "2025-03-01T06:00:00"), "issued_at has no time zone")
    rejects(mutated(PLAN, ("items", 0, "play_at"), "2025-03-01T06:00:00.123"), "play_at has no time zone")


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01T00:00:00Z", "", "06:00"])
def test_time_garbage_is_refused(value: str) -> None:
    rejects(mutated(HEARTBEAT, ("sent_at",), value), "sent_at is not an ISO 8601 time")


def test_time_must_be_a_string() -> None:
    rejects(mutated(HEARTBEAT, ("sent_at",), 1740808800), "sent_at must be an ISO 8601 string")


def test_time_non_utc_offsets_on_the_wire_decode_to_the_same_instant() -> None:
    decoded = decode(mutated(PLAN, ("items", 0, "play_at"), "2025-03-01T13:00:00.123+07:00"))
    assert isinstance(decoded, Plan)
    assert decoded.items[0].play_at == T
    assert decoded.items[0].play_at.tzinfo == UTC


# --- Plan -------------------------------------------------------------------------------------------

def test_plan_round_trips_with_items_and_groups() -> None:
    decoded = decode(encode(PLAN), expect=Plan)
    assert decoded == PLAN
    assert isinstance(decoded, Plan)
    assert decoded.items[0].priority is Priority.PRIORITY
    assert decoded.items[1].max_late_ms == 30_000  # the default


def test_plan_wire_form_of_an_item() -> None:
    item = wire(PLAN)["items"][0]
    assert item == {"id": ITEM.id, "broadcast_id": 7, "title": ITEM.title, "priority": "priority",
                    "play_at": "2025-03-01T06:00:00.123Z", "audio": AUDIO.to_dict(), "max_late_ms": 15_000}


def test_plan_item_with_zero_max_late_round_trips() -> None:
    plan = Plan(agent_id=AGENT, version=1, issued_at=T, items=(PlanItem(
        id="b1-0", broadcast_id=1, title="", priority=Priority.NORMAL, play_at=T, audio=AUDIO, max_late_ms=0),))
    assert decode(encode(plan)) == plan


@pytest.mark.parametrize("priority", ["urgent", "", "NORMAL ", 2])
def test_plan_rejects_unknown_priority(priority: object) -> None:
    rejects(mutated(PLAN, ("items", 0, "priority"), priority), "priority")


def test_plan_priority_names_are_case_insensitive() -> None:
    decoded = decode(mutated(PLAN, ("items", 0, "priority"), "Emergency"))
    assert isinstance(decoded, Plan) and decoded.items[0].priority is Priority.EMERGENCY


@pytest.mark.parametrize("sha", [SHA.upper(), SHA[:-1], SHA + "0", "g" * 64, "", " " + SHA[1:]])
def test_plan_rejects_bad_sha256(sha: str) -> None:
    rejects(mutated(PLAN, ("items", 0, "audio", "sha256"), sha), "sha256")


@pytest.mark.parametrize("url", ["ftp://loa.example/a.mp3", "file:///etc/passwd", "javascript:alert(1)",
                                 "/api/v1/audio/x", "HTTP//x", "mqtt://broker/a", ""])
def test_plan_rejects_non_http_audio_url(url: str) -> None:
    rejects(mutated(PLAN, ("items", 0, "audio", "url"), url), "audio.url must be an http(s) URL")


def test_plan_rejects_overlong_audio_url() -> None:
    rejects(mutated(PLAN, ("items", 0, "audio", "url"), "https://x/" + "a" * 2048), "url", "longer than 2048")


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("version",), "3", "field 'version' must be int, got str"),
    (("version",), True, "field 'version' must be int, got a boolean"),
    (("version",), 3.0, "field 'version' must be int, got float"),
    (("version",), -1, "field 'version' must be >= 0"),
    (("items",), {"0": {}}, "field 'items' must be list"),
    (("items", 0), "b7", "plan item must be an object"),
    (("items", 0, "broadcast_id"), False, "field 'broadcast_id' must be int, got a boolean"),
    (("items", 0, "title"), 5, "field 'title' must be str"),
    (("items", 0, "title"), "x" * 301, "longer than 300"),
    (("items", 0, "audio"), [], "audio must be an object"),
    (("items", 0, "audio", "duration_ms"), 0, "field 'duration_ms' must be >= 1"),
    (("items", 0, "audio", "size_bytes"), True, "field 'size_bytes' must be int, got a boolean"),
    (("items", 0, "max_late_ms"), "30s", "field 'max_late_ms' must be int"),
    (("groups",), "area-01", "field 'groups' must be list"),
])
def test_plan_rejects_wrong_types(path: tuple[str | int, ...], value: object, fragment: str) -> None:
    rejects(mutated(PLAN, path, value), fragment)


def test_plan_rejects_too_many_items() -> None:
    data = wire(PLAN)
    data["items"] = [{}] * 2001  # refused by count, before any item is read
    rejects(dumps(data), "at most 2000 items")
    data["items"] = [ITEM.to_dict()] * 2000
    assert len(Plan.from_dict(data).items) == 2000


@pytest.mark.parametrize("group", ["Area-01", "area/01", "+", "#", "", ".area", 5, None])
def test_plan_rejects_invalid_group_id(group: object) -> None:
    rejects(mutated(PLAN, ("groups",), ["area-01", group]), "invalid group id", repr(group))


# --- Plan ack ---------------------------------------------------------------------------------------

def test_plan_ack_round_trips() -> None:
    assert decode(encode(PLAN_ACK_OK), expect=PlanAck) == PLAN_ACK_OK
    assert decode(encode(PLAN_ACK_ERROR), expect=PlanAck) == PLAN_ACK_ERROR


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("status",), "done", "status must be 'ok' or 'error'"),
    (("missing",), ["not-a-sha"], "missing must list sha256 strings"),
    (("missing",), [1], "missing must list sha256 strings"),
    (("missing",), SHA, "field 'missing' must be list"),
    (("version",), True, "got a boolean"),
])
def test_plan_ack_rejects_bad_fields(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(PLAN_ACK_ERROR, path, value), fragment)


# --- State: birth and will --------------------------------------------------------------------------

def test_state_birth_and_will_round_trip() -> None:
    assert decode(encode(BIRTH), expect=StateMessage) == BIRTH
    assert decode(encode(WILL), expect=StateMessage) == WILL
    assert wire(WILL)["sent_at"] is None


def test_state_birth_and_will_round_trip_with_groups() -> None:
    birth = StateMessage(agent_id=AGENT, state="online", session=12, sent_at=T, groups=("area-01", "area-01.b_2"))
    assert decode(encode(birth)) == birth


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("state",), "sleeping", "state must be 'online' or 'offline'"),
    (("session",), True, "field 'session' must be int, got a boolean"),
    (("session",), "12", "field 'session' must be int, got str"),
    (("session",), -1, "field 'session' must be >= 0"),
    (("seq",), 1.5, "field 'seq' must be int"),
    (("sent_at",), "2025-03-01T06:00:00", "sent_at has no time zone"),
    (("agent_version",), 1, "field 'agent_version' must be str"),
])
def test_state_birth_and_will_rejects_bad_fields(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(BIRTH, path, value), fragment)


# --- Heartbeat --------------------------------------------------------------------------------------

def test_heartbeat_round_trips() -> None:
    assert decode(encode(HEARTBEAT), expect=Heartbeat) == HEARTBEAT
    assert decode(encode(HEARTBEAT_IDLE), expect=Heartbeat) == HEARTBEAT_IDLE
    assert wire(HEARTBEAT_IDLE)["now_playing"] is None


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("seq",), True, "field 'seq' must be int, got a boolean"),
    (("uptime_s",), False, "field 'uptime_s' must be int, got a boolean"),
    (("uptime_s",), "3600", "field 'uptime_s' must be int, got str"),
    (("cache_bytes",), True, "got a boolean"),
    (("outbox_pending",), -2, "field 'outbox_pending' must be >= 0"),
    (("clock_offset_ms",), True, "clock_offset_ms must be an integer or null"),
    (("clock_offset_ms",), 1.5, "clock_offset_ms must be an integer or null"),
    (("amplifier_on",), 1, "amplifier_on must be a boolean"),
    (("amplifier_on",), "true", "amplifier_on must be a boolean"),
    (("now_playing",), "b7", "now_playing must be an object or null"),
    (("now_playing", "broadcast_id"), True, "got a boolean"),
])
def test_heartbeat_rejects_wrong_types(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(HEARTBEAT, path, value), fragment)


# --- As-run event -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", AS_RUN_KINDS)
def test_asrun_event_round_trips_every_kind(kind: str) -> None:
    event = AsRunEvent(event_id=f"e-{kind}", agent_id=AGENT, item_id=ITEM.id, broadcast_id=7,
                       kind=kind, at=later(1), scheduled_at=T, audio_sha256=SHA)  # type: ignore[arg-type]
    assert decode(encode(event), expect=AsRunEvent) == event
    assert decode(encode(ASRUN)) == ASRUN


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("kind",), "exploded", "kind must be one of started, finished"),
    (("audio_sha256",), "abc", "field 'audio_sha256' must be 64 lowercase hex characters"),
    (("broadcast_id",), True, "got a boolean"),
    (("event_id",), "e" * 65, "longer than 64"),
    (("at",), "2025-03-01 06:00", "at has no time zone"),
    (("detail",), ["x"], "field 'detail' must be str"),
])
def test_asrun_event_rejects_bad_fields(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(ASRUN, path, value), fragment)


# --- Event ack --------------------------------------------------------------------------------------

def test_event_ack_round_trips() -> None:
    assert decode(encode(EVENT_ACK), expect=EventAck) == EVENT_ACK
    assert decode(encode(EventAck(event_ids=()))) == EventAck(event_ids=())


@pytest.mark.parametrize("ids", [["e-1", 2], [""], ["e" * 65], [None], "e-1"])
def test_event_ack_rejects_bad_ids(ids: object) -> None:
    rejects(mutated(EVENT_ACK, ("event_ids",), ids), "event_ids")


# --- Command ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_command_round_trips_every_name(name: str) -> None:
    command = Command(id=f"c-{name}", name=name, issued_at=T, expires_at=later(60))  # type: ignore[arg-type]
    assert decode(encode(command), expect=Command) == command


def test_command_play_now_carries_a_plan_item() -> None:
    decoded = decode(encode(PLAY_NOW), expect=Command)
    assert isinstance(decoded, Command)
    assert decoded == PLAY_NOW
    assert decoded.play_item() == ITEM
    with pytest.raises(ProtocolError, match="plan item must be an object"):
        COMMAND.play_item()


@pytest.mark.parametrize("name", ["self_destruct", "PLAY_NOW", "", "play now"])
def test_command_rejects_unknown_command_name(name: str) -> None:
    rejects(mutated(COMMAND, ("name",), name), "unknown command", repr(name))


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("args",), ["percent", 70], "field 'args' must be dict"),
    (("id",), 7, "field 'id' must be str"),
    (("expires_at",), "soon", "expires_at is not an ISO 8601 time"),
])
def test_command_rejects_bad_fields(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(COMMAND, path, value), fragment)


# --- Command result ---------------------------------------------------------------------------------

def test_command_result_round_trips() -> None:
    assert decode(encode(COMMAND_RESULT), expect=CommandResult) == COMMAND_RESULT
    assert decode(encode(COMMAND_FAILED), expect=CommandResult) == COMMAND_FAILED


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("status",), "maybe", "status must be 'ok' or 'error'"),
    (("data",), "70", "field 'data' must be dict"),
    (("error",), "x" * 1001, "longer than 1000"),
])
def test_command_result_rejects_bad_fields(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(COMMAND_RESULT, path, value), fragment)


# --- Server state -----------------------------------------------------------------------------------

@pytest.mark.parametrize("state", ["online", "offline"])
def test_server_state_round_trips(state: str) -> None:
    message = ServerState(state=state, session="s-1")  # type: ignore[arg-type]
    assert decode(encode(message), expect=ServerState) == message


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("state",), "starting", "state must be 'online' or 'offline'"),
    (("session",), 1, "field 'session' must be str"),
])
def test_server_state_rejects_bad_fields(path: tuple[str, ...], value: object, fragment: str) -> None:
    rejects(mutated(SERVER_ONLINE, path, value), fragment)
