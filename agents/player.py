"""Player backends: what turns a cached audio file into sound at an exact instant.

The seam exists because the same agent core drives real amplifiers on a Raspberry Pi (`AlsaPlayer`)
and thousands of simulated clusters in tests and the demo (`FileSinkPlayer`).

Contract for a backend:
- ``prepare`` MUST do everything slow (decoding, hashing) and is called seconds before the start;
- ``play`` MUST start output as soon as it is called and return when the audio has ended;
- cancelling the task running ``play`` MUST stop the output before the cancellation propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.cache import file_sha256
from agents.errors import PlaybackError
from agents.protocol import PlanItem, format_time


@dataclass(frozen=True)
class Prepared:
    item: PlanItem
    path: Path
    sha256: str
    detail: Any = None


class Player(Protocol):
    async def prepare(self, path: Path, item: PlanItem) -> Prepared: ...

    async def play(self, prepared: Prepared) -> None: ...


class FileSinkPlayer:
    """Writes what it would play, with wall-clock timestamps, as JSON lines; waits the item's duration.

    Each line: ``event`` (start, end, stop), ``agent_id``, ``item_id``, ``broadcast_id``, ``sha256`` (of
    the bytes actually read from the cache), ``duration_ms``, ``scheduled_at`` and ``at`` (UTC, µs).
    """

    def __init__(self, sink_path: Path, agent_id: str, *, speed: float = 1.0) -> None:
        self._sink_path = sink_path
        self._agent_id = agent_id
        self._speed = speed

    async def prepare(self, path: Path, item: PlanItem) -> Prepared:
        sha256 = await asyncio.to_thread(file_sha256, path)
        return Prepared(item=item, path=path, sha256=sha256)

    async def play(self, prepared: Prepared) -> None:
        started = time.time()
        self._write("start", prepared, started)
        try:
            await asyncio.sleep(prepared.item.audio.duration_ms / 1000 / self._speed)
        except asyncio.CancelledError:
            self._write("stop", prepared, time.time())
            raise
        self._write("end", prepared, time.time())

    def _write(self, event: str, prepared: Prepared, at: float) -> None:
        record = {
            "event": event, "agent_id": self._agent_id, "item_id": prepared.item.id,
            "broadcast_id": prepared.item.broadcast_id, "sha256": prepared.sha256,
            "duration_ms": prepared.item.audio.duration_ms,
            "scheduled_at": format_time(prepared.item.play_at), "at": at,
        }
        self._sink_path.parent.mkdir(parents=True, exist_ok=True)
        with self._sink_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class AlsaPlayer:
    """Real output on the Pi: ffmpeg decodes ahead into PCM WAV, ``aplay`` plays it on an ALSA device.

    Decoding ahead keeps the start instant independent of the codec; ``aplay`` is started only at the
    scheduled time. Both commands are configurable so a site can use another output (e.g. ``paplay``).
    """

    def __init__(self, work_dir: Path, *, device: str = "default", ffmpeg: str = "ffmpeg",
                 play_command: tuple[str, ...] = ("aplay", "-q")) -> None:
        self._work_dir = work_dir
        self._device = device
        self._ffmpeg = ffmpeg
        self._play_command = play_command

    async def prepare(self, path: Path, item: PlanItem) -> Prepared:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        sha256 = await asyncio.to_thread(file_sha256, path)
        wav = self._work_dir / f"{sha256}.wav"
        if not wav.exists():
            tmp = wav.with_suffix(".tmp.wav")
            process = await asyncio.create_subprocess_exec(
                self._ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(path), "-ac", "1", "-ar", "48000",
                "-c:a", "pcm_s16le", str(tmp), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            _, stderr = await process.communicate()
            if process.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise PlaybackError(f"ffmpeg could not decode {path.name}: {stderr.decode()[-300:]}")
            os.replace(tmp, wav)
        return Prepared(item=item, path=path, sha256=sha256, detail=wav)

    async def play(self, prepared: Prepared) -> None:
        wav = prepared.detail
        if not isinstance(wav, Path):
            raise PlaybackError("item was not prepared by AlsaPlayer")
        if shutil.which(self._play_command[0]) is None and not Path(self._play_command[0]).exists():
            raise PlaybackError(f"{self._play_command[0]} not found")
        process = await asyncio.create_subprocess_exec(
            *self._play_command, "-D", self._device, str(wav),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            _, stderr = await process.communicate()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), timeout=2)
            raise
        if process.returncode != 0:
            raise PlaybackError(f"{self._play_command[0]} exited {process.returncode}: {stderr.decode()[-300:]}")
