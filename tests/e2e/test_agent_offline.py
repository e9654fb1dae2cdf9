"""Agent processes against a real Mosquitto: outages, kill -9, corrupt downloads, garbage, emergencies.

Each test runs `loa agent` processes (file sink) with a private broker, an audio HTTP server and a
stand-in for the Loa server that stores each as-run event id once and acknowledges it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.protocol import Command, Topics, encode
from schedules import Priority
from tests.e2e.agent_rig import (
    AgentProc,
    AudioServer,
    Broker,
    StandInServer,
    plan_item,
    plan_payload,
    utc_in,
)
from tests.e2e.harness import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]

ON_TIME_S = 0.1  # agent processes on a shared 2-core machine; precision itself is in the benchmark


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Broker, AudioServer, StandInServer]]:
    broker, audio = Broker(tmp_path), AudioServer()
    broker.start()
    audio.start()
    server = StandInServer(broker)
    server.start()
    try:
        yield broker, audio, server
    finally:
        server.stop()
        audio.stop()
        broker.stop()


@pytest.fixture
def agents(tmp_path: Path, rig: tuple[Broker, AudioServer, StandInServer]) -> Iterator[list[AgentProc]]:
    created: list[AgentProc] = []
    yield created
    for agent in created:
        agent.stop()


def start_agent(agents: list[AgentProc], tmp_path: Path, broker: Broker, name: str,
                groups: tuple[str, ...] = ()) -> AgentProc:
    agent = AgentProc(name, tmp_path / name, broker.url, groups=groups)
    agent.start()
    agents.append(agent)
    return agent


def wait_online(server: StandInServer, agent_id: str, births: int = 1) -> None:
    assert wait_for(lambda: sum(1 for m in server.on("state") if m["agent_id"] == agent_id
                                and m["state"] == "online") >= births, 20), f"{agent_id} never came online"


def wait_plan_ack(server: StandInServer, agent_id: str, version: int) -> None:
    assert wait_for(lambda: any(m["agent_id"] == agent_id and m["version"] == version and m["status"] == "ok"
                                for m in server.on("plan/ack")), 20), f"{agent_id} did not ack plan v{version}"


def test_cached_plan_plays_on_time_while_the_broker_is_down_and_every_event_arrives_once(
        tmp_path: Path, rig: tuple[Broker, AudioServer, StandInServer], agents: list[AgentProc]) -> None:
    broker, audio, server = rig
    agent = start_agent(agents, tmp_path, broker, "outage-1")
    wait_online(server, agent.agent_id)
    sound = audio.add(b"ID3 outage audio" * 200, duration_ms=400)
    first, second = plan_item("first", sound, utc_in(4)), plan_item("second", sound, utc_in(6))
    server.publish(Topics.plan(agent.agent_id), plan_payload(agent.agent_id, 1, first, second), retain=True)
    wait_plan_ack(server, agent.agent_id, 1)

    broker.stop()  # the whole plan plays with the broker down
    assert wait_for(lambda: len([r for r in agent.records() if r["event"] == "end"]) == 2, 10)
    for item in (first, second):
        (start,) = agent.starts(item.id)
        assert abs(start["at"] - item.play_at.timestamp()) <= ON_TIME_S, (item.id, start)
    broker.start()  # the stand-in server's client reconnects by itself and subscribes again

    expected = [("first", "started"), ("first", "finished"), ("second", "started"), ("second", "finished")]
    assert wait_for(lambda: server.kinds(agent.agent_id) == expected, 20), server.kinds(agent.agent_id)
    # Exactly once: one event id per (item, kind); redeliveries of an id are what the server de-duplicates.
    ids_per_kind: dict[tuple[str, str], set[str]] = {}
    for event in server.events.values():
        ids_per_kind.setdefault((event.item_id, event.kind), set()).add(event.event_id)
    assert all(len(ids) == 1 for ids in ids_per_kind.values()), ids_per_kind
    assert agent.alive()


def test_kill_9_mid_playback_reports_the_interruption_and_plays_the_next_item_on_time(
        tmp_path: Path, rig: tuple[Broker, AudioServer, StandInServer], agents: list[AgentProc]) -> None:
    broker, audio, server = rig
    agent = start_agent(agents, tmp_path, broker, "crash-1")
    wait_online(server, agent.agent_id)
    long_audio = audio.add(b"ID3 long programme" * 300, duration_ms=20_000)
    short_audio = audio.add(b"ID3 next bulletin" * 300, duration_ms=500)
    long_item, next_item = plan_item("long", long_audio, utc_in(3)), plan_item("next", short_audio, utc_in(9))
    server.publish(Topics.plan(agent.agent_id), plan_payload(agent.agent_id, 1, long_item, next_item), retain=True)
    wait_plan_ack(server, agent.agent_id, 1)
    assert wait_for(lambda: agent.starts("long"), 10)
    wait_for(lambda: ("long", "started") in server.kinds(agent.agent_id), 5)
    agent.kill9()
    audio.bodies.clear()  # the restarted agent must play from its own cache: the server has nothing now
    agent.start()

    assert wait_for(lambda: ("long", "interrupted") in server.kinds(agent.agent_id), 20), server.kinds(agent.agent_id)
    assert wait_for(lambda: agent.starts("next"), 15)
    (start,) = agent.starts("next")
    assert abs(start["at"] - next_item.play_at.timestamp()) <= ON_TIME_S, start
    assert start["sha256"] == short_audio.sha256
    assert len(agent.starts("long")) == 1, "the interrupted item must not be played again"


def test_a_download_with_the_wrong_sha256_is_never_played_and_is_fetched_again(
        tmp_path: Path, rig: tuple[Broker, AudioServer, StandInServer], agents: list[AgentProc]) -> None:
    broker, audio, server = rig
    agent = start_agent(agents, tmp_path, broker, "sha-1")
    wait_online(server, agent.agent_id)
    sound = audio.add(b"ID3 the right bytes" * 250, duration_ms=300)
    path = sound.url.removeprefix(audio.base)
    audio.corrupt_first[path] = 2
    item = plan_item("verified", sound, utc_in(6))
    server.publish(Topics.plan(agent.agent_id), plan_payload(agent.agent_id, 1, item), retain=True)
    assert wait_for(lambda: agent.starts("verified"), 15)
    assert audio.hits[path] >= 3
    assert {r["sha256"] for r in agent.records()} == {sound.sha256}
    cached = tmp_path / "sha-1" / "state" / "cache" / f"{sound.sha256}.audio"
    assert cached.read_bytes() == audio.bodies[path]


def test_garbage_unknown_schema_and_expired_commands_are_refused_and_playback_goes_on(
        tmp_path: Path, rig: tuple[Broker, AudioServer, StandInServer], agents: list[AgentProc]) -> None:
    broker, audio, server = rig
    agent = start_agent(agents, tmp_path, broker, "garbage-1", groups=("area-g1",))
    wait_online(server, agent.agent_id)
    sound = audio.add(b"ID3 long normal item" * 200, duration_ms=6000)
    item = plan_item("steady", sound, utc_in(2))
    server.publish(Topics.plan(agent.agent_id), plan_payload(agent.agent_id, 1, item, groups=("area-g1",)),
                   retain=True)
    assert wait_for(lambda: agent.starts("steady"), 10)

    garbage = [b"{not json", b"\xff\xfe\x00", b"[1,2]", b"", json.dumps({"schema": 1, "type": "cmd"}).encode(),
               json.dumps({"schema": 2, "type": "plan", "agent_id": agent.agent_id, "version": 99,
                           "issued_at": "2030-01-01T00:00:00.000Z", "items": []}).encode(),
               json.dumps({"schema": 1, "type": "clock", "server_time": "noon"}).encode(), b"x" * (1024 * 1024 + 1)]
    topics = [Topics.plan(agent.agent_id), Topics.command(agent.agent_id), Topics.event_ack(agent.agent_id),
              Topics.SERVER_STATE, Topics.SERVER_CLOCK, Topics.group_command("area-g1")]
    for topic in topics:
        for payload in garbage:
            server.publish(topic, payload)
    now = datetime.now(UTC)
    expired = Command(id="late-1", name="stop", issued_at=now - timedelta(minutes=10),
                      expires_at=now - timedelta(minutes=5))
    server.publish(Topics.command(agent.agent_id), encode(expired))

    results = wait_for(lambda: [m for m in server.on("cmd/result") if m["id"] == "late-1"], 10)
    assert results and results[0]["status"] == "error" and "expired" in results[0]["error"]
    assert wait_for(lambda: [r for r in agent.records() if r["event"] == "end"], 10)
    assert [r["event"] for r in agent.records()] == ["start", "end"], "the item was disturbed"
    assert agent.alive()
    log = agent.log.read_text()
    assert "rejected a message" in log and "unsupported schema version 2" in log
    assert "refused command late-1 (stop): expired" in log


def test_an_emergency_preempts_every_targeted_agent_and_the_normal_item_resumes(
        tmp_path: Path, rig: tuple[Broker, AudioServer, StandInServer], agents: list[AgentProc]) -> None:
    broker, audio, server = rig
    cluster = [start_agent(agents, tmp_path, broker, f"storm-{i}", groups=("area-storm",)) for i in (1, 2)]
    for agent in cluster:
        wait_online(server, agent.agent_id)
    normal_audio = audio.add(b"ID3 market prices" * 200, duration_ms=4000)
    storm_audio = audio.add(b"ID3 storm warning" * 200, duration_ms=1000)
    normal = plan_item("prices", normal_audio, utc_in(3), on_preempt="resume")
    for agent in cluster:
        server.publish(Topics.plan(agent.agent_id), plan_payload(agent.agent_id, 1, normal, groups=("area-storm",)),
                       retain=True)
    assert wait_for(lambda: all(a.starts("prices") for a in cluster), 10)
    now = datetime.now(UTC)
    storm = plan_item("storm", storm_audio, now + timedelta(seconds=1.5), priority=Priority.EMERGENCY)
    command = Command(id="storm-cmd", name="play_now", issued_at=now, expires_at=now + timedelta(minutes=5),
                      args={"item": storm.to_dict()})
    server.publish(Topics.group_command("area-storm"), encode(command))

    assert wait_for(lambda: all(len(a.starts("prices")) == 2 and [r for r in a.records()
                                                                   if r["event"] == "end" and r["item_id"] == "prices"]
                                for a in cluster), 15)
    for agent in cluster:
        events = [(r["event"], r["item_id"]) for r in agent.records()]
        assert events == [("start", "prices"), ("stop", "prices"), ("start", "storm"), ("end", "storm"),
                          ("start", "prices"), ("end", "prices")], events
        records = agent.records()
        assert abs(records[2]["at"] - storm.play_at.timestamp()) <= ON_TIME_S
        assert records[1]["at"] <= records[2]["at"], "the emergency started on top of the normal item"
        resumed = records[4]
        assert 1000 <= resumed["offset_ms"] <= 2200, resumed  # cut about 1.5 s in
        assert wait_for(lambda a=agent: ("prices", "resumed") in server.kinds(a.agent_id), 10)
