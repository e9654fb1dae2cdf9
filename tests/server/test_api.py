"""API v1 through HTTP with the real runtime (embedded broker), on SQLite and on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.directory import LOGIN_REFUSED, create_area, create_user, register_device
from server.permissions import Role
from server.runtime import Runtime
from server.settings import load_settings
from tests.conftest import free_port

PASSWORD = "api-test-password"


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    tokens: dict[str, str]

    def login(self, username: str) -> dict[str, str]:
        response = self.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp(f"api-{request.param}")
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    settings = load_settings(data_dir=root, database_url=database_url,
                             broker_url=f"mqtt://127.0.0.1:{free_port()}", tts_online=False, http_port=free_port())
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        tokens: dict[str, str] = {}
        with runtime.db.session() as db:
            province = create_area(db, code="p1", name="Tỉnh", kind="province", parent_code=None)
            a = create_area(db, code="c-a", name="Xã A", kind="commune", parent_code="p1")
            create_area(db, code="c-b", name="Xã B", kind="commune", parent_code="p1")
            create_user(db, username="editor", password=PASSWORD, full_name="E", grants=[(Role.EDITOR, a.id)])
            create_user(db, username="approver", password=PASSWORD, full_name="A",
                        grants=[(Role.APPROVER, province.id)])
            create_user(db, username="admin", password=PASSWORD, full_name="Ad", grants=[(Role.ADMIN, province.id)])
            for agent_id, area in (("dev-a1", "c-a"), ("dev-b1", "c-b")):
                tokens[agent_id] = register_device(db, None, agent_id=agent_id, name=agent_id, area_code=area)[1]
        yield Api(client, runtime, tokens)


@pytest.fixture(scope="module")
def approved(api: Api) -> dict[str, Any]:
    editor = api.login("editor")
    created = api.client.post("/api/v1/announcements", headers=editor,
                              json={"title": "Họp dân", "text": "Họp dân lúc 7h ngày 5/9.", "area_code": "c-a"})
    assert created.status_code == 201, created.text
    body = created.json()
    deadline = time.monotonic() + 30
    while body["audio_status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
        body = api.client.get(f"/api/v1/announcements/{body['id']}", headers=editor).json()
    reviewed = api.client.post(f"/api/v1/announcements/{body['id']}/review", headers=api.login("approver"),
                               json={"approve": True})
    assert reviewed.status_code == 200, reviewed.text
    return dict(reviewed.json())


def future(seconds: float = 60) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_openapi_is_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/broadcasts" in spec["paths"]


def test_requests_without_a_session_are_refused(api: Api) -> None:
    response = api.client.get("/api/v1/devices")
    assert response.status_code == 401 and response.json()["detail"]


def test_wrong_password_is_refused(api: Api) -> None:
    response = api.client.post("/api/v1/auth/login", json={"username": "editor", "password": "nope"})
    assert response.status_code == 401
    assert response.json()["detail"] == LOGIN_REFUSED


def test_invalid_body_gives_422_with_a_readable_message(api: Api) -> None:
    editor = api.login("editor")
    response = api.client.post("/api/v1/broadcasts", headers=editor, json={"announcement_id": "abc"})
    assert response.status_code == 422
    assert "announcement_id" in response.json()["detail"]
    broken = api.client.post("/api/v1/announcements", headers={**editor, "content-type": "application/json"},
                             content=b"{not json")
    assert broken.status_code == 422 and broken.json()["detail"]
    blank = api.client.post("/api/v1/announcements", headers=editor,
                            json={"title": " ", "text": "x", "area_code": "c-a"})
    assert blank.status_code == 422 and "title" in blank.json()["detail"]


def test_tts_fell_back_to_the_offline_voice_and_says_so(approved: dict[str, Any]) -> None:
    assert approved["audio_status"] == "ready"
    assert approved["engine"] == "espeak-ng" and approved["fallback_used"] is True
    assert "bảy giờ" in approved["spoken_text"] and "7h" not in approved["spoken_text"]


def test_unknown_target_gives_404(api: Api, approved: dict[str, Any]) -> None:
    editor = api.login("editor")
    for targets in ({"area_codes": ["no-such-area"]}, {"agent_ids": ["no-such-device"]}):
        response = api.client.post("/api/v1/broadcasts", headers=editor,
                                   json={"announcement_id": approved["id"], "play_at": future(), **targets})
        assert response.status_code == 404, response.text
    missing = api.client.post("/api/v1/broadcasts", headers=editor,
                              json={"announcement_id": 99999, "play_at": future(), "area_codes": ["c-a"]})
    assert missing.status_code == 404


def test_scheduling_in_the_past_gives_422(api: Api, approved: dict[str, Any]) -> None:
    editor = api.login("editor")
    response = api.client.post("/api/v1/broadcasts", headers=editor, json={
        "announcement_id": approved["id"], "play_at": future(-60), "area_codes": ["c-a"]})
    assert response.status_code == 422 and "past" in response.json()["detail"]
    naive = api.client.post("/api/v1/broadcasts", headers=editor, json={
        "announcement_id": approved["id"], "play_at": "2030-01-01T05:30:00", "area_codes": ["c-a"]})
    assert naive.status_code == 422 and "offset" in naive.json()["detail"]


def test_roles_and_areas_are_enforced(api: Api, approved: dict[str, Any]) -> None:
    editor = api.login("editor")
    other = api.client.post("/api/v1/announcements", headers=editor,
                            json={"title": "x", "text": "x", "area_code": "c-b"})
    assert other.status_code == 404  # the editor cannot even see commune B
    own = api.client.post("/api/v1/announcements", headers=editor,
                          json={"title": "x", "text": "Nội dung", "area_code": "c-a"}).json()
    self_approval = api.client.post(f"/api/v1/announcements/{own['id']}/review", headers=editor,
                                    json={"approve": True})
    assert self_approval.status_code == 403
    unapproved = api.client.post("/api/v1/broadcasts", headers=editor, json={
        "announcement_id": own["id"], "play_at": future(), "area_codes": ["c-a"]})
    assert unapproved.status_code == 409
    devices = api.client.get("/api/v1/devices", headers=editor).json()
    assert [d["agent_id"] for d in devices] == ["dev-a1"]
    assert api.client.get("/api/v1/devices/dev-b1", headers=editor).status_code == 404
    registration = api.client.post("/api/v1/devices", headers=editor,
                                   json={"agent_id": "dev-a9", "name": "x", "area_code": "c-a"})
    assert registration.status_code == 403


def test_cookie_sessions_need_the_csrf_token(api: Api) -> None:
    login = api.client.post("/api/v1/auth/login", json={"username": "editor", "password": PASSWORD}).json()
    body = {"title": "x", "text": "Nội dung", "area_code": "c-a"}
    assert api.client.post("/api/v1/announcements", json=body).status_code == 401
    ok = api.client.post("/api/v1/announcements", json=body, headers={"X-CSRF-Token": login["csrf_token"]})
    assert ok.status_code == 201
    api.client.cookies.clear()


def test_scheduling_publishes_a_plan_for_the_targeted_device(api: Api, approved: dict[str, Any]) -> None:
    editor = api.login("editor")
    response = api.client.post("/api/v1/broadcasts", headers=editor, json={
        "announcement_id": approved["id"], "play_at": future(120), "area_codes": ["c-a"]})
    assert response.status_code == 201 and response.json()["target_devices"] == 1
    assert response.json()["status"] == "submitted"
    review = api.client.post(f"/api/v1/broadcasts/{response.json()['id']}/review", headers=api.login("approver"),
                             json={"approve": True})
    assert review.status_code == 200, review.text
    plans = {p.agent_id: p for p in api.runtime.planner.current_plans()}
    import json

    items = json.loads(plans["dev-a1"].payload)["items"]
    assert [i["broadcast_id"] for i in items] == [response.json()["id"]]
    assert "dev-b1" not in plans or json.loads(plans["dev-b1"].payload)["items"] == []


def test_audio_downloads_need_an_agent_token_and_support_ranges(api: Api, approved: dict[str, Any]) -> None:
    url = f"/api/v1/audio/{approved['audio_sha256']}"
    assert api.client.get(url).status_code == 401
    assert api.client.get(url, headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    auth = {"Authorization": f"Bearer {api.tokens['dev-a1']}"}
    whole = api.client.get(url, headers=auth)
    assert whole.status_code == 200
    import hashlib

    assert hashlib.sha256(whole.content).hexdigest() == approved["audio_sha256"]
    part = api.client.get(url, headers={**auth, "Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == whole.content[100:]
    assert api.client.get("/api/v1/audio/" + "0" * 64, headers=auth).status_code == 404
    assert api.client.get("/api/v1/audio/../../etc/passwd", headers=auth).status_code == 404


def test_nothing_is_lost_across_a_restart(api: Api, approved: dict[str, Any], tmp_path: Path) -> None:
    settings = api.runtime.settings
    again = Runtime(settings.model_copy(update={"broker_url": f"mqtt://127.0.0.1:{free_port()}"}))
    with TestClient(create_app(again.settings, runtime=again)) as client:
        token = client.post("/api/v1/auth/login", json={"username": "editor", "password": PASSWORD}).json()["token"]
        body = client.get(f"/api/v1/announcements/{approved['id']}", headers={"Authorization": f"Bearer {token}"})
        assert body.json()["audio_sha256"] == approved["audio_sha256"]
        assert again.store.has(approved["audio_sha256"])
