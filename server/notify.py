"""Telling people outside the console that an alert opened, and that it resolved: e-mail (SMTP) and a
signed JSON webhook.

`Notifier.deliver_due()` runs in a worker thread (the alert job's, or one started for a live event),
never on the event loop: smtplib and the webhook call block, each with a timeout. Every alert opened in
the last day and not yet resolved is sent once to each configured channel; a failure is recorded on the
alert (``notify_attempts``, ``notify_error``) and retried with backoff (30 s, 1, 2, 4 min) up to
``MAX_ATTEMPTS``; ``notified_at`` is set when every channel took it. When a condition alert that was
notified resolves by itself (the device is back online, the disk was cleared), a second notice says so,
with the same retries (``resolve_notified_at``, ``resolve_notify_attempts``): whoever was paged learns
that it is over. An alert that opened and resolved before its first notice went out is never sent at
all (a device that drops off for a minute and comes back is nobody's business), and event alerts
(failed plays), which a person resolves by acknowledging them, get no resolution notice. Nothing here
ever raises to the caller: a broken mail server must not stop the alert job.

The webhook body is JSON; ``X-Loa-Signature: sha256=<hex>`` is the HMAC-SHA256 of the exact body bytes
with the server's ``secret_key``, so the receiver can check that the alert came from this server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from server.alerts import CONDITION_RULES
from server.db import Database
from server.models import Alert, Area, Device
from server.settings import Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
FIRST_RETRY_S = 30.0
TIMEOUT_S = 10.0
NOTIFY_WINDOW = timedelta(days=1)
"""Older unsent alerts are history: they are not sent when a channel is configured later."""
SIGNATURE_HEADER = "X-Loa-Signature"

RULE_WORDS: dict[str, str] = {
    "offline": "Cụm loa mất kết nối",
    "amplifier_fault": "Lỗi bộ khuếch đại",
    "clock_offset": "Đồng hồ lệch giờ",
    "disk_full": "Bộ nhớ sắp đầy",
    "play_failed": "Phát lỗi",
    "play_skipped": "Bỏ qua lượt phát",
}
SEVERITY_WORDS: dict[str, str] = {"critical": "Nghiêm trọng", "warning": "Cần chú ý"}


@dataclass(frozen=True)
class AlertNotice:
    """An alert with what a message about it needs, read in one session."""

    alert_id: int
    rule: str
    severity: str
    params: dict[str, Any]
    opened_at: datetime
    agent_id: str
    device_name: str
    area_code: str
    area_name: str
    resolved_at: datetime | None = None
    """Set for a notice that the alert resolved."""

    @property
    def event(self) -> str:
        return "alert.opened" if self.resolved_at is None else "alert.resolved"


def duration_text(start: datetime, end: datetime) -> str:
    """``2 giờ 5 phút``, ``12 phút``, ``dưới 1 phút``."""
    minutes = int((end - start).total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} giờ {minutes} phút"
    if hours:
        return f"{hours} giờ"
    return f"{minutes} phút" if minutes else "dưới 1 phút"


def local_time(value: datetime | str | None, timezone: str) -> str:
    """``dd/mm/yyyy HH:MM`` in the installation's time zone."""
    if value is None or value == "":
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(ZoneInfo(timezone)).strftime("%d/%m/%Y %H:%M")


def figures_text(notice: AlertNotice, timezone: str) -> str:
    """The alert's figures in Vietnamese, one line."""
    p = notice.params
    if notice.rule == "offline":
        return (f"Mất kết nối từ {local_time(p.get('since'), timezone)} "
                f"(ngưỡng cảnh báo {p.get('limit_minutes')} phút).")
    if notice.rule == "amplifier_fault":
        return "Thiết bị báo lỗi: " + "; ".join(str(f) for f in p.get("faults", []))
    if notice.rule == "clock_offset":
        parts = []
        if p.get("offset_ms") is not None:
            source = "theo NTP" if p.get("source") == "ntp" else "so với máy chủ"
            parts.append(f"Lệch {p['offset_ms']} ms {source} (ngưỡng {p.get('limit_ms')} ms).")
        if p.get("ntp_synced") is False:
            parts.append("Đồng hồ chưa đồng bộ NTP.")
        return " ".join(parts)
    if notice.rule == "disk_full":
        return (f"Đã dùng {p.get('used_percent')}% bộ nhớ, còn trống {int(p.get('free_bytes', 0)) // 1_000_000} MB "
                f"(ngưỡng {p.get('limit_percent')}%).")
    if notice.rule in ("play_failed", "play_skipped"):
        broadcast = f"lượt phát #{p['broadcast_id']}" if p.get("broadcast_id") else f"mục {p.get('item_id', '')}"
        text = f"{p.get('count', 1)} lần, {broadcast}, giờ dự kiến {local_time(p.get('scheduled_at'), timezone)}."
        return text + (f" Chi tiết: {p['detail']}" if p.get("detail") else "")
    return json.dumps(p, ensure_ascii=False)


def email_message(notice: AlertNotice, settings: Settings) -> EmailMessage:
    timezone = settings.timezone
    rule = RULE_WORDS.get(notice.rule, notice.rule)
    severity = SEVERITY_WORDS.get(notice.severity, notice.severity)
    base = settings.effective_public_url
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(settings.alert_email_to)
    if notice.resolved_at is not None:
        message["Subject"] = f"[Loa] Đã hết: {rule} – {notice.device_name} ({notice.area_name})"
        message.set_content("\n".join([
            f"Đã hết cảnh báo: {rule}",
            f"Cụm loa: {notice.device_name} ({notice.agent_id})",
            f"Địa bàn: {notice.area_name} ({notice.area_code})",
            f"Bắt đầu: {local_time(notice.opened_at, timezone)}, kết thúc: {local_time(notice.resolved_at, timezone)}"
            f" (giờ Việt Nam), kéo dài {duration_text(notice.opened_at, notice.resolved_at)}.",
            "",
            f"Xem cụm loa: {base}/console/devices/{notice.agent_id}",
            "",
            "Thư này do hệ thống Loa gửi tự động.",
        ]))
        return message
    message["Subject"] = f"[Loa] {severity}: {rule} – {notice.device_name} ({notice.area_name})"
    message.set_content("\n".join([
        f"Cảnh báo: {rule}",
        f"Mức độ: {severity}",
        f"Cụm loa: {notice.device_name} ({notice.agent_id})",
        f"Địa bàn: {notice.area_name} ({notice.area_code})",
        f"Thời điểm: {local_time(notice.opened_at, timezone)} (giờ Việt Nam)",
        f"Chi tiết: {figures_text(notice, timezone)}",
        "",
        f"Xem cụm loa: {base}/console/devices/{notice.agent_id}",
        f"Xem và xác nhận cảnh báo: {base}/console/alerts",
        "",
        "Thư này do hệ thống Loa gửi tự động.",
    ]))
    return message


def webhook_body(notice: AlertNotice, settings: Settings, now: datetime) -> bytes:
    base = settings.effective_public_url
    alert: dict[str, Any] = {
        "id": notice.alert_id, "rule": notice.rule, "severity": notice.severity, "params": notice.params,
        "opened_at": notice.opened_at.isoformat(),
        "device": {"agent_id": notice.agent_id, "name": notice.device_name,
                   "url": f"{base}/console/devices/{notice.agent_id}"},
        "area": {"code": notice.area_code, "name": notice.area_name}}
    if notice.resolved_at is not None:
        alert["resolved_at"] = notice.resolved_at.isoformat()
    payload = {"event": notice.event, "sent_at": now.isoformat(), "alert": alert}
    return json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send_email(message: EmailMessage, settings: Settings) -> None:
    if settings.smtp_port == 465:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S,
                                              context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S)
    with smtp:
        if settings.smtp_starttls and settings.smtp_port != 465:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password or "")
        smtp.send_message(message)


def post_webhook(body: bytes, settings: Settings, event: str = "alert.opened") -> None:
    response = httpx.post(settings.alert_webhook_url, content=body, timeout=TIMEOUT_S, headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: signature(settings.secret_key, body),
        "X-Loa-Event": event, "User-Agent": "Loa"})
    response.raise_for_status()


class Notifier:
    def __init__(self, db: Database, *, settings: Callable[[], Settings], now: Callable[[], datetime]) -> None:
        self._db = db
        self._settings = settings
        self._now = now
        self._busy = threading.Lock()
        self._next_try: dict[tuple[int, str], datetime] = {}
        """(alert id, event) -> not before."""
        self._delivered: set[tuple[int, str, str]] = set()
        """(alert id, event, channel) already taken, so a retry resends only the channel that failed."""

    def deliver_due(self) -> int:
        """Send what is due; returns how many alerts were fully notified. Never raises."""
        if not self._busy.acquire(blocking=False):
            return 0  # another thread is sending right now; it or the next run takes the rest
        try:
            return self._deliver_due()
        except Exception:
            log.exception("alert notification round failed")
            return 0
        finally:
            self._busy.release()

    def _channels(self, settings: Settings) -> list[str]:
        channels = []
        if settings.smtp_host and settings.alert_email_to:
            channels.append("email")
        if settings.alert_webhook_url:
            channels.append("webhook")
        return channels

    def _deliver_due(self) -> int:
        settings = self._settings()
        channels = self._channels(settings)
        if not channels:
            return 0
        now = self._now()
        with self._db.session() as db:
            opened = db.execute(
                select(Alert, Device, Area).join(Device, Device.id == Alert.device_id)
                .join(Area, Area.id == Device.area_id)
                .where(Alert.notified_at.is_(None), Alert.resolved_at.is_(None),
                       Alert.notify_attempts < MAX_ATTEMPTS, Alert.opened_at >= now - NOTIFY_WINDOW)
                .order_by(Alert.id)).all()
            resolved = db.execute(
                select(Alert, Device, Area).join(Device, Device.id == Alert.device_id)
                .join(Area, Area.id == Device.area_id)
                .where(Alert.notified_at.is_not(None), Alert.resolved_at.is_not(None),
                       Alert.resolve_notified_at.is_(None), Alert.rule.in_(CONDITION_RULES),
                       Alert.resolve_notify_attempts < MAX_ATTEMPTS, Alert.resolved_at >= now - NOTIFY_WINDOW)
                .order_by(Alert.id)).all()
            notices = [AlertNotice(alert_id=a.id, rule=a.rule, severity=a.severity, params=dict(a.params),
                                   opened_at=a.opened_at, agent_id=d.agent_id, device_name=d.name,
                                   area_code=ar.code, area_name=ar.name, resolved_at=a.resolved_at if closing else None)
                       for rows, closing in ((opened, False), (resolved, True)) for a, d, ar in rows]
        done = 0
        for notice in notices:
            key = (notice.alert_id, notice.event)
            if self._next_try.get(key, now) > now:
                continue
            errors = self._send(notice, channels, settings, now)
            with self._db.session() as db:
                alert = db.get(Alert, notice.alert_id)
                if alert is None:
                    continue
                closing = notice.resolved_at is not None
                if closing:
                    alert.resolve_notify_attempts += 1
                    attempts = alert.resolve_notify_attempts
                else:
                    alert.notify_attempts += 1
                    attempts = alert.notify_attempts
                alert.notify_error = "; ".join(errors)[:2000]
                if errors:
                    self._next_try[key] = now + timedelta(seconds=FIRST_RETRY_S * 2 ** (attempts - 1))
                    log.warning("%s of alert %d not notified (attempt %d): %s", notice.event, notice.alert_id,
                                attempts, alert.notify_error)
                    continue
                if closing:
                    alert.resolve_notified_at = self._now()
                else:
                    alert.notified_at = self._now()
                self._next_try.pop(key, None)
                done += 1
        return done

    def _send(self, notice: AlertNotice, channels: list[str], settings: Settings, now: datetime) -> list[str]:
        errors = []
        for channel in channels:
            key = (notice.alert_id, notice.event, channel)
            if key in self._delivered:
                continue
            try:
                if channel == "email":
                    send_email(email_message(notice, settings), settings)
                else:
                    post_webhook(webhook_body(notice, settings, now), settings, notice.event)
            except Exception as exc:  # any failure of a channel is recorded, never raised
                errors.append(f"{channel}: {type(exc).__name__}: {exc}")
            else:
                self._delivered.add(key)
        return errors
