"""The spine, end to end: text → speech → schedule → MQTT plans → agents play on time → as-run log.

Real processes: one `loa server`, four `loa agent` (three in commune A, one in commune B), against the
embedded broker with SQLite and against Mosquitto with PostgreSQL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import free_port
from tests.e2e.harness import System, at_vn, utcnow, wait_for

pytestmark = pytest.mark.slow

TEXT = "Thông báo: ngày 20/01/2020 xã họp dân lúc 17h30."


@pytest.fixture(scope="module", params=["embedded-sqlite", "mosquitto-postgres"])
def system(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded-sqlite":
        sys_ = System(root=root, broker_url=f"mqtt://127.0.0.1:{free_port()}", embedded=True,
                      database_url=f"sqlite:///{root / 'loa.sqlite3'}")
    else:
        sys_ = System(root=root, broker_url=request.getfixturevalue("mosquitto_url"), embedded=False,
                      database_url=request.getfixturevalue("postgres_url"))
    sys_.seed({"a": 3, "b": 1})
    try:
        sys_.start_server()
        sys_.start_agents()
        yield sys_
    finally:
        sys_.stop()


@pytest.fixture(scope="module")
def editor(system: System) -> Iterator[httpx.Client]:
    client = system.login(f"editor-a-{system.suffix}")
    system.wait_agents_online()
    yield client
    client.close()


@pytest.fixture(scope="module")
def approver(system: System) -> Iterator[httpx.Client]:
    client = system.login(f"approver-{system.suffix}")
    yield client
    client.close()



def starts_of(system: System, broadcast_id: int) -> dict[str, dict[str, Any]]:
    found = {}
    for agent in system.agents:
        for record in agent.sink_records():
            if record["event"] == "start" and record["broadcast_id"] == broadcast_id:
                assert agent.agent_id not in found, f"{agent.agent_id} played broadcast {broadcast_id} twice"
                found[agent.agent_id] = record
    return found


def schedule(client: httpx.Client, announcement_id: int, play_at: datetime, **targets: list[str]) -> dict[str, Any]:
    response = client.post("/api/v1/broadcasts", json={
        "announcement_id": announcement_id, "play_at": at_vn(play_at), "priority": "normal", **targets})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_text_announcement_plays_on_every_targeted_agent_on_time(
        system: System, editor: httpx.Client, approver: httpx.Client) -> None:
    announcement = system.approved_announcement(editor, approver, TEXT)
    assert announcement["engine"] == "espeak-ng" and announcement["fallback_used"] is True
    assert "hai mươi tháng một" in announcement["spoken_text"]
    play_at = utcnow() + timedelta(seconds=5)
    broadcast = schedule(editor, announcement["id"], play_at, area_codes=[system.area("a")])
    assert broadcast["target_devices"] == 3

    targeted = [a for a in system.agents if a.area == "a"]
    wait_for(lambda: len(starts_of(system, broadcast["id"])) >= 3, timeout=15)
    starts = starts_of(system, broadcast["id"])
    assert set(starts) == {a.agent_id for a in targeted}, f"started on {sorted(starts)}"
    for agent_id, record in starts.items():
        assert record["sha256"] == announcement["audio_sha256"], agent_id
        error_ms = (record["at"] - play_at.timestamp()) * 1000
        assert abs(error_ms) <= 100, f"{agent_id} started {error_ms:.1f} ms off the scheduled time"
    duration_s = next(iter(starts.values()))["duration_ms"] / 1000

    def finished() -> list[dict[str, Any]]:
        rows = editor.get("/api/v1/as-run", params={"broadcast_id": broadcast["id"]}).json()
        done = [r for r in rows if r["kind"] == "finished"]
        return done if len(done) >= len(targeted) else []

    rows = wait_for(finished, timeout=duration_s + 15)
    assert sorted(r["agent_id"] for r in rows) == sorted(a.agent_id for a in targeted)
    all_rows = editor.get("/api/v1/as-run", params={"broadcast_id": broadcast["id"]}).json()
    assert sorted(r["kind"] for r in all_rows) == ["finished"] * 3 + ["started"] * 3
    untargeted = [a for a in system.agents if a.area == "b"]
    assert all(not a.sink_records() for a in untargeted), "a non-targeted agent played something"


def test_single_cluster_target_and_permissions(system: System, editor: httpx.Client, approver: httpx.Client) -> None:
    announcement = system.approved_announcement(editor, approver, "Thông báo riêng cho cụm loa số một.")
    # A commune editor cannot target another commune, nor learn that it or its devices exist.
    refused = editor.post("/api/v1/broadcasts", json={
        "announcement_id": announcement["id"], "play_at": at_vn(utcnow() + timedelta(seconds=30)),
        "area_codes": [system.area("b")]})
    assert refused.status_code == 404, refused.text
    hidden = editor.post("/api/v1/broadcasts", json={
        "announcement_id": announcement["id"], "play_at": at_vn(utcnow() + timedelta(seconds=30)),
        "agent_ids": [f"t{system.suffix}-b1"]})
    assert hidden.status_code == 404, hidden.text

    one = f"t{system.suffix}-a1"
    play_at = utcnow() + timedelta(seconds=4)
    broadcast = schedule(editor, announcement["id"], play_at, agent_ids=[one])
    assert broadcast["target_devices"] == 1
    wait_for(lambda: starts_of(system, broadcast["id"]), timeout=12)
    time.sleep(1.0)  # anyone else who would (wrongly) start does so within the same second
    starts = starts_of(system, broadcast["id"])
    assert list(starts) == [one]
    assert abs(starts[one]["at"] - play_at.timestamp()) <= 0.1


GARBAGE: list[bytes] = [
    b"{not json",
    b"\xff\xfe\x00binary",
    json.dumps({"schema": 99, "type": "plan"}).encode(),
    json.dumps({"schema": 1, "type": "plan", "agent_id": 5, "version": "x", "items": "no"}).encode(),
    json.dumps({"schema": 1, "type": "heartbeat", "agent_id": "x", "session": -1}).encode(),
    json.dumps({"schema": 1, "type": "asrun", "event_id": "e1", "kind": "exploded"}).encode(),
    json.dumps({"schema": 1, "type": "cmd", "id": "c1", "name": "self_destruct"}).encode(),
    json.dumps([1, 2, 3]).encode(),
    b"x" * (2 * 1024 * 1024),  # over MAX_PAYLOAD_BYTES
]


def test_garbage_on_every_topic_is_ignored_and_broadcasts_still_work(
        system: System, editor: httpx.Client, approver: httpx.Client) -> None:
    agent_ids = [a.agent_id for a in system.agents]
    topics = ["loa/v1/server/state"]
    for agent_id in agent_ids:
        topics += [f"loa/v1/agent/{agent_id}/{leaf}" for leaf in
                   ("plan", "cmd", "event/ack", "state", "heartbeat", "plan/ack", "event", "cmd/result")]
    topics += [f"loa/v1/group/area-{system.area(c)}/cmd" for c in ("a", "b", "p")]
    host, port = system.broker_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"garbage-{system.suffix}")
    client.connect(host, int(port))
    client.loop_start()
    try:
        for topic in topics:
            for payload in GARBAGE:
                client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    time.sleep(1.0)
    assert system.server is not None and system.server.poll() is None, "server died"
    assert all(a.process is not None and a.process.poll() is None for a in system.agents), "an agent died"

    announcement = system.approved_announcement(editor, approver, "Bản tin sau khi nhận dữ liệu rác.")
    play_at = utcnow() + timedelta(seconds=5)
    broadcast = schedule(editor, announcement["id"], play_at, area_codes=[system.area("a")])
    wait_for(lambda: len(starts_of(system, broadcast["id"])) == 3, timeout=15)
    starts = starts_of(system, broadcast["id"])
    assert len(starts) == 3
    assert all(abs(r["at"] - play_at.timestamp()) <= 0.1 for r in starts.values())
    logs = "".join(Path(a.log).read_text() for a in system.agents if a.log)
    assert "rejected a message" in logs, "agents should log what they refused"


def test_loa_sim_registers_and_runs_simulated_agents(system: System) -> None:
    import subprocess
    import sys

    from tests.e2e.harness import PASSWORD

    env = {**system.env(), "LOA_SIM_PASSWORD": PASSWORD}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "sim", "--agents", "3", "--server", system.base_url,
         "--broker", system.broker_url, "--area", system.area("b"), "--username", f"admin-{system.suffix}",
         "--state-dir", str(system.root / "sim")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        admin = system.login(f"admin-{system.suffix}")
        expected = {f"sim-{system.area('b')}-{i:04d}" for i in (1, 2, 3)}

        def online() -> bool:
            devices = {d["agent_id"]: d["state"] for d in admin.get("/api/v1/devices").json()}
            return all(devices.get(a) == "online" for a in expected)

        came_online = wait_for(online, timeout=30)
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode()
    assert came_online, f"simulated agents did not come online; loa sim said:\n{output[-3000:]}"
    assert "3/3 simulated agents connected" in output, output


def test_agents_report_their_clock_offset_against_the_server(system: System, editor: httpx.Client) -> None:
    """The server publishes time samples; each agent's heartbeat carries its offset (one machine here:
    the estimate is the local publish-to-receive delay, a few ms)."""
    mine = {a.agent_id for a in system.agents if a.area == "a"}

    def offsets() -> dict[str, int]:
        devices = editor.get("/api/v1/devices").json()
        found = {d["agent_id"]: (d["telemetry"] or {}).get("clock_offset_ms") for d in devices}
        return {a: o for a, o in found.items() if a in mine and o is not None} if all(
            found.get(a) is not None for a in mine) else {}

    seen = wait_for(offsets, timeout=30)
    assert set(seen) == mine, f"no clock offset reported by {sorted(mine - set(seen))}"
    assert all(abs(o) < 200 for o in seen.values()), seen
    telemetry = editor.get("/api/v1/devices").json()[0]["telemetry"]
    assert telemetry["agent_version"] and "faults" in telemetry


def test_as_run_is_complete_after_the_server_restarts(system: System, editor: httpx.Client) -> None:
    """A restart loses nothing: the as-run log and the schedules are still there."""
    before = editor.get("/api/v1/as-run", params={"limit": 1000}).json()
    broadcasts = editor.get("/api/v1/broadcasts").json()
    assert system.server is not None
    system.server.terminate()
    system.server.wait(20)
    system.start_server()
    client = system.login(f"editor-a-{system.suffix}")
    after = client.get("/api/v1/as-run", params={"limit": 1000}).json()
    assert {r["event_id"] for r in before} <= {r["event_id"] for r in after}
    assert [b["id"] for b in client.get("/api/v1/broadcasts").json()] == [b["id"] for b in broadcasts]
    system.wait_agents_online()
