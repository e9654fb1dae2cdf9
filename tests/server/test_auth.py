"""Log-in hardening through HTTP: lockout with back-off, password change, admin reset and forced change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from server.accounts import password_problem
from server.api.deps import SESSION_COOKIE
from server.directory import LOGIN_REFUSED, lockout_for
from tests.server.accounts_app import PASSWORD, AccountsApp, start


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsApp]:
    yield from start(tmp_path_factory.mktemp("auth"))


def test_lockout_grows_from_one_minute_and_is_capped() -> None:
    assert [lockout_for(n) for n in (0, 4)] == [None, None]
    assert lockout_for(5) == timedelta(minutes=1)
    assert lockout_for(6) == timedelta(minutes=2)
    assert lockout_for(7) == timedelta(minutes=4)
    assert lockout_for(12) == timedelta(hours=1) and lockout_for(10_000) == timedelta(hours=1)


def test_five_wrong_passwords_lock_the_account_with_the_same_message_as_an_unknown_user(app: AccountsApp) -> None:
    for _ in range(5):
        wrong = app.client.post("/api/v1/auth/login", json={"username": "editor-b", "password": "sai-mat-khau"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == LOGIN_REFUSED
    locked = app.client.post("/api/v1/auth/login", json={"username": "editor-b", "password": PASSWORD})
    unknown = app.client.post("/api/v1/auth/login", json={"username": "khong-co-ai", "password": PASSWORD})
    assert locked.status_code == unknown.status_code == 401
    assert locked.json() == unknown.json() == {"detail": LOGIN_REFUSED, "message": LOGIN_REFUSED}
    app.clock.advance(seconds=59)
    assert app.try_login("editor-b", PASSWORD) == 401  # failures while locked do not extend the lock
    app.clock.advance(seconds=2)
    assert app.try_login("editor-b", PASSWORD) == 200


def test_after_a_lock_each_further_failure_locks_longer(app: AccountsApp) -> None:
    for _ in range(5):
        app.try_login("approver", "sai")
    app.clock.advance(seconds=61)
    assert app.try_login("approver", "sai") == 401  # the 6th failure: two minutes
    app.clock.advance(seconds=100)
    assert app.try_login("approver", PASSWORD) == 401
    app.clock.advance(seconds=21)
    assert app.try_login("approver", PASSWORD) == 200


def test_a_success_resets_the_counter(app: AccountsApp) -> None:
    for _ in range(4):
        assert app.try_login("deditor", "sai") == 401
    assert app.try_login("deditor", PASSWORD) == 200
    for _ in range(4):
        assert app.try_login("deditor", "sai") == 401
    assert app.try_login("deditor", PASSWORD) == 200


def test_the_console_says_the_same_for_a_locked_account(app: AccountsApp) -> None:
    for _ in range(5):
        app.try_login("mixed", "sai")
    page = app.client.post("/login", data={"username": "mixed", "password": PASSWORD, "next": "/console"},
                           follow_redirects=False)
    assert page.status_code == 401 and SESSION_COOKIE not in page.cookies
    assert "tạm khóa vì nhập sai nhiều lần" in page.text
    unknown = app.client.post("/login", data={"username": "ai-do", "password": PASSWORD}, follow_redirects=False)
    error = re.compile(r'<p id="login-error"[^>]*>(.*?)</p>', re.S)
    assert error.search(page.text).group(1) == error.search(unknown.text).group(1)  # type: ignore[union-attr]
    app.clock.advance(minutes=2)


def test_password_rule() -> None:
    assert password_problem("ngan1", "x") is not None
    assert password_problem("chi-co-chu-thoi", "x") is None  # '-' counts as a non-letter
    assert password_problem("chicochuthoi", "x") is not None
    assert password_problem("12345678901", "x") is not None
    assert password_problem("nguoidung01", "nguoidung01") is not None
    assert password_problem("aaaaaaaaaa1", "x") is not None
    assert password_problem("Trống đồng 1945", "x") is None


def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(app: AccountsApp) -> None:
    other = app.login("editor-a")
    mine = app.login("editor-a")
    url = "/api/v1/auth/password"
    wrong = app.client.post(url, headers=mine, json={"current_password": "sai", "new_password": "Moi-mat-khau-2026"})
    assert wrong.status_code == 422 and "hiện tại" in wrong.json()["detail"]
    weak = app.client.post(url, headers=mine, json={"current_password": PASSWORD, "new_password": "ngan"})
    assert weak.status_code == 422 and "ít nhất 10" in weak.json()["detail"]
    missing = app.client.post(url, headers=mine, json={"current_password": PASSWORD})
    assert missing.status_code == 422 and "new_password" in missing.json()["detail"]
    done = app.client.post(url, headers=mine, json={"current_password": PASSWORD, "new_password": "Moi-mat-khau-2026"})
    assert done.status_code == 204, done.text
    assert app.client.get("/api/v1/devices", headers=mine).status_code == 200
    assert app.client.get("/api/v1/devices", headers=other).status_code == 401
    assert app.try_login("editor-a", PASSWORD) == 401
    assert app.try_login("editor-a", "Moi-mat-khau-2026") == 200
    back = app.client.post(url, headers=app.login("editor-a", "Moi-mat-khau-2026"),
                           json={"current_password": "Moi-mat-khau-2026", "new_password": PASSWORD})
    assert back.status_code == 204


def test_a_cookie_session_changes_the_password_only_with_the_csrf_token(app: AccountsApp) -> None:
    login = app.client.post("/api/v1/auth/login", json={"username": "editor-a", "password": PASSWORD}).json()
    body = {"current_password": PASSWORD, "new_password": "Khac-han-2026"}
    assert app.client.post("/api/v1/auth/password", json=body).status_code == 401
    ok = app.client.post("/api/v1/auth/password", json={"current_password": PASSWORD, "new_password": PASSWORD + "x"},
                         headers={"X-CSRF-Token": login["csrf_token"]})
    assert ok.status_code == 204
    again = app.client.post("/api/v1/auth/password", headers={"X-CSRF-Token": login["csrf_token"]},
                            json={"current_password": PASSWORD + "x", "new_password": PASSWORD})
    assert again.status_code == 204
    app.client.cookies.clear()


def test_admin_reset_forces_a_change_at_the_next_login_in_the_api(app: AccountsApp) -> None:
    before = app.login("editor-b")
    reset = app.client.post("/api/v1/users/editor-b/reset-password", headers=app.login("padmin"))
    assert reset.status_code == 200, reset.text
    one_time = reset.json()["one_time_password"]
    assert len(one_time) >= 10
    assert app.client.get("/api/v1/devices", headers=before).status_code == 401  # old sessions ended
    assert app.try_login("editor-b", PASSWORD) == 401
    login = app.client.post("/api/v1/auth/login", json={"username": "editor-b", "password": one_time}).json()
    app.client.cookies.clear()
    assert login["must_change_password"] is True
    headers = {"Authorization": f"Bearer {login['token']}"}
    refused = app.client.get("/api/v1/devices", headers=headers)
    assert refused.status_code == 403 and refused.json()["code"] == "password_change_required"
    assert app.client.get("/api/v1/auth/me", headers=headers).json()["must_change_password"] is True
    same = app.client.post("/api/v1/auth/password", headers=headers,
                           json={"current_password": one_time, "new_password": one_time})
    assert same.status_code == 422
    changed = app.client.post("/api/v1/auth/password", headers=headers,
                              json={"current_password": one_time, "new_password": PASSWORD})
    assert changed.status_code == 204
    assert app.client.get("/api/v1/devices", headers=headers).status_code == 200
    assert app.client.get("/api/v1/auth/me", headers=headers).json()["must_change_password"] is False


def test_admin_reset_forces_a_change_in_the_console(app: AccountsApp) -> None:
    one_time = app.client.post("/api/v1/users/deditor/reset-password",
                               headers=app.login("padmin")).json()["one_time_password"]
    app.client.cookies.clear()
    login = app.client.post("/login", data={"username": "deditor", "password": one_time, "next": "/console/as-run"},
                            follow_redirects=False)
    assert login.status_code == 303
    assert login.headers["location"] == "/console/password?next=%2Fconsole%2Fas-run"
    for path in ("/console", "/console/announcements", "/console/reports"):
        page = app.client.get(path, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/console/password?next=")
    form = app.client.get("/console/password?next=%2Fconsole%2Fas-run")
    assert form.status_code == 200 and 'id="password-forced"' in form.text
    assert 'data-next="/console/as-run"' in form.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', form.text)
    assert csrf is not None
    done = app.client.post("/api/v1/auth/password", headers={"X-CSRF-Token": csrf.group(1)},
                           json={"current_password": one_time, "new_password": PASSWORD})
    assert done.status_code == 204
    assert app.client.get("/console", follow_redirects=False).status_code == 200
    logout = app.client.post("/logout", data={"csrf_token": csrf.group(1)}, follow_redirects=False)
    assert logout.status_code == 303 and logout.headers["location"] == "/login"


def test_the_password_page_needs_a_session(app: AccountsApp) -> None:
    app.client.cookies.clear()
    page = app.client.get("/console/password", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
