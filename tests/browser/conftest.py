"""A real server (embedded broker, SQLite) with simulated agents, and Debian's Chromium driven by Playwright.

The server is `loa server` in its own process (tests/e2e/harness.py); the loudspeaker clusters are the real
agent code run by `loa sim` in one process. Playwright never downloads a browser here: it launches
/usr/bin/chromium (`.ci/run` installs the Debian package).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.db import Database
from server.directory import area_by_code, create_user
from server.permissions import Role
from tests.conftest import free_port
from tests.e2e.harness import PASSWORD, System

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
SIM_AGENTS = 2


class ReviewedSystem(System):
    """The e2e system with broadcast review on (the approval queue is tested here) and a 96 h planning
    horizon, so that a weekday 05:30 slot always has an occurrence in a dry run, whatever today is."""

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({"LOA_BROADCAST_REVIEW": "true", "LOA_HORIZON_HOURS": "96"})
        return env


class Console:
    """The running system, its simulated clusters and the names the tests log in with."""

    def __init__(self, system: System, sim: subprocess.Popen[bytes]) -> None:
        self.system = system
        self.sim = sim
        self.base_url = system.base_url
        suffix = system.suffix
        self.editor = f"editor-a-{suffix}"
        self.approver = f"approver-{suffix}"
        self.admin = f"admin-{suffix}"
        self.locked_user = f"khoa-{suffix}"
        self.changer = f"doimk-{suffix}"
        self.province_editor = f"editor-p-{suffix}"
        self.province = system.area("p")
        self.commune_a = system.area("a")
        self.commune_b = system.area("b")
        self.device_b = f"t{suffix}-b1"
        self.sim_agents = [f"sim-{self.commune_a.lower()}-{i:04d}" for i in range(1, SIM_AGENTS + 1)]

    def api(self, username: str) -> contextlib.closing[httpx.Client]:
        """An API client logged in as ``username`` (bearer token), closed at the end of the ``with``."""
        return contextlib.closing(self.system.login(username))


def _wait_online(console: Console, timeout: float = 60) -> None:
    with console.api(console.admin) as client:
        deadline = time.monotonic() + timeout
        states: dict[str, Any] = {}
        while time.monotonic() < deadline:
            states = {d["agent_id"]: d["state"] for d in client.get("/api/v1/devices").json()}
            if all(states.get(a) == "online" for a in console.sim_agents):
                return
            time.sleep(0.3)
    raise TimeoutError(f"simulated agents not online: {states}")


@pytest.fixture(scope="package")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium not found at /usr/bin/chromium: install the Debian package 'chromium' (.ci/run does)")
    root = tmp_path_factory.mktemp("browser")
    system = ReviewedSystem(root=root, broker_url=f"mqtt://127.0.0.1:{free_port()}", embedded=True,
                    database_url=f"sqlite:///{root / 'loa.sqlite3'}")
    system.seed({"a": 0, "b": 1})
    db = Database(system.database_url)
    db.start()
    try:
        with db.session() as session:
            commune_a = area_by_code(session, system.area("a")).id
            for name in ("khoa", "doimk"):
                create_user(session, username=f"{name}-{system.suffix}", password=PASSWORD, full_name=name.title(),
                            grants=[(Role.EDITOR, commune_a)])
            create_user(session, username=f"editor-p-{system.suffix}", password=PASSWORD, full_name="Editor P",
                        grants=[(Role.EDITOR, area_by_code(session, system.area("p")).id)])
    finally:
        db.stop()
    sim: subprocess.Popen[bytes] | None = None
    try:
        system.start_server()
        log = (root / "sim.log").open("ab")
        sim = subprocess.Popen([sys.executable, "-m", "server.cli", "sim", "--server", system.base_url,
                                "--broker", system.broker_url, "--agents", str(SIM_AGENTS), "--area", system.area("a"),
                                "--username", f"admin-{system.suffix}", "--password", PASSWORD,
                                "--state-dir", str(root / "sim")], stdout=log, stderr=subprocess.STDOUT)
        running = Console(system, sim)
        _wait_online(running)
        yield running
    finally:
        if sim is not None and sim.poll() is None:
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        system.stop()


@pytest.fixture(scope="package")
def browser(console: Console) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Any, console: Console) -> Iterator[Any]:
    """Opens fresh browser contexts (own cookies) at 1000 px wide, Vietnamese, in Viet Nam time."""
    contexts: list[Any] = []

    def open_page() -> Any:
        context = browser.new_context(base_url=console.base_url, viewport={"width": 1000, "height": 760},
                                      locale="vi-VN", timezone_id="Asia/Ho_Chi_Minh", accept_downloads=True)
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def log_in(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-submit")


def screenshot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
