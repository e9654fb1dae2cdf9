"""The console in English: switched on the log-in page and in the top bar, kept across reloads, switched back."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, screenshot
from tests.browser.test_scheduling import _approved_announcement
from tests.e2e.harness import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DATE_TIME = re.compile(r"^\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}$")


def test_switching_to_english_and_back(console: Console, new_page: Any) -> None:
    title = f"Lịch cắt điện {int(time.time())}"
    with console.api(console.editor) as api:
        created = api.post("/api/v1/announcements", json={
            "area_code": console.commune_a, "title": title, "text": "Thứ Bảy mất điện từ 7h30 đến 11h."})
        assert created.status_code == 201, created.text
        announcement_id = created.json()["id"]

    page = new_page()
    page.goto("/login")
    expect(page.locator("h1")).to_have_text("Đăng nhập")
    page.click("#lang-en")
    expect(page.locator("h1")).to_have_text("Log in")
    assert page.locator("html").get_attribute("lang") == "en"
    expect(page.locator('label[for="login-username"]')).to_have_text("Username")
    page.fill("#login-username", console.editor)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url("**/console")

    expect(page.locator("#nav-announcements")).to_have_text("Announcements")
    expect(page.locator("#nav-asrun")).to_have_text("As-run log")
    page.goto("/console/announcements")
    expect(page.locator("h1")).to_have_text("Announcements")
    expect(page.locator("#new-announcement-heading")).to_have_text("New announcement")
    expect(page.locator("#record-heading")).to_have_text("Record with the microphone")
    card = page.locator(f"#announcement-{announcement_id}")
    page.wait_for_selector(f'#announcement-{announcement_id}[data-audio-status="ready"]', timeout=60_000)
    card = page.locator(f"#announcement-{announcement_id}")
    expect(card.locator(".audio-status")).to_have_text("Audio ready")
    expect(card.locator(".review-status")).to_have_text("Awaiting review")
    expect(card.locator(".spoken .label")).to_have_text("Will be read as:")
    assert DATE_TIME.match(card.locator("time").first.inner_text())  # dd/mm/yyyy HH:MM:SS in English too
    expect(page.locator("#live-status")).to_have_text("Live updates on")
    screenshot(page, "announcements-en")

    page.reload()
    expect(page.locator("h1")).to_have_text("Announcements")
    page.goto("/console/schedule")
    expect(page.locator("h1")).to_have_text("Schedule a broadcast")
    expect(page.locator("#dry-run")).to_have_text("Check conflicts")

    # A coded API error is worded by the console in the page's language, with the API's values filled in.
    approved = _approved_announcement(console, console.editor, console.commune_a, f"Diễn tập {int(time.time())}",
                                      "Diễn tập phòng cháy chữa cháy.")
    page.goto("/console/emergency")
    worded = page.evaluate("""(body) => window.Loa.api("POST", "/api/v1/broadcasts", body)
        .then(() => "sent", (error) => error.message)""",
        {"announcement_id": approved, "priority": "emergency", "timing": {"kind": "now"},
         "area_codes": [console.commune_a], "exercise": True, "confirm": "not the name"})
    assert worded == "Type the area's name exactly: Xã a"
    expect(page.locator("#flash")).to_have_text("Type the area's name exactly: Xã a")

    page.click("#lang-vi")
    expect(page.locator("h1")).to_have_text("PHÁT KHẨN CẤP")
    page.goto("/console/announcements")
    expect(page.locator("#nav-announcements")).to_have_text("Bản tin")
    expect(page.locator(f"#announcement-{announcement_id} .audio-status")).to_have_text("Âm thanh sẵn sàng")
    assert page.locator("html").get_attribute("lang") == "vi"
