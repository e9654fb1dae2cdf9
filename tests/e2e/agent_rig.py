"""A rig for agent processes against a real Mosquitto: a broker we can stop and restart on one port, an
audio HTTP server whose answers the test controls, and a stand-in server that acknowledges events."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agents.protocol import AsRunEvent, AudioRef, EventAck, Plan, PlanItem, Topics, decode, encode
from schedules import Priority
from tests.conftest import free_port, port_open, wait_port


class Broker:
    """A private Mosquitto on a fixed port, stoppable and restartable (no persistence: a restart loses
    retained messages and sessions, the harshest case for the agent)."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._conf = root / "mosquitto.conf"
        self._conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                              "max_queued_messages 100000\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self._process = subprocess.Popen([binary, "-c", str(self._conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None
        deadline = time.monotonic() + 5
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


class AudioServer:
    """Serves audio by path; ``corrupt_first[path] = n`` answers the first n requests with wrong bytes."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.corrupt_first: dict[str, int] = {}
        self.hits: dict[str, int] = defaultdict(int)
        rig = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rig.hits[self.path] += 1
                body = rig.bodies.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                if rig.corrupt_first.get(self.path, 0) > 0:
                    rig.corrupt_first[self.path] -= 1
                    body = bytes(reversed(body))
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()

    def add(self, body: bytes, duration_ms: int) -> AudioRef:
        sha = hashlib.sha256(body).hexdigest()
        self.bodies[f"/audio/{sha}"] = body
        return AudioRef(sha256=sha, url=f"{self.base}/audio/{sha}", duration_ms=duration_ms, size_bytes=len(body))


@dataclass
class StandInServer:
    """Subscribes like the Loa server, stores each as-run event id once and acknowledges it."""

    broker: Broker
    events: dict[str, AsRunEvent] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _client: mqtt.Client | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"stand-in-{os.getpid()}",
                             clean_session=True)
        client.on_connect = lambda c, *_a: c.subscribe([(t, 1) for t in Topics.SERVER_SUBSCRIPTIONS])
        client.on_message = self._on_message
        client.reconnect_delay_set(0.1, 0.5)
        client.connect_async("127.0.0.1", self.broker.port)
        client.loop_start()
        self._client = client
        deadline = time.monotonic() + 10
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            try:
                self.messages.append((message.topic, json.loads(message.payload)))
            except ValueError:
                return
            if not message.topic.endswith("/event"):
                return
            event = decode(bytes(message.payload), expect=AsRunEvent)
            assert isinstance(event, AsRunEvent)
            self.deliveries[event.event_id] += 1
            self.events.setdefault(event.event_id, event)
        client.publish(Topics.event_ack(event.agent_id), encode(EventAck(event_ids=(event.event_id,))), qos=1)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        assert self._client is not None
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def on(self, leaf: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for t, m in self.messages if t.endswith("/" + leaf)]

    def kinds(self, agent_id: str) -> list[tuple[str, str]]:
        with self._lock:
            found = sorted((e for e in self.events.values() if e.agent_id == agent_id),
                           key=lambda e: (e.session, e.seq))
        return [(e.item_id, e.kind) for e in found]


@dataclass
class AgentProc:
    agent_id: str
    root: Path
    broker_url: str
    groups: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def sink(self) -> Path:
        return self.root / "sink.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "agent.log"

    def write_config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "agent.toml"
        groups = ", ".join(f'"{g}"' for g in self.groups)
        config.write_text(
            f'agent_id = "{self.agent_id}"\nstate_dir = "state"\n\n[mqtt]\nurl = "{self.broker_url}"\n\n'
            f'[http]\ntoken = "agent-token-0123456789"\n\n[player]\nbackend = "file"\nsink = "sink.jsonl"\n\n'
            f'[agent]\nheartbeat_s = 1\noutbox_resend_s = 1\ngroups = [{groups}]\n')
        return config

    def start(self) -> None:
        config = self.write_config()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "server.cli", "agent", "--config", str(config)],
                                            stdout=log, stderr=subprocess.STDOUT)

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def records(self) -> list[dict[str, Any]]:
        if not self.sink.exists():
            return []
        return [json.loads(line) for line in self.sink.read_text().splitlines() if line.strip()]

    def starts(self, item_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == "start" and r["item_id"] == item_id]


def plan_item(item_id: str, audio: AudioRef, play_at: datetime, *, priority: Priority = Priority.NORMAL,
              **optional: Any) -> PlanItem:
    return PlanItem(id=item_id, broadcast_id=int(hashlib.sha256(item_id.encode()).hexdigest()[:6], 16),
                    title=item_id, priority=priority, play_at=play_at, audio=audio, **optional)


def plan_payload(agent_id: str, version: int, *items: PlanItem, groups: tuple[str, ...] = ()) -> bytes:
    return encode(Plan(agent_id=agent_id, version=version, issued_at=datetime.now(UTC), items=items, groups=groups))



def utc_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
