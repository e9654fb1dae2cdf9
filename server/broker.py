"""The embedded MQTT broker (amqtt), started in-process for the demo and small installations.

Measured here: amqtt held 1,000 clients but saturates a core at ~500 messages/s, and keeps retained
messages only in memory. Production uses Mosquitto or a clustered broker (docs/operations.md).
"""

from __future__ import annotations

import logging
import socket

from server.errors import ConfigError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._broker: object | None = None

    async def start(self) -> None:
        from amqtt.broker import Broker  # imported here: only the embedded path needs amqtt

        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self._host, self._port))
            except OSError as exc:
                raise ConfigError(
                    f"cannot start the embedded MQTT broker on {self._host}:{self._port}: {exc.strerror}. "
                    "Choose another port with LOA_BROKER_URL, or use an external broker with "
                    "LOA_EMBEDDED_BROKER=false.") from exc
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:{self._port}", "max_connections": 5000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        broker = Broker(config)
        await broker.start()
        self._broker = broker
        log.info("embedded MQTT broker listening on %s:%d", self._host, self._port)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()  # type: ignore[attr-defined]
            self._broker = None
