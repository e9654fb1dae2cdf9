"""The running server's long-lived parts, built from settings and started/stopped in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

from agents.link import BrokerAddress
from audio.loudness import LoudnessTarget
from audio.probe import UploadLimits
from audio.store import AudioStore
from audio.tts import TtsEngine, default_chain
from server import audit
from server.alerts import AlertMonitor
from server.app_settings import apply_stored_settings
from server.bridge import MqttBridge
from server.broker import EmbeddedBroker
from server.broker_accounts import BrokerAccounts
from server.content import Renderer, RenderOptions
from server.db import Database
from server.device_commands import CommandLog
from server.jobs import Jobs
from server.live import LiveBus
from server.notify import Notifier
from server.planner import Planner
from server.settings import Settings
from server.telemetry import TelemetryRecorder, purge_expired

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    def __init__(self, settings: Settings, *, tts: TtsEngine | None = None,
                 now: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.configured_settings = settings
        """As the file and environment give them; ``settings`` adds the console's changes (app_settings.py)."""
        self.now = now
        self.db = Database(settings.effective_database_url)
        self.broker_accounts = BrokerAccounts(lambda: self.settings, self.db)
        self.store = AudioStore(settings.audio_dir)
        self.tts = tts or default_chain(
            online=settings.tts_online, gtts_timeout_s=settings.gtts_timeout_s, espeak_voice=settings.espeak_voice,
            espeak_rate_wpm=settings.espeak_rate_wpm, piper_model=settings.piper_model,
            cache_dir=settings.data_dir / "tts-cache" if settings.tts_cache_mb else None,
            cache_max_bytes=settings.tts_cache_mb * 1024 * 1024)
        self.live = LiveBus()
        parsed = urlparse(settings.broker_url)
        self.broker = (EmbeddedBroker(parsed.hostname or "127.0.0.1", parsed.port or 1883)
                       if settings.embedded_broker else None)
        self.planner = Planner(self.db, public_url=settings.effective_public_url,
                               horizon=timedelta(hours=settings.horizon_hours),
                               publish=lambda plan: self.bridge.publish_plan(plan), now=now,
                               equal_priority=lambda: self.settings.equal_priority)
        self.bridge = MqttBridge(
            db=self.db, address=BrokerAddress.parse(settings.broker_url, username=settings.broker_username,
                                                    password=settings.broker_password),
            server_id=settings.server_id, live=self.live, now=now, current_plans=self.planner.current_plans,
            telemetry=TelemetryRecorder(settings.telemetry_sample_s))
        self.renderer = Renderer(self.db, self.store, self.tts, options=self.render_options,
                                 on_progress=self._progress)
        self.jobs: Jobs | None = None
        self.commands = CommandLog()  # commands sent from the console, for their acknowledgement read-back
        self.notifier = Notifier(self.db, settings=lambda: self.settings, now=now)
        self.alerts = AlertMonitor(self.db, self.live, settings=lambda: self.settings, now=now,
                                   notify=self.notifier.deliver_due)

    @property
    def uploads_dir(self) -> Path:
        return self.settings.data_dir / "uploads"

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(max_bytes=self.settings.max_upload_mb * 1024 * 1024,
                            max_duration_s=self.settings.max_upload_minutes * 60)

    def render_options(self) -> RenderOptions:
        settings = self.settings
        return RenderOptions(target=LoudnessTarget(lufs=settings.loudness_lufs, true_peak_db=settings.true_peak_db),
                             lead_in_ms=settings.lead_in_ms)

    def apply_settings(self, settings: Settings) -> None:
        """Put settings changed in the console into use (only keys read at use time may change)."""
        rule_changed = settings.equal_priority != self.settings.equal_priority
        self.settings = settings
        if rule_changed and self.jobs is not None:  # running: plans follow the new rule now, not at the next roll
            self.planner.recompile()

    def _apply_stored_settings(self) -> None:
        with self.db.session() as db:
            apply_stored_settings(db, self)

    def _progress(self, announcement_id: int, percent: int) -> None:
        self.live.publish({"type": "announcement", "id": announcement_id, "progress": percent})

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.db.start)
        await asyncio.to_thread(self._apply_stored_settings)
        # Before the bridge connects: with a managed password file, the server's own account is in it.
        await asyncio.to_thread(self.broker_accounts.sync)
        self.store.start()
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        self.live.start(asyncio.get_running_loop())
        self.alerts.start()
        if self.broker is not None:
            await self.broker.start()
        await self.bridge.start()
        if not await self.bridge.wait_connected(10):
            log.warning("broker %s not reachable yet; the server keeps trying", self.settings.broker_url)
        self.renderer.start()
        assert self.db.engine is not None
        self.jobs = Jobs(self.db.engine, {
            "roll-horizon": (self.planner.recompile, 300.0),
            "sweep-silent-devices": (self.bridge.sweep_silent, 30.0),
            "server-clock": (self.bridge.publish_clock, 10.0),
            "evaluate-alerts": (self.alerts.run, 30.0),
            "purge-telemetry": (lambda: purge_expired(self.db, self.now(), self.settings.telemetry_retention_days),
                                3600.0),
            "purge-audit": (lambda: audit.purge_expired(self.db, self.now(), self.settings.audit_retention_days),
                            86400.0),
        })
        self.jobs.start()
        await asyncio.to_thread(self.planner.recompile)

    async def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        await self.alerts.stop()
        self.renderer.stop()
        await self.bridge.stop()
        if self.broker is not None:
            await self.broker.stop()
        self.db.stop()
