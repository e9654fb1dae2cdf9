"""Fakes for the agent core's seams: a link that records, a player that records."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from agents.cache import AudioCache
from agents.core import Agent, AgentSettings
from agents.errors import PlaybackError
from agents.journal import Journal
from agents.link import Will
from agents.player import Prepared
from agents.protocol import AudioRef, PlanItem, decode
from schedules import Priority


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def message(self) -> object:
        return decode(self.payload)


@dataclass
class FakeLink:
    connected: bool = True
    published: list[Published] = field(default_factory=list)
    subscriptions: dict[str, int] = field(default_factory=dict)
    will: Will | None = None

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        if not self.connected:
            return False
        self.published.append(Published(topic, payload, qos, retain))
        return True

    def subscribe(self, topics: list[tuple[str, int]]) -> None:
        self.subscriptions.update(dict(topics))

    def unsubscribe(self, topics: list[str]) -> None:
        for topic in topics:
            self.subscriptions.pop(topic, None)

    def set_will(self, will: Will | None) -> None:
        self.will = will

    def on(self, leaf: str) -> list[Published]:
        return [p for p in self.published if p.topic.endswith("/" + leaf)]


@dataclass
class PlayRecord:
    item_id: str
    started_at: float
    ended_at: float | None = None
    cancelled: bool = False
    offset_ms: int = 0
    sha256: str = ""


class FakePlayer:
    def __init__(self, speed: float = 1.0) -> None:
        self.plays: list[PlayRecord] = []
        self.speed = speed
        self.fail_items: set[str] = set()
        """Item ids whose play raises PlaybackError (a broken stream, a dead sound card)."""
        self.hang_items: set[str] = set()
        """Item ids whose play never returns by itself (an output blocked on a vanished sound card)."""
        self.pruned: list[set[str]] = []

    async def prepare(self, path: Path, item: PlanItem) -> Prepared:
        return Prepared(item=item, path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())

    def prune(self, keep: set[str]) -> None:
        self.pruned.append(keep)

    async def play(self, prepared: Prepared, offset_ms: int = 0, *, started_at: float | None = None) -> None:
        record = PlayRecord(prepared.item.id, time.time(), offset_ms=offset_ms, sha256=prepared.sha256)
        self.plays.append(record)
        if prepared.item.id in self.fail_items and prepared.sha256 == prepared.item.audio.sha256:
            record.ended_at = time.time()
            raise PlaybackError("sound card gone")
        try:
            if prepared.item.id in self.hang_items:
                await asyncio.Event().wait()
            await asyncio.sleep((prepared.item.audio.duration_ms - offset_ms) / 1000 / self.speed)
        except asyncio.CancelledError:
            record.cancelled = True
            record.ended_at = time.time()
            raise
        record.ended_at = time.time()


AUDIO = b"ID3 fake mp3 bytes for tests" * 10
SHA = hashlib.sha256(AUDIO).hexdigest()


def item(item_id: str, in_s: float, *, duration_ms: int = 300, priority: Priority = Priority.NORMAL,
         max_late_ms: int = 30_000, data: bytes = AUDIO, broadcast_id: int = 1, **optional: Any) -> PlanItem:
    """A plan item ``in_s`` seconds from now; ``optional``: on_preempt, stop_at, exercise."""
    return PlanItem(id=item_id, broadcast_id=broadcast_id, title=item_id, priority=priority,
                    play_at=datetime.now(UTC) + timedelta(seconds=in_s),
                    audio=AudioRef(sha256=hashlib.sha256(data).hexdigest(), url="http://server/api/v1/audio/x",
                                   duration_ms=duration_ms, size_bytes=len(data)),
                    max_late_ms=max_late_ms, **optional)


def serve_audio(responses: dict[str, list[bytes]]) -> httpx.MockTransport:
    """An HTTP transport answering each URL path with the next body in its list (the last repeats)."""
    def handler(request: httpx.Request) -> httpx.Response:
        bodies = responses.get(request.url.path)
        if not bodies:
            return httpx.Response(404)
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]
        return httpx.Response(200, content=body)
    return httpx.MockTransport(handler)


@dataclass
class Harness:
    agent: Agent
    link: FakeLink
    player: FakePlayer
    journal: Journal
    cache: AudioCache
    http: httpx.AsyncClient

    async def close(self) -> None:
        await self.agent.stop()
        await self.http.aclose()
        self.journal.stop()


async def make_agent(tmp: Path, *, agent_id: str = "test-agent", transport: httpx.MockTransport | None = None,
                     preload: bool = True, settings: AgentSettings | None = None, quota_bytes: int | None = None,
                     **seams: Any) -> Harness:
    """An agent on fake seams; ``seams`` go to `Agent` (amplifier, volume, ntp, modem, commands)."""
    journal = Journal(tmp / "journal.sqlite3")
    journal.start()
    http = httpx.AsyncClient(transport=transport or serve_audio({}))
    cache = AudioCache(tmp / "cache", http, "t" * 32, attempts=2, quota_bytes=quota_bytes, retry_base_s=0.05)
    cache.start()
    if preload:
        cache.path_for(SHA).write_bytes(AUDIO)
    link, player = FakeLink(), FakePlayer()
    agent = Agent(settings or AgentSettings(agent_id=agent_id, heartbeat_s=3600, outbox_resend_s=3600), link=link,
                  player=player, cache=cache, journal=journal, **seams)
    agent.before_connect()
    await agent.start()
    agent.on_connected()
    return Harness(agent, link, player, journal, cache, http)
