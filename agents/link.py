"""An MQTT connection driven by an asyncio event loop.

paho-mqtt's own threaded loop disconnected under load inside a busy asyncio process (measured here), so
paho is driven by the loop's socket callbacks instead: ``add_reader``/``add_writer`` on paho's socket
and a one-second housekeeping tick. One loop can then carry one agent, the server, or thousands of
simulated agents. The seam (`Link`) exists so the agent core never sees paho and tests can hand it a
fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agents.errors import ConfigError

log = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes], None]
ConnectHandler = Callable[[], None]


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    """Trust this CA for mqtts:// instead of the system store (a province's private CA)."""

    @classmethod
    def parse(cls, url: str, *, username: str | None = None, password: str | None = None,
              ca_file: str | None = None) -> BrokerAddress:
        """``mqtt://[user:pass@]host[:port]`` or ``mqtts://…``; explicit credentials override the URL's."""
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(f"broker URL {url!r} must start with mqtt:// or mqtts://")
        if not parsed.hostname:
            raise ConfigError(f"broker URL {url!r} has no host")
        tls = parsed.scheme in ("mqtts", "ssl")
        try:
            port = parsed.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"broker URL {url!r} has an invalid port") from exc
        return cls(host=parsed.hostname, port=port, tls=tls,
                   username=username if username is not None else (unquote(parsed.username or "") or None),
                   password=password if password is not None else (unquote(parsed.password or "") or None),
                   ca_file=ca_file)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class Link(Protocol):
    """What the agent core needs from a broker connection."""

    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool: ...

    def subscribe(self, topics: list[tuple[str, int]]) -> None: ...

    def unsubscribe(self, topics: list[str]) -> None: ...

    def set_will(self, will: Will | None) -> None: ...


class _PreconnectedClient(mqtt.Client):
    """paho opens its TCP connection with a blocking call; we open it with the event loop instead.

    paho has no public way to take an already connected socket, so this overrides its one socket
    factory (paho-mqtt 2.x, pinned below 3 in pyproject.toml).
    """

    preconnected: socket.socket | None = None

    def _create_socket_connection(self) -> socket.socket:
        sock, self.preconnected = self.preconnected, None
        if sock is None:
            raise OSError("no pre-connected socket")
        return sock


class MqttLink:
    """A persistent-session MQTT 3.1.1 client that reconnects with backoff and jitter.

    ``on_connect`` runs after every (re)connection; the caller (re)publishes its birth there.
    ``set_will`` takes effect at the next connection, which lets the caller put a fresh session
    number in the will before each connect.
    """

    def __init__(
        self,
        *,
        client_id: str,
        address: BrokerAddress,
        on_message: MessageHandler,
        on_connect: ConnectHandler | None = None,
        before_connect: Callable[[], None] | None = None,
        keepalive_s: int = 30,
        clean_session: bool = False,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self._client_id = client_id
        self._address = address
        self._on_message_cb = on_message
        self._on_connect_cb = on_connect
        self._before_connect = before_connect
        self._keepalive_s = keepalive_s
        self._clean_session = clean_session
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self._client: _PreconnectedClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._subscriptions: dict[str, int] = {}
        self._connected = False
        self._stopping = False
        self._will: Will | None = None
        self.connect_count = 0

    @property
    def connected(self) -> bool:
        return self._connected

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting in the background; returns at once (the network may be down)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        client = _PreconnectedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=self._clean_session,
            protocol=mqtt.MQTTv311,
        )
        if self._address.username:
            client.username_pw_set(self._address.username, self._address.password)
        if self._address.tls:
            client.tls_set(ca_certs=self._address.ca_file)
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client = client
        self._misc_task = asyncio.create_task(self._misc_loop(), name=f"mqtt-misc-{self._client_id}")
        self._connect_task = asyncio.create_task(self._connect_loop(), name=f"mqtt-connect-{self._client_id}")

    async def wait_connected(self, timeout_s: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._connected and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self._connected

    async def stop(self, *, graceful: bool = True) -> None:
        """Disconnect. ``graceful=False`` drops the socket so the broker publishes the last will."""
        self._stopping = True
        for task in (self._connect_task, self._misc_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        client = self._client
        if client is None:
            return
        if graceful and self._connected:
            client.disconnect()
            for _ in range(20):  # let the DISCONNECT packet leave
                if not client.want_write():
                    break
                client.loop_write()
                await asyncio.sleep(0.01)
        sock = client.socket()
        if sock is not None:
            self._unwatch(sock)
            with contextlib.suppress(OSError):
                sock.close()
        self._connected = False

    # --- operations -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Queue a message; False when not connected (callers with must-arrive data keep an outbox)."""
        if self._client is None or not self._connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        for topic, qos in topics:
            self._subscriptions[topic] = qos
        if self._client is not None and self._connected and topics:
            self._client.subscribe(topics)

    def unsubscribe(self, topics: list[str]) -> None:
        for topic in topics:
            self._subscriptions.pop(topic, None)
        if self._client is not None and self._connected and topics:
            self._client.unsubscribe(topics)

    def set_will(self, will: Will | None) -> None:
        self._will = will

    # --- paho callbacks (run inside loop_read/loop_write, i.e. on the event loop) -----------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused %s: %s", self._client_id, reason)
            return
        self._connected = True
        self.connect_count += 1
        if self._subscriptions:
            client.subscribe(list(self._subscriptions.items()))
        if self._on_connect_cb is not None:
            try:
                self._on_connect_cb()
            except Exception:
                log.exception("on_connect handler of %s failed", self._client_id)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was_connected = self._connected
        self._connected = False
        if was_connected and not self._stopping:
            log.info("%s lost the broker (%s); reconnecting", self._client_id, reason)
            self._connect_task = asyncio.ensure_future(self._connect_loop())

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_message_cb(message.topic, bytes(message.payload))
        except Exception:
            # A handler bug must not take the connection down with it.
            log.exception("message handler of %s failed on %s", self._client_id, message.topic)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock, self._read)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._unwatch(sock)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._write)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _unwatch(self, sock: Any) -> None:
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock)
        with contextlib.suppress(Exception):
            self._loop.remove_writer(sock)

    def _read(self) -> None:
        if self._client is not None:
            self._client.loop_read()

    def _write(self) -> None:
        if self._client is not None:
            self._client.loop_write()

    # --- background tasks -----------------------------------------------------------------------

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._client is not None and self._client.socket() is not None:
                self._client.loop_misc()

    async def _connect_loop(self) -> None:
        assert self._client is not None
        delay = self._reconnect_min_s
        while not self._stopping and not self._connected:
            if self._before_connect is not None:
                self._before_connect()
            will = self._will
            if will is not None:
                self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
            else:
                self._client.will_clear()
            try:
                await self._open_socket()
            except (OSError, mqtt.WebsocketConnectionError) as exc:
                log.debug("%s cannot reach %s:%s: %s", self._client_id, self._address.host,
                          self._address.port, exc)
            else:
                # Wait for CONNACK (or the socket closing) before deciding to retry.
                for _ in range(100):
                    if self._connected or self._client.socket() is None:
                        break
                    await asyncio.sleep(0.05)
                if self._connected:
                    return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._reconnect_max_s)

    async def _open_socket(self) -> None:
        """TCP connect without blocking the loop, then hand the socket to paho."""
        assert self._client is not None and self._loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            infos = await self._loop.getaddrinfo(self._address.host, self._address.port,
                                                 type=socket.SOCK_STREAM, family=socket.AF_INET)
            await asyncio.wait_for(self._loop.sock_connect(sock, infos[0][4]), timeout=10)
        except (OSError, TimeoutError):
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._client.connect_async(self._address.host, self._address.port, keepalive=self._keepalive_s)
        self._client.preconnected = sock
        try:
            self._client.reconnect()
        except OSError:
            sock.close()
            raise
