"""The console in a real browser: write and preview, approve, watch it play live, report, refusals, log-in rules.

Here the bulletin is scheduled through API v1 (and approved by the approver); the scheduling pages are
driven in the browser by test_scheduling.py.
"""

from __future__ import annotations

import io
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.browser.conftest import Console, log_in, screenshot
from tests.e2e.harness import PASSWORD, at_vn

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BULLETIN = "Thông báo: từ 7h30 ngày 05/12/2026 xã tiêm vắc-xin sởi cho trẻ dưới 5 tuổi tại trạm y tế."


def test_editor_writes_approver_approves_and_the_dashboard_shows_it_playing(console: Console, new_page: Any) -> None:
    title = f"Tiêm vắc-xin {int(time.time())}"
    editor = new_page()
    log_in(editor, console.editor)
    editor.wait_for_url("**/console")
    editor.goto("/console/announcements")
    editor.fill("#announcement-title", title)
    editor.fill("#announcement-text", BULLETIN)
    editor.click("#announcement-preview")
    spoken = editor.locator("#announcement-spoken-text")
    spoken.wait_for(state="visible")
    assert "bảy giờ ba mươi" in spoken.inner_text() and "7h30" not in spoken.inner_text()
    screenshot(editor, "01-soan-ban-tin")
    editor.click("#announcement-submit")
    card = editor.locator(f'.announcement-card[data-title="{title}"]')
    card.wait_for()
    editor.wait_for_selector(f'.announcement-card[data-title="{title}"][data-audio-status="ready"]', timeout=60_000)
    announcement_id = int(card.get_attribute("data-id") or 0)
    assert card.get_attribute("data-review-status") == "submitted"

    approver = new_page()
    log_in(approver, console.approver)
    approver.wait_for_url("**/console")
    approver.goto("/console/announcements")
    approve = approver.locator(f'#announcement-{announcement_id} .review-approve')
    approve.wait_for()
    screenshot(approver, "02-duyet-ban-tin")
    approve.click()
    approver.wait_for_selector(f'#announcement-{announcement_id}[data-review-status="approved"]')
    editor.reload()
    editor.wait_for_selector(f'#announcement-{announcement_id}[data-review-status="approved"]')

    editor.goto("/console")
    editor.wait_for_selector('#live-status[data-state="on"]')
    with console.api(console.editor) as api:
        scheduled = api.post("/api/v1/broadcasts", json={
            "announcement_id": announcement_id, "play_at": at_vn(datetime.now(UTC) + timedelta(seconds=8)),
            "area_codes": [console.commune_a]})
        assert scheduled.status_code == 201, scheduled.text
    with console.api(console.approver) as api:  # broadcast review is on in these tests
        approved = api.post(f"/api/v1/broadcasts/{scheduled.json()['id']}/review", json={"approve": True})
        assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text
    playing = editor.locator('#device-table tr[data-state="playing"]')
    playing.first.wait_for(timeout=30_000)
    assert editor.locator("#count-playing").inner_text() != "0"
    assert title in playing.first.locator(".col-now-playing").inner_text()
    screenshot(editor, "03-bang-dieu-khien-dang-phat")
    expect(editor.locator("#count-playing")).to_have_text("0", timeout=60_000)

    editor.goto(f"/console/as-run?broadcast_id={scheduled.json()['id']}")
    editor.wait_for_selector('#asrun-table tr[data-kind="finished"]')
    assert editor.locator('#asrun-table tr[data-kind="finished"]').count() == len(console.sim_agents)
    screenshot(editor, "04-nhat-ky-phat")


def test_monthly_report_exports_an_xlsx_that_opens(console: Console, new_page: Any, tmp_path: Any) -> None:
    page = new_page()
    log_in(page, console.admin)
    page.wait_for_url("**/console")
    page.click("#nav-reports")
    page.select_option("#report-area", console.commune_a)
    page.click("#report-submit")
    page.wait_for_selector(f'#report[data-area-code="{console.commune_a}"]')
    assert page.locator("#report-chart svg").count() == 1
    screenshot(page, "05-bao-cao-thang")
    with page.expect_download() as download_info:
        page.click("#export-xlsx")
    download = download_info.value
    assert download.suggested_filename.endswith(".xlsx")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    sheet = load_workbook(io.BytesIO(target.read_bytes())).active
    assert sheet is not None
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0][0] == "BÁO CÁO HOẠT ĐỘNG TRUYỀN THANH CƠ SỞ"
    assert rows[1][1].endswith(f"({console.commune_a})")
    total = next(r for r in rows if r[0] == "Tổng cộng")
    plays = int(page.locator("#total-plays").inner_text())
    assert total[2] == plays


def test_a_commune_editor_gets_the_refusal_page_for_another_communes_device(console: Console, new_page: Any) -> None:
    page = new_page()
    log_in(page, console.editor)
    page.wait_for_url("**/console")
    response = page.goto(f"/console/devices/{console.device_b}")
    assert response is not None and response.status == 404
    refusal = page.locator("#refusal")
    assert refusal.is_visible() and "Không tìm thấy" in refusal.inner_text()
    # Nothing about the device is shown (the language switch only echoes the address the user typed).
    assert console.device_b not in page.locator("#main").inner_html() and console.device_b not in page.title()
    screenshot(page, "06-tu-choi-truy-cap")


def test_five_wrong_passwords_lock_the_account(console: Console, new_page: Any) -> None:
    page = new_page()
    for _ in range(5):
        log_in(page, console.locked_user, "mat-khau-sai")
        page.wait_for_selector("#login-error")
    log_in(page, console.locked_user, PASSWORD)
    error = page.locator("#login-error")
    error.wait_for()
    assert "tạm khóa" in error.inner_text()
    assert re.search(r"/login$", page.url)
    screenshot(page, "07-dang-nhap-bi-khoa")


def test_changing_the_password_in_the_console(console: Console, new_page: Any) -> None:
    page = new_page()
    log_in(page, console.changer)
    page.wait_for_url("**/console")
    page.click("#nav-password")
    page.fill("#password-current", PASSWORD)
    page.fill("#password-new", "ngan")
    page.fill("#password-repeat", "ngan")
    page.click("#password-submit")
    page.wait_for_selector('#flash[data-kind="error"]')
    assert "ít nhất 10" in page.locator("#flash").inner_text()
    page.fill("#password-new", "Mat-khau-moi-2026")
    page.fill("#password-repeat", "Mat-khau-moi-2026")
    page.click("#password-submit")
    page.wait_for_selector('#flash[data-kind="ok"]')
    screenshot(page, "08-doi-mat-khau")
    page.click("#logout-button")
    page.wait_for_url("**/login")
    log_in(page, console.changer, PASSWORD)
    page.wait_for_selector("#login-error")
    log_in(page, console.changer, "Mat-khau-moi-2026")
    page.wait_for_url("**/console")


def test_an_admin_creates_a_user_who_must_change_the_one_time_password(console: Console, new_page: Any) -> None:
    admin = new_page()
    log_in(admin, console.admin)
    admin.wait_for_url("**/console")
    admin.click("#nav-users")
    username = f"moi-{console.system.suffix}"
    admin.fill("#user-username", username)
    admin.fill("#user-fullname", "Cán bộ mới")
    admin.select_option("#user-role", "editor")
    admin.select_option("#user-area", console.commune_a)
    admin.click("#user-submit")
    box = admin.locator("#one-time-box")
    box.wait_for(state="visible")
    one_time = admin.locator("#one-time-password").inner_text().strip()
    assert len(one_time) >= 10
    admin.reload()
    admin.wait_for_selector(f'#user-table tr[data-username="{username}"]')
    screenshot(admin, "09-nguoi-dung")

    newcomer = new_page()
    log_in(newcomer, username, one_time)
    newcomer.wait_for_url("**/console/password**")
    assert newcomer.locator("#password-forced").is_visible()
    newcomer.goto("/console/as-run")
    assert "/console/password" in newcomer.url  # nothing else until the password is changed
    newcomer.fill("#password-current", one_time)
    newcomer.fill("#password-new", "Mat-khau-rieng-2026")
    newcomer.fill("#password-repeat", "Mat-khau-rieng-2026")
    newcomer.click("#password-submit")
    newcomer.wait_for_url("**/console/as-run")
