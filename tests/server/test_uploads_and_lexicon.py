"""Uploads through the HTTP API (streamed, probed, prepared with progress) and the pronunciation lexicon."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from audio.ffmpeg import ffmpeg_exe
from server.app import create_app
from server.directory import create_area, create_user
from server.permissions import Role
from server.runtime import Runtime
from server.settings import load_settings
from tests.conftest import free_port

PASSWORD = "upload-test-password"


@dataclass
class Env:
    client: TestClient
    runtime: Runtime
    root: Path

    def headers(self, username: str) -> dict[str, str]:
        response = self.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("uploads")
    settings = load_settings(data_dir=root / "data", broker_url=f"mqtt://127.0.0.1:{free_port()}", tts_online=False,
                             http_port=free_port(), max_upload_mb=2, max_upload_minutes=1)
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        with runtime.db.session() as db:
            province = create_area(db, code="p", name="Tỉnh", kind="province", parent_code=None)
            a = create_area(db, code="a", name="Xã A", kind="commune", parent_code="p")
            create_area(db, code="b", name="Xã B", kind="commune", parent_code="p")
            create_user(db, username="editor", password=PASSWORD, full_name="E", grants=[(Role.EDITOR, a.id)])
            create_user(db, username="admin", password=PASSWORD, full_name="A", grants=[(Role.ADMIN, province.id)])
        yield Env(client, runtime, root)


def make_audio(path: Path, seconds: float, *extra: str) -> bytes:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=330:duration={seconds}", "-ac", "2", "-ar", "44100", *extra, str(path)],
                   check=True)
    return path.read_bytes()


def upload(env: Env, headers: dict[str, str], data: bytes, *, area: str = "a", name: str = "ghi-am.m4a") -> Any:
    return env.client.post("/api/v1/uploads", params={"title": "Ghi âm", "area_code": area, "filename": name},
                           content=data, headers={**headers, "Content-Type": "application/octet-stream"})


def wait_ready(env: Env, headers: dict[str, str], announcement_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = env.client.get(f"/api/v1/announcements/{announcement_id}", headers=headers).json()
        if body["audio_status"] != "pending":
            return dict(body)
        time.sleep(0.1)
    raise TimeoutError("upload never prepared")


def test_an_upload_is_prepared_into_the_broadcast_format(env: Env) -> None:
    editor = env.headers("editor")
    data = make_audio(env.root / "phone.m4a", 4, "-c:a", "aac")
    response = upload(env, editor, data)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["kind"] == "upload" and created["upload_name"] == "ghi-am.m4a"
    body = wait_ready(env, editor, created["id"])
    assert body["audio_status"] == "ready" and body["progress"] == 100 and body["fallback_used"] is False
    with env.runtime.db.session() as db:
        from server.models import AudioAsset

        asset = db.get(AudioAsset, body["audio_sha256"])
        assert asset is not None and asset.lufs is not None and asset.true_peak_db is not None
        assert abs(asset.lufs - -16.0) <= 1.0 and asset.true_peak_db <= -1.5
        assert 4000 <= asset.duration_ms <= 6000
    assert not list(env.runtime.uploads_dir.glob("*.upload")), "the raw upload is removed once prepared"


def test_the_file_name_is_not_trusted(env: Env) -> None:
    editor = env.headers("editor")
    text = upload(env, editor, b"this is a text file, not audio" * 20, name="tin.mp3")
    assert text.status_code == 422 and text.json()["detail"]
    png = upload(env, editor, b"\x89PNG\r\n\x1a\n" + bytes(2000), name="anh.wav")
    assert png.status_code == 422
    wav_named_mp3 = upload(env, editor, make_audio(env.root / "real.wav", 2), name="thuc-ra-la-wav.mp3")
    assert wav_named_mp3.status_code == 201, wav_named_mp3.text


def test_empty_oversize_and_overlong_uploads_are_refused_clearly(env: Env) -> None:
    editor = env.headers("editor")
    assert upload(env, editor, b"").status_code == 422
    big = upload(env, editor, bytes(3 * 1024 * 1024))
    assert big.status_code == 413 and "MB" in big.json()["detail"]
    long_audio = make_audio(env.root / "long.mp3", 70, "-c:a", "libmp3lame", "-b:a", "32k")
    too_long = upload(env, editor, long_audio)
    assert too_long.status_code == 422 and "limit" in too_long.json()["detail"]
    assert not list(env.runtime.uploads_dir.glob("*.upload")), "refused uploads leave nothing behind"


def test_uploading_for_another_commune_is_refused_before_reading(env: Env) -> None:
    editor = env.headers("editor")
    assert upload(env, editor, b"x" * 100, area="b").status_code == 404
    assert env.client.post("/api/v1/uploads", params={"title": "x", "area_code": "a"},
                           content=b"x").status_code == 401


def test_lexicon_is_applied_before_the_built_in_rules_and_only_admins_edit_it(env: Env) -> None:
    editor, admin = env.headers("editor"), env.headers("admin")
    entry = {"term": "HTXNN", "spoken": "hợp tác xã nông nghiệp"}
    refused = env.client.post("/api/v1/lexicon", headers=editor, json=entry)
    assert refused.status_code == 403
    text = {"text": "Họp HTXNN Tân Trào lúc 7h"}
    before = env.client.post("/api/v1/speech/preview", headers=editor, json=text)
    assert "nông nghiệp" not in before.json()["spoken_text"]
    created = env.client.post("/api/v1/lexicon", headers=admin, json=entry)
    assert created.status_code == 201
    duplicate = env.client.post("/api/v1/lexicon", headers=admin, json={"term": "HTXNN", "spoken": "x"})
    assert duplicate.status_code == 409
    after = env.client.post("/api/v1/speech/preview", headers=editor, json=text)
    assert after.json()["spoken_text"].startswith("Họp hợp tác xã nông nghiệp Tân Trào lúc bảy giờ")
    announcement = env.client.post("/api/v1/announcements", headers=editor,
                                   json={"title": "Họp", "text": "Họp HTXNN lúc 7h", "area_code": "a"}).json()
    assert "hợp tác xã nông nghiệp" in announcement["spoken_text"]
    entries = env.client.get("/api/v1/lexicon", headers=editor).json()
    assert [e["term"] for e in entries] == ["HTXNN"]
    assert env.client.delete(f"/api/v1/lexicon/{entries[0]['id']}", headers=admin).status_code == 204


def test_a_commune_chime_is_played_before_its_announcements(env: Env) -> None:
    editor, admin = env.headers("editor"), env.headers("admin")
    chime = upload(env, editor, make_audio(env.root / "chime.wav", 2), name="chuong.wav").json()
    wait_ready(env, editor, chime["id"])
    assert env.client.post(f"/api/v1/announcements/{chime['id']}/review", headers=admin,
                           json={"approve": True}).status_code == 200
    refused = env.client.put("/api/v1/areas/a/jingles", headers=editor, json={"chime_announcement_id": chime["id"]})
    assert refused.status_code == 403
    text = {"title": "Tin", "text": "Thông báo ngắn.", "area_code": "a"}
    plain = env.client.post("/api/v1/announcements", headers=editor, json=text).json()
    plain_ms = _duration(env, wait_ready(env, editor, plain["id"]))
    assert env.client.put("/api/v1/areas/a/jingles", headers=admin,
                          json={"chime_announcement_id": chime["id"]}).status_code == 200
    with_chime = env.client.post("/api/v1/announcements", headers=editor, json=text).json()
    chimed_ms = _duration(env, wait_ready(env, editor, with_chime["id"]))
    assert chimed_ms - plain_ms >= 1500, (plain_ms, chimed_ms)


def _duration(env: Env, announcement: dict[str, Any]) -> int:
    from server.models import AudioAsset

    with env.runtime.db.session() as db:
        asset = db.get(AudioAsset, announcement["audio_sha256"])
        assert asset is not None
        return asset.duration_ms
