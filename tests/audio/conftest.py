"""Shared fixtures of the audio tests: a stalled link for gTTS (nothing here touches the network)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import gtts.tts
import pytest

PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def point_gtts_at(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    # gTTS builds its URL with gtts.tts._translate_url; send it to our server instead of Google.
    monkeypatch.setattr(
        gtts.tts, "_translate_url", lambda tld="com", path="": f"http://127.0.0.1:{port}/{path}"
    )
    for var in PROXY_VARS:  # gTTS passes the environment's proxies explicitly
        monkeypatch.delenv(var, raising=False)


class SilentServer:
    """Accepts TCP connections and never answers: a stalled link."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def stalled_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    server = SilentServer()
    point_gtts_at(monkeypatch, server.port)
    yield server
    server.close()
