"""The device page in a real browser: telemetry charts, the command panel acknowledged by a simulated cluster,
a read-only page without the operator role, and the refusal page for another commune's cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from server.db import Database
from server.directory import area_by_code, create_user
from server.models import Device, TelemetrySample
from server.permissions import Role
from tests.browser.conftest import Console, log_in, screenshot
from tests.e2e.harness import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def operator(console: Console) -> str:
    """An operator of commune A, and 24 hours of history (with a one-hour outage) for the first cluster."""
    username = f"vanhanh-{console.system.suffix}"
    db = Database(console.system.database_url)
    db.start()
    try:
        with db.session() as session:
            create_user(session, username=username, password=PASSWORD, full_name="Vận hành",
                        grants=[(Role.OPERATOR, area_by_code(session, console.commune_a).id)])
            device_id = session.scalar(select(Device.id).where(Device.agent_id == console.sim_agents[0]))
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            for minutes_ago in range(24 * 60, 10, -5):
                outage = 600 <= minutes_ago < 660
                if outage and minutes_ago != 655:
                    continue
                session.add(TelemetrySample(
                    device_id=device_id, at=now - timedelta(minutes=minutes_ago), online=not outage,
                    playing=minutes_ago % 120 == 0, cpu_temp_c=None if outage else 45 + (minutes_ago % 60) / 6,
                    disk_used_percent=None if outage else 40.0, cache_bytes=None if outage else 20 * 1024 * 1024,
                    volume_percent=None if outage else 70, amplifier_on=False, clock_offset_ms=3.0,
                    link_quality_percent=None if outage else 75))
    finally:
        db.stop()
    return username


def test_an_operator_sees_the_charts_and_sets_the_volume(console: Console, new_page: Any, operator: str) -> None:
    agent_id = console.sim_agents[0]
    page = new_page()
    log_in(page, operator)
    page.wait_for_url("**/console")
    page.goto(f"/console/devices/{agent_id}")
    temperature = page.locator('#telemetry-charts figure[data-series="cpu_temp_c"]')
    temperature.wait_for()
    assert int(temperature.get_attribute("data-points") or 0) > 200
    assert temperature.locator("path.chart-line").count() >= 2  # the outage breaks the line
    assert page.locator('#telemetry-charts figure[data-series="states"] rect.state-online.off').count() >= 1
    assert page.locator("#telemetry-charts svg").count() == 7

    page.click("#telemetry-7d")
    page.wait_for_selector('#telemetry-charts[data-range="7d"] figure[data-series="cpu_temp_c"]')
    assert page.get_attribute("#telemetry-7d", "aria-pressed") == "true"
    page.click("#telemetry-24h")
    page.wait_for_selector('#telemetry-charts[data-range="24h"] figure[data-series="cpu_temp_c"]')

    page.fill("#command-volume-number", "42")
    assert page.input_value("#command-volume-range") == "42"
    page.click("#command-volume-submit")
    page.wait_for_selector('#command-result[data-status="ok"]')
    assert page.inner_text("#device-volume") == "42%"
    screenshot(page, "device")

    page.click("#command-amplifier-on")
    page.wait_for_selector('#command-result[data-status="ok"]')
    assert page.inner_text("#device-amplifier") == "Đang bật"
    page.click("#command-amplifier-auto")
    page.wait_for_selector('#command-result[data-status="ok"]')

    page.fill("#command-volume-number", "150")
    page.click("#command-volume-submit")  # the browser's own check stops it: nothing is sent
    assert page.evaluate("document.getElementById('command-volume-number').checkValidity()") is False


def test_the_page_is_read_only_without_the_operator_role(console: Console, new_page: Any) -> None:
    page = new_page()
    log_in(page, console.editor)
    page.wait_for_url("**/console")
    page.goto(f"/console/devices/{console.sim_agents[0]}")
    page.wait_for_selector("#read-only-note")
    assert page.locator("#command-panel").count() == 0
    page.wait_for_selector('#telemetry-charts figure[data-series="cpu_temp_c"]')
    assert page.locator("#plan").is_visible()


def test_an_editor_of_another_commune_gets_the_refusal_page(console: Console, new_page: Any) -> None:
    page = new_page()
    log_in(page, console.editor)
    page.wait_for_url("**/console")
    response = page.goto(f"/console/devices/{console.device_b}")
    assert response is not None and response.status == 404
    assert page.locator("#refusal").is_visible()
    assert page.locator("#command-panel").count() == 0 and page.locator("#telemetry").count() == 0
