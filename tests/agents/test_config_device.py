"""Configuration of the device parts: amplifier relay, volume, cache quota, clock limits, fallback, reboot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents.config import load_config
from agents.errors import ConfigError
from agents.runtime import make_amplifier, make_volume

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "agent" / "agent.toml.example"
BASE = """\
agent_id = "tq-1"
state_dir = "state"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[http]
token = "s3cret-token-0123456789"
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(BASE + extra)
    return path


def test_the_shipped_example_is_valid(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace('token_file = "/etc/loa-agent/secret"', 'token = "s3cret-token-0123456789"')
    path = tmp_path / "agent.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.volume_backend == "amixer" and config.mixer_control == "PCM"
    assert config.amplifier_warmup_s == 2 and config.amplifier_hold_s == 10 and config.gpio_pin is None
    assert config.cache_quota_bytes == 2048 * 1024 * 1024 and config.ntp_fault_ms == 50
    assert config.allow_reboot is False and config.reboot_command == ("systemctl", "reboot")


def test_device_sections(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "fallback.mp3")  # any existing file
    config = load_config(write(tmp_path, """
[player]
backend = "file"
sink = "sink.jsonl"
fallback_file = "fallback.mp3"

[amplifier]
gpio_pin = 17
active_high = false
warmup_s = 1.5
hold_s = 30

[volume]
backend = "file"
file = "mixer.txt"
normal_percent = 70
emergency_percent = 95

[cache]
quota_mb = 10

[clock]
ntp_fault_ms = 20
server_fault_ms = 400

[agent]
allow_reboot = true
reboot_command = ["/usr/bin/systemctl", "reboot"]
"""))
    assert config.fallback_file == tmp_path / "fallback.mp3"
    assert (config.gpio_pin, config.gpio_active_high, config.amplifier_warmup_s) == (17, False, 1.5)
    assert config.mixer_file == tmp_path / "mixer.txt" and config.normal_volume_percent == 70
    assert config.cache_quota_bytes == 10 * 1024 * 1024
    assert (config.ntp_fault_ms, config.server_clock_fault_ms) == (20, 400)
    assert config.allow_reboot and config.reboot_command == ("/usr/bin/systemctl", "reboot")
    assert make_amplifier(config).warmup_s == 1.5
    assert make_volume(config).emergency_percent == 95


def test_without_a_relay_there_is_no_warm_up(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[amplifier]\nwarmup_s = 3\n"))
    assert config.gpio_pin is None and make_amplifier(config).warmup_s == 0


@pytest.mark.parametrize(("extra", "message"), [
    ("[amplifier]\ngpio_pin = 40\n", "amplifier.gpio_pin must be a BCM GPIO number"),
    ("[amplifier]\nactive_high = 1\n", "amplifier.active_high must be true or false"),
    ("[amplifier]\nwarmup_s = -1\n", "amplifier.warmup_s must be a number >= 0"),
    ("[volume]\nbackend = \"pulse\"\n", "volume.backend must be 'amixer', 'file' or 'none'"),
    ("[volume]\nbackend = \"file\"\n", "volume.file is required"),
    ("[volume]\nnormal_percent = 120\n", "volume.normal_percent must be an integer from 0 to 100"),
    ("[cache]\nquota_mb = 0\n", "cache.quota_mb must be a whole number"),
    ("[clock]\nntp_fault_ms = 0\n", "clock.ntp_fault_ms must be a number >= 1"),
    ("[player]\nfallback_file = \"nope.mp3\"\n", "player.fallback_file"),
    ("[agent]\nallow_reboot = \"yes\"\n", "agent.allow_reboot must be true or false"),
    ("[agent]\nreboot_command = []\n", "agent.reboot_command must be a non-empty list"),
    ("[amplifier]\nrelay = 3\n", "unknown key(s) in [amplifier]: relay"),
])
def test_device_mistakes_are_refused_with_a_clear_message(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, extra))
    assert message in str(info.value)
