"""Server settings: environment variables (``LOA_*``) over an optional TOML file, validated at start.

Defaults are the embedded ones (SQLite, in-process broker, offline-capable TTS) so that ``./loa demo``
needs nothing installed; production sets a PostgreSQL URL, an external broker and a real secret.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.errors import ConfigError

DEV_SECRET = "dev-only-secret-change-me-0123456789"


EqualPriority = Literal["queue", "refuse"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOA_", extra="forbid")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    """Empty means SQLite in ``data_dir``."""
    broker_url: str = "mqtt://127.0.0.1:1884"
    broker_username: str | None = None
    broker_password: str | None = None
    embedded_broker: bool = True
    """Start an amqtt broker in-process on broker_url's address (fine for a commune or small district)."""
    broker_password_file: Path | None = None
    """Mosquitto's password file, written by the server from the registered devices (docs/operations.md §3);
    None leaves broker accounts to the operator."""
    broker_static_password_file: Path | None = None
    """Accounts the server does not manage (monitoring, bridges), copied first into broker_password_file."""
    broker_reload_command: list[str] | None = None
    """Run after broker_password_file changed, e.g. ["kill", "-HUP", "<pid>"] when the server may signal the
    broker; None when something else reloads it (deploy/mosquitto/loa-broker-reload.path: the shipped
    server unit runs with NoNewPrivileges, so sudo is not an option there)."""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    """Base URL agents use to download audio; empty means http://http_host:http_port."""
    secret_key: str = DEV_SECRET
    timezone: str = "Asia/Ho_Chi_Minh"
    horizon_hours: int = Field(default=48, ge=1, le=24 * 14)
    tts_online: bool = True
    """Try gTTS first; the offline espeak-ng voice is always the fallback."""
    gtts_timeout_s: float = Field(default=6.0, gt=0, le=60)
    espeak_voice: Literal["vi", "vi-VN-x-central", "vi-VN-x-south"] = "vi"
    """Northern, central or southern Vietnamese for the offline voice."""
    espeak_rate_wpm: int = Field(default=150, ge=80, le=400)
    piper_model: Path | None = None
    """A local Piper .onnx voice, tried after gTTS and before espeak-ng when set."""
    tts_cache_mb: int = Field(default=2048, ge=0)
    loudness_lufs: float = Field(default=-16.0, ge=-40, le=-6)
    true_peak_db: float = Field(default=-1.5, ge=-12, le=0)
    lead_in_ms: int = Field(default=600, ge=0, le=10_000)
    """Silence before every item, so amplifiers switched on demand do not clip the first syllable."""
    max_upload_mb: int = Field(default=200, ge=1, le=4096)
    max_upload_minutes: int = Field(default=120, ge=1, le=24 * 60)
    server_id: str = "loa-server"
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    play_lead_s: float = Field(default=2.0, ge=0, le=60)
    """How far ahead of 'now' an immediate broadcast is placed so all agents start in step."""
    broadcast_review: bool = True
    """Broadcasts wait for an approver (not their author) before they air; emergencies follow
    ``emergency_confirmation`` instead."""
    emergency_confirmation: Literal["typed", "second_person"] = "typed"
    """typed: the sender types the owning area's name to send at once; second_person: an approver
    other than the sender must approve first."""
    equal_priority: EqualPriority = "queue"
    """When two broadcasts of equal priority overlap on a device: play the later one after (queue) or
    refuse to save it (refuse)."""

    telemetry_sample_s: int = Field(default=300, ge=30, le=3600)
    """At most one stored telemetry sample per device per this many seconds (heartbeats come every 30 s)."""
    telemetry_retention_days: int = Field(default=8, ge=1, le=400)
    audit_retention_days: int = Field(default=1825, ge=0, le=36500)
    """Audit events older than this are deleted (daily); 0 keeps them all. At least 365 otherwise, and
    only in the configuration file: the console cannot shorten the trail of its own users' actions."""
    map_tile_url: str = ""
    """Optional map tiles, e.g. https://tiles.example.vn/{z}/{x}/{y}.png; empty draws the map locally."""
    alert_offline_minutes: int = Field(default=10, ge=1, le=24 * 60)
    alert_clock_offset_ms: int = Field(default=50, ge=1, le=60_000)
    alert_disk_percent: int = Field(default=90, ge=50, le=100)
    alert_email_to: list[str] = Field(default_factory=list)
    alert_webhook_url: str = ""
    smtp_host: str = ""
    """Empty: alerts are not e-mailed."""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "loa@localhost"
    smtp_starttls: bool = True

    @field_validator("map_tile_url", "alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("alert_email_to")
    @classmethod
    def _email_addresses(cls, value: list[str]) -> list[str]:
        cleaned = [address.strip() for address in value if address.strip()]
        for address in cleaned:
            if not re.fullmatch(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+", address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return cleaned

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("mqtt", "mqtts") or not parsed.hostname:
            raise ValueError("must look like mqtt://host:port or mqtts://host:port")
        return value

    @field_validator("audit_retention_days")
    @classmethod
    def _audit_retention(cls, value: int) -> int:
        if 0 < value < 365:
            raise ValueError("keep the audit trail at least 365 days (or 0: for ever)")
        return value

    @field_validator("broker_reload_command")
    @classmethod
    def _reload_command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0].strip()):
            raise ValueError("must name a program, e.g. [\"systemctl\", \"reload\", \"mosquitto\"]")
        return value

    @model_validator(mode="after")
    def _broker_accounts(self) -> Settings:
        if self.broker_static_password_file is not None and self.broker_password_file is None:
            raise ValueError("broker_static_password_file needs broker_password_file")
        if self.broker_password_file is not None and self.broker_password_file == self.broker_static_password_file:
            raise ValueError("broker_static_password_file must not be broker_password_file (the server rewrites it)")
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql")):
            raise ValueError("only sqlite:/// and postgresql+psycopg:// URLs are supported")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.environment == "production" and (self.secret_key == DEV_SECRET or len(self.secret_key) < 32):
            raise ValueError("secret_key must be set to 32+ random characters in production")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'loa.sqlite3').resolve()}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    @property
    def audio_dir(self) -> Path:
        return self.data_dir / "audio"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), then environment variables, then explicit overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{config_file}: no such configuration file") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from exc
    try:
        env_only = Settings()  # environment variables and defaults
        merged = {**values, **{k: v for k, v in env_only.model_dump().items() if k in env_only.model_fields_set}}
        return Settings.model_validate({**merged, **overrides})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
