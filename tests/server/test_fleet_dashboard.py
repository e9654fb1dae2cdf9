"""The fleet dashboard: counts by area, faults from heartbeats, the map's data per user, and the tile CSP.

One app on PostgreSQL (embedded broker, offline TTS). The tree: a province, a district, commune X1 with two
villages, commune X2. Device states are written as the bridge writes them (``DeviceStatus`` rows with the
last heartbeat as JSON), so the page is read from real rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from schedules import AreaId
from server.app import create_app
from server.console.fleet import group_area, heartbeat_faults, tile_source
from server.console.routes import PAGE_HEADERS, page_headers
from server.directory import create_area, create_user, load_tree, register_device
from server.models import Device, DeviceStatus
from server.permissions import Role
from server.runtime import Runtime
from server.settings import Settings
from tests.conftest import free_port

PASSWORD = "mat-khau-an-toan"
TILES = "https://tiles.example.vn/{z}/{x}/{y}.png"


@dataclass
class App:
    client: TestClient
    runtime: Runtime


STATES = [
    # agent id, state, faults of the last heartbeat (None: no heartbeat yet), now playing
    ("v1-fault", "online", ["amplifier: no current"], None),
    ("v1-playing", "online", [], "b1-1700000000000"),
    ("v2-offline", "offline", ["disk nearly full"], None),  # its old faults no longer count
    ("x1-root", "online", None, None),
    ("x2-unknown", "unknown", None, None),
    ("x2-online", "online", [], None),
]


@pytest.fixture(scope="module")
def module_app(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[App]:
    data_dir: Path = tmp_path_factory.mktemp("fleet")
    settings = Settings(data_dir=data_dir, embedded_broker=True, broker_url=f"mqtt://127.0.0.1:{free_port()}",
                        tts_online=False, database_url=postgres_url)
    application = create_app(settings)
    runtime: Runtime = application.state.runtime
    with TestClient(application) as client:
        with runtime.db.session() as db:
            province = create_area(db, code="P", name="Tỉnh Mẫu", kind="province", parent_code=None)
            create_area(db, code="D", name="Huyện Mẫu", kind="district", parent_code="P")
            x1 = create_area(db, code="X1", name="Xã An Bình", kind="commune", parent_code="D")
            x2 = create_area(db, code="X2", name="Xã Bình Minh", kind="commune", parent_code="D")
            x1.latitude, x1.longitude = 21.78, 105.43
            create_area(db, code="X1-V1", name="Thôn Một", kind="village", parent_code="X1")
            create_area(db, code="X1-V2", name="Thôn Hai", kind="village", parent_code="X1")
            create_user(db, username="tinh", password=PASSWORD, full_name="Tỉnh", grants=[(Role.VIEWER, province.id)])
            create_user(db, username="xa1", password=PASSWORD, full_name="Xã 1", grants=[(Role.OPERATOR, x1.id)])
            create_user(db, username="xa2", password=PASSWORD, full_name="Xã 2", grants=[(Role.EDITOR, x2.id)])
            for agent_id, area, lat, lon in [
                ("v1-fault", "X1-V1", 21.781, 105.431),
                ("v1-playing", "X1-V1", 21.782, 105.433),
                ("v2-offline", "X1-V2", 21.775, 105.441),
                ("x1-root", "X1", None, None),  # directly in the commune, no position
                ("x2-unknown", "X2", 21.65, 105.36),
                ("x2-online", "X2", 21.646, 105.37),
            ]:
                register_device(db, None, agent_id=agent_id, name=f"Cụm {agent_id}", area_code=area,
                                latitude=lat, longitude=lon)
        yield App(client, runtime)


@pytest.fixture
def app(module_app: App) -> App:
    """The module's app with the device states written afresh, just before the test reads them (the silence
    sweep would otherwise mark the online ones offline during a slow run)."""
    seen = module_app.runtime.now()
    with module_app.runtime.db.session() as db:
        for agent_id, state, faults, playing in STATES:
            device = db.scalars(select(Device).where(Device.agent_id == agent_id)).one()
            status = db.get_one(DeviceStatus, device.id)
            status.state, status.session, status.last_seq = state, 1, 3
            status.last_seen_at = status.changed_at = seen
            status.now_playing = playing
            status.heartbeat = (None if faults is None
                                else {"type": "heartbeat", "agent_id": agent_id, "faults": faults})
    return module_app


def log_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/console"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def _json_block(page: str, element_id: str) -> Any:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1))


def _count(page: str, name: str) -> int:
    match = re.search(rf'id="count-{name}">(\d+)<', page)
    assert match, name
    return int(match.group(1))


def _area_counts(page: str) -> dict[str, dict[str, int]]:
    table = re.search(r'<table id="area-counts".*?</table>', page, re.S)
    assert table
    found: dict[str, dict[str, int]] = {}
    for row in re.finditer(r'<tr data-group="([^"]+)">(.*?)</tr>', table.group(0), re.S):
        found[row.group(1)] = {m.group(1): int(m.group(2))
                               for m in re.finditer(r'data-count="(\w+)">(\d+)<', row.group(2))}
    return found


def test_province_user_counts_by_commune(app: App) -> None:
    log_in(app.client, "tinh")
    page = app.client.get("/console").text
    assert {n: _count(page, n) for n in ("total", "online", "playing", "fault", "offline", "unknown")} == {
        "total": 6, "online": 4, "playing": 1, "fault": 1, "offline": 1, "unknown": 1}
    assert _area_counts(page) == {
        "X1": {"total": 4, "online": 3, "playing": 1, "fault": 1, "offline": 1, "unknown": 0},
        "X2": {"total": 2, "online": 1, "playing": 0, "fault": 0, "offline": 0, "unknown": 1},
    }
    row = re.search(r'<tr data-agent-id="v1-fault"[^>]*>', page)
    assert row and 'data-fault="true"' in row.group(0) and 'data-state="online"' in row.group(0)
    assert "amplifier: no current" in page
    offline = re.search(r'<tr data-agent-id="v2-offline"[^>]*>', page)
    assert offline and 'data-fault="false"' in offline.group(0)


def test_commune_user_counts_by_village_and_sees_only_their_commune(app: App) -> None:
    log_in(app.client, "xa1")
    page = app.client.get("/console").text
    assert set(_area_counts(page)) == {"X1-V1", "X1-V2", "X1"}  # the commune itself for its own cluster
    assert _area_counts(page)["X1-V1"] == {"total": 2, "online": 2, "playing": 1, "fault": 1, "offline": 0,
                                           "unknown": 0}
    data = _json_block(page, "fleet-map-data")
    assert {d["agent_id"] for d in data["devices"]} == {"v1-fault", "v1-playing", "v2-offline", "x1-root"}
    states = {d["agent_id"]: d["state"] for d in data["devices"]}
    assert states == {"v1-fault": "fault", "v1-playing": "playing", "v2-offline": "offline", "x1-root": "online"}
    positions = {d["agent_id"]: (d["lat"], d["lon"]) for d in data["devices"]}
    assert positions["v1-fault"] == (21.781, 105.431) and positions["x1-root"] == (None, None)
    assert [a["code"] for a in data["areas"] if a["lat"] is not None] == ["X1"]
    assert "x2-" not in page and "Bình Minh" not in page
    assert data["tile_url"] is None


def test_other_commune_sees_none_of_the_first(app: App) -> None:
    log_in(app.client, "xa2")
    page = app.client.get("/console").text
    data = _json_block(page, "fleet-map-data")
    assert {d["agent_id"] for d in data["devices"]} == {"x2-unknown", "x2-online"}
    assert "v1-" not in page and "An Bình" not in page and "amplifier" not in page


def test_without_a_tile_url_the_policy_stays_local(app: App) -> None:
    log_in(app.client, "tinh")
    response = app.client.get("/console")
    assert response.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
    assert "img-src 'self' data:;" in response.headers["content-security-policy"]


def test_a_tile_url_allows_images_from_its_origin_on_the_dashboard_only(app: App) -> None:
    log_in(app.client, "tinh")
    app.runtime.settings.map_tile_url = TILES
    try:
        response = app.client.get("/console")
        other = app.client.get("/console/as-run")
    finally:
        app.runtime.settings.map_tile_url = ""
    policy = response.headers["content-security-policy"]
    assert "img-src 'self' data: https://tiles.example.vn;" in policy
    assert policy.replace(" https://tiles.example.vn", "") == PAGE_HEADERS["Content-Security-Policy"]
    assert _json_block(response.text, "fleet-map-data")["tile_url"] == TILES
    assert other.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize("url", [
    "https://tiles.example.vn/{z}/{x}/{y}.png; script-src *",
    "https://tiles.example.vn/{z}/{x}.png",
    "https://user@tiles.example.vn/{z}/{x}/{y}.png",
    "https://*.example.vn/{z}/{x}/{y}.png",
    "ftp://tiles.example.vn/{z}/{x}/{y}.png",
    "https://tiles.example.vn,evil.example/{z}/{x}/{y}.png",
])
def test_a_tile_url_that_could_widen_the_policy_is_ignored(app: App, url: str) -> None:
    assert tile_source(url) is None
    log_in(app.client, "tinh")
    app.runtime.settings.map_tile_url = url
    try:
        response = app.client.get("/console")
    finally:
        app.runtime.settings.map_tile_url = ""
    assert response.headers["content-security-policy"] == PAGE_HEADERS["Content-Security-Policy"]
    assert _json_block(response.text, "fleet-map-data")["tile_url"] is None


def test_tile_source_keeps_the_port_in_the_origin() -> None:
    assert tile_source("http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png") == (
        "http://127.0.0.1:8081/tiles/{z}/{x}/{y}.png", "http://127.0.0.1:8081")


def test_page_headers_refuse_anything_but_an_origin() -> None:
    with pytest.raises(ValueError):
        page_headers(["https://a.example; script-src *"])
    assert page_headers([]) is PAGE_HEADERS


def test_heartbeat_faults_ignore_junk() -> None:
    def status(heartbeat: Any) -> DeviceStatus:
        return DeviceStatus(device_id=1, state="online", heartbeat=heartbeat)

    assert heartbeat_faults(None) == ()
    assert heartbeat_faults(status(None)) == ()
    assert heartbeat_faults(status({"faults": "amplifier"})) == ()
    assert heartbeat_faults(status({"faults": ["a", 3, "", "b"]})) == ("a", "b")


def test_group_area_follows_the_users_scope(module_app: App) -> None:
    with module_app.runtime.db.session() as db:
        tree = load_tree(db)
        ids = {tree.area_for_code(code).code: tree.area_for_code(code).id for code in ("P", "X1", "X1-V1")}
        for grant_code, device_code, expected in [("P", "X1-V1", "X1"), ("X1", "X1-V1", "X1-V1"),
                                                  ("X1", "X1", "X1"), ("X1-V1", "X1-V1", "X1-V1")]:
            visible = tree.subtree(AreaId(ids[grant_code]))
            group = group_area(tree, visible, AreaId(tree.area_for_code(device_code).id))
            assert tree.get(group).code == expected
