"""The agent's one configuration file (TOML), validated with messages an installer can act on.

Example (every key: deploy/agent/agent.toml.example; operations: docs/operations.md)::

    agent_id = "tq-08740-c01"
    state_dir = "/var/lib/loa-agent"

    [mqtt]
    url = "mqtts://loa.example.gov.vn:8883"
    ca_file = "/etc/loa-agent/province-ca.pem"   # optional: trust a private CA

    [http]
    token_file = "/etc/loa-agent/secret"   # the agent's own secret (also its MQTT password); mode 0600

    [player]
    backend = "alsa"            # or "file" (writes what it would play; tests and simulator)
    device = "default"
    fallback_file = "/var/lib/loa-agent/fallback.mp3"
    output_latency_ms = 0       # measured delay from output start to sound; started that much earlier

    [amplifier]
    gpio_pin = 17               # BCM number of the relay; absent: no relay
    warmup_s = 2
    hold_s = 10

    [volume]
    backend = "amixer"          # or "file" / "none"
    control = "PCM"
"""

from __future__ import annotations

import math
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.errors import ConfigError
from agents.protocol import valid_agent_id, valid_group_id
from agents.start_timing import START_GUARD_S

MAX_OUTPUT_LATENCY_MS = 1000.0
"""More than this is not an output delay but a misconfigured sound server (and would eat the pre-roll)."""
_TOP_KEYS = {"agent_id", "state_dir", "mqtt", "http", "player", "agent", "amplifier", "volume", "cache", "clock"}
_SECTION_KEYS = {
    "mqtt": {"url", "username", "password", "password_file", "keepalive_s", "ca_file"},
    "http": {"token", "token_file", "timeout_s"},
    "player": {"backend", "sink", "device", "ffmpeg", "play_command", "fallback_file", "output_latency_ms"},
    "agent": {"heartbeat_s", "groups", "outbox_resend_s", "allow_reboot", "reboot_command"},
    "amplifier": {"gpio_pin", "active_high", "warmup_s", "hold_s"},
    "volume": {"backend", "card", "control", "file", "normal_percent", "emergency_percent"},
    "cache": {"quota_mb"},
    "clock": {"ntp_fault_ms", "server_fault_ms"},
}


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    state_dir: Path
    mqtt_url: str
    mqtt_username: str | None
    mqtt_password: str | None
    token: str
    """Per-agent secret: HTTP bearer token for audio, and the MQTT password unless one is given."""
    player_backend: str = "file"
    sink_path: Path | None = None
    alsa_device: str = "default"
    ffmpeg: str = "ffmpeg"
    play_command: tuple[str, ...] = ("aplay", "-q")
    keepalive_s: int = 30
    heartbeat_s: float = 30.0
    outbox_resend_s: float = 15.0
    http_timeout_s: float = 30.0
    groups: tuple[str, ...] = ()
    mqtt_ca_file: Path | None = None
    fallback_file: Path | None = None
    gpio_pin: int | None = None
    """BCM pin of the amplifier relay; None: no relay (and no warm-up to wait for)."""
    gpio_active_high: bool = True
    amplifier_warmup_s: float = 2.0
    amplifier_hold_s: float = 10.0
    volume_backend: str = "none"
    mixer_card: str = "0"
    mixer_control: str = "PCM"
    mixer_file: Path | None = None
    normal_volume_percent: int = 80
    emergency_volume_percent: int = 100
    cache_quota_bytes: int | None = None
    ntp_fault_ms: float = 50.0
    server_clock_fault_ms: float = 250.0
    allow_reboot: bool = False
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    probe_host: bool = True
    """Ask chrony/timesyncd and ModemManager for telemetry (off in the simulator)."""
    durable_journal: bool = True
    memory_journal: bool = False
    """The simulator's agents keep their journal in memory (see `agents.journal.Journal`); never on a Pi."""
    output_latency_ms: float = 0.0
    """From a sample written to the player to sound at the horn (ALSA buffer start, card, amplifier),
    measured on site: the output starts this much before play_at so that the sound emerges at it."""
    preroll_s: float = 0.25
    """How long before an item's start its checks run (a simulator with many agents in one loop needs more)."""
    start_guard_s: float = START_GUARD_S
    """How long before an item's start its timer fires and holds the event loop until the instant."""


def load_config(path: Path) -> AgentConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such configuration file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(raw, base_dir=path.parent, source=str(path))


def parse_config(raw: dict[str, Any], *, base_dir: Path, source: str = "config") -> AgentConfig:
    def fail(message: str) -> ConfigError:
        return ConfigError(f"{source}: {message}")

    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise fail(f"unknown key(s) {', '.join(sorted(unknown))}")
    sections: dict[str, dict[str, Any]] = {}
    for name, allowed in _SECTION_KEYS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise fail(f"[{name}] must be a table")
        extra = set(section) - allowed
        if extra:
            raise fail(f"unknown key(s) in [{name}]: {', '.join(sorted(extra))}")
        sections[name] = section

    def text(section: str, key: str, default: str | None = None) -> str | None:
        value = sections[section].get(key, default) if section else raw.get(key, default)
        if value is not None and not isinstance(value, str):
            raise fail(f"{section + '.' if section else ''}{key} must be a string")
        return value

    def number(section: str, key: str, default: float, minimum: float) -> float:
        value = sections[section].get(key, default)
        if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
                or value < minimum):
            raise fail(f"{section}.{key} must be a number >= {minimum}")
        return float(value)

    def flag(section: str, key: str, default: bool) -> bool:
        value = sections[section].get(key, default)
        if not isinstance(value, bool):
            raise fail(f"{section}.{key} must be true or false")
        return value

    def percent(section: str, key: str, default: int) -> int:
        value = sections[section].get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise fail(f"{section}.{key} must be an integer from 0 to 100")
        return value

    def command(section: str, key: str, default: list[str]) -> tuple[str, ...]:
        value = sections[section].get(key, default)
        if not isinstance(value, list) or not value or not all(isinstance(p, str) and p for p in value):
            raise fail(f"{section}.{key} must be a non-empty list of strings")
        return tuple(value)

    def secret(section: str, key: str) -> str | None:
        inline, file_key = text(section, key), text(section, f"{key}_file")
        if inline and file_key:
            raise fail(f"give either {section}.{key} or {section}.{key}_file, not both")
        if file_key:
            secret_path = (base_dir / file_key).resolve()
            try:
                mode = secret_path.stat().st_mode
                value = secret_path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise fail(f"{section}.{key}_file {secret_path}: {exc.strerror}") from exc
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise fail(f"{secret_path} is readable by others; run: chmod 600 {secret_path}")
            return value
        return inline

    agent_id = text("", "agent_id")
    if not agent_id or not valid_agent_id(agent_id):
        raise fail("agent_id is required: lowercase letters, digits, '-' or '_', at most 63 characters")
    state_dir = text("", "state_dir")
    if not state_dir:
        raise fail("state_dir is required (where the plan, audio cache and outbox are kept)")
    mqtt_url = text("mqtt", "url")
    if not mqtt_url or not mqtt_url.startswith(("mqtt://", "mqtts://")):
        raise fail("mqtt.url is required, e.g. mqtt://127.0.0.1:1883 or mqtts://broker:8883")
    token = secret("http", "token")
    if not token or len(token) < 16:
        raise fail("http.token (or http.token_file) is required: the agent's secret, at least 16 characters")
    backend = text("player", "backend", "alsa")
    if backend not in ("alsa", "file"):
        raise fail("player.backend must be 'alsa' or 'file'")
    sink = text("player", "sink")
    if backend == "file" and not sink:
        raise fail("player.sink is required with the file backend")
    groups = sections["agent"].get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) and valid_group_id(g) for g in groups):
        raise fail("agent.groups must be a list of group ids (lowercase letters, digits, '.', '-', '_')")
    play_command = command("player", "play_command", ["aplay", "-q"])
    fallback = text("player", "fallback_file")
    output_latency_ms = number("player", "output_latency_ms", 0.0, 0.0)
    if output_latency_ms > MAX_OUTPUT_LATENCY_MS:
        raise fail(f"player.output_latency_ms must be at most {MAX_OUTPUT_LATENCY_MS:g} (measured, not guessed)")
    if fallback and not (base_dir / fallback).is_file():
        raise fail(f"player.fallback_file {base_dir / fallback} does not exist")
    gpio_pin = sections["amplifier"].get("gpio_pin")
    if gpio_pin is not None and (isinstance(gpio_pin, bool) or not isinstance(gpio_pin, int)
                                 or not 0 <= gpio_pin <= 27):
        raise fail("amplifier.gpio_pin must be a BCM GPIO number from 0 to 27")
    volume_backend = text("volume", "backend", "none")
    if volume_backend not in ("amixer", "file", "none"):
        raise fail("volume.backend must be 'amixer', 'file' or 'none'")
    mixer_file = text("volume", "file")
    if volume_backend == "file" and not mixer_file:
        raise fail("volume.file is required with the file backend")
    quota_mb = sections["cache"].get("quota_mb")
    if quota_mb is not None and (isinstance(quota_mb, bool) or not isinstance(quota_mb, int) or quota_mb < 1):
        raise fail("cache.quota_mb must be a whole number of megabytes >= 1")
    password = secret("mqtt", "password")
    ca_file = text("mqtt", "ca_file")
    if ca_file and not (base_dir / ca_file).is_file():
        raise fail(f"mqtt.ca_file {base_dir / ca_file} does not exist")
    return AgentConfig(
        agent_id=agent_id,
        state_dir=(base_dir / state_dir).resolve(),
        mqtt_url=mqtt_url,
        mqtt_username=text("mqtt", "username") or agent_id,
        mqtt_password=password if password is not None else token,
        token=token,
        player_backend=backend,
        sink_path=(base_dir / sink).resolve() if sink else None,
        alsa_device=text("player", "device", "default") or "default",
        ffmpeg=text("player", "ffmpeg", os.environ.get("LOA_FFMPEG", "ffmpeg")) or "ffmpeg",
        play_command=play_command,
        keepalive_s=int(number("mqtt", "keepalive_s", 30, 5)),
        heartbeat_s=number("agent", "heartbeat_s", 30.0, 0.2),
        outbox_resend_s=number("agent", "outbox_resend_s", 15.0, 0.2),
        http_timeout_s=number("http", "timeout_s", 30.0, 1.0),
        groups=tuple(groups),
        mqtt_ca_file=(base_dir / ca_file).resolve() if ca_file else None,
        fallback_file=(base_dir / fallback).resolve() if fallback else None,
        output_latency_ms=output_latency_ms,
        gpio_pin=gpio_pin,
        gpio_active_high=flag("amplifier", "active_high", True),
        amplifier_warmup_s=number("amplifier", "warmup_s", 2.0, 0.0),
        amplifier_hold_s=number("amplifier", "hold_s", 10.0, 0.0),
        volume_backend=volume_backend or "none",
        mixer_card=text("volume", "card", "0") or "0",
        mixer_control=text("volume", "control", "PCM") or "PCM",
        mixer_file=(base_dir / mixer_file).resolve() if mixer_file else None,
        normal_volume_percent=percent("volume", "normal_percent", 80),
        emergency_volume_percent=percent("volume", "emergency_percent", 100),
        cache_quota_bytes=quota_mb * 1024 * 1024 if quota_mb is not None else None,
        ntp_fault_ms=number("clock", "ntp_fault_ms", 50.0, 1.0),
        server_clock_fault_ms=number("clock", "server_fault_ms", 250.0, 1.0),
        allow_reboot=flag("agent", "allow_reboot", False),
        reboot_command=command("agent", "reboot_command", ["systemctl", "reboot"]),
    )
