"""Commands from the device page and the device's plan, end to end: `loa server` on PostgreSQL and the
machine's Mosquitto, real `loa agent` processes that acknowledge (or refuse) what they are sent.

Validation errors and refusals across communes go through the same running server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agents.protocol import CommandResult
from server.db import Database
from server.device_commands import CommandLog, SentCommand, command_status
from server.directory import area_by_code, create_user
from server.permissions import Role
from tests.e2e.harness import PASSWORD, System, at_vn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, mosquitto_url: str, postgres_url: str) -> Iterator[System]:
    root = tmp_path_factory.mktemp("device-commands")
    system = System(root=root, broker_url=mosquitto_url, embedded=False, database_url=postgres_url)
    system.seed({"a": 1, "b": 1})
    db = Database(system.database_url)
    db.start()
    with db.session() as session:
        a, b = area_by_code(session, system.area("a")).id, area_by_code(session, system.area("b")).id
        for name, role, area in (("operator-a", Role.OPERATOR, a), ("operator-b", Role.OPERATOR, b),
                                 ("viewer-a", Role.VIEWER, a), ("editor-b", Role.EDITOR, b)):
            create_user(session, username=f"{name}-{system.suffix}", password=PASSWORD, full_name=name,
                        grants=[(role, area)])
    db.stop()
    try:
        system.start_server()
        system.start_agents()
        system.wait_agents_online()
        yield system
    finally:
        system.stop()


def client(system: System, name: str) -> contextlib.closing[httpx.Client]:
    """An API client logged in as the seeded user ``name``, closed at the end of the ``with``."""
    return contextlib.closing(system.login(f"{name}-{system.suffix}"))


@pytest.fixture(scope="module")
def operator(system: System) -> Iterator[httpx.Client]:
    with client(system, "operator-a") as c:
        yield c


def device_a(system: System) -> str:
    return f"t{system.suffix}-a1"


def device_b(system: System) -> str:
    return f"t{system.suffix}-b1"


def wait_answer(http: httpx.Client, agent_id: str, command_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = http.get(f"/api/v1/devices/{agent_id}/commands/{command_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] != "pending":
            return body
        time.sleep(0.2)
    raise TimeoutError(f"no answer to {command_id}: {body}")


def send(http: httpx.Client, agent_id: str, name: str, args: dict[str, Any] | None = None) -> httpx.Response:
    return http.post(f"/api/v1/devices/{agent_id}/commands", json={"name": name, "args": args or {}})


@pytest.mark.parametrize(("name", "args", "fragment"), [
    ("set_volume", {"percent": 101}, "0 to 100"),
    ("set_volume", {"percent": -1}, "0 to 100"),
    ("set_volume", {"percent": "50"}, "integer"),
    ("set_volume", {"percent": True}, "integer"),
    ("set_volume", {"percent": 50, "level": "emergency"}, "level"),
    ("amplifier", {"state": "maybe"}, "'on', 'off' or 'auto'"),
    ("stop", {"broadcast_id": 3}, "broadcast_id"),
    ("play_now", {}, "announcement_id"),
    ("play_now", {"announcement_id": 1, "url": "http://evil.example/a.mp3"}, "url"),
    ("reboot", {"confirm": "x"}, "name"),
    ("rebirth", {}, "name"),
])
def test_invalid_commands_are_refused_with_a_reason(system: System, operator: httpx.Client, name: str,
                                                     args: dict[str, Any], fragment: str) -> None:
    response = send(operator, device_a(system), name, args)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


def test_commands_need_the_operator_role_on_the_device_area(system: System) -> None:
    for name in ("viewer-a", "editor-a"):
        with client(system, name) as http:
            refused = send(http, device_a(system), "set_volume", {"percent": 10})
            assert refused.status_code == 403, refused.text
    with client(system, "operator-b") as other:
        assert send(other, device_a(system), "stop").status_code == 404  # another commune: does not exist
        assert other.get(f"/api/v1/devices/{device_a(system)}/plan").status_code == 404
    with httpx.Client(base_url=system.base_url) as anonymous:
        assert send(anonymous, device_a(system), "stop").status_code == 401


def test_the_agent_acknowledges_volume_amplifier_stop_and_resync(system: System, operator: httpx.Client) -> None:
    agent_id = device_a(system)
    sent = send(operator, agent_id, "set_volume", {"percent": 35})
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "pending" and sent.json()["sent_by"] == f"operator-a-{system.suffix}"
    answer = wait_answer(operator, agent_id, sent.json()["id"])
    assert answer["status"] == "ok" and answer["data"]["percent"] == 35
    deadline = time.monotonic() + 15  # and the next heartbeats report it
    while time.monotonic() < deadline:
        telemetry = operator.get(f"/api/v1/devices/{agent_id}").json()["telemetry"] or {}
        if telemetry.get("volume_percent") == 35:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the heartbeat never reported the new volume")
    on = wait_answer(operator, agent_id, send(operator, agent_id, "amplifier", {"state": "on"}).json()["id"])
    assert on["status"] == "ok" and on["data"]["amplifier_on"] is True
    auto = wait_answer(operator, agent_id, send(operator, agent_id, "amplifier", {"state": "auto"}).json()["id"])
    assert auto["status"] == "ok"
    for name in ("stop", "resync"):
        assert wait_answer(operator, agent_id, send(operator, agent_id, name).json()["id"])["status"] == "ok"


def test_a_command_id_of_another_device_is_not_found(system: System, operator: httpx.Client) -> None:
    command_id = send(operator, device_a(system), "resync").json()["id"]
    with client(system, "admin") as admin:
        assert admin.get(f"/api/v1/devices/{device_b(system)}/commands/{command_id}").status_code == 404
        assert admin.get(f"/api/v1/devices/{device_a(system)}/commands/nope").status_code == 404


def test_play_now_plays_only_an_approved_announcement_of_the_area(system: System, operator: httpx.Client) -> None:
    agent = next(a for a in system.agents if a.agent_id == device_a(system))
    with client(system, "editor-a") as editor, client(system, "approver") as approver, \
            client(system, "editor-b") as editor_b:
        draft = editor.post("/api/v1/announcements", json={"title": "Chưa duyệt", "text": "Chưa duyệt.",
                                                          "area_code": system.area("a")})
        assert draft.status_code == 201, draft.text
        refused = send(operator, agent.agent_id, "play_now", {"announcement_id": draft.json()["id"]})
        assert refused.status_code == 422 and "approved" in refused.json()["detail"]
        created_b = editor_b.post("/api/v1/announcements", json={"title": "Xã B", "text": "Thông báo xã B.",
                                                                "area_code": system.area("b")})
        assert created_b.status_code == 201, created_b.text
        assert send(operator, agent.agent_id, "play_now",
                    {"announcement_id": created_b.json()["id"]}).status_code == 404
        approved = system.approved_announcement(editor, approver, "Mời bà con họp lúc 8 giờ.")
    sent = send(operator, agent.agent_id, "play_now", {"announcement_id": approved["id"]})
    assert sent.status_code == 202, sent.text
    answer = wait_answer(operator, agent.agent_id, sent.json()["id"])
    assert answer["status"] == "ok" and answer["data"]["item_id"].startswith("op-")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(r.get("sha256") == approved["audio_sha256"] for r in agent.sink_records()):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"the agent never played the announcement: {agent.sink_records()}")


def test_the_plan_lists_what_is_coming(system: System, operator: httpx.Client) -> None:
    agent_id = device_a(system)
    with client(system, "editor-a") as editor, client(system, "approver") as approver:
        approved = system.approved_announcement(editor, approver, "Lịch tiêm chủng tuần này.")
        play_at = datetime.now(UTC) + timedelta(hours=2)
        created = editor.post("/api/v1/broadcasts", json={"announcement_id": approved["id"], "play_at": at_vn(play_at),
                                                          "agent_ids": [agent_id], "priority": "priority"})
        assert created.status_code == 201, created.text
    deadline = time.monotonic() + 20
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        plan = operator.get(f"/api/v1/devices/{agent_id}/plan")
        assert plan.status_code == 200, plan.text
        items = [i for i in plan.json()["items"] if i["broadcast_id"] == created.json()["id"]]
        if items:
            break
        time.sleep(0.3)
    assert items, "the broadcast never reached the device's plan"
    item = items[0]
    assert item["title"] == "Thông báo" and item["priority"] == "priority" and item["duration_ms"] > 0
    assert abs(datetime.fromisoformat(item["play_at"]) - play_at) < timedelta(seconds=1)


# --- the acknowledgement states, without a device --------------------------------------------------------

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


def sent_command(command_id: str = "c1") -> SentCommand:
    return SentCommand(id=command_id, agent_id="x", name="stop", args={}, sent_by="u", issued_at=T0,
                       expires_at=T0 + timedelta(seconds=60))


def test_without_an_answer_a_command_is_pending_then_unanswered() -> None:
    assert command_status(sent_command(), None, T0 + timedelta(seconds=59)) == "pending"
    assert command_status(sent_command(), None, T0 + timedelta(seconds=61)) == "no_answer"
    refused = CommandResult(id="c1", agent_id="x", status="error", error="expired")
    assert command_status(sent_command(), refused, T0 + timedelta(seconds=61)) == "refused"
    assert command_status(sent_command(), CommandResult(id="c1", agent_id="x", status="ok"), T0) == "ok"


def test_the_command_log_keeps_only_the_newest() -> None:
    log = CommandLog(capacity=2)
    for command_id in ("c1", "c2", "c3"):
        log.add(sent_command(command_id))
    assert log.get("c1") is None and log.get("c2") is not None and log.get("c3") is not None
