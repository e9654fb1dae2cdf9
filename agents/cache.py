"""Audio files held on the device, fetched over HTTP and verified by sha256 before use.

A file lands under its hash only after its bytes hashed right (fsync, rename, fsync of the directory:
a power cut leaves either no file or a whole one); a partial download is resumed with an HTTP Range
request. A corrupt file is deleted and fetched again, never played. Failed downloads are retried with
exponential backoff and jitter (so a fleet that lost the server does not come back in lockstep).

A disk quota bounds the cache. To make room, the least recently used files go first, and a file the
plan still needs (``protected``) is never evicted: when the plan alone does not fit, the download is
refused with a `FetchError` naming the quota, and the plan acknowledgement reports the file missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
from collections.abc import Callable
from pathlib import Path

import httpx

from agents.atomic import fsync_dir, replace_durably
from agents.errors import FetchError
from agents.protocol import AudioRef

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class AudioCache:
    def __init__(self, root: Path, http: httpx.AsyncClient, token: str, *, attempts: int = 4,
                 download_slots: asyncio.Semaphore | None = None, quota_bytes: int | None = None,
                 retry_base_s: float = 0.5) -> None:
        self._root = root
        self._http = http
        self._token = token
        self._attempts = attempts
        self._quota_bytes = quota_bytes
        self._retry_base_s = retry_base_s
        self._protected: Callable[[], set[str]] = set
        self.evicted: list[str] = []
        # Agents sharing one process (the simulator) share a few download slots: httpx's pool slows
        # down quadratically with the number of queued requests.
        self._slots = download_slots
        self._inflight: dict[str, asyncio.Future[Path]] = {}

    def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        for stale in self._root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def protect(self, needed: Callable[[], set[str]]) -> None:
        """Tell the cache which sha256 the plan still needs: those are never evicted."""
        self._protected = needed

    def path_for(self, sha256: str) -> Path:
        return self._root / f"{sha256}.audio"

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._root.glob("*.audio"))

    def verify(self, sha256: str) -> bool:
        """True when the cached file exists and still hashes right; a bad file is removed."""
        path = self.path_for(sha256)
        if not path.exists():
            return False
        if file_sha256(path) == sha256:
            return True
        log.warning("cached %s is corrupt; removing it", sha256[:12])
        path.unlink(missing_ok=True)
        return False

    def make_room(self, size_bytes: int) -> None:
        """Evict least recently used, unprotected files until ``size_bytes`` more fit in the quota."""
        if self._quota_bytes is None:
            return
        files = []
        for path in self._root.glob("*.audio"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            files.append((stat.st_mtime, path.stem, path, stat.st_size))
        used = sum(f[3] for f in files)
        if used + size_bytes <= self._quota_bytes:
            return
        protected = self._protected()
        removed = False
        for _mtime, sha256, path, size in sorted(files):
            if used + size_bytes <= self._quota_bytes:
                break
            if sha256 in protected:
                continue
            path.unlink(missing_ok=True)
            used -= size
            removed = True
            self.evicted.append(sha256)
            log.info("cache quota: evicted %s (%d bytes)", sha256[:12], size)
        if removed:
            fsync_dir(self._root)
        if used + size_bytes > self._quota_bytes:
            raise FetchError(f"cache quota of {self._quota_bytes} bytes exceeded: {used} bytes are still "
                             f"needed by the plan and {size_bytes} more are wanted")

    async def ensure(self, audio: AudioRef) -> Path:
        """Return the verified local file, downloading it if needed (one download per hash at a time)."""
        path = self.path_for(audio.sha256)
        if path.exists():
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: evicted last
            return path
        pending = self._inflight.get(audio.sha256)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self._inflight[audio.sha256] = future
        try:
            result = await self._download_with_retry(audio)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[audio.sha256]

    async def _download_with_retry(self, audio: AudioRef) -> Path:
        delay = self._retry_base_s
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                self.make_room(audio.size_bytes)
                if self._slots is None:
                    return await self._download(audio)
                async with self._slots:
                    return await self._download(audio)
            except FetchError as exc:
                last = exc
                log.info("fetch %s attempt %d failed: %s", audio.sha256[:12], attempt, exc)
                if attempt < self._attempts:
                    await asyncio.sleep(backoff_s(delay))
                    delay *= 2
        raise FetchError(f"could not fetch {audio.sha256[:12]}: {last}")

    async def _download(self, audio: AudioRef) -> Path:
        final = self.path_for(audio.sha256)
        partial = final.with_suffix(".part")
        offset = partial.stat().st_size if partial.exists() else 0
        headers = {"Authorization": f"Bearer {self._token}"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            async with self._http.stream("GET", audio.url, headers=headers) as response:
                if response.status_code == 206 and offset:
                    mode = "ab"
                elif response.status_code == 200:
                    mode, offset = "wb", 0
                else:
                    raise FetchError(f"HTTP {response.status_code} for {audio.url}")
                with partial.open(mode) as handle:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        handle.write(chunk)
                        if handle.tell() > audio.size_bytes:
                            raise FetchError("server sent more bytes than the plan announced")
                    handle.flush()
                    os.fsync(handle.fileno())
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc
        actual = file_sha256(partial)
        if actual != audio.sha256:
            partial.unlink(missing_ok=True)
            raise FetchError(f"sha256 mismatch: expected {audio.sha256[:12]}, got {actual[:12]}")
        replace_durably(partial, final)
        return final


def backoff_s(base_s: float, rng: Callable[[], float] = random.random) -> float:
    """``base_s`` with ±50 % jitter."""
    return base_s * (0.5 + rng())
