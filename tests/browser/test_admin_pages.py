"""The administration pages in a real browser: the hub, the area tree, devices, the lexicon, settings.

The system is shared with the other browser tests, so everything added here is unique to this run and
removed again (a device, a lexicon entry, a setting), and a commune admin's refusals are checked too.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from server.directory import area_by_code, create_user
from server.permissions import Role
from tests.browser.conftest import Console, log_in, screenshot
from tests.e2e.harness import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def admin_page(console: Console, new_page: Any, path: str) -> Any:
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, console.admin)
    page.wait_for_url("**/console")
    page.goto(path)
    return page


def test_the_hub_links_every_admin_page(console: Console, new_page: Any) -> None:
    page = admin_page(console, new_page, "/console")
    page.click("#nav-admin")
    page.wait_for_url("**/console/admin")
    expect(page.locator("#nav-admin")).to_have_attribute("aria-current", "page")
    for name in ("users", "areas", "devices", "lexicon", "settings"):
        expect(page.locator(f"#admin-link-{name}")).to_be_visible()
    screenshot(page, "admin")
    page.click("#admin-link-areas")
    page.wait_for_url("**/console/admin/areas")
    expect(page.locator("#nav-admin")).to_have_attribute("aria-current", "page")


def test_add_a_village_with_coordinates(console: Console, new_page: Any) -> None:
    page = admin_page(console, new_page, "/console/admin/areas")
    commune = console.commune_a
    page.click(f'#area-{commune} .area-select')
    expect(page.locator("#area-selected-code")).to_have_text(commune)
    expect(page.locator("#child-kind")).to_have_value("village")
    name = f"Thôn Tân Lập {int(time.time())}"
    page.fill("#child-name", name)
    page.fill("#child-lat", "48.85")  # Paris: refused before anything is sent
    page.fill("#child-lon", "105.43")
    page.click("#child-add")
    expect(page.locator("#flash")).to_contain_text("Vĩ độ phải là số từ 6 đến 24")
    page.fill("#child-lat", "21,7767")  # a decimal comma is accepted
    page.click("#child-add")
    row = page.locator(f'.area-row[data-name="{name}"]')
    expect(row).to_be_visible()
    assert row.get_attribute("data-kind") == "village"
    code = row.get_attribute("data-code") or ""
    assert code.startswith(f"{commune}-")
    expect(row.locator(".area-coords")).to_have_text("21.7767, 105.4300")
    expect(page.locator("#area-selected-code")).to_have_text(code)  # the new village is selected after the reload
    page.fill("#area-name", name + " mới")
    page.click("#area-save")
    expect(page.locator(f'.area-row[data-code="{code}"] .area-select')).to_have_text(name + " mới")
    page.set_viewport_size({"width": 390, "height": 800})
    screenshot(page, "admin-areas")


def test_register_a_device_and_see_its_secret_once(console: Console, new_page: Any) -> None:
    page = admin_page(console, new_page, "/console/admin/devices")
    agent_id = f"reg-{console.system.suffix}"
    page.fill("#device-agent-id", agent_id)
    page.fill("#device-name", "Cụm loa đăng ký thử")
    page.select_option("#device-area", console.commune_a)
    page.fill("#device-lat", "21.78")
    page.fill("#device-lon", "105.43")
    page.click("#device-submit")
    expect(page.locator("#secret-box")).to_be_visible()
    token = page.locator("#secret-token").inner_text().strip()
    assert len(token) >= 40
    config = page.locator("#secret-config").inner_text()
    assert f'agent_id = "{agent_id}"' in config and 'token_file = "/etc/loa-agent/secret"' in config
    assert "mqtt://" in config and "127.0.0.1" in config  # the demo's broker on this machine
    # This system does not manage a broker password file: the operator's command is shown, nothing else.
    expect(page.locator("#secret-broker-manual")).to_be_visible()
    assert f"mosquitto_passwd /etc/mosquitto/loa.passwd {agent_id}" in page.locator("#secret-broker").inner_text()
    expect(page.locator("#secret-broker-updated")).to_be_hidden()
    expect(page.locator("#secret-broker-failed")).to_be_hidden()
    screenshot(page, "admin-devices")
    audio = "0" * 64
    with console.api(console.admin) as client:
        assert client.get(f"/api/v1/audio/{audio}", headers={"Authorization": f"Bearer {token}"}).status_code == 404

    page.reload()
    expect(page.locator(f"#admin-device-{agent_id}")).to_be_visible()
    assert token not in page.content()  # shown once only

    page.click(f'#admin-device-{agent_id} .device-rotate')
    expect(page.locator("#secret-box")).to_be_visible()
    fresh = page.locator("#secret-token").inner_text().strip()
    assert fresh and fresh != token
    with console.api(console.admin) as client:
        assert client.get(f"/api/v1/audio/{audio}", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    page.click(f'#admin-device-{agent_id} .device-remove')
    expect(page.locator(f"#admin-device-{agent_id}")).to_have_count(0)
    with console.api(console.admin) as client:
        assert client.get(f"/api/v1/devices/{agent_id}").status_code == 404


def test_a_lexicon_entry_changes_the_spoken_form(console: Console, new_page: Any) -> None:
    page = admin_page(console, new_page, "/console/admin/lexicon")
    term = f"QX{console.system.suffix[:4].upper()}"
    page.fill("#lexicon-term", term)
    page.fill("#lexicon-spoken-input", "quy hoạch xanh")
    page.click("#lexicon-add")
    row = page.locator(f'#lexicon-table tr[data-term="{term}"]')
    expect(row).to_be_visible()
    page.fill("#lexicon-try-text", f"Họp bàn {term} lúc 7h30.")
    page.click("#lexicon-try")
    spoken = page.locator("#lexicon-spoken")
    expect(spoken).to_contain_text("quy hoạch xanh")
    assert term not in spoken.inner_text() and "bảy giờ ba mươi" in spoken.inner_text()
    screenshot(page, "admin-lexicon")
    row.locator(".lexicon-delete").click()
    expect(row).to_have_count(0)
    page.click("#lexicon-try")
    expect(spoken).not_to_contain_text("quy hoạch xanh")


def test_change_a_setting_and_see_it_applied(console: Console, new_page: Any) -> None:
    page = admin_page(console, new_page, "/console/admin/settings")
    page.fill("#setting-max_upload_mb", "1")
    page.click("#settings-save")
    expect(page.locator('.setting-row[data-key="max_upload_mb"] .setting-reset')).to_be_visible()
    expect(page.locator("#setting-max_upload_mb")).to_have_value("1")
    screenshot(page, "admin-settings")
    with console.api(console.admin) as client:
        refused = client.post("/api/v1/uploads", params={"title": "Lớn", "area_code": console.commune_a},
                              content=b"\0" * (2 * 1024 * 1024), headers={"Content-Type": "application/octet-stream"})
        assert refused.status_code == 413
    page.check("#reset-max_upload_mb")
    page.click("#settings-save")
    expect(page.locator('.setting-row[data-key="max_upload_mb"] .setting-reset')).to_have_count(0)
    with console.api(console.admin) as client:
        state = {s["key"]: s for s in client.get("/api/v1/settings").json()}
        assert state["max_upload_mb"]["value"] == state["max_upload_mb"]["configured"]


def test_a_commune_admin_sees_only_their_commune(console: Console, new_page: Any) -> None:
    username = f"xadmin-{console.system.suffix}"
    from server.db import Database

    db = Database(console.system.database_url)
    db.start()
    try:
        with db.session() as session:
            commune = area_by_code(session, console.commune_a).id
            create_user(session, username=username, password=PASSWORD, full_name="Xã A", grants=[(Role.ADMIN, commune)])
    finally:
        db.stop()
    page = new_page()
    log_in(page, username)
    page.wait_for_url("**/console")
    page.goto("/console/admin")
    expect(page.locator("#admin-link-settings")).to_have_count(0)
    page.goto("/console/admin/areas")
    codes = page.locator(".area-row").evaluate_all("rows => rows.map(r => r.dataset.code)")
    assert console.commune_a in codes and console.commune_b not in codes and console.province not in codes
    response = page.goto("/console/admin/settings")
    assert response is not None and response.status == 403
    expect(page.locator("#refusal")).to_be_visible()
    page.goto("/console/admin/devices")
    expect(page.locator(f"#admin-device-{console.device_b}")).to_have_count(0)
