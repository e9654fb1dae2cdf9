"""The audit trail through API v1: every hooked action writes exactly one event (who, what, where, outcome)
and never a secret; refused emergencies and device commands are recorded; admins read only their areas'
events (list and CSV); a device command's acknowledgement read-back survives a restart of the server.

The accounts app (tests/server/accounts_app.py) on PostgreSQL: province P > district D > communes XA, XB;
``padmin`` admin of P, ``xadmin`` admin of XA (viewer of D); ``editor-a`` editor of XA; ``approver``
approver of D; devices dev-a1 (XA), dev-b1 (XB). This module adds ``operator-a`` and ``viewer-a`` (XA).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import ValidationError
from sqlalchemy import select

from agents.protocol import CommandResult, Topics, encode
from server import audit
from server.app import create_app
from server.directory import create_user
from server.models import AuditEvent
from server.permissions import Role
from server.runtime import Runtime
from server.settings import Settings
from tests.server.accounts_app import PASSWORD, AccountsApp, start

VN = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[AccountsApp]:
    for started in start(tmp_path_factory.mktemp("audit"), postgres_url):
        add_operators(started)
        yield started


def add_operators(app: AccountsApp) -> None:
    with app.runtime.db.session() as db:
        for username, role in (("operator-a", Role.OPERATOR), ("viewer-a", Role.VIEWER)):
            create_user(db, username=username, password=PASSWORD, full_name=username,
                        grants=[(role, app.area_ids["XA"])])


class Users:
    """Bearer headers per user, logged in once."""

    def __init__(self, app: AccountsApp) -> None:
        self.app = app
        self._headers: dict[str, dict[str, str]] = {}

    def __getitem__(self, username: str) -> dict[str, str]:
        if username not in self._headers:
            self._headers[username] = self.app.login(username)
        return self._headers[username]


@pytest.fixture(scope="module")
def users(app: AccountsApp) -> Users:
    return Users(app)


def last_id(app: AccountsApp) -> int:
    with app.runtime.db.session() as db:
        return db.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0


SESSION_EVENTS = ("auth.login", "auth.logout")


def events_since(app: AccountsApp, since: int, *, sessions: bool = False) -> list[AuditEvent]:
    """Events after `since`; the log-ins the tests make on the way are left out unless `sessions`."""
    query = select(AuditEvent).where(AuditEvent.id > since).order_by(AuditEvent.id)
    if not sessions:
        query = query.where(AuditEvent.action.not_in(SESSION_EVENTS))
    with app.runtime.db.session() as db:
        return list(db.scalars(query).all())


def only_event(app: AccountsApp, since: int) -> AuditEvent:
    found = events_since(app, since)
    assert len(found) == 1, [(e.action, e.target, e.outcome) for e in found]
    return found[0]


def check(event: AuditEvent, app: AccountsApp, *, action: str, username: str, target: str,
          area: str | None, outcome: str = "ok") -> None:
    assert (event.action, event.username, event.target, event.outcome) == (action, username, target, outcome), (
        event.action, event.username, event.target, event.outcome, event.result)
    assert event.area_id == (app.area_ids[area] if area else None)
    if username:
        assert event.user_id is not None


def no_secret(event: AuditEvent, *secrets: str) -> None:
    text = json.dumps(event.details, ensure_ascii=False) + event.result + event.target
    for secret in (PASSWORD, *secrets):
        assert secret not in text
    for word in ("password", "token", "secret"):
        assert word not in json.dumps(event.details).lower()


def wait_ready_announcement(app: AccountsApp, users: Users, title: str) -> int:
    created = app.client.post("/api/v1/announcements", headers=users["editor-a"],
                              json={"title": title, "text": f"{title}. Mời bà con chú ý lắng nghe.", "area_code": "XA"})
    assert created.status_code == 201, created.text
    announcement_id = int(created.json()["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = app.client.get(f"/api/v1/announcements/{announcement_id}", headers=users["editor-a"]).json()
        if body["audio_status"] != "pending":
            assert body["audio_status"] == "ready", body
            return announcement_id
        time.sleep(0.05)
    raise TimeoutError("no audio")


@pytest.fixture(scope="module")
def announcement(app: AccountsApp, users: Users) -> int:
    announcement_id = wait_ready_announcement(app, users, "Lịch tiêm phòng")
    since = last_id(app)
    reviewed = app.client.post(f"/api/v1/announcements/{announcement_id}/review", headers=users["approver"],
                               json={"approve": True, "comment": "Đúng nội dung"})
    assert reviewed.status_code == 200, reviewed.text
    event = only_event(app, since)
    check(event, app, action="announcement.approve", username="approver", target=f"announcement:{announcement_id}",
          area="XA")
    assert event.details["comment"] == "Đúng nội dung"
    return announcement_id


def in_ten_minutes(app: AccountsApp) -> str:
    return (app.clock.now + timedelta(minutes=10)).isoformat()


# --- announcements and broadcasts ------------------------------------------------------------------------

def test_an_announcement_rejection_is_recorded_with_its_comment(app: AccountsApp, users: Users) -> None:
    announcement_id = wait_ready_announcement(app, users, "Tin sai chính tả")
    since = last_id(app)
    response = app.client.post(f"/api/v1/announcements/{announcement_id}/review", headers=users["approver"],
                               json={"approve": False, "comment": "Sai tên xã"})
    assert response.status_code == 200, response.text
    event = only_event(app, since)
    check(event, app, action="announcement.reject", username="approver", target=f"announcement:{announcement_id}",
          area="XA")
    assert event.details["comment"] == "Sai tên xã" and event.result == "rejected"


def test_a_broadcast_life_cycle_writes_one_event_per_step(app: AccountsApp, users: Users, announcement: int) -> None:
    since = last_id(app)
    created = app.client.post("/api/v1/broadcasts", headers=users["editor-a"], json={
        "announcement_id": announcement, "play_at": in_ten_minutes(app), "area_codes": ["XA"], "submit": False})
    assert created.status_code == 201, created.text
    broadcast_id = created.json()["id"]
    target = f"broadcast:{broadcast_id}"
    event = only_event(app, since)
    check(event, app, action="broadcast.create", username="editor-a", target=target, area="XA")
    assert event.result == "draft" and event.details["area_codes"] == ["XA"]
    assert event.details["announcement_ids"] == [announcement]

    steps: list[tuple[str, str, dict[str, Any], str]] = [
        (f"/api/v1/broadcasts/{broadcast_id}/submit", "editor-a", {}, "broadcast.submit"),
        (f"/api/v1/broadcasts/{broadcast_id}/review", "approver", {"approve": False, "comment": "Đổi giờ"},
         "broadcast.reject"),
        (f"/api/v1/broadcasts/{broadcast_id}/submit", "editor-a", {}, "broadcast.submit"),
        (f"/api/v1/broadcasts/{broadcast_id}/review", "approver", {"approve": True, "comment": "Được"},
         "broadcast.approve"),
        (f"/api/v1/broadcasts/{broadcast_id}/cancel", "editor-a", {"reason": "Hoãn họp"}, "broadcast.cancel"),
    ]
    for path, username, body, action in steps:
        since = last_id(app)
        response = app.client.post(path, headers=users[username], json=body)
        assert response.status_code == 200, (action, response.text)
        found = events_since(app, since)
        event = found[0]
        check(event, app, action=action, username=username, target=target, area="XA")
        if action == "broadcast.reject":
            assert event.details["comment"] == "Đổi giờ" and event.result == "rejected"
        if action == "broadcast.cancel":
            assert event.details["reason"] == "Hoãn họp" and event.result == "cancelled"
            # The cancel sends a stop to the clusters: the server's own act, right after the person's.
            assert [(e.action, e.details["command"]) for e in found[1:]] == [("server.command", "stop")]
        else:
            assert len(found) == 1, [e.action for e in found]


def test_an_emergency_without_the_typed_name_or_the_role_is_recorded_as_refused(
        app: AccountsApp, users: Users, announcement: int) -> None:
    body = {"announcement_id": announcement, "priority": "emergency", "area_codes": ["XA"], "exercise": True}
    since = last_id(app)
    wrong = app.client.post("/api/v1/broadcasts", headers=users["editor-a"], json={**body, "confirm": "Xã Bình"})
    assert wrong.status_code == 422, wrong.text
    event = only_event(app, since)
    check(event, app, action="emergency.send", username="editor-a", target="broadcast:new", area=None,
          outcome="refused")
    assert "type the area's name" in event.result and event.details["area_codes"] == ["XA"]

    since = last_id(app)
    forbidden = app.client.post("/api/v1/broadcasts", headers=users["viewer-a"], json={**body, "confirm": "Xã An"})
    assert forbidden.status_code == 403, forbidden.text
    event = only_event(app, since)
    check(event, app, action="emergency.send", username="viewer-a", target="broadcast:new", area=None,
          outcome="refused")

    since = last_id(app)
    hidden = app.client.post("/api/v1/broadcasts", headers=users["editor-b"], json={**body, "confirm": "Xã An"})
    assert hidden.status_code == 404  # the area does not exist for them: nothing reached a permission check
    assert events_since(app, since) == []


def test_an_emergency_sent_confirmed_and_cancelled_is_in_the_trail(
        app: AccountsApp, users: Users, announcement: int) -> None:
    since = last_id(app)
    switched = app.client.put("/api/v1/settings", headers=users["padmin"],
                              json={"values": {"emergency_confirmation": "second_person"}})
    assert switched.status_code == 200, switched.text
    event = only_event(app, since)
    check(event, app, action="setting.change", username="padmin", target="setting:emergency_confirmation", area=None)
    assert (event.details["old"], event.details["new"]) == ("typed", "second_person")
    try:
        since = last_id(app)
        sent = app.client.post("/api/v1/broadcasts", headers=users["editor-a"], json={
            "announcement_id": announcement, "priority": "emergency", "area_codes": ["XA"], "exercise": True})
        assert sent.status_code == 201, sent.text
        emergency = sent.json()["id"]
        event = only_event(app, since)
        check(event, app, action="emergency.send", username="editor-a", target=f"broadcast:{emergency}", area="XA")
        assert event.result == "submitted"

        since = last_id(app)
        mine = app.client.post(f"/api/v1/broadcasts/{emergency}/review", headers=users["editor-a"],
                               json={"approve": True})
        assert mine.status_code == 403, mine.text  # not an approver, and its author
        check(only_event(app, since), app, action="emergency.confirm", username="editor-a",
              target=f"broadcast:{emergency}", area="XA", outcome="refused")

        since = last_id(app)
        confirmed = app.client.post(f"/api/v1/broadcasts/{emergency}/review", headers=users["approver"],
                                    json={"approve": True, "comment": "Xác nhận"})
        assert confirmed.status_code == 200, confirmed.text
        event, fan_out = events_since(app, since)  # the person's act, then the server's command it set off
        check(event, app, action="emergency.confirm", username="approver", target=f"broadcast:{emergency}",
              area="XA")
        assert event.result == "approved" and event.details["comment"] == "Xác nhận"
        assert (fan_out.action, fan_out.user_id, fan_out.username, fan_out.target) == (
            "server.command", None, "loa-server", f"broadcast:{emergency}")
        assert fan_out.details["command"] == "play_now" and fan_out.details["area_codes"] == ["XA"]
        assert fan_out.ref == fan_out.details["command_id"]

        since = last_id(app)
        cancelled = app.client.post(f"/api/v1/broadcasts/{emergency}/cancel", headers=users["editor-a"],
                                    json={"reason": "Diễn tập xong"})
        assert cancelled.status_code == 200, cancelled.text
        event, stop = events_since(app, since)
        check(event, app, action="emergency.cancel", username="editor-a", target=f"broadcast:{emergency}", area="XA")
        assert (stop.action, stop.details["command"], stop.target) == (
            "server.command", "stop", f"broadcast:{emergency}")
    finally:
        app.client.put("/api/v1/settings", headers=users["padmin"], json={"values": {"emergency_confirmation": None}})


# --- device commands ------------------------------------------------------------------------------------

def test_a_command_is_recorded_with_its_args_and_a_refused_one_too(app: AccountsApp, users: Users) -> None:
    since = last_id(app)
    sent = app.client.post("/api/v1/devices/dev-a1/commands", headers=users["operator-a"],
                           json={"name": "set_volume", "args": {"percent": 35}})
    assert sent.status_code == 202, sent.text
    event = only_event(app, since)
    check(event, app, action="device.command", username="operator-a", target="device:dev-a1", area="XA",
          outcome="pending")
    assert event.details["command"] == "set_volume" and event.details["args"] == {"percent": 35}
    assert event.ref == sent.json()["id"]

    since = last_id(app)
    refused = app.client.post("/api/v1/devices/dev-a1/commands", headers=users["viewer-a"],
                              json={"name": "stop", "args": {}})
    assert refused.status_code == 403, refused.text
    event = only_event(app, since)
    check(event, app, action="device.command", username="viewer-a", target="device:dev-a1", area="XA",
          outcome="refused")
    assert event.details["command"] == "stop" and "operator role" in event.result

    since = last_id(app)
    assert app.client.post("/api/v1/devices/dev-a1/commands", headers=users["editor-b"],
                           json={"name": "stop", "args": {}}).status_code == 404
    assert events_since(app, since) == []


def test_an_unanswered_command_becomes_no_answer_in_the_trail(app: AccountsApp, users: Users) -> None:
    sent = app.client.post("/api/v1/devices/dev-a1/commands", headers=users["operator-a"],
                           json={"name": "resync", "args": {}})
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["id"]
    app.clock.advance(seconds=61)
    try:
        read = app.client.get(f"/api/v1/devices/dev-a1/commands/{command_id}", headers=users["operator-a"])
        assert read.status_code == 200 and read.json()["status"] == "no_answer", read.text
    finally:
        app.clock.advance(seconds=-61)
    with app.runtime.db.session() as db:
        event = db.scalars(select(AuditEvent).where(AuditEvent.ref == command_id)).one()
    assert event.outcome == "no_answer"


@contextmanager
def serving(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime.settings, runtime=runtime)) as client:
        yield client


def answer(broker_url: str, result: CommandResult) -> None:
    """What the agent would publish: its answer to a command, on its own topic."""
    port = int(broker_url.rsplit(":", 1)[1])
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"agent-{result.id[:8]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(Topics.command_result(result.agent_id), encode(result), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_acknowledgement_read_back_survives_a_restart(tmp_path: Path) -> None:
    """Own SQLite-backed app, stopped for real and started again on the same database and data folder."""
    generator = start(tmp_path)
    first = next(generator)
    add_operators(first)
    headers = first.login("operator-a")
    broker_url = first.runtime.settings.broker_url
    sent = first.client.post("/api/v1/devices/dev-a1/commands", headers=headers,
                             json={"name": "amplifier", "args": {"state": "off"}})
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["id"]
    answer(broker_url, CommandResult(id=command_id, agent_id="dev-a1", status="error", error="amplifier busy"))
    deadline = time.monotonic() + 10
    status = "pending"
    while status == "pending" and time.monotonic() < deadline:
        status = first.client.get(f"/api/v1/devices/dev-a1/commands/{command_id}", headers=headers).json()["status"]
        time.sleep(0.05)
    assert status == "refused"
    pending = first.client.post("/api/v1/devices/dev-a1/commands", headers=headers,
                                json={"name": "stop", "args": {}}).json()["id"]
    settings, clock = first.runtime.settings, first.clock
    generator.close()  # the server stops: its in-memory command log and results are gone

    with serving(Runtime(settings, now=clock)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "operator-a", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        read = client.get(f"/api/v1/devices/dev-a1/commands/{command_id}", headers=headers)
        assert read.status_code == 200, read.text
        body = read.json()
        assert (body["status"], body["error"], body["name"], body["sent_by"]) == (
            "refused", "amplifier busy", "amplifier", "operator-a")
        assert client.get(f"/api/v1/devices/dev-a1/commands/{pending}", headers=headers).json()["status"] == "pending"
        clock.advance(seconds=61)
        assert client.get(f"/api/v1/devices/dev-a1/commands/{pending}", headers=headers).json()["status"] == "no_answer"
        assert client.get(f"/api/v1/devices/dev-b1/commands/{pending}", headers=headers).status_code == 404


# --- administration ---------------------------------------------------------------------------------------

def test_user_administration_is_recorded_without_the_one_time_passwords(app: AccountsApp, users: Users) -> None:
    since = last_id(app)
    created = app.client.post("/api/v1/users", headers=users["xadmin"], json={
        "username": "newbie", "full_name": "Người Mới", "grants": [{"role": "editor", "area_code": "XA"}]})
    assert created.status_code == 201, created.text
    event = only_event(app, since)
    check(event, app, action="user.create", username="xadmin", target="user:newbie", area="XA")
    no_secret(event, created.json()["one_time_password"])

    since = last_id(app)
    reset = app.client.post("/api/v1/users/newbie/reset-password", headers=users["xadmin"])
    assert reset.status_code == 200, reset.text
    event = only_event(app, since)
    check(event, app, action="user.reset_password", username="xadmin", target="user:newbie", area="XA")
    no_secret(event, reset.json()["one_time_password"])

    for path, action, area, body in (
            ("/api/v1/users/newbie/disable", "user.disable", "XA", None),
            ("/api/v1/users/newbie/enable", "user.enable", "XA", None),
            ("/api/v1/users/newbie/grants", "user.grant", "XB", {"role": "viewer", "area_code": "XB"})):
        since = last_id(app)
        response = app.client.post(path, headers=users["padmin"], json=body)
        assert response.status_code in (200, 201), response.text
        check(only_event(app, since), app, action=action, username="padmin", target="user:newbie", area=area)
    since = last_id(app)
    assert app.client.delete("/api/v1/users/newbie/grants/viewer/XB", headers=users["padmin"]).status_code == 200
    event = only_event(app, since)
    check(event, app, action="user.revoke", username="padmin", target="user:newbie", area="XB")
    assert event.details == {"role": "viewer", "area_code": "XB"}


def test_device_administration_is_recorded_without_the_secret(app: AccountsApp, users: Users) -> None:
    since = last_id(app)
    registered = app.client.post("/api/v1/devices", headers=users["xadmin"],
                                 json={"agent_id": "dev-a9", "name": "Loa Chợ", "area_code": "XA"})
    assert registered.status_code == 201, registered.text
    event = only_event(app, since)
    check(event, app, action="device.register", username="xadmin", target="device:dev-a9", area="XA")
    no_secret(event, registered.json()["token"])

    since = last_id(app)
    rotated = app.client.post("/api/v1/devices/dev-a9/secret", headers=users["xadmin"])
    assert rotated.status_code == 200, rotated.text
    event = only_event(app, since)
    check(event, app, action="device.rotate_secret", username="xadmin", target="device:dev-a9", area="XA")
    no_secret(event, rotated.json()["token"], registered.json()["token"])

    since = last_id(app)
    assert app.client.patch("/api/v1/devices/dev-a9", headers=users["xadmin"],
                            json={"name": "Loa Chợ Mới"}).status_code == 200
    event = only_event(app, since)
    check(event, app, action="device.edit", username="xadmin", target="device:dev-a9", area="XA")
    assert event.details["changes"] == {"name": {"old": "Loa Chợ", "new": "Loa Chợ Mới"}}

    since = last_id(app)
    assert app.client.delete("/api/v1/devices/dev-a9", headers=users["xadmin"]).status_code == 204
    check(only_event(app, since), app, action="device.delete", username="xadmin", target="device:dev-a9", area="XA")


def test_areas_settings_and_lexicon_changes_are_recorded(app: AccountsApp, users: Users) -> None:
    since = last_id(app)
    village = app.client.post("/api/v1/areas", headers=users["xadmin"],
                              json={"parent_code": "XA", "kind": "village", "name": "Thôn Đông", "code": "XA-DONG"})
    assert village.status_code == 201, village.text
    event = only_event(app, since)
    assert (event.action, event.target, event.area_id) == ("area.create", "area:XA-DONG", village.json()["id"])

    since = last_id(app)
    assert app.client.patch("/api/v1/areas/XA-DONG", headers=users["xadmin"],
                            json={"name": "Thôn Đông Mới"}).status_code == 200
    event = only_event(app, since)
    assert event.action == "area.edit"
    assert event.details["changes"] == {"name": {"old": "Thôn Đông", "new": "Thôn Đông Mới"}}

    since = last_id(app)
    hook = "https://hooks.example.vn/services/T000/B000/s3cr3t-key-value"
    changed = app.client.put("/api/v1/settings", headers=users["padmin"],
                             json={"values": {"max_upload_mb": 77, "alert_webhook_url": hook}})
    assert changed.status_code == 200, changed.text
    found = {e.target: e for e in events_since(app, since)}
    assert set(found) == {"setting:max_upload_mb", "setting:alert_webhook_url"}
    assert found["setting:max_upload_mb"].details["new"] == 77
    assert found["setting:max_upload_mb"].details["old"] != 77
    assert "s3cr3t" not in json.dumps(found["setting:alert_webhook_url"].details)
    assert found["setting:alert_webhook_url"].details["new"] == "https://hooks.example.vn/…"
    app.client.put("/api/v1/settings", headers=users["padmin"],
                   json={"values": {"max_upload_mb": None, "alert_webhook_url": None}})

    since = last_id(app)
    added = app.client.post("/api/v1/lexicon", headers=users["padmin"],
                            json={"term": "HTXA", "spoken": "hợp tác xã An"})
    assert added.status_code == 201, added.text
    check(only_event(app, since), app, action="lexicon.add", username="padmin", target="lexicon:HTXA", area=None)
    since = last_id(app)
    assert app.client.delete(f"/api/v1/lexicon/{added.json()['id']}", headers=users["padmin"]).status_code == 204
    check(only_event(app, since), app, action="lexicon.delete", username="padmin", target="lexicon:HTXA", area=None)


def test_log_in_failures_and_the_lockout_are_recorded_without_the_password(app: AccountsApp) -> None:
    with app.runtime.db.session() as db:
        create_user(db, username="locky", password=PASSWORD, full_name="Locky",
                    grants=[(Role.EDITOR, app.area_ids["XA"])])
    since = last_id(app)
    for attempt in range(5):
        assert app.try_login("locky", f"sai-mat-khau-{attempt}") == 401
    found = events_since(app, since)
    assert [e.action for e in found] == ["auth.login_failed"] * 4 + ["auth.lockout"]
    assert all(e.username == "locky" and e.user_id is not None and e.outcome == "refused" for e in found)
    assert found[-1].details["failed_logins"] == 5 and found[-1].details["locked_minutes"] == 1
    for attempt, event in enumerate(found):
        assert f"sai-mat-khau-{attempt}" not in json.dumps(event.details)

    since = last_id(app)
    assert app.try_login("ai-do-la", "bat-ky") == 401
    event = only_event(app, since)
    assert (event.action, event.username, event.user_id, event.details["reason"]) == (
        "auth.login_failed", "ai-do-la", None, "unknown_user")
    assert "bat-ky" not in json.dumps(event.details)


def test_log_in_log_out_and_a_password_change_are_recorded(app: AccountsApp) -> None:
    with app.runtime.db.session() as db:
        create_user(db, username="tam", password=PASSWORD, full_name="Tâm",
                    grants=[(Role.EDITOR, app.area_ids["XA"])])
    since = last_id(app)
    headers = app.login("tam")
    changed = app.client.post("/api/v1/auth/password", headers=headers,
                              json={"current_password": PASSWORD, "new_password": "mat-khau-moi-cua-tam-2"})
    assert changed.status_code == 204, changed.text
    assert app.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    found = events_since(app, since, sessions=True)
    assert [(e.action, e.username, e.target, e.outcome) for e in found] == [
        ("auth.login", "tam", "user:tam", "ok"), ("auth.password_change", "tam", "user:tam", "ok"),
        ("auth.logout", "tam", "user:tam", "ok")]
    assert all(e.user_id is not None for e in found)
    for event in found:
        no_secret(event, "mat-khau-moi-cua-tam-2")
    # The console's own log-in form goes through the same code.
    since = last_id(app)
    page = app.client.post("/login", data={"username": "tam", "password": "mat-khau-moi-cua-tam-2"},
                           follow_redirects=False)
    app.client.cookies.clear()
    assert page.status_code in (302, 303), page.text
    assert [e.action for e in events_since(app, since, sessions=True)] == ["auth.login"]


def test_writing_an_announcement_is_recorded(app: AccountsApp, users: Users) -> None:
    since = last_id(app)
    created = app.client.post("/api/v1/announcements", headers=users["editor-a"],
                              json={"title": "Lịch tiêm chủng", "text": "Tiêm chủng ngày 05/12.", "area_code": "XA"})
    assert created.status_code == 201, created.text
    event = only_event(app, since)
    check(event, app, action="announcement.create", username="editor-a", target=f"announcement:{created.json()['id']}",
          area="XA")
    assert event.details == {"title": "Lịch tiêm chủng", "kind": "tts", "characters": 22}
    since = last_id(app)
    refused = app.client.post("/api/v1/announcements", headers=users["editor-b"],
                              json={"title": "x", "text": "y", "area_code": "XA"})
    assert refused.status_code in (403, 404)
    assert events_since(app, since) == []  # nothing was written, so nothing is recorded as written


def test_events_past_the_retention_period_are_deleted_and_the_period_has_a_floor(app: AccountsApp) -> None:
    now = datetime.now(UTC)
    with app.runtime.db.session() as db:
        for age_days, target in ((800, "old"), (400, "older-than-a-year"), (10, "recent")):
            db.add(AuditEvent(at=now - timedelta(days=age_days), username="x", action="area.edit",
                              target=f"retention:{target}", details={}, outcome="ok", result=""))
    assert audit.purge_expired(app.runtime.db, now, 0) == 0  # 0 keeps everything
    assert audit.purge_expired(app.runtime.db, now, 730) == 1
    assert audit.purge_expired(app.runtime.db, now, 365) == 1
    with app.runtime.db.session() as db:
        left = set(db.scalars(select(AuditEvent.target).where(AuditEvent.target.like("retention:%"))).all())
    assert left == {"retention:recent"}
    assert Settings(audit_retention_days=0).audit_retention_days == 0
    with pytest.raises(ValidationError, match="at least 365 days"):
        Settings(audit_retention_days=30)


# --- reading the trail --------------------------------------------------------------------------------------

def listed(app: AccountsApp, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = app.client.get("/api/v1/audit", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_commune_admin_reads_only_their_communes_events(app: AccountsApp, users: Users) -> None:
    app.client.patch("/api/v1/devices/dev-b1", headers=users["padmin"], json={"name": "Loa Bình Một"})
    app.client.patch("/api/v1/devices/dev-a1", headers=users["padmin"], json={"name": "Loa An Một"})
    app.try_login("khong-ai-ca", "bat-ky")
    everything = listed(app, users["padmin"], per_page=500)
    targets = {e["target"] for e in everything["events"]}
    assert {"device:dev-b1", "device:dev-a1", "user:khong-ai-ca"} <= targets

    mine = listed(app, users["xadmin"], per_page=500)["events"]
    xa_people = ("xadmin", "editor-a", "operator-a", "viewer-a", "newbie", "locky", "tam")
    assert mine and all(e["area_code"] in ("XA", "XA-DONG") or e["username"] in xa_people for e in mine)
    assert "device:dev-a1" in {e["target"] for e in mine}
    assert not {"device:dev-b1", "user:khong-ai-ca", "setting:max_upload_mb"} & {e["target"] for e in mine}
    assert not [e for e in mine if e["area_code"] == "XB"]
    assert listed(app, users["xadmin"], area_code="XB")["events"] == []
    assert app.client.get("/api/v1/audit", headers=users["xadmin"], params={"area_code": "P"}).status_code == 404
    csv_text = app.client.get("/api/v1/audit.csv", headers=users["xadmin"]).content.decode("utf-8-sig")
    assert "dev-a1" in csv_text and "dev-b1" not in csv_text


@pytest.mark.parametrize("username", ["editor-a", "approver", "operator-a", "viewer-a"])
def test_non_admins_may_not_read_the_trail(app: AccountsApp, users: Users, username: str) -> None:
    assert app.client.get("/api/v1/audit", headers=users[username]).status_code == 403
    assert app.client.get("/api/v1/audit.csv", headers=users[username]).status_code == 403
    app.client.cookies.clear()
    assert app.client.get("/api/v1/audit").status_code == 401


def test_filters_pages_and_newest_first(app: AccountsApp, users: Users) -> None:
    for name in ("Loa An A", "Loa An B", "Loa An C"):
        app.client.patch("/api/v1/devices/dev-a1", headers=users["xadmin"], json={"name": name})
    today = datetime.now(VN).date()
    wanted = {"action": "device.edit", "user": "XADMIN", "target": "dev-a1"}
    first = listed(app, users["padmin"], per_page=2, **wanted)
    assert first["total"] >= 3 and len(first["events"]) == 2
    assert first["events"][0]["details"]["changes"]["name"]["new"] == "Loa An C"
    assert first["events"][0]["at"] >= first["events"][1]["at"]
    second = listed(app, users["padmin"], per_page=2, page=2, **wanted)
    assert second["events"][0]["id"] < first["events"][1]["id"]
    for date_from, date_to in ((today.strftime("%d/%m/%Y"), today.strftime("%d/%m/%Y")),
                               (today.isoformat(), None),
                               ((datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z"), None)):
        params = {"date_from": date_from, **({"date_to": date_to} if date_to else {})}
        assert listed(app, users["padmin"], **params, **wanted)["total"] == first["total"]
    yesterday = (today - timedelta(days=1)).strftime("%d/%m/%Y")
    assert listed(app, users["padmin"], date_to=yesterday, **wanted)["total"] == 0
    emergencies = listed(app, users["padmin"], action="emergency", per_page=500)["events"]
    assert emergencies and all(e["action"].startswith("emergency.") for e in emergencies)
    bad = app.client.get("/api/v1/audit", headers=users["padmin"], params={"date_from": "31/02/2026"})
    assert bad.status_code == 422


def test_the_csv_export(app: AccountsApp, users: Users) -> None:
    response = app.client.get("/api/v1/audit.csv", headers=users["padmin"], params={"action": "device.edit"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Thời gian", "Người thực hiện", "Thao tác"]
    assert len(rows) > 1 and all(r[2] == "device.edit" for r in rows[1:])
    datetime.strptime(rows[1][0], "%d/%m/%Y %H:%M:%S")
    assert json.loads(rows[1][7])["changes"]


def test_the_console_page_is_for_admins_and_words_a_bad_date(app: AccountsApp) -> None:
    def page(username: str, **params: str) -> Any:
        app.client.cookies.clear()
        logged = app.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert logged.status_code == 200, logged.text
        try:
            return app.client.get("/console/admin/audit", params=params, follow_redirects=False)
        finally:
            app.client.cookies.clear()

    assert page("editor-a").status_code == 403
    shown = page("xadmin", action="device.command")
    assert shown.status_code == 200 and "Gửi lệnh tới cụm loa" in shown.text and "dev-a1" in shown.text
    assert "dev-b1" not in shown.text
    bad = page("padmin", date_from="32/13/2026")
    assert bad.status_code == 422 and 'id="audit-error"' in bad.text
