"""Alert notifications delivered for real: an aiosmtpd SMTP sink and a local HTTP server, both on free ports.

Failures (nothing listening, a 500) are recorded on the alert and retried with backoff, never raised.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from server.db import Database
from server.directory import create_area, register_device
from server.models import Alert, Device
from server.notify import SIGNATURE_HEADER, Notifier
from server.settings import Settings
from tests.conftest import free_port

SECRET = "a-test-secret-key-that-is-long-enough-1234"


class Sink:
    """What the SMTP server received."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        parsed = message_from_bytes(content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@dataclass
class Hook:
    port: int
    status: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/loa-alerts"


@pytest.fixture
def webhook() -> Iterator[Hook]:
    hook = Hook(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(hook.status[0])
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 3, 5, 1, 30, tzinfo=UTC)  # 08:30 in Viet Nam

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'notify.sqlite3'}")
    database.start()
    with database.session() as session:
        create_area(session, code="p1", name="Tỉnh Tuyên Quang", kind="province", parent_code=None)
        create_area(session, code="c-tt", name="Xã Tân Trào", kind="commune", parent_code="p1")
        register_device(session, None, agent_id="tt-01", name="Cụm loa Thôn Tân Lập", area_code="c-tt")
    try:
        yield database
    finally:
        database.stop()


def open_alert(db: Database, clock: Clock, rule: str = "offline", **params: Any) -> int:
    with db.session() as session:
        device = session.query(Device).filter_by(agent_id="tt-01").one()
        alert = Alert(device_id=device.id, rule=rule, severity="critical", opened_at=clock.at,
                      params=params or {"since": (clock.at - timedelta(minutes=12)).isoformat(), "limit_minutes": 10})
        session.add(alert)
        session.flush()
        return alert.id


def alert_row(db: Database, alert_id: int) -> Alert:
    with db.session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        session.expunge(alert)
        return alert


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"secret_key": SECRET, "public_url": "https://loa.tuyenquang.example",
                              "smtp_starttls": False, "smtp_from": "loa@tuyenquang.example"}
    values.update(overrides)
    return Settings(**values)


def test_email_goes_to_every_recipient_in_vietnamese(db: Database, smtp: tuple[Sink, int]) -> None:
    sink, port = smtp
    clock = Clock()
    alert_id = open_alert(db, clock)
    config = settings(smtp_host="127.0.0.1", smtp_port=port, alert_email_to=["a@xa.example", "b@huyen.example"])
    notifier = Notifier(db, settings=lambda: config, now=clock)
    assert notifier.deliver_due() == 1
    assert len(sink.messages) == 1
    envelope, message = sink.messages[0]
    assert envelope.mail_from == "loa@tuyenquang.example"
    assert sorted(envelope.rcpt_tos) == ["a@xa.example", "b@huyen.example"]
    subject = str(message["Subject"])
    assert subject == "[Loa] Nghiêm trọng: Cụm loa mất kết nối – Cụm loa Thôn Tân Lập (Xã Tân Trào)"
    body = message.get_content()
    assert "Cụm loa: Cụm loa Thôn Tân Lập (tt-01)" in body
    assert "Địa bàn: Xã Tân Trào (c-tt)" in body
    assert "Thời điểm: 05/03/2026 08:30 (giờ Việt Nam)" in body
    assert "Mất kết nối từ 05/03/2026 08:18 (ngưỡng cảnh báo 10 phút)" in body
    assert "https://loa.tuyenquang.example/console/devices/tt-01" in body
    row = alert_row(db, alert_id)
    assert row.notified_at == clock.at and row.notify_attempts == 1 and row.notify_error == ""

    assert notifier.deliver_due() == 0  # sent once
    assert len(sink.messages) == 1


def test_webhook_body_is_signed_with_the_secret_key(db: Database, webhook: Hook) -> None:
    clock = Clock()
    alert_id = open_alert(db, clock, rule="disk_full", used_percent=93.5, free_bytes=500_000_000,
                          total_bytes=8_000_000_000, limit_percent=90)
    notifier = Notifier(db, settings=lambda: settings(alert_webhook_url=webhook.url), now=clock)
    assert notifier.deliver_due() == 1
    assert len(webhook.received) == 1
    headers, body = webhook.received[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == expected
    assert headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["event"] == "alert.opened"
    assert payload["alert"]["id"] == alert_id and payload["alert"]["rule"] == "disk_full"
    assert payload["alert"]["params"]["used_percent"] == 93.5
    assert payload["alert"]["device"] == {"agent_id": "tt-01", "name": "Cụm loa Thôn Tân Lập",
                                          "url": "https://loa.tuyenquang.example/console/devices/tt-01"}
    assert payload["alert"]["area"] == {"code": "c-tt", "name": "Xã Tân Trào"}
    forged = "sha256=" + hmac.new(b"another-key", body, hashlib.sha256).hexdigest()
    assert forged != expected


def test_failures_are_recorded_and_retried_with_backoff(db: Database, smtp: tuple[Sink, int], webhook: Hook) -> None:
    sink, port = smtp
    clock = Clock()
    alert_id = open_alert(db, clock)
    dead_port = free_port()  # nothing listens here
    config = [settings(smtp_host="127.0.0.1", smtp_port=dead_port, alert_email_to=["a@xa.example"],
                       alert_webhook_url=webhook.url)]
    webhook.status[0] = 500
    notifier = Notifier(db, settings=lambda: config[0], now=clock)

    assert notifier.deliver_due() == 0  # never raises
    row = alert_row(db, alert_id)
    assert row.notify_attempts == 1 and row.notified_at is None
    assert "email: ConnectionRefusedError" in row.notify_error and "webhook: HTTPStatusError" in row.notify_error

    assert notifier.deliver_due() == 0  # within the backoff: no new attempt
    assert alert_row(db, alert_id).notify_attempts == 1

    webhook.status[0] = 200
    clock.at += timedelta(seconds=31)
    assert notifier.deliver_due() == 0  # the mail server is still down
    row = alert_row(db, alert_id)
    assert row.notify_attempts == 2 and row.notify_error.startswith("email:") and "webhook" not in row.notify_error
    assert len(webhook.received) == 2

    config[0] = config[0].model_copy(update={"smtp_port": port})  # the mail server is back
    clock.at += timedelta(seconds=59)
    assert notifier.deliver_due() == 0  # 60 s after the second attempt, not yet
    clock.at += timedelta(seconds=2)
    assert notifier.deliver_due() == 1
    row = alert_row(db, alert_id)
    assert row.notify_attempts == 3 and row.notify_error == "" and row.notified_at == clock.at
    assert len(sink.messages) == 1
    assert len(webhook.received) == 2  # the webhook that already took it is not called again


def test_gives_up_after_the_last_attempt_and_skips_resolved_or_old_alerts(db: Database) -> None:
    clock = Clock()
    alert_id = open_alert(db, clock)
    config = settings(alert_webhook_url=f"http://127.0.0.1:{free_port()}/x")
    notifier = Notifier(db, settings=lambda: config, now=clock)
    for _ in range(8):
        notifier.deliver_due()
        clock.at += timedelta(minutes=10)
    assert alert_row(db, alert_id).notify_attempts == 5

    resolved = open_alert(db, clock)
    with db.session() as session:
        alert = session.get(Alert, resolved)
        assert alert is not None
        alert.resolved_at = clock.at
    old = open_alert(db, clock)
    clock.at += timedelta(days=2)
    notifier.deliver_due()
    assert alert_row(db, resolved).notify_attempts == 0
    assert alert_row(db, old).notify_attempts == 0


def test_nothing_is_sent_without_a_channel(db: Database) -> None:
    clock = Clock()
    alert_id = open_alert(db, clock)
    assert Notifier(db, settings=lambda: settings(), now=clock).deliver_due() == 0
    assert alert_row(db, alert_id).notify_attempts == 0


def resolve(db: Database, alert_id: int, at: datetime) -> None:
    with db.session() as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        alert.resolved_at = at


def test_whoever_was_told_of_an_alert_is_told_it_resolved(
        db: Database, smtp: tuple[Sink, int], webhook: Hook) -> None:
    sink, port = smtp
    clock = Clock()
    alert_id = open_alert(db, clock)
    config = settings(smtp_host="127.0.0.1", smtp_port=port, alert_email_to=["a@xa.example"],
                      alert_webhook_url=webhook.url)
    notifier = Notifier(db, settings=lambda: config, now=clock)
    assert notifier.deliver_due() == 1
    clock.at += timedelta(hours=2, minutes=5)
    resolve(db, alert_id, clock.at)  # the device is back
    assert notifier.deliver_due() == 1
    assert len(sink.messages) == 2 and len(webhook.received) == 2
    message = sink.messages[1][1]
    assert str(message["Subject"]) == "[Loa] Đã hết: Cụm loa mất kết nối – Cụm loa Thôn Tân Lập (Xã Tân Trào)"
    body = message.get_content()
    assert "Bắt đầu: 05/03/2026 08:30, kết thúc: 05/03/2026 10:35 (giờ Việt Nam), kéo dài 2 giờ 5 phút." in body
    headers, raw = webhook.received[1]
    assert headers["x-loa-event"] == "alert.resolved"
    assert headers[SIGNATURE_HEADER.lower()] == "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    payload = json.loads(raw)
    assert payload["event"] == "alert.resolved" and payload["alert"]["id"] == alert_id
    assert payload["alert"]["resolved_at"] == clock.at.isoformat()
    row = alert_row(db, alert_id)
    assert row.resolve_notified_at == clock.at and row.resolve_notify_attempts == 1
    assert notifier.deliver_due() == 0  # once
    assert len(sink.messages) == 2 and len(webhook.received) == 2


def test_no_resolution_notice_for_an_unsent_alert_or_an_acknowledged_event(
        db: Database, webhook: Hook) -> None:
    clock = Clock()
    config = [settings()]  # no channel yet
    notifier = Notifier(db, settings=lambda: config[0], now=clock)
    blip = open_alert(db, clock)
    notifier.deliver_due()
    clock.at += timedelta(minutes=1)
    resolve(db, blip, clock.at)  # opened and resolved before anyone was told
    failed = open_alert(db, clock, rule="play_failed", broadcast_id=7, count=1)
    config[0] = settings(alert_webhook_url=webhook.url)
    assert notifier.deliver_due() == 1  # only the failed play
    resolve(db, failed, clock.at)  # an operator acknowledged it: that resolves it
    assert notifier.deliver_due() == 0
    assert [json.loads(body)["event"] for _headers, body in webhook.received] == ["alert.opened"]
    assert alert_row(db, blip).notify_attempts == 0 and alert_row(db, blip).resolve_notify_attempts == 0


def test_a_failed_resolution_notice_is_retried_with_backoff(db: Database, webhook: Hook) -> None:
    clock = Clock()
    alert_id = open_alert(db, clock)
    notifier = Notifier(db, settings=lambda: settings(alert_webhook_url=webhook.url), now=clock)
    notifier.deliver_due()
    resolve(db, alert_id, clock.at)
    webhook.status[0] = 503
    assert notifier.deliver_due() == 0
    row = alert_row(db, alert_id)
    assert row.resolve_notify_attempts == 1 and row.resolve_notified_at is None and "503" in row.notify_error
    assert notifier.deliver_due() == 0 and alert_row(db, alert_id).resolve_notify_attempts == 1  # backoff
    webhook.status[0] = 200
    clock.at += timedelta(seconds=31)
    assert notifier.deliver_due() == 1
    assert alert_row(db, alert_id).resolve_notified_at == clock.at
    assert [json.loads(body)["event"] for _h, body in webhook.received] == [
        "alert.opened", "alert.resolved", "alert.resolved"]
