"""Telemetry history: sampling heartbeats through the real bridge ingest, offline gaps, retention, the chart
query and its API (permissions), on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from agents.link import BrokerAddress
from agents.protocol import Heartbeat, NowPlaying, StateMessage, Topics, encode
from server.app import create_app
from server.bridge import MqttBridge
from server.db import Database
from server.directory import create_area, create_user, register_device
from server.live import LiveBus
from server.models import Device, DeviceStatus, TelemetrySample
from server.permissions import Role
from server.runtime import Runtime
from server.settings import load_settings
from server.telemetry import TelemetryRecorder, disk_used_percent, history, purge_expired
from tests.conftest import free_port

PASSWORD = "telemetry-test-password"
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # 06:00:00 UTC: the start of a 300 s bucket


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    db: Database
    bridge: MqttBridge
    clock: Clock
    device_ids: dict[str, int]
    seq: int = 0

    def deliver(self, topic: str, payload: bytes) -> None:
        self.bridge._ingest_batch([(topic, payload)])  # the ingest thread's unit of work, run in-line

    def birth(self, agent_id: str, session: int = 1) -> None:
        self.seq += 1
        self.deliver(Topics.state(agent_id), encode(StateMessage(agent_id=agent_id, state="online",
                                                                 session=session, seq=self.seq)))

    def death(self, agent_id: str, session: int = 1) -> None:
        self.deliver(Topics.state(agent_id), encode(StateMessage(agent_id=agent_id, state="offline",
                                                                 session=session)))

    def heartbeat(self, agent_id: str, *, session: int = 1, temp: float = 50.0, playing: bool = False) -> None:
        self.seq += 1
        now_playing = NowPlaying(item_id="b1-1", broadcast_id=1, started_at=self.clock.now) if playing else None
        message = Heartbeat(agent_id=agent_id, session=session, seq=self.seq, sent_at=self.clock.now, uptime_s=10,
                            plan_version=1, now_playing=now_playing, cache_bytes=5 * 1024 * 1024,
                            volume_percent=70, amplifier_on=playing, clock_offset_ms=12, cpu_temp_c=temp,
                            disk_free_bytes=250, disk_total_bytes=1000, link_quality_percent=80)
        self.deliver(Topics.heartbeat(agent_id), encode(message))

    def samples(self, agent_id: str) -> list[TelemetrySample]:
        with self.db.session() as session:
            return list(session.scalars(select(TelemetrySample).where(
                TelemetrySample.device_id == self.device_ids[agent_id]).order_by(TelemetrySample.at)))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('telemetry') / 'loa.sqlite3'}"
    db = Database(url)
    db.start()
    with db.session() as session:
        create_area(session, code="tp", name="Tỉnh", kind="province", parent_code=None)
        create_area(session, code="tc-a", name="Xã A", kind="commune", parent_code="tp")
        for agent_id in ("tel-a1", "tel-a2", "tel-a3"):
            register_device(session, None, agent_id=agent_id, name=agent_id, area_code="tc-a")
    yield db
    db.stop()


@pytest.fixture
def rig(database: Database) -> Iterator[Rig]:
    with database.session() as session:
        session.execute(delete(TelemetrySample))
        session.execute(update(DeviceStatus).values(state="unknown", session=0, last_seq=0, last_seen_at=None))
        ids = {d.agent_id: d.id for d in session.scalars(select(Device))}
    clock = Clock(T0)
    bridge = MqttBridge(db=database, address=BrokerAddress.parse(f"mqtt://127.0.0.1:{free_port()}"),
                        server_id="telemetry-test", live=LiveBus(), now=clock, current_plans=list,
                        telemetry=TelemetryRecorder(300))
    yield Rig(database, bridge, clock, ids)


def test_disk_use_is_derived_from_free_and_total() -> None:
    assert disk_used_percent(250, 1000) == 75.0
    assert disk_used_percent(None, 1000) is None
    assert disk_used_percent(10, 0) is None
    assert disk_used_percent(2000, 1000) == 0.0


def test_the_first_heartbeat_of_each_interval_is_kept(rig: Rig) -> None:
    rig.birth("tel-a1")
    for step in range(40):  # 20 minutes of heartbeats every 30 s, from 06:00:00
        rig.clock.now = T0 + timedelta(seconds=30 * step)
        rig.heartbeat("tel-a1", temp=40.0 + step)
    samples = rig.samples("tel-a1")
    assert [s.at for s in samples] == [T0 + timedelta(minutes=m) for m in (0, 5, 10, 15)]
    assert [s.cpu_temp_c for s in samples] == [40.0, 50.0, 60.0, 70.0]  # the first of each bucket
    first = samples[0]
    assert first.online and first.disk_used_percent == 75.0 and first.cache_bytes == 5 * 1024 * 1024
    assert first.volume_percent == 70 and first.clock_offset_ms == 12 and first.link_quality_percent == 80


def test_a_death_records_an_offline_sample_and_the_return_is_sampled_at_once(rig: Rig) -> None:
    rig.birth("tel-a2")
    rig.heartbeat("tel-a2")
    rig.clock.now = T0 + timedelta(seconds=60)
    rig.death("tel-a2")
    rig.clock.now = T0 + timedelta(seconds=120)  # same 300 s bucket as the first heartbeat
    rig.birth("tel-a2", session=2)
    rig.heartbeat("tel-a2", session=2)
    samples = rig.samples("tel-a2")
    assert [(s.at - T0).total_seconds() for s in samples] == [0, 60, 120]
    assert [s.online for s in samples] == [True, False, True]
    assert samples[1].cpu_temp_c is None and samples[1].volume_percent is None


def test_the_silence_sweep_records_an_offline_sample(rig: Rig) -> None:
    rig.birth("tel-a3")
    rig.heartbeat("tel-a3")
    rig.clock.now = T0 + timedelta(minutes=10)
    assert rig.bridge.sweep_silent() == 1
    samples = rig.samples("tel-a3")
    assert [s.online for s in samples] == [True, False]
    assert samples[-1].at == T0 + timedelta(minutes=10)


def test_history_buckets_and_marks_outages(rig: Rig) -> None:
    rig.birth("tel-a1")
    for minute in range(0, 60, 5):
        rig.clock.now = T0 + timedelta(minutes=minute, seconds=1)
        rig.heartbeat("tel-a1", temp=float(minute), playing=minute == 20)
    rig.clock.now = T0 + timedelta(minutes=61)
    rig.death("tel-a1")
    now = T0 + timedelta(hours=2)
    with rig.db.session() as session:
        day = history(session, rig.device_ids["tel-a1"], "24h", now, 300)
        week = history(session, rig.device_ids["tel-a1"], "7d", now, 300)
    assert day.step_s == 300 and len(day.times) == 13
    assert day.values["cpu_temp_c"][:3] == [0.0, 5.0, 10.0]
    assert day.values["online"] == [True] * 12 + [False]
    assert day.values["cpu_temp_c"][-1] is None
    assert day.values["playing"][4] is True and day.values["amplifier_on"][4] is True
    assert week.step_s == 1800 and len(week.times) == 3  # 06:00, 06:30 and the 07:00 outage mark
    assert week.values["cpu_temp_c"][0] == pytest.approx(12.5)  # mean of 0, 5, …, 25
    assert week.values["online"] == [True, True, False]
    with rig.db.session() as session:
        assert history(session, rig.device_ids["tel-a1"], "24h", now + timedelta(days=2), 300).times == []


def test_retention_deletes_only_old_samples(rig: Rig) -> None:
    rig.birth("tel-a1")
    for days_ago in (10, 9, 7, 1):
        rig.clock.now = T0 - timedelta(days=days_ago)
        rig.heartbeat("tel-a1")
    assert purge_expired(rig.db, T0, retention_days=8) == 2
    assert [(T0 - s.at).days for s in rig.samples("tel-a1")] == [7, 1]


# --- API ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Runtime]]:
    root: Path = tmp_path_factory.mktemp("telemetry-api")
    settings = load_settings(data_dir=root, broker_url=f"mqtt://127.0.0.1:{free_port()}", tts_online=False,
                             http_port=free_port())
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        with runtime.db.session() as db:
            province = create_area(db, code="p1", name="Tỉnh", kind="province", parent_code=None)
            a = create_area(db, code="c-a", name="Xã A", kind="commune", parent_code="p1")
            b = create_area(db, code="c-b", name="Xã B", kind="commune", parent_code="p1")
            create_user(db, username="viewer-a", password=PASSWORD, full_name="V", grants=[(Role.VIEWER, a.id)])
            create_user(db, username="operator-b", password=PASSWORD, full_name="O", grants=[(Role.OPERATOR, b.id)])
            create_user(db, username="admin", password=PASSWORD, full_name="Ad", grants=[(Role.ADMIN, province.id)])
            device, _token = register_device(db, None, agent_id="api-a1", name="A1", area_code="c-a")
            now = runtime.now()
            db.add_all([TelemetrySample(device_id=device.id, at=now - timedelta(minutes=m), online=True,
                                        cpu_temp_c=45.0, volume_percent=60) for m in (5, 10, 15)])
            db.add(TelemetrySample(device_id=device.id, at=now - timedelta(days=3), online=False))
        yield client, runtime


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_api_returns_series_for_a_viewer_of_the_area(api: tuple[TestClient, Runtime]) -> None:
    client, _runtime = api
    headers = login(client, "viewer-a")
    day = client.get("/api/v1/devices/api-a1/telemetry?range=24h", headers=headers)
    assert day.status_code == 200, day.text
    body = day.json()
    assert body["range"] == "24h" and body["step_s"] == 300 and len(body["times"]) == 3
    assert body["series"]["cpu_temp_c"] == [45.0, 45.0, 45.0] and body["series"]["online"] == [True] * 3
    week = client.get("/api/v1/devices/api-a1/telemetry", params={"range": "7d"}, headers=headers).json()
    assert week["step_s"] == 1800 and week["series"]["online"][0] is False
    assert set(week["series"]) >= {"cpu_temp_c", "disk_used_percent", "cache_bytes", "volume_percent",
                                   "clock_offset_ms", "link_quality_percent", "online", "playing", "amplifier_on"}


def test_api_refuses_bad_ranges_and_other_communes(api: tuple[TestClient, Runtime]) -> None:
    client, _runtime = api
    bad = client.get("/api/v1/devices/api-a1/telemetry?range=1y", headers=login(client, "admin"))
    assert bad.status_code == 422 and "range" in bad.json()["detail"]
    other = client.get("/api/v1/devices/api-a1/telemetry", headers=login(client, "operator-b"))
    assert other.status_code == 404
    assert client.get("/api/v1/devices/no-such/telemetry", headers=login(client, "admin")).status_code == 404
    assert client.get("/api/v1/devices/api-a1/telemetry").status_code == 401
