"""Real processes for end-to-end tests: one `loa server`, several `loa agent`, a real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from server.db import Database
from server.directory import create_area, create_user, register_device
from server.permissions import Role
from tests.conftest import free_port, wait_port

PASSWORD = "test-password-123"
VN = timezone(timedelta(hours=7))


@dataclass
class AgentProcess:
    agent_id: str
    area: str
    config: Path
    sink: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def sink_records(self) -> list[dict[str, Any]]:
        if not self.sink.exists():
            return []
        return [json.loads(line) for line in self.sink.read_text().splitlines() if line.strip()]


@dataclass
class System:
    root: Path
    broker_url: str
    embedded: bool
    database_url: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    http_port: int = field(default_factory=free_port)
    server: subprocess.Popen[bytes] | None = None
    agents: list[AgentProcess] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def area(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    # --- setup ----------------------------------------------------------------------------------

    def seed(self, devices_per_commune: dict[str, int]) -> None:
        db = Database(self.database_url)
        db.start()
        try:
            with db.session() as session:
                province = create_area(session, code=self.area("p"), name="Tỉnh Thử", kind="province",
                                       parent_code=None)
                communes = {}
                for commune in devices_per_commune:
                    communes[commune] = create_area(session, code=self.area(commune), name=f"Xã {commune}",
                                                    kind="commune", parent_code=province.code)
                create_user(session, username=f"editor-a-{self.suffix}", password=PASSWORD, full_name="Editor A",
                            grants=[(Role.EDITOR, communes["a"].id)])
                create_user(session, username=f"admin-{self.suffix}", password=PASSWORD, full_name="Admin",
                            grants=[(Role.ADMIN, province.id)])
                create_user(session, username=f"approver-{self.suffix}", password=PASSWORD, full_name="Approver",
                            grants=[(Role.APPROVER, province.id)])
                for commune, count in devices_per_commune.items():
                    for index in range(1, count + 1):
                        agent_id = f"t{self.suffix}-{commune}{index}"
                        _device, token = register_device(session, None, agent_id=agent_id, name=agent_id,
                                                          area_code=self.area(commune))
                        self.tokens[agent_id] = token
                        self.agents.append(self._agent_config(agent_id, commune))
        finally:
            db.stop()

    def _agent_config(self, agent_id: str, commune: str) -> AgentProcess:
        state = self.root / "agents" / agent_id
        state.mkdir(parents=True, exist_ok=True)
        secret = state / "secret"
        secret.write_text(self.tokens[agent_id])
        secret.chmod(0o600)
        config = state / "agent.toml"
        config.write_text(
            f'agent_id = "{agent_id}"\nstate_dir = "state"\n\n[mqtt]\nurl = "{self.broker_url}"\n\n'
            f'[http]\ntoken_file = "secret"\n\n[player]\nbackend = "file"\nsink = "sink.jsonl"\n\n'
            f'[agent]\nheartbeat_s = 1\noutbox_resend_s = 2\n')
        return AgentProcess(agent_id=agent_id, area=commune, config=config, sink=state / "sink.jsonl")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "LOA_DATA_DIR": str(self.root / "server"), "LOA_HTTP_PORT": str(self.http_port),
            "LOA_DATABASE_URL": self.database_url, "LOA_BROKER_URL": self.broker_url,
            "LOA_EMBEDDED_BROKER": "true" if self.embedded else "false", "LOA_TTS_ONLINE": "false",
            "LOA_SERVER_ID": f"loa-server-{self.suffix}",
            # These tests exercise transport and playout; the broadcast review is tested through the API.
            "LOA_BROADCAST_REVIEW": "false",
        })
        return env

    def start_server(self) -> None:
        log = (self.root / "server.log").open("ab")
        self.server = subprocess.Popen([sys.executable, "-m", "server.cli", "server"], env=self.env(),
                                       stdout=log, stderr=subprocess.STDOUT)
        wait_port("127.0.0.1", self.http_port, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = httpx.get(f"{self.base_url}/api/v1/health", timeout=5).json()
            if health["broker_connected"]:
                return
            time.sleep(0.1)
        raise TimeoutError("server never connected to the broker")

    def start_agent(self, agent: AgentProcess) -> None:
        agent.log = agent.config.parent / "agent.log"
        with agent.log.open("ab") as log:
            agent.process = subprocess.Popen([sys.executable, "-m", "server.cli", "agent", "--config",
                                              str(agent.config)], stdout=log, stderr=subprocess.STDOUT)

    def start_agents(self) -> None:
        for agent in self.agents:
            self.start_agent(agent)

    def wait_agents_online(self, timeout: float = 30) -> None:
        client = self.login(f"admin-{self.suffix}")
        deadline = time.monotonic() + timeout
        ids = {a.agent_id for a in self.agents}
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            response = client.get("/api/v1/devices")
            assert response.status_code == 200, response.text
            states = {d["agent_id"]: d["state"] for d in response.json() if d["agent_id"] in ids}
            if all(states.get(i) == "online" for i in ids):
                client.close()
                return
            time.sleep(0.2)
        client.close()
        raise TimeoutError(f"agents not online: {states}")

    def stop(self) -> None:
        for agent in self.agents:
            if agent.process is not None and agent.process.poll() is None:
                agent.process.terminate()
        for agent in self.agents:
            if agent.process is not None:
                try:
                    agent.process.wait(10)
                except subprocess.TimeoutExpired:
                    agent.process.kill()
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()

    # --- API helpers ----------------------------------------------------------------------------

    def login(self, username: str) -> httpx.Client:
        client = httpx.Client(base_url=self.base_url, timeout=30)
        response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        response.raise_for_status()
        client.headers["Authorization"] = f"Bearer {response.json()['token']}"
        client.cookies.clear()
        return client

    def approved_announcement(self, editor: httpx.Client, approver: httpx.Client, text: str) -> dict[str, Any]:
        created = editor.post("/api/v1/announcements", json={"title": "Thông báo", "text": text,
                                                             "area_code": self.area("a")})
        assert created.status_code == 201, created.text
        announcement_id = created.json()["id"]
        deadline = time.monotonic() + 60
        body: dict[str, Any] = created.json()
        while time.monotonic() < deadline and body["audio_status"] == "pending":
            time.sleep(0.1)
            body = editor.get(f"/api/v1/announcements/{announcement_id}").json()
        assert body["audio_status"] == "ready", body
        reviewed = approver.post(f"/api/v1/announcements/{announcement_id}/review", json={"approve": True})
        assert reviewed.status_code == 200, reviewed.text
        return dict(reviewed.json())


def at_vn(moment: datetime) -> str:
    """An ISO time with the +07:00 offset, as a Vietnamese console sends it."""
    return moment.astimezone(VN).isoformat(timespec="milliseconds")


def utcnow() -> datetime:
    return datetime.now(UTC)


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    return predicate()
