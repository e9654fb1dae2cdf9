"""The audit log page in a real browser: an admin does something, then finds it in the log.

The system is shared with the other browser tests: the lexicon entry added here is unique to this run
and removed again (its removal is in the log too).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_an_admin_finds_what_they_just_did_in_the_audit_log(console: Console, new_page: Any) -> None:
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, console.admin)
    page.wait_for_url("**/console")
    page.goto("/console/admin/lexicon")
    term = f"NK{console.system.suffix[:4].upper()}"
    page.fill("#lexicon-term", term)
    page.fill("#lexicon-spoken-input", "nhật ký")
    page.click("#lexicon-add")
    expect(page.locator(f'#lexicon-table tr[data-term="{term}"]')).to_be_visible()

    page.goto("/console/admin")
    page.click("#admin-link-audit")
    page.wait_for_url("**/console/admin/audit")
    newest = page.locator("#audit-table tbody tr").first
    expect(newest).to_have_attribute("data-action", "lexicon.add")
    expect(newest.locator(".col-action")).to_have_text("Thêm từ vào từ điển phát âm")
    expect(newest.locator(".col-target")).to_have_text(f"Từ điển phát âm: {term}")
    expect(newest.locator(".col-user")).to_have_text(console.admin)
    expect(newest.locator(".col-outcome")).to_contain_text("Thành công")
    assert newest.locator("time").inner_text().count("/") == 2  # dd/mm/yyyy HH:MM:SS

    page.select_option("#audit-action", "lexicon.add")
    page.fill("#audit-target", term)
    page.click("#audit-filter-submit")
    page.wait_for_url("**action=lexicon.add**")
    expect(page.locator("#audit-table tbody tr")).to_have_count(1)
    expect(page.locator("#audit-summary")).to_contain_text("1 thao tác")
    expect(page.locator("#audit-csv")).to_have_attribute("href", f"/api/v1/audit.csv?action=lexicon.add&target={term}")
    screenshot(page, "admin-audit")

    page.goto("/console/lang/en?next=/console/admin/audit")
    expect(page.locator("#audit-table tbody tr").first.locator(".col-action")).to_have_text("Lexicon entry added")
    page.goto("/console/lang/vi?next=/console/admin/lexicon")
    page.locator(f'#lexicon-table tr[data-term="{term}"] .lexicon-delete').click()
    expect(page.locator(f'#lexicon-table tr[data-term="{term}"]')).to_have_count(0)
