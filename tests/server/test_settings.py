"""Server settings: validated at start, with messages that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ConfigError
from server.settings import load_settings


def test_defaults_are_the_embedded_ones(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.embedded_broker and settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_public_url == "http://127.0.0.1:8000"


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        load_settings(environment="production")
    assert load_settings(environment="production", secret_key="x" * 40).environment == "production"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("broker_url", "http://broker", "mqtt://"),
    ("database_url", "mysql://db", "postgresql"),
    ("http_port", 70000, "http_port"),
    ("horizon_hours", 0, "horizon_hours"),
])
def test_invalid_values_name_the_setting(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**{field: value})


def test_config_file_is_read_and_environment_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text('http_port = 9001\nhorizon_hours = 24\n')
    monkeypatch.setenv("LOA_HORIZON_HOURS", "12")
    settings = load_settings(config)
    assert settings.http_port == 9001 and settings.horizon_hours == 12


def test_bad_config_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("http_port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('databse_url = "sqlite://"\n')
    with pytest.raises(ConfigError, match="databse_url"):
        load_settings(unknown)
