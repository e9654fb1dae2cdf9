"""The web console's pages: log-in, redirects, per-commune visibility, live events and CSRF.

One app per module (embedded amqtt broker on a free port, SQLite in a temporary directory, offline TTS),
seeded with a district holding two communes, a device in each, a commune editor for each and a
district approver.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api.deps import SESSION_COOKIE
from server.app import create_app
from server.console.routes import (
    EventScope,
    event_allowed,
    format_local,
    parse_event,
    safe_next,
    scoped_stream,
)
from server.directory import create_area, create_user, register_device
from server.live import LiveBus
from server.permissions import Role
from server.runtime import Runtime
from server.settings import Settings

PASSWORD = "mat-khau-an-toan"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Console:
    client: TestClient
    runtime: Runtime


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir: Path = tmp_path_factory.mktemp("console")
    settings = Settings(data_dir=data_dir, embedded_broker=True, broker_url=f"mqtt://127.0.0.1:{free_port()}",
                        tts_online=False)
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    with TestClient(app) as client:
        with runtime.db.session() as db:
            create_area(db, code="D01", name="Huyện Mẫu", kind="district", parent_code=None)
            a = create_area(db, code="X01", name="Xã An Bình", kind="commune", parent_code="D01")
            b = create_area(db, code="X02", name="Xã Bình Minh", kind="commune", parent_code="D01")
            district = a.parent_id
            assert district is not None
            create_user(db, username="bientap-a", password=PASSWORD, full_name="Biên tập An Bình",
                        grants=[(Role.EDITOR, a.id)])
            create_user(db, username="bientap-b", password=PASSWORD, full_name="Biên tập Bình Minh",
                        grants=[(Role.EDITOR, b.id)])
            create_user(db, username="duyet", password=PASSWORD, full_name="Người duyệt huyện",
                        grants=[(Role.APPROVER, district)])
            register_device(db, None, agent_id="loa-an-binh-1", name="Cụm loa chợ An Bình", area_code="X01")
            register_device(db, None, agent_id="loa-binh-minh-1", name="Cụm loa UBND Bình Minh",
                            area_code="X02")
        yield Console(client, runtime)


def log_in(client: TestClient, username: str) -> str:
    """Logs in through the console's own form; returns the page's CSRF token."""
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/console"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console"
    assert SESSION_COOKIE in response.cookies
    page = client.get("/console")
    assert page.status_code == 200
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match, "pages carry the CSRF token for the script"
    return match.group(1)


# --- pages ---------------------------------------------------------------------------------------

def test_login_page_renders_in_vietnamese(console: Console) -> None:
    console.client.cookies.clear()
    response = console.client.get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<html lang="vi">' in response.text
    assert "Đăng nhập" in response.text and "Mật khẩu" in response.text
    assert 'id="login-form"' in response.text
    assert "csrf-token" not in response.text  # no session, no token


def test_root_and_pages_redirect_to_login_when_logged_out(console: Console) -> None:
    client = console.client
    client.cookies.clear()
    assert client.get("/", follow_redirects=False).headers["location"] == "/console"
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    response = client.get("/console/as-run?agent_id=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fconsole%2Fas-run%3Fagent_id%3Dx"
    for path in ("/console/announcements", "/console/devices/loa-an-binh-1"):
        assert client.get(path, follow_redirects=False).headers["location"].startswith("/login")
    client.cookies.set(SESSION_COOKIE, "forged-or-expired")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_wrong_password_is_refused_with_a_vietnamese_message(console: Console) -> None:
    console.client.cookies.clear()
    response = console.client.post("/login", data={"username": "bientap-a", "password": "sai-mat-khau"},
                                   follow_redirects=False)
    assert response.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu" in response.text
    assert SESSION_COOKIE not in response.cookies


def test_login_from_another_site_is_refused(console: Console) -> None:
    console.client.cookies.clear()
    response = console.client.post("/login", data={"username": "bientap-a", "password": PASSWORD},
                                   headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.cookies


def test_dashboard_lists_own_devices_only(console: Console) -> None:
    log_in(console.client, "bientap-a")
    page = console.client.get("/console").text
    assert 'id="device-table"' in page
    assert 'data-agent-id="loa-an-binh-1"' in page and "Cụm loa chợ An Bình" in page
    assert "loa-binh-minh-1" not in page and "Bình Minh" not in page
    assert re.search(r'id="count-total">1<', page)
    assert re.search(r'id="count-unknown">1<', page)
    for label in ("Bảng điều khiển", "Bản tin", "Nhật ký phát", "Đăng xuất"):
        assert label in page


def test_district_user_sees_both_communes(console: Console) -> None:
    log_in(console.client, "duyet")
    page = console.client.get("/console").text
    assert 'data-agent-id="loa-an-binh-1"' in page and 'data-agent-id="loa-binh-minh-1"' in page
    assert re.search(r'id="count-total">2<', page)


def test_other_communes_device_page_is_refused(console: Console) -> None:
    log_in(console.client, "bientap-a")
    own = console.client.get("/console/devices/loa-an-binh-1")
    assert own.status_code == 200 and 'id="device-detail"' in own.text
    foreign = console.client.get("/console/devices/loa-binh-minh-1")
    assert foreign.status_code in (403, 404)
    assert "Không tìm thấy" in foreign.text and "không có quyền truy cập" in foreign.text.lower()
    assert "Cụm loa UBND Bình Minh" not in foreign.text
    absent = console.client.get("/console/devices/khong-ton-tai")
    assert absent.status_code == foreign.status_code  # the same answer: existence does not leak


def test_announcements_and_as_run_pages_render(console: Console) -> None:
    log_in(console.client, "bientap-a")
    page = console.client.get("/console/announcements")
    assert page.status_code == 200
    assert 'id="announcement-form"' in page.text and 'id="schedule-form"' in page.text
    assert 'value="X01"' in page.text and 'value="X02"' not in page.text
    asrun = console.client.get("/console/as-run?broadcast_id=abc&limit=-3")  # bad filters are ignored
    assert asrun.status_code == 200 and 'id="asrun-table"' in asrun.text


def test_events_refuse_anonymous_users(console: Console) -> None:
    console.client.cookies.clear()
    response = console.client.get("/console/events")
    assert response.status_code == 401
    console.client.cookies.set(SESSION_COOKIE, "not-a-session")
    assert console.client.get("/console/events").status_code == 401


def test_console_post_needs_the_csrf_header(console: Console) -> None:
    client = console.client
    csrf = log_in(client, "bientap-a")
    body = {"title": "Thông báo tiêm phòng", "text": "Sáng 27/11 tiêm phòng dại cho chó mèo.",
            "area_code": "X01"}
    refused = client.post("/api/v1/announcements", json=body)
    assert refused.status_code == 401 and "CSRF" in refused.json()["detail"]
    wrong = client.post("/api/v1/announcements", json=body, headers={"X-CSRF-Token": "sai"})
    assert wrong.status_code == 401
    created = client.post("/api/v1/announcements", json=body, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    announcement_id = created.json()["id"]
    card = client.get(f"/console/announcements/{announcement_id}/card")
    assert card.status_code == 200 and f'id="announcement-{announcement_id}"' in card.text
    assert "Thông báo tiêm phòng" in card.text
    # The other commune neither lists it nor gets its card.
    log_in(client, "bientap-b")
    assert "Thông báo tiêm phòng" not in client.get("/console/announcements").text
    assert client.get(f"/console/announcements/{announcement_id}/card").status_code == 404


def test_logout_needs_the_csrf_token(console: Console) -> None:
    client = console.client
    csrf = log_in(client, "bientap-a")
    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/console", follow_redirects=False).status_code == 200  # still logged in
    done = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login"
    client.cookies.clear()
    # The old session is gone on the server too.
    client.cookies.set(SESSION_COOKIE, "irrelevant")
    assert client.get("/console", follow_redirects=False).status_code == 303


# --- pure parts ----------------------------------------------------------------------------------

def test_dates_are_shown_in_vietnam_time_24h() -> None:
    assert format_local(datetime(2026, 11, 27, 10, 0, 5, tzinfo=UTC)) == "27/11/2026 17:00:05"
    assert format_local("2026-12-31T17:30:00+00:00") == "01/01/2027 00:30:00"
    assert format_local(None) == ""


def test_next_is_always_a_local_path() -> None:
    assert safe_next("/console/as-run?agent_id=a") == "/console/as-run?agent_id=a"
    for bad in (None, "", "https://evil.example", "//evil.example", "/\\evil.example", "console"):
        assert safe_next(bad) == "/console"


def test_events_are_filtered_to_the_users_devices_and_areas() -> None:
    scope = EventScope(agent_ids=frozenset({"loa-a"}), area_ids=frozenset({1}))
    areas = {10: 1, 11: 2}.get
    assert event_allowed({"type": "device", "agent_id": "loa-a"}, scope, areas)
    assert not event_allowed({"type": "device", "agent_id": "loa-b"}, scope, areas)
    assert not event_allowed({"type": "asrun", "agent_id": "loa-b"}, scope, areas)
    assert event_allowed({"type": "announcement", "id": 10}, scope, areas)
    assert not event_allowed({"type": "announcement", "id": 11}, scope, areas)
    assert not event_allowed({"type": "announcement", "id": 12}, scope, areas)
    assert not event_allowed({"type": "something-new"}, scope, areas)
    assert parse_event(": keep-alive\n\n") is None
    assert parse_event('data: {"type": "device"}\n\n') == {"type": "device"}


def test_scoped_stream_passes_only_visible_events_and_ends_with_the_session() -> None:
    def chunk(event: dict[str, object]) -> str:
        return f"data: {json.dumps(event)}\n\n"

    chunks = [chunk({"type": "device", "agent_id": "loa-a", "state": "online"}),
              chunk({"type": "device", "agent_id": "loa-b", "state": "online"}),
              ": keep-alive\n\n",
              chunk({"type": "announcement", "id": 10}),
              chunk({"type": "asrun", "agent_id": "loa-a", "kind": "started"}),
              chunk({"type": "device", "agent_id": "loa-a", "state": "offline"})]
    closed: list[bool] = []
    now = [0.0]

    async def source() -> AsyncGenerator[str, None]:
        try:
            for c in chunks[:-1]:
                yield c
            now[0] = 100.0  # time for the periodic re-check, which finds the session gone
            yield chunks[-1]
        finally:
            closed.append(True)

    sessions = iter([EventScope(frozenset({"loa-a"}), frozenset({1})), None])

    async def collect() -> list[str]:
        return [c async for c in scoped_stream(source(), lambda: next(sessions), {10: 2}.get,
                                               refresh_s=60, clock=lambda: now[0])]

    out = asyncio.run(collect())
    assert out[0] == ": connected\n\n"
    assert out[1] == chunks[0] and chunks[1] not in out and chunks[3] not in out
    assert out[2:] == [": keep-alive\n\n", chunks[4]]  # chunks[5] came after the session ended
    assert closed == [True]


def test_scoped_stream_is_subscribed_before_it_says_connected() -> None:
    """A page re-reads the fleet when its EventSource opens; nothing published after that may be lost."""
    scope = EventScope(frozenset({"loa-a"}), frozenset({1}))

    async def run() -> tuple[list[str], int, int]:
        bus = LiveBus()
        bus.start(asyncio.get_running_loop())
        stream = scoped_stream(bus.stream(), lambda: scope, {}.get)
        assert await anext(stream) == ": connected\n\n"
        for agent_id in ("loa-a", "loa-b", "loa-a"):
            bus.publish({"type": "device", "agent_id": agent_id})
        got = [await asyncio.wait_for(anext(stream), 2) for _ in range(2)]
        during = len(bus._subscribers)
        await stream.aclose()
        return got, during, len(bus._subscribers)

    got, during, after = asyncio.run(run())
    assert [parse_event(c) for c in got] == [{"type": "device", "agent_id": "loa-a"}] * 2
    assert (during, after) == (1, 0)  # closing the response unsubscribes
