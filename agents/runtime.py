"""Wires one agent's parts together from its configuration; used by `loa agent` and `loa sim`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import httpx

from agents.amplifier import AmixerMixer, Amplifier, FileMixer, GpioRelay, MemoryRelay, Mixer, NullMixer, Relay, Volume
from agents.cache import AudioCache
from agents.clock import NtpProbe
from agents.commands import CommandHandler
from agents.config import AgentConfig
from agents.core import Agent, AgentSettings, Clock
from agents.journal import Journal
from agents.link import BrokerAddress, MqttLink
from agents.player import AlsaPlayer, FileSinkPlayer, Player
from agents.telemetry import ModemProbe
from agents.watchdog import keep_alive, notify, watchdog_interval_s

log = logging.getLogger(__name__)


def make_player(config: AgentConfig) -> Player:
    if config.player_backend == "file":
        assert config.sink_path is not None
        return FileSinkPlayer(config.sink_path, config.agent_id)
    return AlsaPlayer(config.state_dir / "decoded", device=config.alsa_device, ffmpeg=config.ffmpeg,
                      play_command=config.play_command)


def make_amplifier(config: AgentConfig) -> Amplifier:
    relay: Relay = MemoryRelay() if config.gpio_pin is None else GpioRelay(config.gpio_pin,
                                                                            active_high=config.gpio_active_high)
    # Without a relay there is no amplifier to warm up: waiting would only delay unannounced items.
    warmup_s = config.amplifier_warmup_s if config.gpio_pin is not None else 0.0
    return Amplifier(relay, warmup_s=warmup_s, hold_s=config.amplifier_hold_s)


def make_volume(config: AgentConfig) -> Volume:
    mixer: Mixer
    if config.volume_backend == "amixer":
        mixer = AmixerMixer(card=config.mixer_card, control=config.mixer_control)
    elif config.volume_backend == "file":
        assert config.mixer_file is not None
        mixer = FileMixer(config.mixer_file)
    else:
        mixer = NullMixer()
    return Volume(mixer, normal_percent=config.normal_volume_percent,
                  emergency_percent=config.emergency_volume_percent)


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
        self._journal = Journal(config.state_dir / "journal.sqlite3", durable=config.durable_journal,
                                in_memory=config.memory_journal)

    async def start(self) -> None:
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._journal.start()
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=config.http_timeout_s)
        cache = AudioCache(config.state_dir / "cache", self._http, config.token,
                           download_slots=self._download_slots, quota_bytes=config.cache_quota_bytes)
        settings = AgentSettings(
            agent_id=config.agent_id, heartbeat_s=config.heartbeat_s, outbox_resend_s=config.outbox_resend_s,
            groups=config.groups, fallback_file=config.fallback_file, allow_reboot=config.allow_reboot,
            reboot_command=config.reboot_command, ntp_fault_ms=config.ntp_fault_ms,
            server_clock_fault_ms=config.server_clock_fault_ms, state_dir=config.state_dir,
            preroll_s=config.preroll_s, start_guard_s=config.start_guard_s,
            output_latency_s=config.output_latency_ms / 1000)
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
                      clock=self._clock, amplifier=make_amplifier(config), volume=make_volume(config),
                      ntp=NtpProbe() if config.probe_host else None,
                      modem=ModemProbe() if config.probe_host else None, commands=CommandHandler())
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
    notify("READY=1")
    watchdog: asyncio.Task[None] | None = None
    interval = watchdog_interval_s()
    if interval is not None:
        watchdog = asyncio.create_task(keep_alive(
            interval, lambda: all(r.agent is not None and r.agent.healthy for r in runtimes)))
    await stop.wait()
    notify("STOPPING=1")
    if watchdog is not None:
        watchdog.cancel()
    for runtime in runtimes:
        await runtime.stop()
