"""The agent's TOML configuration: a full valid file, and one readable ConfigError per mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents.config import AgentConfig, load_config
from agents.errors import AgentError, ConfigError

TOKEN = "s3cret-token-0123456789"
MQTT_SECRET = "mqtt-password-abcdef"

FULL = """\
agent_id = "tq-08740-c01"
state_dir = "state"

[mqtt]
url = "mqtts://loa.example.gov.vn:8883"
username = "loa-agent"
password_file = "secrets/mqtt"
keepalive_s = 45

[http]
token_file = "secrets/token"
timeout_s = 12.5

[player]
backend = "file"
sink = "out/played.jsonl"
device = "hw:1,0"
ffmpeg = "/opt/ffmpeg/bin/ffmpeg"
play_command = ["aplay", "-q", "-D", "hw:1,0"]

[agent]
heartbeat_s = 10
groups = ["area-01", "area-01.b_2"]
outbox_resend_s = 2.5
"""

MINIMAL = f"""\
agent_id = "tq-1"
state_dir = "/var/lib/loa-agent"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[http]
token = "{TOKEN}"
"""


def write_secret(path: Path, value: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "etc" / "loa-agent"
    write_secret(directory / "secrets" / "token", TOKEN + "\n")
    write_secret(directory / "secrets" / "mqtt", MQTT_SECRET)
    return directory


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(directory: Path, text: str) -> AgentConfig:
    return load_config(write_config(directory, text))


def config_error(directory: Path, text: str, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(directory, text)
    message = str(info.value)
    assert str(directory / "agent.toml") in message  # says which file
    for fragment in fragments:
        assert fragment in message, message
    return message


def replace_line(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


# --- Valid files ------------------------------------------------------------------------------------

def test_full_config_loads_every_key(conf_dir: Path) -> None:
    config = load_text(conf_dir, FULL)
    base = conf_dir.resolve()
    assert config == AgentConfig(
        agent_id="tq-08740-c01", state_dir=base / "state", mqtt_url="mqtts://loa.example.gov.vn:8883",
        mqtt_username="loa-agent", mqtt_password=MQTT_SECRET, token=TOKEN, player_backend="file",
        sink_path=base / "out" / "played.jsonl", alsa_device="hw:1,0", ffmpeg="/opt/ffmpeg/bin/ffmpeg",
        play_command=("aplay", "-q", "-D", "hw:1,0"), keepalive_s=45, heartbeat_s=10.0, outbox_resend_s=2.5,
        http_timeout_s=12.5, groups=("area-01", "area-01.b_2"))


def test_paths_are_relative_to_the_file_not_the_working_directory(
        conf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(write_config(conf_dir, FULL))
    assert config.state_dir == (conf_dir / "state").resolve()
    assert config.sink_path == (conf_dir / "out" / "played.jsonl").resolve()
    assert config.token == TOKEN  # read from secrets/token next to the file, newline stripped
    assert config.state_dir.is_absolute()


def test_minimal_config_takes_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOA_FFMPEG", raising=False)
    config = load_text(tmp_path, MINIMAL)
    assert config == AgentConfig(agent_id="tq-1", state_dir=Path("/var/lib/loa-agent"),
                                 mqtt_url="mqtt://127.0.0.1:1883", mqtt_username="tq-1", mqtt_password=TOKEN,
                                 token=TOKEN, player_backend="alsa")
    assert config.play_command == ("aplay", "-q")
    assert config.groups == ()


def test_inline_mqtt_password_and_ffmpeg_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOA_FFMPEG", "/usr/local/bin/ffmpeg")
    text = MINIMAL.replace("[http]", f'password = "{MQTT_SECRET}"\n\n[http]')
    config = load_text(tmp_path, text)
    assert config.mqtt_password == MQTT_SECRET
    assert config.ffmpeg == "/usr/local/bin/ffmpeg"


def test_config_error_is_an_agent_error(tmp_path: Path) -> None:
    with pytest.raises(AgentError):
        load_config(tmp_path / "missing.toml")


# --- One error per mistake --------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "agent.toml"
    with pytest.raises(ConfigError, match="no such configuration file") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "agent.toml")


def test_invalid_toml(tmp_path: Path) -> None:
    config_error(tmp_path, 'agent_id = "tq-1\n[mqtt\n', "not valid TOML")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'agent_id = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(path)


def test_unknown_top_level_key(conf_dir: Path) -> None:
    config_error(conf_dir, FULL + '\n[logging]\nlevel = "debug"\n', "unknown key(s) logging")
    config_error(conf_dir, "agent_ids = 1\n" + FULL, "unknown key(s) agent_ids")


def test_unknown_key_in_a_section(conf_dir: Path) -> None:
    text = replace_line(FULL, "keepalive_s = 45", "keepalive_s = 45\nport = 8883\nhost = \"x\"")
    config_error(conf_dir, text, "unknown key(s) in [mqtt]: host, port")
    text = replace_line(FULL, "heartbeat_s = 10", "heartbeat = 10")
    config_error(conf_dir, text, "unknown key(s) in [agent]: heartbeat")


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    config_error(tmp_path, 'player = "alsa"\n' + MINIMAL, "[player] must be a table")


def test_missing_agent_id(tmp_path: Path) -> None:
    config_error(tmp_path, replace_line(MINIMAL, 'agent_id = "tq-1"\n', ""), "agent_id is required")


@pytest.mark.parametrize("agent_id", ["TQ-1", "tq/1", "tq 1", "-tq", "", "a" * 64, "tq+1"])
def test_invalid_agent_id(tmp_path: Path, agent_id: str) -> None:
    text = replace_line(MINIMAL, 'agent_id = "tq-1"', f'agent_id = "{agent_id}"')
    config_error(tmp_path, text, "agent_id", "lowercase letters, digits")


def test_agent_id_of_the_wrong_type(tmp_path: Path) -> None:
    config_error(tmp_path, replace_line(MINIMAL, 'agent_id = "tq-1"', "agent_id = 7"), "agent_id must be a string")


def test_missing_state_dir(tmp_path: Path) -> None:
    text = replace_line(MINIMAL, 'state_dir = "/var/lib/loa-agent"\n', "")
    config_error(tmp_path, text, "state_dir is required")


def test_missing_mqtt_url(tmp_path: Path) -> None:
    text = replace_line(MINIMAL, 'url = "mqtt://127.0.0.1:1883"\n', "")
    config_error(tmp_path, text, "mqtt.url is required", "mqtt://")


@pytest.mark.parametrize("url", ["http://127.0.0.1:1883", "tcp://broker:1883", "127.0.0.1:1883", "ws://b/mqtt"])
def test_non_mqtt_url(tmp_path: Path, url: str) -> None:
    text = replace_line(MINIMAL, 'url = "mqtt://127.0.0.1:1883"', f'url = "{url}"')
    config_error(tmp_path, text, "mqtt.url", "mqtt://", "mqtts://")


def test_missing_token(tmp_path: Path) -> None:
    text = replace_line(MINIMAL, f'token = "{TOKEN}"\n', "")
    config_error(tmp_path, text, "http.token (or http.token_file) is required")


def test_short_token(tmp_path: Path) -> None:
    text = replace_line(MINIMAL, f'token = "{TOKEN}"', 'token = "fifteen-chars-x"')
    config_error(tmp_path, text, "http.token", "at least 16 characters")


def test_empty_token_file(conf_dir: Path) -> None:
    write_secret(conf_dir / "secrets" / "token", "  \n")
    config_error(conf_dir, FULL, "http.token", "at least 16 characters")


def test_both_token_and_token_file(conf_dir: Path) -> None:
    text = replace_line(FULL, 'token_file = "secrets/token"', f'token_file = "secrets/token"\ntoken = "{TOKEN}"')
    config_error(conf_dir, text, "give either http.token or http.token_file, not both")


def test_both_mqtt_password_and_password_file(conf_dir: Path) -> None:
    text = replace_line(FULL, 'password_file = "secrets/mqtt"', 'password_file = "secrets/mqtt"\npassword = "p"')
    config_error(conf_dir, text, "give either mqtt.password or mqtt.password_file, not both")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_token_file_readable_by_group_or_others(conf_dir: Path, mode: int) -> None:
    token_path = write_secret(conf_dir / "secrets" / "token", TOKEN, mode)
    message = config_error(conf_dir, FULL, "readable by others", f"chmod 600 {token_path.resolve()}")
    assert TOKEN not in message  # never echoes the secret


def test_mqtt_password_file_readable_by_others(conf_dir: Path) -> None:
    path = write_secret(conf_dir / "secrets" / "mqtt", MQTT_SECRET, 0o644)
    config_error(conf_dir, FULL, f"chmod 600 {path.resolve()}")


def test_token_file_0400_is_fine(conf_dir: Path) -> None:
    write_secret(conf_dir / "secrets" / "token", TOKEN, 0o400)
    assert load_text(conf_dir, FULL).token == TOKEN


def test_missing_token_file(conf_dir: Path) -> None:
    os.remove(conf_dir / "secrets" / "token")
    config_error(conf_dir, FULL, "http.token_file", str((conf_dir / "secrets" / "token").resolve()),
                 "No such file")


def test_file_backend_without_sink(conf_dir: Path) -> None:
    text = replace_line(FULL, 'sink = "out/played.jsonl"\n', "")
    config_error(conf_dir, text, "player.sink is required with the file backend")


@pytest.mark.parametrize("backend", ["pulse", "ALSA", ""])
def test_bad_backend_name(tmp_path: Path, backend: str) -> None:
    config_error(tmp_path, MINIMAL + f'\n[player]\nbackend = "{backend}"\n', "player.backend must be 'alsa' or 'file'")


@pytest.mark.parametrize("groups", ['"area-01"', '["Area-01"]', '["area/01"]', "[1]", '["area-01", ""]', "{}"])
def test_groups_not_a_list_of_valid_ids(tmp_path: Path, groups: str) -> None:
    config_error(tmp_path, MINIMAL + f"\n[agent]\ngroups = {groups}\n", "agent.groups must be a list of group ids")


@pytest.mark.parametrize("value", ["-1", "0", "0.1", "true", '"30"'])
def test_bad_heartbeat(tmp_path: Path, value: str) -> None:
    config_error(tmp_path, MINIMAL + f"\n[agent]\nheartbeat_s = {value}\n", "agent.heartbeat_s must be a number >= 0.2")


def test_keepalive_below_minimum(tmp_path: Path) -> None:
    text = replace_line(MINIMAL, 'url = "mqtt://127.0.0.1:1883"', 'url = "mqtt://127.0.0.1:1883"\nkeepalive_s = 2')
    config_error(tmp_path, text, "mqtt.keepalive_s must be a number >= 5")


@pytest.mark.parametrize("command", ["[]", '"aplay -q"', '["aplay", 1]'])
def test_bad_play_command(tmp_path: Path, command: str) -> None:
    config_error(tmp_path, MINIMAL + f"\n[player]\nplay_command = {command}\n",
                 "player.play_command must be a non-empty list of strings")


def test_string_value_of_the_wrong_type(tmp_path: Path) -> None:
    config_error(tmp_path, MINIMAL + "\n[player]\ndevice = 3\n", "player.device must be a string")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_heartbeat(tmp_path: Path, value: str) -> None:
    config_error(tmp_path, MINIMAL + f"\n[agent]\nheartbeat_s = {value}\n", "agent.heartbeat_s")


def test_output_latency_is_read_in_milliseconds_and_bounded(tmp_path: Path) -> None:
    assert load_text(tmp_path, MINIMAL).output_latency_ms == 0.0
    with_latency = MINIMAL + '\n[player]\noutput_latency_ms = 85.5\n'
    assert load_text(tmp_path, with_latency).output_latency_ms == 85.5
    config_error(tmp_path, MINIMAL + '\n[player]\noutput_latency_ms = -5\n', "player.output_latency_ms", ">= 0")
    config_error(tmp_path, MINIMAL + '\n[player]\noutput_latency_ms = 2500\n', "at most 1000")
    config_error(tmp_path, MINIMAL + '\n[player]\noutput_latency_ms = "fast"\n', "player.output_latency_ms")
