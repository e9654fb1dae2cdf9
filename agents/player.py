"""Player backends: what turns a cached audio file into sound at an exact instant.

The seam exists because the same agent core drives real amplifiers on a Raspberry Pi (`AlsaPlayer`)
and thousands of simulated clusters in tests and the demo (`FileSinkPlayer`).

Contract for a backend:
- ``prepare`` MUST do everything slow (decoding, hashing) and is called seconds before the start;
- ``prime`` (optional, see `prime_output`) MAY get the output ready for ``play(prepared, offset_ms)`` (start
  the output process, open the sound card) within the pre-roll, so that ``play`` only has to hand it
  samples; ``release`` (optional, `release_output`) drops a primed output that will not be played, and
  a backend MUST also drop it by itself when it is left unplayed (another prime or play, a time limit);
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
import struct
import threading
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


async def prime_output(player: Player, prepared: Prepared, offset_ms: int) -> bool:
    """Let ``player`` get ready to play ``prepared`` from ``offset_ms`` if it can; True if it was asked to."""
    prime = getattr(player, "prime", None)
    if prime is None:
        return False
    await prime(prepared, offset_ms)
    return True


def release_output(player: Player, prepared: Prepared) -> None:
    """Drop what `prime_output` got ready for ``prepared`` (the item is not started after all)."""
    release = getattr(player, "release", None)
    if release is not None:
        release(prepared)


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

    async def prime(self, prepared: Prepared, offset_ms: int) -> None:
        pass  # nothing to open: a start costs the same whenever it is taken

    def release(self, prepared: Prepared) -> None:
        pass

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


RATE = 48000
"""Decoded audio is 48 kHz mono signed 16-bit little-endian PCM: 2 bytes a frame, 96 bytes a millisecond."""
FRAME_BYTES = 2
FIRST_WRITE_BYTES = RATE * FRAME_BYTES // 2
"""Read at prime time and written in one go at the start: half a second, more than the ALSA buffer, less
than a pipe holds (64 KiB), so the write does not wait for the player and the sound card starts at once."""
CHUNK_BYTES = 64 * 1024
PRIMED_TTL_S = 10.0
"""A primed output that is not played within this time is dropped (and the sound card released)."""


@dataclass(frozen=True)
class WavData:
    """Where the PCM samples of a decoded WAV file are: bytes ``start`` to ``end`` of the file."""

    start: int
    end: int


def wav_data(path: Path) -> WavData:
    """Find the ``data`` chunk of a 48 kHz mono s16 PCM WAV file; PlaybackError for anything else."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            riff = handle.read(12)
            if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
                raise PlaybackError(f"{path.name} is not a WAV file")
            fmt: tuple[int, int, int, int] | None = None
            while True:
                header = handle.read(8)
                if len(header) < 8:
                    raise PlaybackError(f"{path.name} has no data chunk")
                chunk_id, chunk_size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk_id == b"fmt ":
                    body = handle.read(chunk_size)
                    if len(body) < 16:
                        raise PlaybackError(f"{path.name} has a truncated fmt chunk")
                    tag, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", body[:16])
                    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                        tag = struct.unpack("<H", body[24:26])[0]
                    fmt = (tag, channels, rate, bits)
                    handle.seek(chunk_size % 2, os.SEEK_CUR)
                elif chunk_id == b"data":
                    if fmt != (1, 1, RATE, 16):
                        raise PlaybackError(f"{path.name} is not 48000 Hz mono 16-bit PCM (format, channels, "
                                            f"rate, bits: {fmt})")
                    start = handle.tell()
                    end = min(size, start + chunk_size)  # a streamed WAV may leave the size unset
                    return WavData(start=start, end=start + (end - start) // FRAME_BYTES * FRAME_BYTES)
                else:
                    handle.seek(chunk_size + chunk_size % 2, os.SEEK_CUR)
    except OSError as exc:
        raise PlaybackError(f"cannot read {path.name}: {exc}") from exc


class _Output:
    """One running output process fed through a pipe: what was read ahead and who owns the pipe's end."""

    def __init__(self, prepared: Prepared, offset_ms: int) -> None:
        self.prepared = prepared
        self.offset_ms = offset_ms
        self.error: PlaybackError | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.stderr: asyncio.Task[bytes] | None = None
        self.write_fd: int | None = None
        """Our end of the player's stdin; closed by whoever holds it: this object, or the pump thread."""
        self.wav: Path | None = None
        self.position = 0
        """The file offset of the first byte not yet read ahead."""
        self.end = 0
        self.first = b""
        self.stop = threading.Event()
        self.expiry: asyncio.TimerHandle | None = None

    def close_pipe(self) -> None:
        if self.write_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.write_fd)
            self.write_fd = None

    def kill(self) -> None:
        """Stop the output now (no waiting): the player is terminated and our pipe end closed."""
        self.stop.set()
        if self.expiry is not None:
            self.expiry.cancel()
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
        self.close_pipe()

    async def stopped(self) -> None:
        """`kill`, then wait (briefly) until the process is gone, so that the sound card is free again."""
        self.kill()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), timeout=1.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), timeout=1.0)
        if self.stderr is not None:
            self.stderr.cancel()

    async def stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        with contextlib.suppress(Exception):
            return (await asyncio.wait_for(self.stderr, timeout=1.0)).decode(errors="replace").strip()[-300:]
        return ""


def _pump(output: _Output, rest: bytes, fd: int) -> int:
    """Write ``rest`` (the read-ahead the first write left), then the output's file from its ``position`` to
    its ``end`` into ``fd``, blocking (run it in a thread), and close ``fd``; the bytes written. A player that
    went away (BrokenPipeError) or `_Output.stop` ends it early."""
    assert output.wav is not None
    written = 0

    def write(data: bytes) -> None:
        nonlocal written
        view = memoryview(data)
        while view and not output.stop.is_set():
            n = os.write(fd, view)
            view = view[n:]
            written += n

    try:
        write(rest)
        with output.wav.open("rb") as handle:
            handle.seek(output.position)
            position = output.position
            while position < output.end and not output.stop.is_set():
                chunk = handle.read(min(CHUNK_BYTES, output.end - position))
                if not chunk:
                    break
                position += len(chunk)
                write(chunk)
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)
    return written


class AlsaPlayer:
    """Real output on the Pi: ffmpeg decodes ahead into PCM WAV, ``aplay`` plays raw PCM from its stdin.

    Decoding ahead keeps the start instant independent of the codec. Within the pre-roll, `prime` starts
    the player on raw 48 kHz mono s16 PCM from a pipe, so the process exists and the ALSA device is open and
    configured, waiting for samples, before the start instant; and it reads the first half second of the
    samples. At the instant `play` writes them into the pipe, and a thread writes the rest of the file. A
    resumed item starts at the byte of its offset (``offset_ms`` × 96). What is left between the start
    instant and sound is the pipe, aplay filling its ALSA buffer (a few system calls: its start threshold
    is the buffer) and the sound card's own output delay (see docs/agent.md).

    ``play_command``: for ``aplay`` the agent adds ``-D <device> -t raw -f S16_LE -r 48000 -c 1`` and, unless
    the command gives them, ``--buffer-time`` and ``--period-time``; any other command is run as given, with
    ``{device}`` replaced, and must play raw 48 kHz mono S16_LE from its stdin (e.g. ``pacat --raw``).
    Decoded files are written aside and renamed (`agents.atomic`): a power cut never leaves a truncated
    WAV that would be taken for a good one.
    """

    def __init__(self, work_dir: Path, *, device: str = "default", ffmpeg: str = "ffmpeg",
                 play_command: tuple[str, ...] = ("aplay", "-q"), buffer_ms: int = 200, period_ms: int = 50,
                 primed_ttl_s: float = PRIMED_TTL_S) -> None:
        self._work_dir = work_dir
        self._device = device
        self._ffmpeg = ffmpeg
        self._play_command = play_command
        self._buffer_ms = buffer_ms
        self._period_ms = period_ms
        self._primed_ttl_s = primed_ttl_s
        self._primed: _Output | None = None

    async def prepare(self, path: Path, item: PlanItem) -> Prepared:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        sha256 = await asyncio.to_thread(file_sha256, path)
        wav = self._work_dir / f"{sha256}.wav"
        if not wav.exists():
            tmp = wav.with_suffix(".tmp.wav")
            try:
                process = await asyncio.create_subprocess_exec(
                    self._ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(path), "-ac", "1", "-ar", str(RATE),
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

    def player_argv(self) -> list[str]:
        """The output command line: it reads raw 48 kHz mono S16_LE PCM from stdin."""
        command = list(self._play_command)
        if Path(command[0]).name != "aplay":
            return [part.replace("{device}", self._device) for part in command]
        argv = [*command, "-D", self._device, "-t", "raw", "-f", "S16_LE", "-r", str(RATE), "-c", "1"]
        given = " ".join(command[1:])
        if "--buffer-" not in given and "-B" not in given and "-F" not in given and "--period-" not in given:
            argv += [f"--buffer-time={self._buffer_ms * 1000}", f"--period-time={self._period_ms * 1000}"]
        return argv

    async def prime(self, prepared: Prepared, offset_ms: int) -> None:
        """Start the player and read the first samples ahead; errors are kept for `play` to raise."""
        self._drop_primed()
        output = await self._open(prepared, offset_ms)
        self._primed = output
        loop = asyncio.get_running_loop()
        output.expiry = loop.call_later(self._primed_ttl_s, self._expire, output)

    def release(self, prepared: Prepared) -> None:
        if self._primed is not None and self._primed.prepared is prepared:
            self._drop_primed()

    def _expire(self, output: _Output) -> None:
        if self._primed is output:
            self._drop_primed()

    def _drop_primed(self) -> None:
        output, self._primed = self._primed, None
        if output is not None:
            output.kill()  # the event loop's child watcher reaps the process

    async def _open(self, prepared: Prepared, offset_ms: int) -> _Output:
        output = _Output(prepared, offset_ms)
        wav = prepared.detail
        if not isinstance(wav, Path):
            output.error = PlaybackError("item was not prepared by AlsaPlayer")
            return output
        try:
            output.wav = wav
            output.position, output.end, output.first = await asyncio.to_thread(self._read_ahead, wav, offset_ms)
        except PlaybackError as exc:
            output.error = exc
            return output
        argv = self.player_argv()
        read_fd, write_fd = os.pipe()
        try:
            output.process = await asyncio.create_subprocess_exec(
                *argv, stdin=read_fd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            os.close(write_fd)
            output.error = PlaybackError(f"cannot run {argv[0]}: {exc}")
            return output
        except BaseException:  # cancelled: a player that was started anyway gets end of input and exits
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        output.write_fd = write_fd
        assert output.process.stderr is not None
        output.stderr = asyncio.create_task(output.process.stderr.read())
        return output

    @staticmethod
    def _read_ahead(wav: Path, offset_ms: int) -> tuple[int, int, bytes]:
        data = wav_data(wav)
        start = min(data.end, data.start + max(0, offset_ms) * (RATE // 1000) * FRAME_BYTES)
        with wav.open("rb") as handle:
            handle.seek(start)
            first = handle.read(min(FIRST_WRITE_BYTES, data.end - start))
        return start + len(first), data.end, first

    async def play(self, prepared: Prepared, offset_ms: int = 0, *, started_at: float | None = None) -> None:
        del started_at  # the sound card starts when the player gets its first buffer, right after this call
        output = self._primed
        if output is not None and output.prepared is prepared and output.offset_ms == offset_ms:
            self._primed = None
            if output.expiry is not None:
                output.expiry.cancel()
        else:
            self._drop_primed()
            output = await self._open(prepared, offset_ms)
        try:
            await self._feed(output)
        except BaseException:
            await output.stopped()
            raise

    async def _feed(self, output: _Output) -> None:
        if output.error is not None:
            raise output.error
        assert output.process is not None and output.write_fd is not None and output.wav is not None
        name = Path(self.player_argv()[0]).name
        fd = output.write_fd
        begun = time.monotonic()
        written = 0
        try:
            os.set_blocking(fd, False)  # the first write must not wait, whatever the pipe's size
            with contextlib.suppress(BlockingIOError):
                written = os.write(fd, output.first)
            os.set_blocking(fd, True)
        except BrokenPipeError:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(output.process.wait(), timeout=1.0)
            raise PlaybackError(f"{name} exited {output.process.returncode} before the start: "
                                f"{await output.stderr_tail()}") from None
        output.write_fd = None  # from here on the pump thread closes it
        written += await asyncio.to_thread(_pump, output, output.first[written:], fd)
        expected = len(output.first) + output.end - output.position
        returncode = await output.process.wait()
        if returncode != 0 or written < expected:
            raise PlaybackError(f"{name} exited {returncode} after {written} of {expected} bytes: "
                                f"{await output.stderr_tail()}")
        if output.stderr is not None:
            output.stderr.cancel()
        # The player returns when its buffer is drained; one that does not pace itself (a null device)
        # is waited for here, so that play returns when the audio has ended in any case.
        await asyncio.sleep(begun + written / (RATE * FRAME_BYTES) - time.monotonic())
