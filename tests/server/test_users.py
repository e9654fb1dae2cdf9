"""User administration through HTTP: an admin acts only inside their own subtree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.accounts_app import PASSWORD, AccountsApp, start


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsApp]:
    yield from start(tmp_path_factory.mktemp("users"))


@pytest.fixture(scope="module")
def xadmin(app: AccountsApp) -> dict[str, str]:
    return app.login("xadmin")


@pytest.fixture(scope="module")
def padmin(app: AccountsApp) -> dict[str, str]:
    return app.login("padmin")


def usernames(app: AccountsApp, headers: dict[str, str]) -> set[str]:
    response = app.client.get("/api/v1/users", headers=headers)
    assert response.status_code == 200, response.text
    return {u["username"] for u in response.json()}


def test_only_admins_list_users(app: AccountsApp) -> None:
    for username in ("editor-a", "approver"):
        assert app.client.get("/api/v1/users", headers=app.login(username)).status_code == 403
    assert app.client.get("/api/v1/users").status_code == 401


def test_a_commune_admin_sees_the_users_of_the_commune_only(app: AccountsApp, xadmin: dict[str, str],
                                                             padmin: dict[str, str]) -> None:
    assert usernames(app, xadmin) == {"xadmin", "editor-a", "mixed"}
    assert usernames(app, padmin) >= {"padmin", "xadmin", "editor-a", "editor-b", "deditor", "mixed", "approver"}
    listed = {u["username"]: u for u in app.client.get("/api/v1/users", headers=xadmin).json()}
    assert listed["editor-a"]["manageable"] is True
    assert listed["mixed"]["manageable"] is False  # also an editor in commune B
    assert listed["xadmin"]["manageable"] is False  # not oneself
    assert app.client.get("/api/v1/users/editor-b", headers=xadmin).status_code == 404
    assert app.client.get("/api/v1/users/editor-a", headers=xadmin).json()["grants"] == [
        {"role": "editor", "area_code": "XA", "area_name": "Xã An"}]


def test_creating_a_user_gives_a_one_time_password_and_stays_in_the_subtree(app: AccountsApp,
                                                                            xadmin: dict[str, str]) -> None:
    body = {"username": "loa.xa", "full_name": " Cán bộ xã ", "grants": [{"role": "operator", "area_code": "XA"}]}
    created = app.client.post("/api/v1/users", headers=xadmin, json=body)
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["full_name"] == "Cán bộ xã" and user["must_change_password"] is True and user["manageable"] is True
    login = app.client.post("/api/v1/auth/login", json={"username": "loa.xa", "password": user["one_time_password"]})
    app.client.cookies.clear()
    assert login.status_code == 200 and login.json()["must_change_password"] is True
    assert app.client.post("/api/v1/users", headers=xadmin, json=body).status_code == 409
    # xadmin may view D and XB (viewer of D) but administers XA only; P is not even visible.
    for area, status in (("XB", 403), ("P", 404), ("D", 403), ("NOPE", 404)):
        other = {**body, "username": f"u-{area.lower()}", "grants": [{"role": "editor", "area_code": area}]}
        response = app.client.post("/api/v1/users", headers=xadmin, json=other)
        assert response.status_code == status, (area, response.text)
    assert app.client.get("/api/v1/users/u-d", headers=app.login("padmin")).status_code == 404  # nothing created


@pytest.mark.parametrize("body, field", [
    ({"username": "Viết Hoa", "grants": [{"role": "editor", "area_code": "XA"}]}, "username"),
    ({"username": "ok-name", "grants": []}, "grants"),
    ({"username": "ok-name", "grants": [{"role": "god", "area_code": "XA"}]}, "role"),
    ({"username": "ok-name"}, "grants"),
])
def test_invalid_new_users_are_refused_with_the_field_named(app: AccountsApp, xadmin: dict[str, str],
                                                            body: dict[str, object], field: str) -> None:
    response = app.client.post("/api/v1/users", headers=xadmin, json=body)
    assert response.status_code == 422 and field in response.json()["detail"]


def test_grants_only_on_areas_inside_the_admins_subtree(app: AccountsApp, xadmin: dict[str, str]) -> None:
    url = "/api/v1/users/editor-a/grants"
    added = app.client.post(url, headers=xadmin, json={"role": "approver", "area_code": "XA"})
    assert added.status_code == 201 and {"role": "approver", "area_code": "XA", "area_name": "Xã An"} in \
        added.json()["grants"]
    assert app.client.post(url, headers=xadmin, json={"role": "approver", "area_code": "XA"}).status_code == 409
    assert app.client.post(url, headers=xadmin, json={"role": "admin", "area_code": "P"}).status_code == 404
    assert app.client.post(url, headers=xadmin, json={"role": "editor", "area_code": "D"}).status_code == 403
    # A user outside the subtree is invisible, even for a grant inside it.
    outsider = app.client.post("/api/v1/users/editor-b/grants", headers=xadmin, json={"role": "viewer",
                                                                                      "area_code": "XA"})
    assert outsider.status_code == 404
    revoked = app.client.delete("/api/v1/users/editor-a/grants/approver/XA", headers=xadmin)
    assert revoked.status_code == 200 and [g["role"] for g in revoked.json()["grants"]] == ["editor"]
    assert app.client.delete("/api/v1/users/editor-a/grants/approver/XA", headers=xadmin).status_code == 404
    last = app.client.delete("/api/v1/users/editor-a/grants/editor/XA", headers=xadmin)
    assert last.status_code == 409
    # mixed's grant in commune B is not the commune admin's to revoke.
    assert app.client.delete("/api/v1/users/mixed/grants/editor/XB", headers=xadmin).status_code == 403
    assert app.client.delete("/api/v1/users/mixed/grants/bogus/XA", headers=xadmin).status_code == 422


def test_disable_and_enable_end_sessions_and_need_the_whole_user_in_scope(app: AccountsApp,
                                                                          xadmin: dict[str, str]) -> None:
    session = app.login("editor-a")
    disabled = app.client.post("/api/v1/users/editor-a/disable", headers=xadmin)
    assert disabled.status_code == 200 and disabled.json()["is_active"] is False
    assert app.client.get("/api/v1/devices", headers=session).status_code == 401
    assert app.try_login("editor-a", PASSWORD) == 401
    assert app.client.post("/api/v1/users/editor-a/enable", headers=xadmin).json()["is_active"] is True
    assert app.try_login("editor-a", PASSWORD) == 200
    assert app.client.post("/api/v1/users/mixed/disable", headers=xadmin).status_code == 403
    assert app.client.post("/api/v1/users/mixed/reset-password", headers=xadmin).status_code == 403
    assert app.client.post("/api/v1/users/editor-b/disable", headers=xadmin).status_code == 404
    padmin = app.login("padmin")
    assert app.client.post("/api/v1/users/padmin/disable", headers=padmin).status_code == 409
    assert app.client.post("/api/v1/users/padmin/reset-password", headers=padmin).status_code == 409
    assert app.client.post("/api/v1/users/mixed/reset-password", headers=padmin).status_code == 200


def test_the_users_page_is_for_admins(app: AccountsApp) -> None:
    app.client.cookies.clear()
    assert app.client.post("/login", data={"username": "xadmin", "password": PASSWORD},
                           follow_redirects=False).status_code == 303
    page = app.client.get("/console/users")
    assert page.status_code == 200
    assert 'data-username="editor-a"' in page.text and 'data-username="editor-b"' not in page.text
    assert 'id="nav-users"' in page.text
    app.client.cookies.clear()
    assert app.client.post("/login", data={"username": "approver", "password": PASSWORD},
                           follow_redirects=False).status_code == 303
    refused = app.client.get("/console/users")
    assert refused.status_code == 403 and 'id="refusal"' in refused.text and 'id="nav-users"' not in refused.text
    app.client.cookies.clear()
