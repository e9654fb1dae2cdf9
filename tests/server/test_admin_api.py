"""Administration through API v1: the area tree, device registration and secrets, installation settings.

The accounts app (tests/server/accounts_app.py): province P > district D > communes XA, XB; ``xadmin`` is
admin of XA and viewer of D (so XB is visible to them, P is not); ``padmin`` is admin of P.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.directory import create_area, create_user
from server.permissions import Role
from server.runtime import Runtime
from server.settings import Settings
from tests.conftest import free_port
from tests.server.accounts_app import PASSWORD, AccountsApp, start

NO_SUCH_AUDIO = "0" * 64


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsApp]:
    yield from start(tmp_path_factory.mktemp("admin"))


@pytest.fixture(scope="module")
def xadmin(app: AccountsApp) -> dict[str, str]:
    return app.login("xadmin")


@pytest.fixture(scope="module")
def padmin(app: AccountsApp) -> dict[str, str]:
    return app.login("padmin")


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {p["field"]: p["message"] for p in response.json().get("errors", [])}


# --- areas ---------------------------------------------------------------------------------------------

def test_a_commune_admin_adds_a_village_with_coordinates(app: AccountsApp, xadmin: dict[str, str]) -> None:
    created = app.client.post("/api/v1/areas", headers=xadmin, json={
        "parent_code": "XA", "kind": "village", "name": "  Thôn   Đồng Bừa ", "latitude": 21.7767,
        "longitude": 105.4292})
    assert created.status_code == 201, created.text
    village = created.json()
    assert village["code"] == "XA-01" and village["name"] == "Thôn Đồng Bừa" and village["parent_code"] == "XA"
    assert (village["latitude"], village["longitude"]) == (21.7767, 105.4292)
    group = app.client.post("/api/v1/areas", headers=xadmin, json={
        "parent_code": "XA-01", "kind": "group", "name": "Tổ 1", "code": "XA-01-T1"})
    assert group.status_code == 201 and group.json()["latitude"] is None
    listed = {a["code"] for a in app.client.get("/api/v1/areas", headers=xadmin).json()}
    assert {"XA-01", "XA-01-T1"} <= listed


@pytest.mark.parametrize("point, field", [
    ({"latitude": 48.85, "longitude": 2.35}, "latitude"),       # Paris
    ({"latitude": 21.0, "longitude": 100.5}, "longitude"),      # Laos / Thailand
    ({"latitude": 105.8, "longitude": 21.0}, "latitude"),       # swapped
    ({"latitude": 21.0}, ""),                                   # half a point
])
def test_coordinates_outside_viet_nam_are_refused_with_the_field_named(
        app: AccountsApp, xadmin: dict[str, str], point: dict[str, float], field: str) -> None:
    response = app.client.post("/api/v1/areas", headers=xadmin,
                               json={"parent_code": "XA", "kind": "village", "name": "Thôn Sai", **point})
    found = problems(response)
    if field:
        assert field in found and "Viet Nam" in found[field], found
    else:
        assert "both latitude and longitude" in response.json()["detail"]


def test_area_changes_stay_inside_the_admins_subtree(app: AccountsApp, xadmin: dict[str, str]) -> None:
    village = {"kind": "village", "name": "Thôn Lạ"}
    assert app.client.post("/api/v1/areas", headers=xadmin, json={**village, "parent_code": "XB"}).status_code == 403
    assert app.client.post("/api/v1/areas", headers=xadmin, json={**village, "parent_code": "P"}).status_code == 404
    assert app.client.post("/api/v1/areas", headers=app.login("editor-a"),
                           json={**village, "parent_code": "XA"}).status_code == 403
    assert app.client.patch("/api/v1/areas/XB", headers=xadmin, json={"name": "Xã Của Tôi"}).status_code == 403
    assert app.client.patch("/api/v1/areas/P", headers=xadmin, json={"name": "Tỉnh Của Tôi"}).status_code == 404
    assert app.client.post("/api/v1/areas/XB/aliases", headers=xadmin, json={"code": "OLD-XB"}).status_code == 403
    names = {a["code"]: a["name"] for a in app.client.get("/api/v1/areas", headers=app.login("padmin")).json()}
    assert names["XB"] == "Xã Bình" and "Thôn Lạ" not in names.values()


def test_a_child_must_be_of_a_lower_level(app: AccountsApp, xadmin: dict[str, str]) -> None:
    response = app.client.post("/api/v1/areas", headers=xadmin,
                               json={"parent_code": "XA", "kind": "commune", "name": "Xã Con"})
    assert response.status_code == 422 and "cannot be placed under" in response.json()["detail"]


def test_rename_and_place_an_area(app: AccountsApp, xadmin: dict[str, str], padmin: dict[str, str]) -> None:
    renamed = app.client.patch("/api/v1/areas/XA", headers=xadmin,
                               json={"name": "Xã An Mới", "latitude": 21.5, "longitude": 105.5})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Xã An Mới" and renamed.json()["latitude"] == 21.5
    half = app.client.patch("/api/v1/areas/XA", headers=xadmin, json={"latitude": 22.0})
    assert half.status_code == 422 and "latitude and longitude together" in half.json()["detail"]
    assert "name" in problems(app.client.patch("/api/v1/areas/XA", headers=xadmin, json={"name": "   "}))
    cleared = app.client.patch("/api/v1/areas/XA", headers=xadmin, json={"latitude": None, "longitude": None})
    assert cleared.json()["latitude"] is None and cleared.json()["name"] == "Xã An Mới"
    assert app.client.patch("/api/v1/areas/XB", headers=padmin, json={"name": "Xã Bình"}).status_code == 200


def test_former_codes_resolve_to_the_area_and_cannot_clash(app: AccountsApp, xadmin: dict[str, str]) -> None:
    added = app.client.post("/api/v1/areas/XA/aliases", headers=xadmin, json={"code": "OLD-XA", "note": "sáp nhập"})
    assert added.status_code == 201 and added.json()["aliases"] == [{"code": "OLD-XA", "note": "sáp nhập"}]
    assert app.client.get("/api/v1/areas/OLD-XA", headers=xadmin).json()["code"] == "XA"
    for taken in ("OLD-XA", "XB"):
        assert app.client.post("/api/v1/areas/XA/aliases", headers=xadmin, json={"code": taken}).status_code == 409
    assert app.client.post("/api/v1/areas", headers=xadmin, json={
        "parent_code": "XA", "kind": "village", "name": "Thôn Trùng", "code": "OLD-XA"}).status_code == 409
    assert app.client.delete("/api/v1/areas/XA/aliases/OLD-XA", headers=xadmin).status_code == 204
    assert app.client.get("/api/v1/areas/OLD-XA", headers=xadmin).status_code == 404


# --- devices -------------------------------------------------------------------------------------------

def audio_status(app: AccountsApp, token: str) -> int:
    """401 when the agent secret is not accepted; 404 (no such file) when it is."""
    return app.client.get(f"/api/v1/audio/{NO_SUCH_AUDIO}", headers={"Authorization": f"Bearer {token}"}).status_code


def test_registration_shows_the_secret_once_and_rotation_retires_it(app: AccountsApp, xadmin: dict[str, str]) -> None:
    registered = app.client.post("/api/v1/devices", headers=xadmin, json={
        "agent_id": "dev-a2", "name": "Loa An 2", "area_code": "XA", "latitude": 21.77, "longitude": 105.43})
    assert registered.status_code == 201, registered.text
    first = registered.json()["token"]
    assert len(first) >= 40 and audio_status(app, first) == 404
    shown = app.client.get("/api/v1/devices/dev-a2", headers=xadmin).json()
    assert first not in str(shown) and shown["latitude"] == 21.77

    rotated = app.client.post("/api/v1/devices/dev-a2/secret", headers=xadmin)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["token"]
    assert second != first and rotated.json()["agent_id"] == "dev-a2"
    assert audio_status(app, first) == 401
    assert audio_status(app, second) == 404


def test_device_administration_is_refused_outside_the_admins_areas(app: AccountsApp, xadmin: dict[str, str]) -> None:
    body = {"agent_id": "dev-x9", "name": "Loa Lạ", "area_code": "XB"}
    assert app.client.post("/api/v1/devices", headers=xadmin, json=body).status_code == 403
    assert app.client.post("/api/v1/devices", headers=xadmin, json={**body, "area_code": "P"}).status_code == 404
    assert app.client.post("/api/v1/devices/dev-b1/secret", headers=xadmin).status_code == 403  # visible (viewer of D)
    assert app.client.post("/api/v1/devices/dev-a1/secret", headers=app.login("editor-a")).status_code == 403
    assert app.client.post("/api/v1/devices/dev-a1/secret", headers=app.login("editor-b")).status_code == 404
    assert app.client.patch("/api/v1/devices/dev-b1", headers=xadmin, json={"name": "Của tôi"}).status_code == 403
    assert app.client.delete("/api/v1/devices/dev-b1", headers=xadmin).status_code == 403
    assert app.client.patch("/api/v1/devices/dev-a1", headers=xadmin, json={"area_code": "XB"}).status_code == 403


def test_registration_refuses_coordinates_outside_viet_nam(app: AccountsApp, xadmin: dict[str, str]) -> None:
    response = app.client.post("/api/v1/devices", headers=xadmin, json={
        "agent_id": "dev-a3", "name": "Loa Sai", "area_code": "XA", "latitude": 13.75, "longitude": 100.5})
    assert response.status_code == 422 and "longitude" in response.json()["detail"]
    assert app.client.get("/api/v1/devices/dev-a3", headers=xadmin).status_code == 404


def test_edit_move_and_remove_a_device(app: AccountsApp, xadmin: dict[str, str], padmin: dict[str, str]) -> None:
    assert app.client.post("/api/v1/devices", headers=xadmin,
                           json={"agent_id": "dev-a4", "name": "Loa An 4", "area_code": "XA"}).status_code == 201
    edited = app.client.patch("/api/v1/devices/dev-a4", headers=xadmin,
                              json={"name": " Loa  An 4b ", "latitude": 21.7, "longitude": 105.4})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["name"], edited.json()["area_code"], edited.json()["longitude"]) == ("Loa An 4b", "XA", 105.4)
    assert "longitude" in problems(app.client.patch("/api/v1/devices/dev-a4", headers=xadmin,
                                                    json={"latitude": 21.7, "longitude": 200}))
    moved = app.client.patch("/api/v1/devices/dev-a4", headers=padmin, json={"area_code": "XB"})
    assert moved.status_code == 200 and moved.json()["area_code"] == "XB"
    assert app.client.delete("/api/v1/devices/dev-a4", headers=xadmin).status_code == 403  # now in XB
    assert app.client.delete("/api/v1/devices/dev-a4", headers=padmin).status_code == 204
    assert app.client.get("/api/v1/devices/dev-a4", headers=padmin).status_code == 404


# --- settings ------------------------------------------------------------------------------------------

def test_only_an_admin_at_the_top_reads_or_changes_settings(app: AccountsApp, xadmin: dict[str, str],
                                                            padmin: dict[str, str]) -> None:
    for headers in (xadmin, app.login("editor-a"), app.login("approver")):
        assert app.client.get("/api/v1/settings", headers=headers).status_code == 403
        assert app.client.put("/api/v1/settings", headers=headers,
                              json={"values": {"max_upload_mb": 5}}).status_code == 403
    assert app.client.get("/api/v1/settings").status_code == 401
    listed = app.client.get("/api/v1/settings", headers=padmin)
    assert listed.status_code == 200
    keys = {s["key"] for s in listed.json()}
    assert {"broadcast_review", "max_upload_mb", "alert_email_to", "map_tile_url"} <= keys
    assert not keys & {"secret_key", "smtp_password", "database_url", "broker_url", "broker_password"}
    assert app.runtime.settings.max_upload_mb == 200


@pytest.mark.parametrize("values, field", [
    ({"max_upload_mb": 0}, "max_upload_mb"),
    ({"alert_disk_percent": 101}, "alert_disk_percent"),
    ({"emergency_confirmation": "nobody"}, "emergency_confirmation"),
    ({"map_tile_url": "ftp://tiles.example.vn/{z}/{x}/{y}.png"}, "map_tile_url"),
    ({"alert_email_to": ["ops@example.vn", "not an address"]}, "alert_email_to"),
    ({"secret_key": "x" * 40}, "secret_key"),
    ({"database_url": "sqlite:///elsewhere"}, "database_url"),
    ({"equal_priority": "sometimes"}, "equal_priority"),
    ({"loudness_lufs": -3}, "loudness_lufs"),
])
def test_invalid_settings_are_refused_and_nothing_changes(app: AccountsApp, padmin: dict[str, str],
                                                          values: dict[str, Any], field: str) -> None:
    before = app.runtime.settings
    response = app.client.put("/api/v1/settings", headers=padmin, json={"values": {"play_lead_s": 3, **values}})
    assert f"values.{field}" in problems(response)
    assert app.runtime.settings is before and app.runtime.settings.play_lead_s == 2.0


def test_a_setting_applies_at_once(app: AccountsApp, padmin: dict[str, str]) -> None:
    editor = app.login("editor-a")
    body = b"\0" * (3 * 1024 * 1024)
    params = {"title": "Ghi âm", "area_code": "XA", "filename": "a.mp3"}
    headers = {**editor, "Content-Type": "application/octet-stream"}
    changed = app.client.put("/api/v1/settings", headers=padmin,
                             json={"values": {"max_upload_mb": 2, "alert_email_to": ["ops@example.vn"]}})
    assert changed.status_code == 200, changed.text
    state = {s["key"]: s for s in changed.json()}
    assert state["max_upload_mb"]["value"] == 2 and state["max_upload_mb"]["configured"] == 200
    assert state["max_upload_mb"]["changed_in_console"] and state["max_upload_mb"]["updated_by"] == "padmin"
    assert app.runtime.settings.alert_email_to == ["ops@example.vn"]
    assert app.client.post("/api/v1/uploads", params=params, content=body, headers=headers).status_code == 413
    reset = app.client.put("/api/v1/settings", headers=padmin, json={"values": {"max_upload_mb": None}})
    assert {s["key"]: s for s in reset.json()}["max_upload_mb"]["changed_in_console"] is False
    assert app.runtime.settings.max_upload_mb == 200 and app.runtime.settings.alert_email_to == ["ops@example.vn"]
    refused = app.client.post("/api/v1/uploads", params=params, content=body, headers=headers)
    assert refused.status_code != 413  # the size is fine again (the bytes are not audio: 422)


def test_audio_and_overlap_rules_apply_to_the_next_use(app: AccountsApp, padmin: dict[str, str]) -> None:
    changed = app.client.put("/api/v1/settings", headers=padmin, json={"values": {
        "loudness_lufs": -20, "true_peak_db": -2, "lead_in_ms": 900, "equal_priority": "refuse"}})
    assert changed.status_code == 200, changed.text
    try:
        options = app.runtime.render_options()
        assert (options.target.lufs, options.target.true_peak_db, options.lead_in_ms) == (-20, -2, 900)
        app.runtime.planner.recompile()
        assert app.runtime.planner.preview(frozenset()) == {}
        assert app.runtime.planner.equal_priority == "refuse"
    finally:
        app.client.put("/api/v1/settings", headers=padmin, json={"values": {
            "loudness_lufs": None, "true_peak_db": None, "lead_in_ms": None, "equal_priority": None}})
    assert app.runtime.render_options().target.lufs == -16 and app.runtime.planner.equal_priority == "queue"


def _serve(data_dir: Path, database_url: str, **configured: Any) -> tuple[Runtime, TestClient]:
    settings = Settings(data_dir=data_dir, database_url=database_url, broker_url=f"mqtt://127.0.0.1:{free_port()}",
                        tts_online=False, **configured)
    runtime = Runtime(settings)
    return runtime, TestClient(create_app(settings, runtime=runtime))


def _bearer(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.mark.slow
def test_console_settings_survive_a_restart_over_the_configuration(tmp_path: Path, postgres_url: str) -> None:
    runtime, client = _serve(tmp_path, postgres_url, max_upload_mb=50, broadcast_review=True)
    with client:
        with runtime.db.session() as db:
            province = create_area(db, code="P", name="Tỉnh", kind="province", parent_code=None)
            create_user(db, username="root", password=PASSWORD, full_name="Root", grants=[(Role.ADMIN, province.id)])
        saved = client.put("/api/v1/settings", headers=_bearer(client, "root"),
                           json={"values": {"max_upload_mb": 7, "broadcast_review": False}})
        assert saved.status_code == 200, saved.text

    runtime, client = _serve(tmp_path, postgres_url, max_upload_mb=50, broadcast_review=True)
    with client:
        assert runtime.settings.max_upload_mb == 7 and runtime.settings.broadcast_review is False
        assert runtime.upload_limits.max_bytes == 7 * 1024 * 1024
        assert runtime.configured_settings.max_upload_mb == 50
        client.put("/api/v1/settings", headers=_bearer(client, "root"), json={"values": {"max_upload_mb": None}})

    runtime, client = _serve(tmp_path, postgres_url, max_upload_mb=50, broadcast_review=True)
    with client:
        assert runtime.settings.max_upload_mb == 50 and runtime.settings.broadcast_review is False
