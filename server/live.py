"""In-process fan-out of live updates to console clients (Server-Sent Events).

Producers may be any thread (MQTT ingest, renderer); consumers are asyncio tasks of SSE responses.
A slow consumer loses old updates rather than slowing the producers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class LiveBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: dict[str, Any]) -> None:
        """Thread-safe."""
        if self._loop is None or self._loop.is_closed():
            return
        data = json.dumps(event, ensure_ascii=False, default=str)
        self._loop.call_soon_threadsafe(self._deliver, data)

    def _deliver(self, data: str) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(data)

    async def stream(self, heartbeat_s: float = 15.0) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=heartbeat_s)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"data: {data}\n\n"
        finally:
            self._subscribers.discard(queue)
