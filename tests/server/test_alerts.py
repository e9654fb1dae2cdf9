"""Alert rules on real database rows (SQLite and PostgreSQL), the alerts API and its permissions.

The runtime runs with a clock the test moves; the monitor is the runtime's own (its periodic job may
run meanwhile: evaluation is idempotent). Device state and heartbeats are written as the MQTT bridge
writes them, as-run failures as it stores them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.alerts import AlertMonitor
from server.app import create_app
from server.console.routes import event_allowed, load_scope
from server.directory import create_area, create_user, principal_of, register_device
from server.live import LiveBus
from server.models import Alert, AsRunEntry, Device, DeviceStatus, User
from server.permissions import Role
from server.runtime import Runtime
from server.settings import load_settings
from tests.conftest import free_port

PASSWORD = "alert-test-password"
GOOD_HEARTBEAT: dict[str, Any] = {"faults": [], "ntp_synced": True, "ntp_offset_ms": 1.5, "clock_offset_ms": 12,
                                  "disk_free_bytes": 6_000_000_000, "disk_total_bytes": 8_000_000_000}


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Env:
    client: TestClient
    runtime: Runtime
    clock: Clock

    def headers(self, username: str) -> dict[str, str]:
        response = self.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def device_id(self, agent_id: str) -> int:
        with self.runtime.db.session() as db:
            return int(db.scalar(select(Device.id).where(Device.agent_id == agent_id)) or 0)

    def set_status(self, agent_id: str, *, state: str, changed_ago: timedelta = timedelta(0),
                   heartbeat: dict[str, Any] | None = None) -> None:
        device_id = self.device_id(agent_id)
        with self.runtime.db.session() as db:
            status = db.get(DeviceStatus, device_id) or DeviceStatus(device_id=device_id)
            status.state = state
            status.changed_at = self.clock.at - changed_ago
            status.last_seen_at = self.clock.at - changed_ago
            status.heartbeat = heartbeat
            db.add(status)

    def open_alerts(self, agent_id: str) -> dict[str, Alert]:
        with self.runtime.db.session() as db:
            rows = db.scalars(select(Alert).where(Alert.device_id == self.device_id(agent_id),
                                                  Alert.resolved_at.is_(None))).all()
            db.expunge_all()
        return {a.rule: a for a in rows}

    def as_run(self, agent_id: str, kind: str, *, detail: str = "") -> None:
        with self.runtime.db.session() as db:
            db.add(AsRunEntry(event_id=uuid.uuid4().hex, device_id=self.device_id(agent_id), broadcast_id=None,
                              item_id="b0-1", kind=kind, at=self.clock.at, scheduled_at=self.clock.at,
                              audio_sha256="0" * 64, detail=detail, received_at=self.clock.at))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp(f"alerts-{request.param}")
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    settings = load_settings(data_dir=root, database_url=database_url, broker_url=f"mqtt://127.0.0.1:{free_port()}",
                             tts_online=False, http_port=free_port())
    clock = Clock()
    runtime = Runtime(settings, now=clock)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        with runtime.db.session() as db:
            province = create_area(db, code="p1", name="Tỉnh", kind="province", parent_code=None)
            a = create_area(db, code="c-a", name="Xã A", kind="commune", parent_code="p1")
            b = create_area(db, code="c-b", name="Xã B", kind="commune", parent_code="p1")
            create_user(db, username="operator-a", password=PASSWORD, full_name="Vận hành A",
                        grants=[(Role.OPERATOR, a.id)])
            create_user(db, username="viewer-a", password=PASSWORD, full_name="Xem A", grants=[(Role.VIEWER, a.id)])
            create_user(db, username="operator-b", password=PASSWORD, full_name="Vận hành B",
                        grants=[(Role.OPERATOR, b.id)])
            create_user(db, username="admin", password=PASSWORD, full_name="Quản trị",
                        grants=[(Role.ADMIN, province.id)])
            for agent_id, area in (("dev-a1", "c-a"), ("dev-a2", "c-a"), ("dev-a3", "c-a"), ("dev-b1", "c-b")):
                register_device(db, None, agent_id=agent_id, name=f"Cụm {agent_id}", area_code=area)
        yield Env(client, runtime, clock)


def test_offline_opens_after_the_threshold_and_resolves_when_back(env: Env) -> None:
    env.set_status("dev-a1", state="offline", changed_ago=timedelta(minutes=5))
    env.runtime.alerts.evaluate()
    assert "offline" not in env.open_alerts("dev-a1")

    env.clock.at += timedelta(minutes=6)
    changes = env.runtime.alerts.evaluate()
    assert [(c.action, c.agent_id, c.rule) for c in changes if c.agent_id == "dev-a1"] == [
        ("opened", "dev-a1", "offline")]
    alert = env.open_alerts("dev-a1")["offline"]
    assert alert.severity == "critical"
    assert alert.params["limit_minutes"] == 10
    assert datetime.fromisoformat(alert.params["since"]) == env.clock.at - timedelta(minutes=11)

    env.runtime.alerts.evaluate()  # still offline: the same alert, not a second one
    with env.runtime.db.session() as db:
        assert len(db.scalars(select(Alert).where(Alert.rule == "offline",
                                                  Alert.device_id == env.device_id("dev-a1"))).all()) == 1

    env.set_status("dev-a1", state="online", heartbeat=GOOD_HEARTBEAT)
    changes = env.runtime.alerts.evaluate()
    assert ("resolved", "offline") in [(c.action, c.rule) for c in changes if c.agent_id == "dev-a1"]
    assert env.open_alerts("dev-a1") == {}


def test_heartbeat_rules_open_with_their_figures_and_resolve(env: Env) -> None:
    bad = {**GOOD_HEARTBEAT, "faults": ["amplifier relay: GPIO17 stuck", "clock offset +120 ms per chrony"],
           "ntp_offset_ms": 120.4, "disk_free_bytes": 400_000_000}
    env.set_status("dev-a2", state="online", heartbeat=bad)
    env.runtime.alerts.evaluate()
    found = env.open_alerts("dev-a2")
    assert set(found) == {"amplifier_fault", "clock_offset", "disk_full"}
    assert found["amplifier_fault"].severity == "critical"
    assert found["amplifier_fault"].params["faults"] == ["amplifier relay: GPIO17 stuck"]
    assert found["clock_offset"].severity == "warning"
    assert found["clock_offset"].params == {"offset_ms": 120, "source": "ntp", "ntp_synced": True, "limit_ms": 50}
    assert found["disk_full"].params["used_percent"] == 95.0
    assert found["disk_full"].params["limit_percent"] == 90

    # Offline: the last heartbeat is stale, so its alerts neither resolve nor reopen.
    env.set_status("dev-a2", state="offline", heartbeat=GOOD_HEARTBEAT)
    env.runtime.alerts.evaluate()
    assert set(env.open_alerts("dev-a2")) == {"amplifier_fault", "clock_offset", "disk_full"}

    env.set_status("dev-a2", state="online", heartbeat=GOOD_HEARTBEAT)
    changes = env.runtime.alerts.evaluate()
    assert sorted(c.rule for c in changes if c.agent_id == "dev-a2" and c.action == "resolved") == [
        "amplifier_fault", "clock_offset", "disk_full"]
    assert env.open_alerts("dev-a2") == {}


def test_clock_rules_use_the_server_offset_without_ntp_and_flag_an_unsynced_clock(env: Env) -> None:
    no_ntp = {**GOOD_HEARTBEAT, "ntp_offset_ms": None, "ntp_synced": None, "clock_offset_ms": -80}
    env.set_status("dev-a3", state="online", heartbeat=no_ntp)
    env.runtime.alerts.evaluate()
    assert env.open_alerts("dev-a3")["clock_offset"].params["source"] == "server"
    assert env.open_alerts("dev-a3")["clock_offset"].params["offset_ms"] == -80

    unsynced = {**GOOD_HEARTBEAT, "ntp_synced": False}
    env.set_status("dev-a3", state="online", heartbeat=unsynced)
    env.runtime.alerts.evaluate()
    params = env.open_alerts("dev-a3")["clock_offset"].params  # the same alert, with today's figures
    assert params["ntp_synced"] is False and params["offset_ms"] == 2

    env.set_status("dev-a3", state="online", heartbeat=GOOD_HEARTBEAT)
    env.runtime.alerts.evaluate()
    assert env.open_alerts("dev-a3") == {}


def test_thresholds_are_read_at_each_evaluation(env: Env) -> None:
    nearly_full = {**GOOD_HEARTBEAT, "disk_free_bytes": 640_000_000}  # 92 % used
    env.set_status("dev-a3", state="online", heartbeat=nearly_full)
    env.runtime.alerts.evaluate()
    assert "disk_full" in env.open_alerts("dev-a3")
    configured = env.runtime.settings
    env.runtime.settings = configured.model_copy(update={"alert_disk_percent": 95})
    try:
        env.runtime.alerts.evaluate()
        assert "disk_full" not in env.open_alerts("dev-a3")
    finally:
        env.runtime.settings = configured
        env.set_status("dev-a3", state="online", heartbeat=GOOD_HEARTBEAT)
        env.runtime.alerts.evaluate()


def test_failed_plays_group_per_broadcast_until_acknowledged(env: Env) -> None:
    env.as_run("dev-b1", "failed", detail="ALSA: device busy")
    env.as_run("dev-b1", "finished")
    env.as_run("dev-b1", "failed", detail="ALSA: device busy again")
    env.as_run("dev-b1", "skipped", detail="audio missing")
    env.runtime.alerts.evaluate()
    found = env.open_alerts("dev-b1")
    assert set(found) == {"play_failed", "play_skipped"}
    assert found["play_failed"].params["count"] == 2
    assert found["play_failed"].params["detail"] == "ALSA: device busy again"
    assert found["play_skipped"].params["count"] == 1

    env.clock.at += timedelta(hours=2)  # event alerts do not expire by themselves
    env.runtime.alerts.evaluate()
    assert set(env.open_alerts("dev-b1")) == {"play_failed", "play_skipped"}

    operator = env.headers("operator-b")
    acked = env.client.post(f"/api/v1/alerts/{found['play_failed'].id}/acknowledge", headers=operator,
                            json={"comment": "  Đã khởi động lại loa  "})
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["acknowledged_by"] == "Vận hành B" and body["ack_comment"] == "Đã khởi động lại loa"
    assert body["resolved_at"] is not None and body["can_acknowledge"] is False
    assert set(env.open_alerts("dev-b1")) == {"play_skipped"}

    env.as_run("dev-b1", "failed")  # after the acknowledgement, a new failure is a new alert
    env.runtime.alerts.evaluate()
    again = env.open_alerts("dev-b1")["play_failed"]
    assert again.id != found["play_failed"].id and again.params["count"] == 1


def test_a_restarted_monitor_does_not_count_a_failure_twice(env: Env) -> None:
    env.as_run("dev-b1", "skipped")
    env.runtime.alerts.evaluate()
    before = env.open_alerts("dev-b1")["play_skipped"].params["count"]
    fresh = AlertMonitor(env.runtime.db, LiveBus(), settings=lambda: env.runtime.settings, now=env.clock)
    fresh.evaluate()
    env.runtime.alerts.evaluate()
    assert env.open_alerts("dev-b1")["play_skipped"].params["count"] == before


def test_listing_shows_only_the_users_areas(env: Env) -> None:
    env.set_status("dev-b1", state="offline", changed_ago=timedelta(minutes=30))
    env.set_status("dev-a1", state="offline", changed_ago=timedelta(minutes=30))
    env.runtime.alerts.evaluate()
    operator_a = env.headers("operator-a")
    listed = env.client.get("/api/v1/alerts", headers=operator_a)
    assert listed.status_code == 200, listed.text
    alerts = listed.json()
    assert alerts and {a["agent_id"] for a in alerts} <= {"dev-a1", "dev-a2", "dev-a3"}
    assert alerts[0]["severity"] == "critical"  # critical first
    assert all(a["can_acknowledge"] for a in alerts if a["acknowledged_at"] is None)

    admin = env.headers("admin")
    everything = env.client.get("/api/v1/alerts?status=all", headers=admin).json()
    assert {"dev-a1", "dev-b1"} <= {a["agent_id"] for a in everything}
    only_b = env.client.get("/api/v1/alerts?area_code=c-b", headers=admin).json()
    assert {a["agent_id"] for a in only_b} == {"dev-b1"}
    resolved = env.client.get("/api/v1/alerts?status=resolved&agent_id=dev-a2", headers=admin).json()
    assert resolved and all(a["resolved_at"] is not None for a in resolved)
    unacked = env.client.get("/api/v1/alerts?status=all&unacknowledged=true&rule=play_failed", headers=admin).json()
    assert unacked and all(a["acknowledged_at"] is None and a["rule"] == "play_failed" for a in unacked)

    # Another commune's area, device or alert looks exactly like one that does not exist.
    assert env.client.get("/api/v1/alerts?area_code=c-b", headers=operator_a).status_code == 404
    assert env.client.get("/api/v1/alerts?agent_id=dev-b1", headers=operator_a).status_code == 404
    alert_b = env.open_alerts("dev-b1")["offline"]
    refused = env.client.post(f"/api/v1/alerts/{alert_b.id}/acknowledge", headers=operator_a, json={"comment": "x"})
    assert refused.status_code == 404
    assert env.client.post("/api/v1/alerts/999999/acknowledge", headers=operator_a,
                           json={"comment": "x"}).status_code == 404
    assert env.client.get("/api/v1/alerts?status=bogus", headers=operator_a).status_code == 422

    summary = env.client.get("/api/v1/alerts/summary", headers=operator_a).json()
    assert summary["open"] == len(alerts) and summary["critical"] >= 1


def test_acknowledging_needs_the_operator_role_and_a_comment(env: Env) -> None:
    env.set_status("dev-a1", state="offline", changed_ago=timedelta(minutes=30))
    env.runtime.alerts.evaluate()
    alert = env.open_alerts("dev-a1")["offline"]
    url = f"/api/v1/alerts/{alert.id}/acknowledge"
    viewer = env.headers("viewer-a")
    assert env.client.get("/api/v1/alerts", headers=viewer).status_code == 200
    assert env.client.post(url, headers=viewer, json={"comment": "đã xem"}).status_code == 403
    operator = env.headers("operator-a")
    blank = env.client.post(url, headers=operator, json={"comment": "   "})
    assert blank.status_code == 422 and "comment" in blank.text
    assert env.client.post(url, headers=operator, json={"comment": "x" * 501}).status_code == 422
    assert env.client.post(url, headers=operator, json={}).status_code == 422

    done = env.client.post(url, headers=operator, json={"comment": "Mất điện thôn 3, đã báo điện lực"})
    assert done.status_code == 200, done.text
    # A condition alert stays open until the condition clears; a second acknowledgement is refused.
    assert done.json()["resolved_at"] is None and done.json()["acknowledged_at"] is not None
    assert env.client.post(url, headers=operator, json={"comment": "lần nữa"}).status_code == 409
    summary = env.client.get("/api/v1/alerts/summary", headers=operator).json()
    assert summary["unacknowledged"] < summary["open"]


def test_acknowledging_from_the_console_needs_the_csrf_token(env: Env) -> None:
    env.set_status("dev-a1", state="offline", changed_ago=timedelta(minutes=30))
    env.runtime.alerts.evaluate()
    alert_id = env.open_alerts("dev-a1")["offline"].id
    login = env.client.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
    assert login.status_code == 200
    try:
        refused = env.client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"comment": "không có CSRF"})
        assert refused.status_code == 401
    finally:
        env.client.cookies.clear()


def test_the_alerts_page_lists_and_refuses_other_communes(env: Env) -> None:
    env.set_status("dev-b1", state="offline", changed_ago=timedelta(minutes=30))
    env.runtime.alerts.evaluate()
    login = env.client.post("/api/v1/auth/login", json={"username": "operator-b", "password": PASSWORD})
    assert login.status_code == 200
    try:
        page = env.client.get("/console/alerts")
        assert page.status_code == 200
        assert 'data-rule="offline"' in page.text and "Cụm loa mất kết nối" in page.text
        assert "dev-a1" not in page.text
        assert env.client.get("/console/alerts?area_code=c-a").status_code == 404
        env.client.cookies.set("loa_lang", "en")
        english = env.client.get("/console/alerts?status=all")
        assert "Cluster offline" in english.text and "Cụm loa mất kết nối" not in english.text
    finally:
        env.client.cookies.clear()


def test_live_alert_events_reach_only_users_of_that_area(env: Env) -> None:
    bus = LiveBus()
    monitor = AlertMonitor(env.runtime.db, bus, settings=lambda: env.runtime.settings, now=env.clock)

    async def first_event() -> dict[str, Any]:
        bus.start(asyncio.get_running_loop())
        iterator = bus.stream(heartbeat_s=0.5).__aiter__()
        pending = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0)  # subscribed now
        env.set_status("dev-a3", state="online", heartbeat={**GOOD_HEARTBEAT, "faults": ["mixer: amixer failed"]})
        await asyncio.to_thread(monitor.evaluate, ["dev-a3"])
        while True:
            chunk = await asyncio.wait_for(pending, 10)
            if chunk.startswith("data: "):
                event: dict[str, Any] = json.loads(chunk[6:])
                return event
            pending = asyncio.ensure_future(iterator.__anext__())

    event = asyncio.run(first_event())
    assert event["type"] == "alert" and event["action"] == "opened" and event["agent_id"] == "dev-a3"
    assert event["rule"] == "amplifier_fault" and event["severity"] == "critical"
    with env.runtime.db.session() as db:
        scopes = {name: load_scope(db, principal_of(db.scalars(select(User).where(User.username == name)).one()))
                  for name in ("operator-a", "operator-b", "admin")}
    assert event_allowed(event, scopes["operator-a"], lambda _id: None)
    assert event_allowed(event, scopes["admin"], lambda _id: None)
    assert not event_allowed(event, scopes["operator-b"], lambda _id: None)
    env.set_status("dev-a3", state="online", heartbeat=GOOD_HEARTBEAT)
    env.runtime.alerts.evaluate()
