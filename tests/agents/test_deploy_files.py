"""The agent's deployment files: systemd watchdog wiring and a syntactically valid install script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "agent"


def unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in (DEPLOY / "loa-agent.service").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings[key.strip()] = value.strip()
    return settings


def test_the_unit_uses_the_watchdog_the_agent_feeds() -> None:
    unit = unit_settings()
    assert unit["Type"] == "notify" and unit["NotifyAccess"] == "main"
    assert int(unit["WatchdogSec"]) >= 10 and unit["Restart"] == "always"


def test_install_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(DEPLOY / "install.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed here")
def test_install_script_is_shellcheck_clean() -> None:
    result = subprocess.run(["shellcheck", str(DEPLOY / "install.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_install_script_refuses_bad_arguments_before_touching_the_system() -> None:
    result = subprocess.run(["bash", str(DEPLOY / "install.sh"), "/nonexistent", "--time-sync", "ntpd"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "--time-sync must be chrony or timesyncd" in result.stderr
