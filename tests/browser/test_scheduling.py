"""The scheduling pages in a real browser: the schedule form with its dry run, the approval queue, the
emergency page with typed confirmation and a live count, the inbox of bulletins from the province."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, log_in, screenshot
from tests.e2e.harness import at_vn

pytestmark = [pytest.mark.browser, pytest.mark.slow]
VN = ZoneInfo("Asia/Ho_Chi_Minh")


def _approved_announcement(console: Console, author: str, area_code: str, title: str, text: str) -> int:
    """An announcement written by ``author``, its audio made, approved by the approver (through API v1)."""
    with console.api(author) as api:
        created = api.post("/api/v1/announcements", json={"title": title, "text": text, "area_code": area_code})
        assert created.status_code == 201, created.text
        announcement_id = int(created.json()["id"])
        deadline = time.monotonic() + 60
        while api.get(f"/api/v1/announcements/{announcement_id}").json()["audio_status"] != "ready":
            assert time.monotonic() < deadline, "audio never became ready"
            time.sleep(0.3)
    with console.api(console.approver) as api:
        reviewed = api.post(f"/api/v1/announcements/{announcement_id}/review", json={"approve": True})
        assert reviewed.status_code == 200, reviewed.text
    return announcement_id


def _review(console: Console, broadcast_id: int) -> None:
    with console.api(console.approver) as api:
        response = api.post(f"/api/v1/broadcasts/{broadcast_id}/review", json={"approve": True})
        assert response.status_code == 200 and response.json()["status"] == "approved", response.text


def _next_weekday(now: datetime) -> datetime:
    """05:30 Viet Nam time on the next weekday after today."""
    day = now.astimezone(VN).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 5, 30, tzinfo=VN)


def test_editor_schedules_a_weekday_programme_and_the_approver_approves_it(console: Console, new_page: Any) -> None:
    stamp = int(time.time())
    first = _approved_announcement(console, console.editor, console.commune_a, f"Tin sáng {stamp}",
                                   "Bản tin buổi sáng của xã: lịch tiêm chủng tuần này.")
    second = _approved_announcement(console, console.editor, console.commune_a, f"Nhạc hiệu {stamp}",
                                    "Chương trình phát thanh của xã kết thúc.")
    slot = _next_weekday(datetime.now(UTC))
    # Something already approved at that 05:30, so the dry run has a conflict to show.
    with console.api(console.editor) as api:
        other = api.post("/api/v1/broadcasts", json={"announcement_id": second, "play_at": at_vn(slot),
                                                     "area_codes": [console.commune_a]})
        assert other.status_code == 201, other.text
    _review(console, other.json()["id"])

    editor = new_page()
    log_in(editor, console.editor)
    editor.wait_for_url("**/console")
    assert editor.locator("#nav-schedule").is_visible() and editor.locator("#nav-emergency").is_visible()
    editor.click("#nav-schedule")
    editor.wait_for_url("**/console/schedule")
    assert editor.locator("#mode").count() == 0  # a commune editor sends no bulletins down
    editor.select_option("#item-0", str(first))
    editor.click("#item-add")
    editor.select_option("#item-1", str(second))
    editor.fill("#broadcast-title", f"Chương trình buổi sáng {stamp}")
    editor.fill("#slot-minutes", "30")
    editor.check("#kind-recurring")
    editor.select_option("#recur-preset", "weekdays")
    editor.fill("#recur-date", slot.strftime("%d/%m/%Y"))
    editor.fill("#recur-time", "05:30")
    editor.check(f'#target-areas input[value="{console.commune_a}"]')
    editor.click("#dry-run")
    result = editor.locator("#dry-run-result")
    result.wait_for(state="visible")
    assert "Sẽ phát" in editor.locator("#dry-run-summary").inner_text()
    queued = editor.locator('#dry-run-conflicts li[data-resolution="queued_after"]',
                            has_text=f"với lịch #{other.json()['id']} ")
    expect(queued).to_have_count(len(console.sim_agents))  # on each simulated cluster, it waits for the other
    assert "chờ đến khi cụm loa rảnh" in queued.first.locator(".conflict-rule").inner_text()
    screenshot(editor, "10-len-lich-kiem-tra-xung-dot")
    editor.click("#save-submit")
    editor.wait_for_selector('#broadcast-form[data-saved-status="submitted"]')
    broadcast_id = int(editor.locator("#broadcast-form").get_attribute("data-saved-id") or 0)
    with console.api(console.editor) as api:
        saved = api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    assert saved["rrule"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR" and saved["start_local"].endswith("T05:30:00")
    assert saved["announcement_ids"] == [first, second] and saved["slot_minutes"] == 30

    approver = new_page()
    log_in(approver, console.approver)
    approver.wait_for_url("**/console")
    assert approver.locator("#nav-schedule").count() == 0 and approver.locator("#nav-emergency").count() == 0
    approver.click("#nav-broadcasts")
    item = approver.locator(f"#queue-{broadcast_id}")
    item.wait_for()
    assert "05:30 các ngày thứ Hai–thứ Sáu" in item.locator(".timing-text").inner_text()
    assert item.locator("audio.audio-player").count() == 2
    assert "lịch tiêm chủng" in item.locator(".spoken-text").first.inner_text()
    screenshot(approver, "11-hang-cho-duyet")
    item.locator(".broadcast-reject").click()  # no comment: refused in the page, nothing sent
    expect(approver.locator("#flash")).to_contain_text("cần ghi lý do")
    assert item.get_attribute("data-status") == "submitted"
    item.locator(".broadcast-comment").fill("Đồng ý")
    item.locator(".broadcast-approve").click()
    approver.wait_for_selector(f'#queue-{broadcast_id}[data-status="approved"]')
    approver.reload()
    row = approver.locator(f'#broadcasts-table tr[data-id="{broadcast_id}"]')
    assert row.get_attribute("data-status") == "approved" and "Đã duyệt" in row.locator(".col-status").inner_text()
    row.locator("details.occurrences summary").click()
    occurrences = row.locator("li.occurrence")
    occurrences.first.wait_for()
    for text in occurrences.all_inner_texts():
        assert text[11:16] == "05:30", text
    assert row.locator(".bcast-cancel").is_visible()
    screenshot(approver, "12-lich-phat")


def test_an_emergency_from_the_emergency_page_plays_live_and_is_cancelled(console: Console, new_page: Any) -> None:
    announcement = _approved_announcement(console, console.editor, console.commune_a, f"Bão số 9 {int(time.time())}",
                                          "Khẩn cấp: bão số 9 đổ bộ, mọi người ở trong nhà, tránh xa bờ biển.")
    page = new_page()
    log_in(page, console.editor)
    page.wait_for_url("**/console")
    page.click("#nav-emergency")
    page.wait_for_url("**/console/emergency")
    page.select_option("#emergency-area", console.commune_a)
    expect(page.locator("#emergency-name-to-type")).to_have_text("Xã a")
    page.select_option("#emergency-announcement", str(announcement))
    page.check("#emergency-exercise")
    page.fill("#emergency-confirm", "Xã b")
    page.click("#emergency-send")
    expect(page.locator("#flash")).to_contain_text("gõ đúng tên địa bàn: Xã a")
    assert page.locator("#emergency-live").is_hidden()
    page.fill("#emergency-confirm", "xã a")
    page.click("#emergency-send")
    live = page.locator("#emergency-live")
    live.wait_for(state="visible")
    assert page.locator("#live-exercise").is_visible()
    expect(page.locator("#p-targeted")).to_have_text(str(len(console.sim_agents)))
    page.wait_for_function("() => +document.getElementById('p-started').textContent >= 1", timeout=30_000)
    screenshot(page, "13-phat-khan-cap")
    broadcast_id = int(live.get_attribute("data-id") or 0)
    page.fill("#cancel-reason", "Kết thúc diễn tập")
    page.click("#emergency-cancel")
    page.wait_for_selector('#emergency-live[data-status="cancelled"]')
    with console.api(console.editor) as api:
        final = api.get(f"/api/v1/broadcasts/{broadcast_id}").json()
    assert final["status"] == "cancelled" and final["priority"] == "emergency" and final["exercise"] is True


def test_a_commune_declines_a_province_bulletin_and_the_province_sees_why(console: Console, new_page: Any) -> None:
    title = f"Bản tin tỉnh {int(time.time())}"
    announcement = _approved_announcement(console, console.province_editor, console.province, title,
                                          "Tỉnh thông báo lịch thu thuế đất năm 2027.")
    with console.api(console.province_editor) as api:
        sent = api.post("/api/v1/broadcasts", json={
            "announcement_id": announcement, "mode": "bulletin",
            "play_at": at_vn(datetime.now(UTC) + timedelta(hours=2)), "area_codes": [console.commune_a]})
        assert sent.status_code == 201, sent.text
    bulletin_id = sent.json()["id"]
    _review(console, bulletin_id)

    commune = new_page()
    log_in(commune, console.editor)
    commune.wait_for_url("**/console")
    commune.click("#nav-inbox")
    entry = commune.locator(f'.inbox-entry:has(h3:text-is("{title}"))')
    expect(entry).to_have_attribute("data-status", "pending")
    entry.locator(".inbox-decline button").click()  # no reason: refused in the page
    expect(commune.locator("#flash")).to_contain_text("cần ghi lý do")
    entry.locator(".inbox-reason-input").fill("Xã đã phát tin này hôm qua")
    screenshot(commune, "14-hop-thu")
    entry.locator(".inbox-decline button").click()
    expect(entry).to_have_attribute("data-status", "declined")
    commune.reload()
    declined = commune.locator(f'.inbox-entry:has(h3:text-is("{title}"))')
    assert declined.get_attribute("data-status") == "declined"
    assert "Xã đã phát tin này hôm qua" in declined.locator(".inbox-reason").inner_text()

    province = new_page()
    log_in(province, console.province_editor)
    province.wait_for_url("**/console")
    province.goto("/console/schedule")
    assert province.locator("#mode").is_visible()  # a province may send bulletins to communes' inboxes
    province.click("#nav-inbox")
    row = province.locator(f'#sent-{bulletin_id} tr[data-area-code="{console.commune_a}"]')
    expect(row).to_have_attribute("data-status", "declined")
    assert "Xã đã phát tin này hôm qua" in row.inner_text()
    screenshot(province, "15-tinh-xem-tinh-hinh-xa")


def test_the_scheduling_pages_need_a_session(console: Console) -> None:
    for path in ("/console/schedule", "/console/broadcasts", "/console/inbox", "/console/emergency"):
        response = httpx.get(console.base_url + path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
