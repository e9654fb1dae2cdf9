"""deploy/mosquitto/loa.acl confines each agent to its own topics, checked against a real Mosquitto.

The broker is started here with the repository's ACL file, a generated password file and a plain
loopback listener (the production TLS listener needs certificates this test does not have).
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import hashlib
import os
import queue
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import free_port, wait_port

pytestmark = pytest.mark.mosquitto

ACL_FILE = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "loa.acl"
USERS = {"loa-server": "server-secret-0123456789", "tq-a-c01": "agent-a-secret-0123456789",
         "tq-b-c01": "agent-b-secret-0123456789"}
TIMEOUT = 5.0


def pbkdf2_entry(username: str, password: str) -> str:
    """One line in Mosquitto 2's PBKDF2-SHA512 format, as `mosquitto_passwd` writes it."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, dklen=64)
    return f"{username}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str], *, use_tool: bool = True) -> None:
    tool = shutil.which("mosquitto_passwd") if use_tool else None
    if tool is None:
        path.write_text("".join(pbkdf2_entry(u, p) + "\n" for u, p in users.items()))
    else:
        path.touch()
        for username, password in users.items():
            subprocess.run([tool, "-b", str(path), username, password], check=True, capture_output=True)
    os.chmod(path, 0o600)


@contextlib.contextmanager
def mosquitto(tmp: Path, passwords: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A Mosquitto on a free loopback port with `passwords` and the repository's ACL: (port, process)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto binary not found: install the Debian package 'mosquitto'")
    port = free_port()
    conf = tmp / "mosquitto.conf"
    # `user` = ourselves: as root, Mosquitto would otherwise switch to the 'mosquitto' user, which cannot
    # read pytest's private temporary directory.
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\npersistence false\n"
                    f"allow_anonymous false\npassword_file {passwords}\nacl_file {ACL_FILE}\n")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, timeout=5)
    except TimeoutError:
        process.kill()
        pytest.fail(f"mosquitto did not start: {process.communicate()[1].decode()[-500:]}")
    try:
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def broker(tmp: Path, *, use_tool: bool = True) -> Iterator[int]:
    passwords = tmp / "loa.passwd"
    write_password_file(passwords, USERS, use_tool=use_tool)
    with mosquitto(tmp, passwords) as (port, _process):
        yield port


class Client:
    """A paho client with blocking helpers: connect, subscribe (returns the granted codes), publish."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connected = threading.Event()
        self.connect_reason: Any = None
        self._subacks: queue.Queue[list[Any]] = queue.Queue()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{username}-{secrets.token_hex(3)}")
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self._subacks.put(list(codes))
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connect_reason = reason
        self._connected.set()

    def wait_connected(self) -> bool:
        assert self._connected.wait(TIMEOUT), "no CONNACK"
        return not self.connect_reason.is_failure

    def subscribe(self, topic: str) -> bool:
        """True when the broker granted the subscription (which does not mean messages will arrive)."""
        self.client.subscribe(topic, qos=1)
        codes = self._subacks.get(timeout=TIMEOUT)
        return not codes[0].is_failure

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)

    def received_until(self, marker_topic: str) -> list[str]:
        """Topics received up to and including the marker (Mosquitto keeps one publisher's order)."""
        topics = []
        while True:
            topic, _payload = self.messages.get(timeout=TIMEOUT)
            topics.append(topic)
            if topic == marker_topic:
                return topics

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[dict[str, Client]]:
    with broker(tmp_path) as port:
        opened = {name: Client(port, name, password) for name, password in USERS.items()}
        try:
            for client in opened.values():
                assert client.wait_connected()
            yield opened
        finally:
            for client in opened.values():
                client.close()


def test_an_agent_publishes_only_its_own_topics(clients: dict[str, Client]) -> None:
    server, agent = clients["loa-server"], clients["tq-a-c01"]
    assert server.subscribe("loa/v1/#")
    allowed = [f"loa/v1/agent/tq-a-c01/{leaf}" for leaf in ("state", "event", "plan/ack", "cmd/result")]
    refused = ["loa/v1/agent/tq-b-c01/plan", "loa/v1/agent/tq-b-c01/state", "loa/v1/agent/tq-a-c01/plan",
               "loa/v1/group/xa-tantrao/cmd", "loa/v1/server/state"]
    for topic in allowed[:2] + refused + allowed[2:]:
        agent.publish(topic, b"{}")
    marker = "loa/v1/agent/tq-a-c01/heartbeat"
    agent.publish(marker, b"{}")
    assert server.received_until(marker) == [*allowed, marker]


def test_an_agent_receives_only_its_own_topics_its_groups_and_the_server_state(clients: dict[str, Client]) -> None:
    server, agent = clients["loa-server"], clients["tq-a-c01"]
    allowed = ["loa/v1/agent/tq-a-c01/plan", "loa/v1/agent/tq-a-c01/cmd", "loa/v1/agent/tq-a-c01/event/ack",
               "loa/v1/group/xa-tantrao/cmd", "loa/v1/server/state"]
    # Mosquitto 2.0 grants these subscriptions (SUBACK) and enforces "read" at delivery, so the test
    # checks what arrives rather than the SUBACK.
    refused = ["loa/v1/agent/tq-b-c01/plan", "loa/v1/agent/tq-b-c01/cmd", "loa/v1/agent/tq-b-c01/state"]
    for topic in allowed + refused:
        agent.subscribe(topic)
    for topic in refused[:1] + allowed[:3] + refused[1:] + allowed[3:]:
        server.publish(topic, b"{}")
    assert agent.received_until(allowed[-1]) == allowed


def test_wrong_or_missing_credentials_are_refused(tmp_path: Path) -> None:
    with broker(tmp_path) as port:
        for username, password in (("tq-a-c01", "agent-b-secret-0123456789"), ("nobody", "x" * 20)):
            intruder = Client(port, username, password)
            try:
                assert not intruder.wait_connected(), username
            finally:
                intruder.close()


def test_the_fallback_password_format_is_accepted(tmp_path: Path) -> None:
    """The Python PBKDF2 writer, used where mosquitto_passwd is missing, produces what Mosquitto reads."""
    with broker(tmp_path, use_tool=False) as port:
        agent = Client(port, "tq-a-c01", USERS["tq-a-c01"])
        try:
            assert agent.wait_connected()
        finally:
            agent.close()
