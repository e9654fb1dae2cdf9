"""Wires one agent's parts together from its configuration; used by `loa agent` and `loa sim`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import httpx

from agents.cache import AudioCache
from agents.config import AgentConfig
from agents.core import Agent, AgentSettings, Clock
from agents.journal import Journal
from agents.link import BrokerAddress, MqttLink
from agents.player import AlsaPlayer, FileSinkPlayer, Player

log = logging.getLogger(__name__)


def make_player(config: AgentConfig) -> Player:
    if config.player_backend == "file":
        assert config.sink_path is not None
        return FileSinkPlayer(config.sink_path, config.agent_id)
    return AlsaPlayer(config.state_dir / "decoded", device=config.alsa_device, ffmpeg=config.ffmpeg,
                      play_command=config.play_command)


class AgentRuntime:
    """One agent with its link, cache, journal and player. ``http`` may be shared by many agents."""

    def __init__(self, config: AgentConfig, *, http: httpx.AsyncClient | None = None,
                 clock: Clock | None = None, download_slots: asyncio.Semaphore | None = None) -> None:
        self.config = config
        self._download_slots = download_slots
        self._own_http = http is None
        self._http = http
        self._clock = clock
        self.agent: Agent | None = None
        self.link: MqttLink | None = None
        self._journal = Journal(config.state_dir / "journal.sqlite3")

    async def start(self) -> None:
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._journal.start()
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=config.http_timeout_s)
        cache = AudioCache(config.state_dir / "cache", self._http, config.token,
                           download_slots=self._download_slots)
        settings = AgentSettings(agent_id=config.agent_id, heartbeat_s=config.heartbeat_s,
                                 outbox_resend_s=config.outbox_resend_s, groups=config.groups)
        address = BrokerAddress.parse(config.mqtt_url, username=config.mqtt_username,
                                      password=config.mqtt_password,
                                      ca_file=str(config.mqtt_ca_file) if config.mqtt_ca_file else None)
        agent: Agent
        link = MqttLink(client_id=f"loa-agent-{config.agent_id}", address=address,
                        on_message=lambda t, p: agent.on_message(t, p),
                        on_connect=lambda: agent.on_connected(),
                        before_connect=lambda: agent.before_connect(),
                        keepalive_s=config.keepalive_s, clean_session=False)
        agent = Agent(settings, link=link, player=make_player(config), cache=cache, journal=self._journal,
                      clock=self._clock)
        self.agent, self.link = agent, link
        await agent.start()
        await link.start()

    async def stop(self, *, graceful: bool = True) -> None:
        if self.link is not None:
            await self.link.stop(graceful=graceful)
        if self.agent is not None:
            await self.agent.stop()
        if self._own_http and self._http is not None:
            await self._http.aclose()
        self._journal.stop()


async def run_until_signalled(runtimes: list[AgentRuntime]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    for runtime in runtimes:
        await runtime.start()
    log.info("%d agent(s) running", len(runtimes))
    await stop.wait()
    for runtime in runtimes:
        await runtime.stop()
