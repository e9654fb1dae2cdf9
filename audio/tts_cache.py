"""A disk cache of synthesised speech, and the chain that uses it.

The same announcement is often rendered again (re-approved, edited back,
broadcast in another commune), and audio made by gTTS while the link was up is
worth more than espeak-ng's when it is down.  `CachedChain` is a `TtsChain`
that, for each engine in order, returns that engine's cached result for the
text if there is one, else tries the engine and stores what it made.

An entry is keyed by the sha256 of the spoken text and the engine's
`cache_key_parts()` (engine name, voice, speed).  It is two files in
``<dir>/<key[:2]>/``: ``<key>.wav`` (16-bit PCM, read back without ffmpeg) and
``<key>.json``, the sidecar, written last, that names the engine and voice and
holds the WAV's sha256.  Both are written to a temporary file and renamed, so
readers in other threads or processes see a whole entry or none; an entry that
does not check out (bad JSON, missing or altered WAV, other text) is deleted
and counts as a miss, so it is made and written again.

The cache is bounded by total bytes: the least recently used entries go first
(a hit touches the sidecar's mtime), but never one written in the last hour.
Cache trouble (a full disk, permissions) is logged and never fails a synthesis.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from audio.ffmpeg import AudioSegment, segment_from_wav
from audio.tts import DEFAULT_CACHE_MAX_BYTES, Speech, TtsChain, TtsEngine

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MIN_AGE_S",
    "CacheStats",
    "CacheableEngine",
    "CachedChain",
    "TtsCache",
    "cache_key",
    "engine_cache_key",
    "engine_key_parts",
]

DEFAULT_MAX_BYTES = DEFAULT_CACHE_MAX_BYTES  # 2 GiB
DEFAULT_MIN_AGE_S = 3600.0  # an entry written in the last hour is never evicted
FORMAT_VERSION = 1  # bump when the entry format or key derivation changes
_TMP_SUFFIX = ".tmp"


@runtime_checkable
class CacheableEngine(TtsEngine, Protocol):
    def cache_key_parts(self) -> tuple[str, ...]: ...


def cache_key(text: str, parts: Sequence[str]) -> str:
    """Hex sha256 of the text and an engine's key parts (unambiguous: JSON-encoded)."""
    blob = json.dumps([FORMAT_VERSION, list(parts), text], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def engine_key_parts(engine: TtsEngine) -> tuple[str, ...] | None:
    """`engine.cache_key_parts()`, or None if the engine cannot say what decides its audio."""
    parts_of: Callable[[], Sequence[str]] | None = getattr(engine, "cache_key_parts", None)
    if parts_of is None:
        return None
    try:
        return tuple(str(p) for p in parts_of())
    except Exception as exc:
        log.warning("TTS engine %s has no cache key (%s): not cached", engine.name, exc)
        return None


def engine_cache_key(engine: TtsEngine, text: str) -> str | None:
    """The key of `engine`'s audio for `text`, or None if the engine cannot say what decides its audio."""
    parts = engine_key_parts(engine)
    return None if parts is None else cache_key(text, parts)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    corrupt: int = 0
    evicted: int = 0


@dataclass(frozen=True)
class _Entry:
    key: str
    wav: Path
    sidecar: Path
    size: int
    last_used: float  # sidecar mtime: touched on every hit
    written: float  # WAV mtime: set once


def _wav_bytes(audio: AudioSegment) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(audio.channels)
        out.setsampwidth(audio.sample_width)
        out.setframerate(audio.frame_rate)
        out.writeframes(audio.raw_data)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class TtsCache:
    """Speech on disk under `directory`, keyed by `cache_key`; safe across threads and processes."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_age_s: float = DEFAULT_MIN_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if min_age_s < 0:
            raise ValueError("min_age_s must not be negative")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.min_age_s = min_age_s
        self.stats = CacheStats()
        self._clock = clock
        self._lock = threading.Lock()  # guards the byte count, the stats and eviction
        self._total: int | None = None  # bytes on disk, learned by the first scan

    def _paths(self, key: str) -> tuple[Path, Path]:
        if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        folder = self.directory / key[:2]
        return folder / f"{key}.wav", folder / f"{key}.json"

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    # ------------------------------------------------------------ read

    def get(self, key: str, *, text: str | None = None) -> Speech | None:
        """The stored speech, or None.  An entry that fails any check is deleted and is a miss."""
        wav_path, sidecar_path = self._paths(key)
        try:
            raw = sidecar_path.read_bytes()
        except FileNotFoundError:
            self._count("misses")
            return None
        except OSError as exc:
            log.warning("TTS cache: cannot read %s: %s", sidecar_path, exc)
            self._count("misses")
            return None
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
                raise ValueError("not a sidecar of this key and format")
            if text is not None and meta.get("text") != text:
                raise ValueError("stored for another text")
            data = wav_path.read_bytes()
            if len(data) != meta["wav_bytes"] or hashlib.sha256(data).hexdigest() != meta["wav_sha256"]:
                raise ValueError("the WAV does not match its sidecar")
            audio = segment_from_wav(data)
            if audio.frame_count() == 0:
                raise ValueError("no audio")
            speech = Speech(audio=audio, engine=str(meta["engine"]), voice=str(meta["voice"]))
        except Exception as exc:  # JSON, KeyError, OSError, TranscodeError from a bad WAV
            log.warning("TTS cache: dropping bad entry %s: %s", key, exc)
            self._delete(wav_path, sidecar_path)
            with self._lock:
                self.stats.corrupt += 1
                self.stats.misses += 1
                self._total = None  # recount on the next store
            return None
        with contextlib.suppress(OSError):
            os.utime(sidecar_path)  # most recently used
        self._count("hits")
        return speech

    def __contains__(self, key: str) -> bool:
        return self._paths(key)[1].exists()

    # ------------------------------------------------------------ write

    def put(self, key: str, speech: Speech, *, text: str, parts: Sequence[str] = ()) -> bool:
        """Store `speech` under `key`; False (logged) if it could not be written."""
        wav_path, sidecar_path = self._paths(key)
        try:
            data = _wav_bytes(speech.audio)
            meta: dict[str, Any] = {
                "format": FORMAT_VERSION,
                "key": key,
                "engine": speech.engine,
                "voice": speech.voice,
                "key_parts": list(parts),
                "text": text,
                "duration_ms": len(speech.audio),
                "wav_bytes": len(data),
                "wav_sha256": hashlib.sha256(data).hexdigest(),
                "created": self._clock(),
            }
            sidecar = json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8")
            wav_path.parent.mkdir(parents=True, exist_ok=True)
            old = self._entry_size(wav_path, sidecar_path)
            _atomic_write(wav_path, data)  # the WAV first: a sidecar always has its WAV
            _atomic_write(sidecar_path, sidecar)
        except Exception as exc:
            log.warning("TTS cache: cannot store %s: %s", key, exc)
            return False
        with self._lock:
            self.stats.stores += 1
            if self._total is not None:
                self._total += len(data) + len(sidecar) - old
            over = self._total is None or self._total > self.max_bytes
        if over:
            self.evict()
        return True

    @staticmethod
    def _entry_size(wav_path: Path, sidecar_path: Path) -> int:
        size = 0
        for path in (wav_path, sidecar_path):
            with contextlib.suppress(OSError):
                size += path.stat().st_size
        return size

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
        except OSError:
            return False
        return True

    @staticmethod
    def _delete(wav_path: Path, sidecar_path: Path) -> None:
        for path in (sidecar_path, wav_path):  # the sidecar first: no sidecar, no entry
            with contextlib.suppress(OSError):
                path.unlink()

    # ------------------------------------------------------------ size

    def _scan(self) -> tuple[list[_Entry], int]:
        """Every entry, and the bytes of everything in the cache.  Orphans (a WAV whose sidecar never came,
        temporary files of a crashed writer) older than `min_age_s` are deleted."""
        now = self._clock()
        entries: list[_Entry] = []
        total = 0
        if not self.directory.is_dir():
            return entries, 0
        for folder in self.directory.iterdir():
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            files: dict[str, os.stat_result] = {}
            for path in folder.iterdir():
                with contextlib.suppress(OSError):
                    files[path.name] = path.stat()
            for name, st in files.items():
                key, _, ext = name.partition(".")
                if ext == "json" and not name.startswith(".") and f"{key}.wav" in files:
                    continue  # a sidecar: counted with its WAV
                if ext != "wav" or name.startswith(".") or f"{key}.json" not in files:
                    # An orphan; a young one may be a write in progress.
                    if now - st.st_mtime > self.min_age_s and self._unlink(folder / name):
                        continue
                    total += st.st_size
                    continue
                side = files[f"{key}.json"]
                size = st.st_size + side.st_size
                total += size
                entries.append(_Entry(key, folder / name, folder / f"{key}.json", size, side.st_mtime, st.st_mtime))
        return entries, total

    def total_bytes(self) -> int:
        """Bytes on disk now (scans the directory)."""
        _, total = self._scan()
        with self._lock:
            self._total = total
        return total

    def evict(self) -> int:
        """Delete least recently used entries until the cache fits `max_bytes`; returns the bytes freed.
        Entries written less than `min_age_s` ago stay even if the cache is then over its bound."""
        with self._lock:
            entries, total = self._scan()
            now = self._clock()
            freed = 0
            for entry in sorted(entries, key=lambda e: e.last_used):
                if total - freed <= self.max_bytes:
                    break
                if now - entry.written < self.min_age_s:
                    continue
                self._delete(entry.wav, entry.sidecar)
                freed += entry.size
                self.stats.evicted += 1
                log.info("TTS cache: evicted %s (%d bytes)", entry.key, entry.size)
            self._total = total - freed
            if self._total > self.max_bytes:
                log.warning(
                    "TTS cache %s holds %d bytes, over its %d: all of it is less than %.0f s old",
                    self.directory, self._total, self.max_bytes, self.min_age_s,
                )  # fmt: skip
            return freed


class _KeyLocks:
    """One lock per key while someone holds it: two threads asking for the same text from the same engine
    synthesise it once; other texts are not held up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._lock:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class CachedChain(TtsChain):
    """A `TtsChain` with a disk cache per engine.

    For each engine in order: if the cache holds this engine's audio for the
    text, return it without calling the engine; else try the engine, store
    its audio on success and return it, or go on to the next on failure.  So
    a text gTTS made once is gTTS's forever (while cached), even offline, and
    an offline fallback is only cached as that engine's result: when the link
    is back, gTTS is tried first again.  Engines without `cache_key_parts()`
    (a nested chain) are called every time.
    """

    name = "cached-chain"

    def __init__(
        self,
        engines: Sequence[TtsEngine],
        cache_dir: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_age_s: float = DEFAULT_MIN_AGE_S,
    ) -> None:
        super().__init__(engines)
        self.cache = TtsCache(Path(cache_dir), max_bytes=max_bytes, min_age_s=min_age_s)
        self._key_locks = _KeyLocks()

    def _attempt(self, engine: TtsEngine, text: str) -> Speech:
        parts = engine_key_parts(engine)
        if parts is None:
            return engine.synthesize(text)
        key = cache_key(text, parts)
        with self._key_locks.hold(key):
            cached = self.cache.get(key, text=text)
            if cached is not None:
                log.debug("TTS cache hit: %s %s", engine.name, key)
                return cached
            speech = engine.synthesize(text)
            self.cache.put(key, speech, text=text, parts=parts)
            return speech
