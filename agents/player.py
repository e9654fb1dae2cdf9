"""Player backends: what turns a cached audio file into sound at an exact instant.

The seam exists because the same agent core drives real amplifiers on a Raspberry Pi (`AlsaPlayer`)
and thousands of simulated clusters in tests and the demo (`FileSinkPlayer`).

Contract for a backend:
- ``prepare`` MUST do everything slow (decoding, hashing) and is called seconds before the start;
- ``play`` MUST start output as soon as it is called, ``offset_ms`` into the audio (a resumed item), and
  return when the audio has ended; it MUST NOT do slow work before the output starts (in the simulator a
  thousand agents start on one event loop in the same millisecond);
- cancelling the task running ``play`` MUST stop the output before the cancellation propagates;
- ``prune`` MAY delete prepared material (decoded files) for audio not in ``keep``.
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

from agents.atomic import replace_durably
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

    async def play(self, prepared: Prepared, offset_ms: int = 0, *, started_at: float | None = None) -> None:
        """``started_at``: the wall-clock instant the agent started the output (its timer fired)."""
        ...

    def prune(self, keep: set[str]) -> None: ...


class FileSinkPlayer:
    """Writes what it would play, with wall-clock timestamps, as JSON lines; waits the item's duration.

    Each line: ``event`` (start, end, stop), ``agent_id``, ``item_id``, ``broadcast_id``, ``sha256`` (of
    the bytes actually read from the cache), ``duration_ms``, ``offset_ms`` (where in the audio the play
    started), ``scheduled_at`` and ``at`` (UTC, µs). The start instant is the one the agent core took when its
    start timer fired; the line is written later, so that writing never delays another agent's start in
    the simulator.
    """

    def __init__(self, sink_path: Path, agent_id: str, *, speed: float = 1.0) -> None:
        self._sink_path = sink_path
        self._agent_id = agent_id
        self._speed = speed

    async def prepare(self, path: Path, item: PlanItem) -> Prepared:
        sha256 = await asyncio.to_thread(file_sha256, path)
        return Prepared(item=item, path=path, sha256=sha256)

    async def play(self, prepared: Prepared, offset_ms: int = 0, *, started_at: float | None = None) -> None:
        started = started_at if started_at is not None else time.time()
        remaining_s = max(0.0, (prepared.item.audio.duration_ms - offset_ms) / 1000 / self._speed)
        try:
            await asyncio.sleep(0)
            self._write("start", prepared, started, offset_ms)
            await asyncio.sleep(remaining_s - (time.time() - started))
        except asyncio.CancelledError:
            self._write("stop", prepared, time.time(), offset_ms)
            raise
        self._write("end", prepared, time.time(), offset_ms)

    def prune(self, keep: set[str]) -> None:
        pass

    def _write(self, event: str, prepared: Prepared, at: float, offset_ms: int) -> None:
        record = {
            "event": event, "agent_id": self._agent_id, "item_id": prepared.item.id,
            "broadcast_id": prepared.item.broadcast_id, "sha256": prepared.sha256,
            "duration_ms": prepared.item.audio.duration_ms, "offset_ms": offset_ms,
            "scheduled_at": format_time(prepared.item.play_at), "at": at,
        }
        self._sink_path.parent.mkdir(parents=True, exist_ok=True)
        with self._sink_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class AlsaPlayer:
    """Real output on the Pi: ffmpeg decodes ahead into PCM WAV, ``aplay`` plays it on an ALSA device.

    Decoding ahead keeps the start instant independent of the codec; ``aplay`` is started only at the
    scheduled time. Both commands are configurable so a site can use another output (e.g. ``paplay``).
    A resumed item is played from its offset by ``ffmpeg -ss`` piping WAV into ``aplay`` (reading ``-``).
    Decoded files are written aside and renamed (`agents.atomic`): a power cut never leaves a truncated
    WAV that would be taken for a good one.
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
            try:
                process = await asyncio.create_subprocess_exec(
                    self._ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(path), "-ac", "1", "-ar", "48000",
                    "-c:a", "pcm_s16le", str(tmp), stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE)
            except OSError as exc:
                raise PlaybackError(f"cannot run {self._ffmpeg}: {exc}") from exc
            _, stderr = await process.communicate()
            if process.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise PlaybackError(f"ffmpeg could not decode {path.name}: {stderr.decode()[-300:]}")
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
            replace_durably(tmp, wav)
        return Prepared(item=item, path=path, sha256=sha256, detail=wav)

    def prune(self, keep: set[str]) -> None:
        for wav in self._work_dir.glob("*.wav"):
            if wav.name.split(".")[0] not in keep:
                wav.unlink(missing_ok=True)

    def resume_argv(self, wav: Path, offset_ms: int) -> tuple[list[str], list[str]]:
        """The decoder and player command lines that start ``wav`` ``offset_ms`` in."""
        decoder = [self._ffmpeg, "-nostdin", "-v", "error", "-ss", f"{offset_ms / 1000:.3f}", "-i", str(wav),
                   "-f", "wav", "-"]
        return decoder, [*self._play_command, "-D", self._device, "-"]

    async def play(self, prepared: Prepared, offset_ms: int = 0, *, started_at: float | None = None) -> None:
        del started_at  # the sound card starts when aplay gets its first buffer, right after this call
        wav = prepared.detail
        if not isinstance(wav, Path):
            raise PlaybackError("item was not prepared by AlsaPlayer")
        if shutil.which(self._play_command[0]) is None and not Path(self._play_command[0]).exists():
            raise PlaybackError(f"{self._play_command[0]} not found")
        processes: list[asyncio.subprocess.Process] = []
        try:
            if offset_ms <= 0:
                processes.append(await asyncio.create_subprocess_exec(
                    *self._play_command, "-D", self._device, str(wav),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE))
            else:
                decoder_argv, player_argv = self.resume_argv(wav, offset_ms)
                read_end, write_end = os.pipe()
                try:
                    processes.append(await asyncio.create_subprocess_exec(
                        *decoder_argv, stdout=write_end, stderr=asyncio.subprocess.DEVNULL))
                    processes.append(await asyncio.create_subprocess_exec(
                        *player_argv, stdin=read_end, stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.PIPE))
                finally:
                    os.close(read_end)
                    os.close(write_end)
            _, stderr = await processes[-1].communicate()
            for process in processes[:-1]:
                await process.wait()
        except OSError as exc:
            await _terminate(processes)
            raise PlaybackError(f"cannot start {self._play_command[0]}: {exc}") from exc
        except asyncio.CancelledError:
            await _terminate(processes)
            raise
        if processes[-1].returncode != 0:
            raise PlaybackError(f"{self._play_command[0]} exited {processes[-1].returncode}: "
                                f"{stderr.decode()[-300:]}")


async def _terminate(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), timeout=2)
