"""The fleet dashboard in Chromium: the map's markers and colours, live recolouring, clicks, zoom and pan,
the list's filter and sort, and map tiles from a local tile server.

This module runs its own systems (it needs coordinates, agents it may stop, and a tile URL setting), and
only borrows the package's Chromium: the `fleet` system has real `loa agent` processes in communes a and b
with positions and one cluster in commune c with none; the `tiled` system is configured with a tile URL
pointing at a small HTTP tile server started here.
"""

from __future__ import annotations

import contextlib
import math
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from server.db import Database
from server.models import Device
from tests.browser.conftest import SCREENSHOTS, log_in, screenshot
from tests.conftest import free_port
from tests.e2e.harness import System

pytestmark = [pytest.mark.browser, pytest.mark.slow]

POSITIONS = {"a1": (21.7805, 105.4322), "a2": (21.7751, 105.4410), "b1": (21.6502, 105.3601)}
"""Commune a's two clusters and commune b's one; c1 has no position."""
ONLINE_FILL = "rgb(19, 115, 51)"
OFFLINE_FILL = "rgb(180, 35, 24)"
UNKNOWN_FILL = "rgb(138, 150, 163)"


def _place(system: System, positions: dict[str, tuple[float, float]]) -> None:
    db = Database(system.database_url)
    db.start()
    try:
        with db.session() as session:
            for name, (lat, lon) in positions.items():
                device = session.scalars(select(Device).where(Device.agent_id == f"t{system.suffix}-{name}")).one()
                device.latitude, device.longitude = lat, lon
    finally:
        db.stop()


def _wait_states(system: System, wanted: dict[str, str], timeout: float = 60) -> None:
    with contextlib.closing(system.login(f"admin-{system.suffix}")) as client:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {d["agent_id"]: d["state"] for d in client.get("/api/v1/devices").json()}
            if all(states.get(agent) == state for agent, state in wanted.items()):
                return
            time.sleep(0.2)
    raise TimeoutError(f"states {states}, wanted {wanted}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("fleet-map")
    system = System(root=root, broker_url=f"mqtt://127.0.0.1:{free_port()}", embedded=True,
                    database_url=f"sqlite:///{root / 'loa.sqlite3'}")
    system.seed({"a": 2, "b": 1, "c": 1})
    _place(system, POSITIONS)
    try:
        system.start_server()
        for agent in system.agents:
            if not agent.agent_id.endswith("-c1"):
                system.start_agent(agent)
        _wait_states(system, {f"t{system.suffix}-{n}": "online" for n in POSITIONS})
        yield system
    finally:
        system.stop()


# --- a tile server ---------------------------------------------------------------------------------

def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@dataclass
class TileServer:
    port: int
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tiles/{{z}}/{{x}}/{{y}}.png"


@pytest.fixture(scope="module")
def tile_server() -> Iterator[TileServer]:
    tile = _png(256, 256, (200, 225, 200))
    server = TileServer(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", server.port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


class TiledSystem(System):
    tile_url = ""

    def env(self) -> dict[str, str]:
        return {**super().env(), "LOA_MAP_TILE_URL": self.tile_url}


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory, tile_server: TileServer) -> Iterator[System]:
    root = tmp_path_factory.mktemp("fleet-tiles")
    system = TiledSystem(root=root, broker_url=f"mqtt://127.0.0.1:{free_port()}", embedded=True,
                         database_url=f"sqlite:///{root / 'loa.sqlite3'}")
    system.tile_url = tile_server.url
    system.seed({"a": 2, "b": 1})
    _place(system, POSITIONS)
    try:
        system.start_server()
        yield system
    finally:
        system.stop()


# --- pages ------------------------------------------------------------------------------------------

@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_at(system: System, width: int = 1000, height: int = 900) -> Any:
        context = browser.new_context(base_url=system.base_url, viewport={"width": width, "height": height},
                                      locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh")
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield open_at
    for context in contexts:
        context.close()


def _dashboard(page: Any, username: str) -> None:
    log_in(page, username)
    page.wait_for_url("**/console")
    page.wait_for_selector('#live-status[data-state="on"]')
    page.wait_for_selector("#fleet-map svg .map-marker")


def _marker(page: Any, agent_id: str) -> Any:
    return page.locator(f'#fleet-map .map-marker[data-agent-id="{agent_id}"]')


def _centre(page: Any, agent_id: str) -> tuple[float, float]:
    dot = _marker(page, agent_id).locator("circle")
    return float(dot.get_attribute("cx") or "nan"), float(dot.get_attribute("cy") or "nan")


def _fill(page: Any, agent_id: str) -> str:
    return str(_marker(page, agent_id).locator("circle").evaluate("c => getComputedStyle(c).fill"))


def _visible_rows(page: Any) -> list[str]:
    return list(page.eval_on_selector_all(
        "#device-table tbody tr", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.agentId)"))


def test_markers_areas_and_colours(fleet: System, open_page: Any) -> None:
    page = open_page(fleet)
    _dashboard(page, f"admin-{fleet.suffix}")
    agents = {name: f"t{fleet.suffix}-{name}" for name in ("a1", "a2", "b1", "c1")}
    expect(page.locator("#fleet-map .map-marker")).to_have_count(3)
    centres = {name: _centre(page, agents[name]) for name in POSITIONS}
    assert all(math.isfinite(x) and math.isfinite(y) for x, y in centres.values())
    assert len({(round(x), round(y)) for x, y in centres.values()}) == 3
    # North is up and east is right: b1 lies south-west of commune a's clusters, a2 east of a1.
    assert centres["b1"][1] > centres["a1"][1] and centres["b1"][0] < centres["a1"][0]
    assert centres["a2"][0] > centres["a1"][0]
    for name in POSITIONS:
        expect(_marker(page, agents[name])).to_have_attribute("data-state", "online")
        assert _fill(page, agents[name]) == ONLINE_FILL
    # Outlines for the two communes with positions, each labelled with its name; c has none.
    outlines = page.locator("#fleet-map path.map-area")
    drawn = outlines.evaluate_all("ps => ps.filter(p => p.getAttribute('d')).map(p => p.dataset.group)")
    assert sorted(drawn) == [fleet.area("a"), fleet.area("b")]
    expect(page.locator(f'#fleet-map text.map-area-label[data-group="{fleet.area("a")}"]')).to_have_text("Xã a")
    expect(page.locator("#map-no-position")).to_be_visible()
    expect(page.locator(f'#map-no-position-list li[data-agent-id="{agents["c1"]}"]')).to_be_visible()
    expect(page.locator("#count-total")).to_have_text("4")
    expect(page.locator("#count-online")).to_have_text("3")
    expect(page.locator("#count-unknown")).to_have_text("1")
    expect(page.locator(f'#area-counts tr[data-group="{fleet.area("a")}"] [data-count="online"]')).to_have_text("2")
    screenshot(page, "dashboard")
    page.locator("#map-section").screenshot(path=str(SCREENSHOTS / "dashboard-map.png"))


def test_commune_user_sees_only_their_markers(fleet: System, open_page: Any) -> None:
    page = open_page(fleet)
    _dashboard(page, f"editor-a-{fleet.suffix}")
    markers = page.locator("#fleet-map .map-marker").evaluate_all("ms => ms.map(m => m.dataset.agentId)")
    assert sorted(markers) == [f"t{fleet.suffix}-a1", f"t{fleet.suffix}-a2"]
    assert page.locator("#area-counts tbody tr").count() == 1


def test_zoom_pan_and_marker_click(fleet: System, open_page: Any) -> None:
    page = open_page(fleet)
    _dashboard(page, f"admin-{fleet.suffix}")
    a1, a2 = f"t{fleet.suffix}-a1", f"t{fleet.suffix}-a2"

    def spread() -> float:
        (x1, y1), (x2, y2) = _centre(page, a1), _centre(page, a2)
        return math.hypot(x2 - x1, y2 - y1)

    before = spread()
    scale = page.evaluate("window.LoaMap.view().scale")
    page.click("#map-zoom-in")
    page.wait_for_function(f"() => window.LoaMap.view().scale > {scale}")
    assert spread() > before * 1.4
    page.click("#map-reset")
    page.wait_for_timeout(100)
    assert spread() == pytest.approx(before, rel=0.01)
    page.evaluate("document.getElementById('fleet-map').scrollIntoView({block: 'center'})")
    box = page.locator("#fleet-map svg").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_timeout(150)
    assert spread() > before * 1.2
    page.click("#map-reset")
    x_before = _centre(page, a1)[0]
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 80, box["y"] + 40, steps=5)
    page.mouse.up()
    page.wait_for_timeout(100)
    assert _centre(page, a1)[0] == pytest.approx(x_before + 60, abs=2)
    assert page.url.endswith("/console")  # a drag is not a click
    _marker(page, a1).click()
    page.wait_for_url(f"**/console/devices/{a1}")


def test_phone_sized_map(fleet: System, open_page: Any) -> None:
    page = open_page(fleet, width=390, height=800)
    _dashboard(page, f"admin-{fleet.suffix}")
    expect(page.locator("#fleet-map .map-marker")).to_have_count(3)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    for name in POSITIONS:
        x, y = _centre(page, f"t{fleet.suffix}-{name}")
        assert 0 <= x <= 390 and y >= 0


def test_filter_and_sort(fleet: System, open_page: Any) -> None:
    page = open_page(fleet)
    _dashboard(page, f"admin-{fleet.suffix}")
    ids = {name: f"t{fleet.suffix}-{name}" for name in ("a1", "a2", "b1", "c1")}
    assert sorted(_visible_rows(page)) == sorted(ids.values())
    # The whole id, upper case: the run's random hex suffix may itself contain "a2".
    page.fill("#filter-text", ids["a2"].upper())
    page.wait_for_function("() => document.querySelectorAll('#device-table tbody tr:not([hidden])').length === 1")
    assert _visible_rows(page) == [ids["a2"]]
    expect(page.locator("#device-shown")).to_contain_text("1 / 4")
    page.fill("#filter-text", "")
    page.select_option("#filter-area", fleet.area("b"))
    page.wait_for_timeout(200)
    assert _visible_rows(page) == [ids["b1"]]
    page.select_option("#filter-area", "")
    page.select_option("#filter-state", "unknown")
    assert _visible_rows(page) == [ids["c1"]]
    page.select_option("#filter-state", "online")
    assert sorted(_visible_rows(page)) == sorted([ids["a1"], ids["a2"], ids["b1"]])
    page.select_option("#filter-state", "fault")
    assert _visible_rows(page) == []
    expect(page.locator("#device-none-match")).to_be_visible()
    page.select_option("#filter-state", "")
    page.locator(f'#area-counts .area-filter[data-group="{fleet.area("a")}"]').click()
    assert sorted(_visible_rows(page)) == [ids["a1"], ids["a2"]]
    page.select_option("#filter-area", "")
    page.select_option("#sort-by", "state")  # problems first: the never-seen c1 before the online ones
    assert _visible_rows(page)[0] == ids["c1"]
    page.select_option("#sort-by", "last_seen")  # newest first; never seen last
    assert _visible_rows(page)[-1] == ids["c1"]
    page.select_option("#sort-by", "name")
    assert _visible_rows(page) == [ids[n] for n in ("a1", "a2", "b1", "c1")]


def test_a_stopped_cluster_turns_offline_live(fleet: System, open_page: Any) -> None:
    page = open_page(fleet)
    _dashboard(page, f"admin-{fleet.suffix}")
    a2 = f"t{fleet.suffix}-a2"
    agent = next(a for a in fleet.agents if a.agent_id == a2)
    assert agent.process is not None
    assert _fill(page, a2) == ONLINE_FILL
    agent.process.kill()  # the connection drops: the broker publishes its will
    agent.process.wait(10)
    try:
        expect(_marker(page, a2)).to_have_attribute("data-state", "offline", timeout=30_000)
        assert _fill(page, a2) == OFFLINE_FILL
        expect(page.locator("#count-offline")).to_have_text("1")
        area_offline = page.locator(f'#area-counts tr[data-group="{fleet.area("a")}"] [data-count="offline"]')
        expect(area_offline).to_have_text("1")
        page.select_option("#filter-state", "offline")
        page.wait_for_timeout(300)
        assert _visible_rows(page) == [a2]
    finally:
        fleet.start_agent(agent)
    expect(_marker(page, a2)).to_have_attribute("data-state", "online", timeout=30_000)
    assert _fill(page, a2) == ONLINE_FILL


def _tile_of(lat: float, lon: float, zoom: int) -> tuple[int, int]:
    n = 2 ** zoom
    sin = math.sin(math.radians(lat))
    return int((lon + 180) / 360 * n), int((0.5 - math.log((1 + sin) / (1 - sin)) / (4 * math.pi)) * n)


def test_tiles_come_from_the_configured_server(tiled: System, tile_server: TileServer, open_page: Any) -> None:
    page = open_page(tiled)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    log_in(page, f"admin-{tiled.suffix}")
    page.wait_for_url("**/console")
    response = page.reload()
    assert f"img-src 'self' data: http://127.0.0.1:{tile_server.port};" in response.headers["content-security-policy"]
    page.wait_for_selector("#fleet-map svg image.map-tile")
    page.wait_for_function("() => document.querySelectorAll('#fleet-map image.map-tile').length >= 4")
    tiles = page.locator("#fleet-map image.map-tile").evaluate_all("ts => ts.map(t => t.dataset.tile)")
    zoom = int(tiles[0].split("/")[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(tile_server.requests) < len(tiles):
        time.sleep(0.1)
    requested = {path.removeprefix("/tiles/").removesuffix(".png") for path in tile_server.requests}
    for lat, lon in POSITIONS.values():
        x, y = _tile_of(lat, lon, zoom)
        assert f"{zoom}/{x}/{y}" in requested, (zoom, x, y, sorted(requested))
    # Tiles lie under the outlines and markers.
    order = page.eval_on_selector("#fleet-map svg", "s => Array.from(s.children).map(c => c.getAttribute('class'))")
    assert order == ["map-tiles", "map-areas", "map-markers"]
    page.locator("#map-section").screenshot(path=str(SCREENSHOTS / "dashboard-map-tiles.png"))
    page.click("#map-zoom-in")
    page.click("#map-zoom-in")  # 1.6² = 2.56 times: more than one zoom level
    page.wait_for_timeout(300)
    after = page.locator("#fleet-map image.map-tile").evaluate_all("ts => ts.map(t => t.dataset.tile)")
    assert int(after[0].split("/")[0]) > zoom
    assert violations == []


def test_without_a_tile_url_nothing_leaves_the_server(fleet: System, open_page: Any, tile_server: TileServer) -> None:
    page = open_page(fleet)
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(fleet.base_url) else None)
    _dashboard(page, f"admin-{fleet.suffix}")
    assert page.locator("#fleet-map image.map-tile").count() == 0
    assert outside == []
    assert Path(SCREENSHOTS).is_dir()
