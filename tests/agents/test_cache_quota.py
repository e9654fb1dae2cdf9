"""The audio cache: quota with eviction that spares the plan, backoff with jitter, atomic files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from agents.atomic import atomic_writer, write_atomic
from agents.cache import AudioCache, backoff_s
from agents.errors import FetchError
from agents.protocol import AudioRef


def audio(body: bytes) -> AudioRef:
    sha = hashlib.sha256(body).hexdigest()
    return AudioRef(sha256=sha, url=f"http://server/api/v1/audio/{sha}", duration_ms=1000, size_bytes=len(body))


def server(bodies: list[bytes], requests: list[str] | None = None) -> httpx.AsyncClient:
    by_path = {f"/api/v1/audio/{hashlib.sha256(b).hexdigest()}": b for b in bodies}

    def handler(request: httpx.Request) -> httpx.Response:
        if requests is not None:
            requests.append(request.url.path)
        body = by_path.get(request.url.path)
        return httpx.Response(200, content=body) if body is not None else httpx.Response(404)

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_eviction_takes_the_least_recently_used_and_never_what_the_plan_needs(tmp_path: Path) -> None:
    a, b, c, d = (bytes([i]) * 1000 for i in range(4))
    http = server([a, b, c, d])
    cache = AudioCache(tmp_path, http, "t" * 32, quota_bytes=3000)
    cache.start()
    needed = {audio(a).sha256}
    cache.protect(lambda: needed)
    for body in (a, b, c):
        await cache.ensure(audio(body))
    # a is the oldest but protected; b is the least recently used unprotected file.
    os.utime(cache.path_for(audio(a).sha256), (1, 1))
    os.utime(cache.path_for(audio(b).sha256), (2, 2))
    await cache.ensure(audio(d))
    assert cache.evicted == [audio(b).sha256]
    assert cache.has(audio(a).sha256) and cache.has(audio(c).sha256) and cache.has(audio(d).sha256)
    assert cache.total_bytes() <= 3000
    await http.aclose()


async def test_a_plan_larger_than_the_quota_is_refused_not_evicted(tmp_path: Path) -> None:
    a, b = b"a" * 1500, b"b" * 1500
    http = server([a, b])
    cache = AudioCache(tmp_path, http, "t" * 32, quota_bytes=2000, attempts=1)
    cache.start()
    cache.protect(lambda: {audio(a).sha256, audio(b).sha256})
    await cache.ensure(audio(a))
    with pytest.raises(FetchError, match="quota"):
        await cache.ensure(audio(b))
    assert cache.has(audio(a).sha256) and not cache.has(audio(b).sha256) and cache.evicted == []
    await http.aclose()


async def test_failed_downloads_are_retried_with_growing_jittered_delays(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"x" * 100
    requests: list[str] = []
    http = server([], requests)  # 404 every time
    cache = AudioCache(tmp_path, http, "t" * 32, attempts=4, retry_base_s=0.1)
    cache.start()
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("agents.cache.asyncio.sleep", fake_sleep)
    with pytest.raises(FetchError, match="HTTP 404"):
        await cache.ensure(audio(body))
    assert len(requests) == 4 and len(slept) == 3
    for attempt, delay in enumerate(slept):
        base = 0.1 * 2**attempt
        assert 0.5 * base <= delay <= 1.5 * base
    await http.aclose()


def test_backoff_jitter_spans_half_to_one_and_a_half_times_the_base() -> None:
    assert backoff_s(10, lambda: 0.0) == 5.0
    assert backoff_s(10, lambda: 0.999999) == pytest.approx(15.0, abs=1e-4)
    assert len({backoff_s(10) for _ in range(20)}) > 1


def test_an_interrupted_atomic_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "decoded" / "file.wav"
    write_atomic(target, b"old complete content")
    with pytest.raises(RuntimeError), atomic_writer(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("power cut")
    assert target.read_bytes() == b"old complete content"
    assert [p.name for p in target.parent.iterdir()] == ["file.wav"]


def test_leftover_temporary_files_are_removed_at_start(tmp_path: Path) -> None:
    (tmp_path / ".abc.audio.123.tmp").write_bytes(b"partial")
    cache = AudioCache(tmp_path, httpx.AsyncClient(), "t" * 32)
    cache.start()
    assert list(tmp_path.iterdir()) == []
