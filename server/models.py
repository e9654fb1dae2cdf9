"""Database tables (SQLAlchemy 2). Schema changes go through Alembic (server/migrations).

All times are stored as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and always returns them aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class Area(Base):
    """A node of the administrative tree: province, (former) district, commune, village, group."""

    __tablename__ = "areas"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    chime_sha256: Mapped[str | None] = mapped_column(ForeignKey("audio_assets.sha256"), default=None)
    """Played before every item made for this area (and below, unless a lower area has its own)."""
    intro_sha256: Mapped[str | None] = mapped_column(ForeignKey("audio_assets.sha256"), default=None)
    outro_sha256: Mapped[str | None] = mapped_column(ForeignKey("audio_assets.sha256"), default=None)
    latitude: Mapped[float | None] = mapped_column(default=None)
    longitude: Mapped[float | None] = mapped_column(default=None)


class AreaAlias(Base):
    """A former code of an area (communes merged in 2025 keep resolving under their old codes)."""

    __tablename__ = "area_aliases"
    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="CASCADE"), index=True)
    note: Mapped[str] = mapped_column(String(200), default="")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    grants: Mapped[list[RoleGrant]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                   lazy="selectin")


class RoleGrant(Base):
    """A role held on an area and everything below it."""

    __tablename__ = "role_grants"
    __table_args__ = (UniqueConstraint("user_id", "role", "area_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"))
    user: Mapped[User] = relationship(back_populates="grants")


class LoginSession(Base):
    __tablename__ = "login_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class Device(Base):
    """A loudspeaker cluster: one agent on one Raspberry Pi."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 of the agent's secret; the secret itself is shown once, at registration."""
    broker_password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    """The same secret hashed for Mosquitto's password file (PBKDF2-SHA512, "$7$" format), written by
    server.broker_accounts; None for devices registered before the server managed that file."""
    latitude: Mapped[float | None] = mapped_column(default=None)
    longitude: Mapped[float | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeviceStatus(Base):
    """What the server last learned of a device over MQTT (one row per device)."""

    __tablename__ = "device_status"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="unknown")
    session: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)
    changed_at: Mapped[datetime | None] = mapped_column(default=None)
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    now_playing: Mapped[str | None] = mapped_column(String(128), default=None)
    heartbeat: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    plan_version_acked: Mapped[int] = mapped_column(Integer, default=0)


class AudioAsset(Base):
    """A content-addressed audio file in the distribution format."""

    __tablename__ = "audio_assets"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    mime: Mapped[str] = mapped_column(String(64))
    engine: Mapped[str] = mapped_column(String(32), default="")
    voice: Mapped[str] = mapped_column(String(64), default="")
    lufs: Mapped[float | None] = mapped_column(default=None)
    true_peak_db: Mapped[float | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LexiconEntry(Base):
    """An admin's pronunciation for a place name or local acronym, applied before the built-in rules."""

    __tablename__ = "lexicon_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    term: Mapped[str] = mapped_column(String(100), unique=True)
    spoken: Mapped[str] = mapped_column(String(300))
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Announcement(Base):
    """Content: a text bulletin turned into speech (or, later, an upload or a relay)."""

    __tablename__ = "announcements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(16), default="tts")
    """tts (text read aloud) | upload (a recording)."""
    text: Mapped[str] = mapped_column(Text)
    spoken_text: Mapped[str] = mapped_column(Text, default="")
    audio_sha256: Mapped[str | None] = mapped_column(ForeignKey("audio_assets.sha256"), default=None)
    audio_status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending → ready | failed."""
    audio_error: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    """Percent of the audio work done (long syntheses and large uploads)."""
    upload_name: Mapped[str] = mapped_column(String(255), default="")
    upload_path: Mapped[str | None] = mapped_column(String(500), default=None)
    """The raw upload, kept until it is prepared so a restart loses nothing."""
    engine: Mapped[str] = mapped_column(String(32), default="")
    voice: Mapped[str] = mapped_column(String(64), default="")
    fallback_used: Mapped[bool] = mapped_column(Boolean, default=False)
    category: Mapped[str] = mapped_column(String(32), default="thong-bao", server_default="thong-bao")
    language: Mapped[str] = mapped_column(String(8), default="vi", server_default="vi")
    review_status: Mapped[str] = mapped_column(String(16), default="submitted")
    """draft → submitted → approved | rejected."""
    review_comment: Mapped[str] = mapped_column(Text, default="")
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    audio: Mapped[AudioAsset | None] = relationship(lazy="joined")


class Broadcast(Base):
    """What to air (one announcement or a programme of several), where, when, and how urgently.

    ``status`` is the approval life cycle: draft → submitted → approved (on air as scheduled) | rejected;
    an approved broadcast can be cancelled. ``mode`` "bulletin" sends it down to the inboxes of the
    communes under its targets instead of airing it directly.
    """

    __tablename__ = "broadcasts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300), default="", server_default="")
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), index=True, default=None)
    """The area that owns the broadcast (who may edit, approve and see it)."""
    announcement_id: Mapped[int] = mapped_column(ForeignKey("announcements.id"), index=True)
    """The first (or only) item; the full ordered list is ``items``."""
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    mode: Mapped[str] = mapped_column(String(16), default="direct", server_default="direct")
    timing: Mapped[str] = mapped_column(String(16), default="once", server_default="once")
    """once | now | recurring."""
    play_at: Mapped[datetime] = mapped_column(index=True)
    """When it airs (once/now) or the first instant of the recurrence."""
    rrule: Mapped[str] = mapped_column(String(500), default="", server_default="")
    start_local: Mapped[str] = mapped_column(String(19), default="", server_default="")
    """DTSTART as local wall-clock time, ``YYYY-MM-DDTHH:MM:SS``, in ``tz``."""
    tz: Mapped[str] = mapped_column(String(64), default="Asia/Ho_Chi_Minh", server_default="Asia/Ho_Chi_Minh")
    valid_until: Mapped[str | None] = mapped_column(String(10), default=None)
    """Last local date (ISO) the recurrence may air on."""
    exdates: Mapped[list[str]] = mapped_column(JSON, default=list)
    holiday_rule: Mapped[str] = mapped_column(String(8), default="ignore", server_default="ignore")
    repeat_every_min: Mapped[int | None] = mapped_column(Integer, default=None)
    repeat_count: Mapped[int | None] = mapped_column(Integer, default=None)
    repeat_until: Mapped[datetime | None] = mapped_column(default=None)
    slot_minutes: Mapped[int | None] = mapped_column(Integer, default=None)
    """A programme's slot length: what overruns it is trimmed."""
    on_preempt: Mapped[str] = mapped_column(String(8), default="skip", server_default="skip")
    exercise: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16), default="approved")
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    review_comment: Mapped[str] = mapped_column(Text, default="", server_default="")
    confirmed_by_typing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cancelled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime | None] = mapped_column(default=None)
    announcement: Mapped[Announcement] = relationship(lazy="joined")
    items: Mapped[list[BroadcastItem]] = relationship(cascade="all, delete-orphan", lazy="selectin",
                                                      order_by="BroadcastItem.position")
    targets: Mapped[list[BroadcastTarget]] = relationship(cascade="all, delete-orphan", lazy="selectin")


class BroadcastItem(Base):
    """One announcement in a broadcast's programme, in airing order."""

    __tablename__ = "broadcast_items"
    __table_args__ = (UniqueConstraint("broadcast_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    announcement_id: Mapped[int] = mapped_column(ForeignKey("announcements.id"))
    announcement: Mapped[Announcement] = relationship(lazy="joined")


class BroadcastTarget(Base):
    __tablename__ = "broadcast_targets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id"), default=None)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"), default=None)


class InboxEntry(Base):
    """A bulletin from a higher level as it stands in one commune's inbox."""

    __tablename__ = "inbox_entries"
    __table_args__ = (UniqueConstraint("bulletin_id", "area_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bulletin_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending → scheduled | declined; priority bulletins arrive already "inserted"."""
    reason: Mapped[str] = mapped_column(Text, default="")
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id"), default=None)
    """The commune's own broadcast that airs the bulletin."""
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentPlan(Base):
    """The last plan published to a device: its version and a fingerprint of its content."""

    __tablename__ = "agent_plans"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    payload: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)


class AsRunEntry(Base):
    """What a device reports it did with a plan item. ``event_id`` makes redelivery harmless."""

    __tablename__ = "as_run"
    __table_args__ = (Index("ix_as_run_device_at", "device_id", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    broadcast_id: Mapped[int | None] = mapped_column(ForeignKey("broadcasts.id"), index=True, default=None)
    item_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column()
    scheduled_at: Mapped[datetime] = mapped_column()
    audio_sha256: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class TelemetrySample(Base):
    """A device's health at one instant, kept for the device page's charts (24 h / 7 d).

    Heartbeats arrive every 30 s; the server keeps at most one sample per device per
    ``telemetry_sample_s`` and deletes samples older than ``telemetry_retention_days``.
    """

    __tablename__ = "telemetry_samples"
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    playing: Mapped[bool] = mapped_column(Boolean, default=False)
    cpu_temp_c: Mapped[float | None] = mapped_column(default=None)
    disk_used_percent: Mapped[float | None] = mapped_column(default=None)
    cache_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    volume_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    amplifier_on: Mapped[bool | None] = mapped_column(Boolean, default=None)
    clock_offset_ms: Mapped[float | None] = mapped_column(default=None)
    link_quality_percent: Mapped[int | None] = mapped_column(Integer, default=None)
    outbox_pending: Mapped[int | None] = mapped_column(Integer, default=None)


class Alert(Base):
    """A condition on a device that needs a person: open while it holds, acknowledged by someone.

    ``rule`` is a code (offline, play_failed, play_skipped, clock_offset, disk_full, amplifier_fault);
    ``params`` holds the figures the message is built from, so the console can word it in its language.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_device_rule", "device_id", "rule"), Index("ix_alerts_opened", "opened_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16), default="warning")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    ack_comment: Mapped[str] = mapped_column(String(500), default="")
    notified_at: Mapped[datetime | None] = mapped_column(default=None)
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0)
    notify_error: Mapped[str] = mapped_column(Text, default="")
    resolve_notified_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the channels that were told of the alert were told it resolved (condition rules only)."""
    resolve_notify_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AppSetting(Base):
    """A setting changed in the console; it overrides the configuration file for that key."""

    __tablename__ = "app_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None)


class AuditEvent(Base):
    """A security-relevant action: who did what, when, to which area or device, and what came of it.

    ``username`` is copied so the event stays readable after the user is deleted. ``ref`` is a key to find
    the event again (a device command's id, for its acknowledgement). Secrets are never stored (audit.py).
    """

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at"), Index("ix_audit_events_action_at", "action", "at"),
                      Index("ix_audit_events_area_at", "area_id", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True,
                                                default=None)
    username: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(48))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("areas.id", ondelete="SET NULL"), default=None)
    target: Mapped[str] = mapped_column(String(200), default="")
    """What was acted on: ``device:XA-01``, ``broadcast:12``, ``user:bob``, ``setting:max_upload_mb`` …"""
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    """ok | refused | failed | pending | no_answer."""
    result: Mapped[str] = mapped_column(Text, default="")
    """Why it was refused or failed, or what it led to."""
    ref: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
