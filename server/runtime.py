"""The running server's long-lived parts, built from settings and started/stopped in order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from agents.link import BrokerAddress
from audio.store import AudioStore
from audio.tts import TtsChain, default_chain
from server.bridge import MqttBridge
from server.broker import EmbeddedBroker
from server.content import Renderer
from server.db import Database
from server.jobs import Jobs
from server.live import LiveBus
from server.planner import Planner
from server.settings import Settings

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Runtime:
    def __init__(self, settings: Settings, *, tts: TtsChain | None = None,
                 now: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.now = now
        self.db = Database(settings.effective_database_url)
        self.store = AudioStore(settings.audio_dir)
        self.tts = tts or default_chain(online=settings.tts_online, gtts_timeout_s=settings.gtts_timeout_s,
                                        espeak_voice=settings.espeak_voice)
        self.live = LiveBus()
        parsed = urlparse(settings.broker_url)
        self.broker = (EmbeddedBroker(parsed.hostname or "127.0.0.1", parsed.port or 1883)
                       if settings.embedded_broker else None)
        self.planner = Planner(self.db, public_url=settings.effective_public_url,
                               horizon=timedelta(hours=settings.horizon_hours),
                               publish=lambda plan: self.bridge.publish_plan(plan), now=now)
        self.bridge = MqttBridge(
            db=self.db, address=BrokerAddress.parse(settings.broker_url, username=settings.broker_username,
                                                    password=settings.broker_password),
            server_id=settings.server_id, live=self.live, now=now, current_plans=self.planner.current_plans)
        self.renderer = Renderer(self.db, self.store, self.tts, on_done=self._rendered)
        self.jobs: Jobs | None = None

    def _rendered(self, announcement_id: int) -> None:
        self.live.publish({"type": "announcement", "id": announcement_id})

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self.db.start)
        self.store.start()
        self.live.start(asyncio.get_running_loop())
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
        })
        self.jobs.start()
        await asyncio.to_thread(self.planner.recompile)

    async def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        self.renderer.stop()
        await self.bridge.stop()
        if self.broker is not None:
            await self.broker.stop()
        self.db.stop()
