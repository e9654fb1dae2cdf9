"""Audio files held on the device, fetched over HTTP and verified by sha256 before use.

A file lands under its hash only after its bytes hashed right; a partial download is resumed with an
HTTP Range request. A corrupt file is deleted and fetched again, never played.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from pathlib import Path

import httpx

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
                 download_slots: asyncio.Semaphore | None = None) -> None:
        self._root = root
        self._http = http
        self._token = token
        self._attempts = attempts
        # Agents sharing one process (the simulator) share a few download slots: httpx's pool slows
        # down quadratically with the number of queued requests.
        self._slots = download_slots
        self._inflight: dict[str, asyncio.Future[Path]] = {}

    def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)

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

    async def ensure(self, audio: AudioRef) -> Path:
        """Return the verified local file, downloading it if needed (one download per hash at a time)."""
        path = self.path_for(audio.sha256)
        if path.exists():
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
        delay = 0.5
        last: Exception | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                if self._slots is None:
                    return await self._download(audio)
                async with self._slots:
                    return await self._download(audio)
            except FetchError as exc:
                last = exc
                log.info("fetch %s attempt %d failed: %s", audio.sha256[:12], attempt, exc)
                if attempt < self._attempts:
                    await asyncio.sleep(delay * (0.5 + random.random()))
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
        os.replace(partial, final)
        return final
