"""The server keeps a real Mosquitto's password file in step: register, rotate and remove a device through
API v1 and watch what the broker lets in (the repository's ACL file, the server's own account included)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agents.protocol import Topics
from server.app import create_app
from server.directory import create_area, create_user
from server.permissions import Role
from server.runtime import Runtime
from server.security import mosquitto_password_hash
from server.settings import Settings
from tests.deploy.test_mosquitto_acl import Client, mosquitto

pytestmark = pytest.mark.mosquitto

SERVER_USER, SERVER_PASSWORD = "loa-server", "server-secret-0123456789"
ADMIN_PASSWORD = "mat-khau-thu-nghiem-1"


@dataclass
class Setup:
    client: TestClient
    runtime: Runtime
    port: int
    headers: dict[str, str]
    password_file: Path


def connects(port: int, username: str, password: str) -> bool:
    client = Client(port, username, password)
    try:
        return client.wait_connected()
    finally:
        client.close()


def eventually(port: int, username: str, password: str, *, allowed: bool, timeout: float = 5.0) -> bool:
    """The broker re-reads its file on SIGHUP, a moment after the reload command returns."""
    deadline = time.monotonic() + timeout
    while True:
        if connects(port, username, password) == allowed:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def retained(port: int, topic: str) -> bytes | None:
    """The retained message on `topic`, read as the server's account (None when there is none)."""
    client = Client(port, SERVER_USER, SERVER_PASSWORD)
    try:
        assert client.wait_connected() and client.subscribe(topic)
        try:
            return client.messages.get(timeout=0.5)[1]
        except queue.Empty:
            return None
    finally:
        client.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    password_file = tmp_path / "loa.passwd"
    # The broker needs a file to start with; the server rewrites it at its own start.
    password_file.write_text(f"{SERVER_USER}:{mosquitto_password_hash(SERVER_PASSWORD)}\n")
    with mosquitto(tmp_path, password_file) as (port, broker):
        settings = Settings(data_dir=tmp_path / "data", embedded_broker=False, broker_url=f"mqtt://127.0.0.1:{port}",
                            broker_username=SERVER_USER, broker_password=SERVER_PASSWORD, tts_online=False,
                            broker_password_file=password_file,
                            broker_reload_command=["kill", "-HUP", str(broker.pid)])
        runtime = Runtime(settings)
        with TestClient(create_app(settings, runtime=runtime)) as client:
            with runtime.db.session() as db:
                area = create_area(db, code="XA", name="Xã An", kind="commune", parent_code=None)
                create_user(db, username="xadmin", password=ADMIN_PASSWORD, full_name="X",
                            grants=[(Role.ADMIN, area.id)])
                db.commit()
            login = client.post("/api/v1/auth/login", json={"username": "xadmin", "password": ADMIN_PASSWORD})
            assert login.status_code == 200, login.text
            client.cookies.clear()
            yield Setup(client=client, runtime=runtime, port=port,
                        headers={"Authorization": f"Bearer {login.json()['token']}"}, password_file=password_file)


def test_register_rotate_and_remove_take_effect_on_the_broker_at_once(setup: Setup) -> None:
    assert setup.client.get("/api/v1/health").json()["broker_connected"]  # the server's own line still works
    created = setup.client.post("/api/v1/devices", headers=setup.headers,
                                json={"agent_id": "tq-xa-c01", "name": "Cụm 1", "area_code": "XA"})
    assert created.status_code == 201, created.text
    assert created.json()["broker_account"] == "updated"
    first = created.json()["token"]
    assert eventually(setup.port, "tq-xa-c01", first, allowed=True)
    assert not connects(setup.port, "tq-xa-c01", "not-the-secret")

    online = Client(setup.port, "tq-xa-c01", first)  # the agent, connected with the secret that leaks
    assert online.wait_connected()
    dropped = threading.Event()
    online.client.on_disconnect = lambda *_args: dropped.set()
    rotated = setup.client.post("/api/v1/devices/tq-xa-c01/secret", headers=setup.headers)
    assert rotated.status_code == 200 and rotated.json()["broker_account"] == "updated"
    second = rotated.json()["token"]
    assert eventually(setup.port, "tq-xa-c01", first, allowed=False)  # a leaked secret is shut out
    assert connects(setup.port, "tq-xa-c01", second)
    assert dropped.wait(5)  # Mosquitto re-checks connected clients when it reloads: the old session ends too
    online.close()

    plan_topic = Topics.plan("tq-xa-c01")
    assert retained(setup.port, plan_topic) is not None  # the planner published its (empty) plan, retained
    removed = setup.client.delete("/api/v1/devices/tq-xa-c01", headers=setup.headers)
    assert removed.status_code == 204
    deadline = time.monotonic() + 5
    while retained(setup.port, plan_topic) is not None:  # the server cleared it from the broker
        assert time.monotonic() < deadline, "the removed device's plan is still retained on the broker"
    assert eventually(setup.port, "tq-xa-c01", second, allowed=False)
    assert connects(setup.port, SERVER_USER, SERVER_PASSWORD)
    assert "tq-xa-c01" not in setup.password_file.read_text()


def test_the_servers_own_account_cannot_be_registered_as_a_device(setup: Setup) -> None:
    refused = setup.client.post("/api/v1/devices", headers=setup.headers,
                                json={"agent_id": SERVER_USER, "name": "x", "area_code": "XA"})
    assert refused.status_code == 409 and "broker account" in refused.text
