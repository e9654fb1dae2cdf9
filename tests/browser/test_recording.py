"""Recording an announcement with the microphone in the browser, uploaded through the normal upload path.

Chromium's fake capture device stands in for the microphone (``--use-fake-device-for-media-stream``; a
beeping tone) and ``--use-fake-ui-for-media-stream`` answers the permission prompt. This module launches
its own Chromium with those flags; the server is the package's real one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audio.probe import probe
from tests.browser.conftest import CHROMIUM, Console, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _launch(chromium: Any, *extra: str) -> Any:
    return chromium.launch(executable_path=str(CHROMIUM), headless=True,
                           args=["--no-sandbox", "--disable-dev-shm-usage", *extra])


@pytest.fixture(scope="module")
def playwright_instance(browser: Any) -> Iterator[Any]:
    """The package's Playwright (only one sync instance may run), to launch browsers with other flags."""
    yield browser.browser_type


def _page(browser: Any, console: Console, **options: Any) -> Any:
    context = browser.new_context(base_url=console.base_url, viewport={"width": 390, "height": 844},
                                  locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", **options)
    context.set_default_timeout(20_000)
    return context.new_page()


def test_an_editor_records_listens_and_uploads_a_ready_announcement(
        console: Console, playwright_instance: Any, tmp_path: Path) -> None:
    browser = _launch(playwright_instance, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
    try:
        page = _page(browser, console)  # a phone-sized screen
        log_in(page, console.editor)
        page.wait_for_url("**/console")
        page.goto("/console/announcements")
        title = f"Ghi âm {int(time.time())}"
        page.fill("#record-title", title)
        page.click("#record-start")
        page.wait_for_selector('#record-form[data-state="recording"]')
        page.wait_for_timeout(2300)
        assert page.locator("#record-time").inner_text() in ("00:02", "00:03")
        page.click("#record-stop")
        page.wait_for_selector('#record-form[data-state="recorded"]')
        playback = page.locator("#record-playback")
        assert playback.is_visible() and (playback.get_attribute("src") or "").startswith("blob:")
        assert "00:02" in page.locator("#record-status").inner_text()
        screenshot(page, "recording")
        page.click("#record-upload")
        page.wait_for_selector("#record-form[data-uploaded-id]", timeout=30_000)
        announcement_id = int(page.locator("#record-form").get_attribute("data-uploaded-id") or 0)
        card = page.locator(f'#announcement-{announcement_id}[data-audio-status="ready"]')
        card.wait_for(timeout=60_000)
        assert card.get_attribute("data-title") == title
        assert page.locator("#record-form").get_attribute("data-state") == "idle"
    finally:
        browser.close()

    with console.api(console.editor) as api:
        announcement = api.get(f"/api/v1/announcements/{announcement_id}").json()
        assert announcement["kind"] == "upload" and announcement["audio_status"] == "ready"
        assert announcement["upload_name"].endswith(".webm")
        audio = api.get(f"/api/v1/announcements/{announcement_id}/audio")
        assert audio.status_code == 200
    path = tmp_path / "prepared.mp3"
    path.write_bytes(audio.content)
    seconds = probe(path).duration_ms / 1000
    # ~2.3 s recorded; preparation trims silence at the ends and may add a short lead-in.
    assert 1.0 <= seconds <= 8.0, seconds


def test_without_a_microphone_the_editor_is_told_so(console: Console, playwright_instance: Any) -> None:
    """No fake device: Chromium headless has no capture device, so getUserMedia fails with a clear message."""
    browser = _launch(playwright_instance, "--use-fake-ui-for-media-stream")
    try:
        page = _page(browser, console)
        log_in(page, console.editor)
        page.wait_for_url("**/console")
        page.goto("/console/announcements")
        page.click("#record-start")
        status = page.locator('#record-status[data-kind="error"]')
        status.wait_for()
        assert status.inner_text() in ("Không tìm thấy micrô. Hãy cắm micrô rồi thử lại.",
                                       "Không bật được micrô. Hãy thử lại.")
        assert page.locator("#record-upload").is_disabled()
    finally:
        browser.close()


def test_a_refused_permission_is_explained(console: Console, playwright_instance: Any) -> None:
    browser = _launch(playwright_instance, "--use-fake-device-for-media-stream")
    try:
        page = _page(browser, console, permissions=[])  # no microphone permission granted, no prompt UI
        log_in(page, console.editor)
        page.wait_for_url("**/console")
        page.goto("/console/announcements")
        page.click("#record-start")
        status = page.locator('#record-status[data-kind="error"]')
        status.wait_for()
        assert status.inner_text() == ("Chưa được phép dùng micrô. Hãy cho phép micrô trong cài đặt trình duyệt "
                                       "rồi thử lại.")
    finally:
        browser.close()
