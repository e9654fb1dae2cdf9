"""The alerts page in Chromium: a cluster that reports an amplifier fault and a failed play raises alerts
live, the operator acknowledges them with a comment, the fault clearing resolves its alert by itself, and a
user of another commune sees none of it.

The failing cluster is Xã b's registered device, spoken for over MQTT with the agent protocol's own
messages (birth, heartbeats, an as-run event) on the test system's broker, as a broken agent would send them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import pytest
from paho.mqtt.client import CallbackAPIVersion, Client
from playwright.sync_api import expect

from agents.protocol import AsRunEvent, Heartbeat, StateMessage, Topics, encode
from tests.browser.conftest import Console, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class FailingAgent:
    """Speaks for one agent over MQTT."""

    def __init__(self, console: Console) -> None:
        self.agent_id = console.device_b
        self.session = int(time.time())
        self.seq = 0
        address = urlparse(console.system.broker_url)
        self.client = Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.connect(address.hostname or "127.0.0.1", address.port or 1883)
        self.client.loop_start()

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def birth(self, state: str = "online") -> None:
        message = StateMessage(agent_id=self.agent_id, state=state,  # type: ignore[arg-type]
                               session=self.session, seq=self._next(), sent_at=datetime.now(UTC))
        self.send(Topics.state(self.agent_id), encode(message), retain=True)

    def heartbeat(self, faults: tuple[str, ...] = ()) -> None:
        message = Heartbeat(agent_id=self.agent_id, session=self.session, seq=self._next(),
                            sent_at=datetime.now(UTC), uptime_s=60, plan_version=0, clock_offset_ms=3,
                            ntp_synced=True, ntp_offset_ms=0.4, disk_free_bytes=6_000_000_000,
                            disk_total_bytes=8_000_000_000, faults=faults)
        self.send(Topics.heartbeat(self.agent_id), encode(message))

    def failed_play(self, detail: str) -> None:
        now = datetime.now(UTC)
        message = AsRunEvent(event_id=uuid.uuid4().hex, agent_id=self.agent_id, item_id="b0-1", broadcast_id=0,
                             kind="failed", at=now, scheduled_at=now, audio_sha256="0" * 64,
                             session=self.session, seq=self._next(), detail=detail)
        self.send(Topics.event(self.agent_id), encode(message))

    def close(self) -> None:
        self.birth("offline")  # leave the cluster offline, as a stopped agent would be
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def failing_agent(console: Console) -> Iterator[FailingAgent]:
    agent = FailingAgent(console)
    try:
        yield agent
    finally:
        agent.close()


def row(page: Any, agent_id: str, rule: str) -> Any:
    return page.locator(f'#alert-table tr[data-agent-id="{agent_id}"][data-rule="{rule}"]')


def test_alerts_appear_live_are_acknowledged_and_resolve(console: Console, new_page: Any,
                                                         failing_agent: FailingAgent) -> None:
    device = console.device_b
    page = new_page()
    log_in(page, console.admin)
    page.wait_for_url("**/console")
    page.goto("/console/alerts")
    page.wait_for_selector('#live-status[data-state="on"]')
    expect(row(page, device, "amplifier_fault")).to_have_count(0)

    failing_agent.birth()
    failing_agent.heartbeat(faults=("amplifier relay: GPIO17 stuck",))
    failing_agent.failed_play("ALSA: device busy")

    fault = row(page, device, "amplifier_fault")
    failed = row(page, device, "play_failed")
    expect(fault).to_have_count(1, timeout=30_000)
    expect(failed).to_have_count(1, timeout=30_000)
    expect(fault).to_have_attribute("data-severity", "critical")
    expect(fault.locator(".col-rule")).to_have_text("Lỗi bộ khuếch đại")
    expect(fault.locator(".col-figures")).to_contain_text("amplifier relay: GPIO17 stuck")
    expect(failed.locator(".col-figures")).to_contain_text("ALSA: device busy")
    # Critical alerts come before warnings.
    rules = page.locator("#alert-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.severity)")
    assert rules == sorted(rules, key=lambda s: 0 if s == "critical" else 1)
    badge = page.locator("#nav-alerts-count")
    expect(badge).to_be_visible()
    assert int(badge.inner_text()) >= 2
    screenshot(page, "alerts")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: each alert becomes a card
    expect(fault.locator(".alert-ack-submit")).to_be_visible()
    screenshot(page, "alerts-phone")
    page.set_viewport_size({"width": 1000, "height": 760})

    # A blank comment is refused in the page; with a comment the failed play is acknowledged and closed.
    failed.locator("input[name=comment]").fill("   ")
    failed.locator(".alert-ack-submit").click()
    expect(page.locator("#flash")).to_have_text("Hãy ghi nhận xét: đã làm gì hoặc ai xử lý.")
    expect(failed).to_have_count(1)
    failed.locator("input[name=comment]").fill("Đã kiểm tra, loa phát lại bình thường")
    failed.locator(".alert-ack-submit").click()
    expect(page.locator("#flash")).to_have_text("Đã xác nhận cảnh báo.")
    expect(failed).to_have_count(0)

    # A condition alert stays open after acknowledgement, showing who acknowledged it ...
    fault.locator("input[name=comment]").fill("Đã báo kỹ thuật viên thay rơ-le")
    fault.locator(".alert-ack-submit").click()
    expect(fault.locator(".alert-ack-comment")).to_have_text("Đã báo kỹ thuật viên thay rơ-le")
    expect(fault).to_have_attribute("data-acknowledged", "true")
    # ... until the device stops reporting the fault.
    failing_agent.heartbeat()
    expect(fault).to_have_count(0, timeout=30_000)

    page.goto("/console/alerts?status=resolved")
    expect(row(page, device, "play_failed").first).to_be_visible()
    expect(row(page, device, "amplifier_fault").first).to_be_visible()


def test_another_commune_sees_no_alert_of_this_one(console: Console, new_page: Any,
                                                   failing_agent: FailingAgent) -> None:
    failing_agent.birth()
    failing_agent.failed_play("ALSA: no card")
    admin = new_page()
    log_in(admin, console.admin)
    admin.wait_for_url("**/console")
    admin.goto(f"/console/alerts?agent_id={console.device_b}")
    expect(row(admin, console.device_b, "play_failed")).to_have_count(1, timeout=30_000)

    editor = new_page()
    log_in(editor, console.editor)  # an editor of Xã a
    editor.wait_for_url("**/console")
    editor.goto("/console/alerts?status=all")
    expect(editor.locator("#alert-table tbody tr")).to_have_count(0)
    assert console.device_b not in editor.content()
    refused = editor.goto(f"/console/alerts?agent_id={console.device_b}")
    assert refused is not None and refused.status == 404
