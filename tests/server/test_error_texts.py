"""Every error message the server raises to an API client has its other language (server/error_texts.py).

Messages are read from the source: the first argument of every ``raise Conflict(...)`` (and the other
error kinds) and the refusal text given to ``require`` / ``managed_device``; f-strings are checked with
sample values in place of their expressions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import error_texts
from server.accounts import PASSWORD_RULE
from server.error_texts import translated
from tests.server.accounts_app import AccountsApp, start

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {"Conflict", "Invalid", "Forbidden", "NotFound", "Unauthorized", "TooLarge", "PasswordChangeRequired",
          "InvalidAudio", "AudioTooLarge", "AudioTooLong"}
REFUSAL_TAKERS = {"require": 4, "managed_device": 3}
"""Functions whose argument at that position is the message of the Forbidden they raise."""
CONSTANTS = {"LOGIN_REFUSED", "PASSWORD_RULE", "_NOT_AUDIO", "_NO_STREAM", "_EMPTY_FILE", "_NO_SOUND", "_UNDECODABLE"}


def sample(node: ast.expr) -> str | None:
    """The message an argument makes, with "X1", "X2", … for the values of an f-string; None if not literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts, index = [], 0
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                index += 1
                parts.append(f"X{index}")
        return "".join(parts)
    return None


def raised_messages() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in [*sorted((ROOT / "server").rglob("*.py")), ROOT / "audio" / "probe.py"]:
        if path.name == "error_texts.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            if node.func.id in ERRORS and node.args:
                text = sample(node.args[0])
            elif node.func.id in REFUSAL_TAKERS and len(node.args) > REFUSAL_TAKERS[node.func.id]:
                text = sample(node.args[REFUSAL_TAKERS[node.func.id]])
            else:
                continue
            if text:  # "" (no refusal text) and computed messages are not ours to word
                found.append((f"{where}:{node.lineno}", text))
        for node in ast.walk(tree):  # module constants used as messages
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in CONSTANTS
                                                    for t in node.targets):
                text = sample(node.value)
                if text:
                    found.append((f"{where}:{node.lineno}", text))
    return found


def test_the_scan_finds_the_messages() -> None:
    messages = dict(raised_messages())
    assert len(messages) > 100
    assert "the audio is not ready yet; approve it once it can be heard" in messages.values()


@pytest.mark.parametrize(("where", "message"), raised_messages())
def test_every_message_has_its_pair(where: str, message: str) -> None:
    english, vietnamese = translated(message, "en"), translated(message, "vi")
    assert english != vietnamese, f"{where}: no pair in server/error_texts.py for {message!r}"


def test_values_are_carried_over_and_the_more_specific_pair_wins() -> None:
    assert translated("no area with code 08740", "vi") == "Không có địa bàn mã 08740."
    assert translated("no area 08740", "vi") == "Không tìm thấy địa bàn 08740."
    assert translated("Không tìm thấy người dùng bich.", "en") == "No user bich."
    assert translated("the file is 250.0 MB; the limit is 200.0 MB", "vi") == "Tệp nặng 250.0 MB; giới hạn là 200.0 MB."
    assert translated("announcement is already approved", "vi") == "Bản tin đã ở trạng thái đã duyệt."
    assert translated("something nobody wrote", "vi") == "something nobody wrote"
    weak = "Mật khẩu này quá dễ đoán. " + PASSWORD_RULE  # put together at run time
    assert translated(weak, "en").startswith("This password is too easy to guess.")


def test_both_sides_of_a_pair_name_the_same_values() -> None:
    for english, vietnamese in error_texts.PAIRS:
        assert sorted(error_texts._PLACEHOLDER.findall(english)) == sorted(
            error_texts._PLACEHOLDER.findall(vietnamese)), (english, vietnamese)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsApp]:
    yield from start(tmp_path_factory.mktemp("errors"))


def test_the_api_words_its_errors_in_the_consoles_language(app: AccountsApp) -> None:
    headers = app.login("editor-a")
    missing = app.client.get("/api/v1/announcements/99999", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no announcement 99999"  # as raised, for API clients and logs
    assert missing.json()["message"] == "Không tìm thấy bản tin 99999."  # the console's default language
    app.client.cookies.set("loa_lang", "en")
    try:
        english = app.client.get("/api/v1/announcements/99999", headers=headers).json()
        assert english["message"] == "no announcement 99999"
        admin = app.login("xadmin")
        app.client.cookies.set("loa_lang", "en")
        refused = app.client.post("/api/v1/users", headers=admin, json={
            "username": "editor-a", "full_name": "x", "grants": [{"role": "editor", "area_code": "XA"}]}).json()
        assert refused["detail"] == "Tên đăng nhập editor-a đã có người dùng."  # raised in Vietnamese
        assert refused["message"] == "The username editor-a is taken."
        invalid = app.client.post("/api/v1/announcements", headers=headers, json={"title": "x"}).json()
        assert invalid["message"] == invalid["detail"] and "text" in invalid["detail"]
    finally:
        app.client.cookies.clear()
    invalid = app.client.post("/api/v1/announcements", headers=headers, json={"title": "x"}).json()
    assert invalid["message"].startswith("Dữ liệu gửi lên không hợp lệ: ")
