"""Locating ffmpeg and decoding audio without ffprobe.

Every other audio module reaches ffmpeg through here, so there is one place
that decides which binary runs: ``$LOA_FFMPEG``, else ``ffmpeg`` on PATH, else
the static binary shipped by the ``imageio-ffmpeg`` wheel (which has no
ffprobe).  pydub's ``AudioSegment.from_file`` shells out to ffprobe, so
decoding is done here instead: ffmpeg turns any input into 16-bit PCM WAV on
a pipe and the WAV is parsed in-process.

Tools are located lazily on first use and cached; nothing runs at import.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import struct
import subprocess
import tempfile
import warnings
from pathlib import Path

from audio.errors import TranscodeError

with warnings.catch_warnings():
    # pydub looks for ffmpeg on PATH when its module is imported and warns when
    # there is none; that is expected here, `configure_pydub` points it at ours.
    warnings.filterwarnings("ignore", message="Couldn't find ff", category=RuntimeWarning)
    from pydub import AudioSegment

__all__ = [
    "AudioSegment",
    "configure_pydub",
    "decode_bytes",
    "decode_file",
    "ffmpeg_exe",
    "ffprobe_exe",
    "mp3_gapless_duration_ms",
    "probe_duration_ms",
    "segment_from_wav",
]

DEFAULT_TIMEOUT_S = 300.0
_STDERR_TAIL_LINES = 6


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to use (cached; `ffmpeg_exe.cache_clear()` to re-resolve)."""
    configured = os.environ.get("LOA_FFMPEG")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise TranscodeError(f"LOA_FFMPEG={configured!r} is not an executable")
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # ImportError, or RuntimeError when the wheel has no binary
        raise TranscodeError("no ffmpeg: set LOA_FFMPEG, install ffmpeg, or install imageio-ffmpeg") from exc


@functools.cache
def ffprobe_exe() -> str | None:
    """Path of an ffprobe binary, or None: nothing in Loa requires one."""
    configured = os.environ.get("LOA_FFPROBE")
    if configured:
        # "none" forces the ffprobe-free path, as with the pip-shipped ffmpeg.
        return None if configured.lower() == "none" else shutil.which(configured)
    on_path = shutil.which("ffprobe")
    if on_path:
        return on_path
    # An ffmpeg installed outside PATH (LOA_FFMPEG) usually has ffprobe beside it.
    try:
        sibling = Path(ffmpeg_exe()).with_name("ffprobe")
    except TranscodeError:
        return None
    return str(sibling) if sibling.is_file() and os.access(sibling, os.X_OK) else None


def configure_pydub() -> None:
    """Point pydub's encoder (used by `AudioSegment.export`) at our ffmpeg. Idempotent."""
    exe = ffmpeg_exe()
    if AudioSegment.converter != exe:
        AudioSegment.converter = exe


def _stderr_tail(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return " | ".join(lines[-_STDERR_TAIL_LINES:]) or "(no output)"


def _run_ffmpeg(
    args: list[str], *, what: str, timeout_s: float, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TranscodeError(f"{what}: ffmpeg took longer than {timeout_s:g}s") from exc
    except OSError as exc:
        raise TranscodeError(f"{what}: cannot run ffmpeg ({exc})") from exc
    if check and proc.returncode != 0:
        raise TranscodeError(f"{what}: ffmpeg exit {proc.returncode}: {_stderr_tail(proc.stderr)}")
    return proc


def segment_from_wav(data: bytes) -> AudioSegment:
    """Parse a PCM WAV held in memory into an AudioSegment.

    Tolerates the placeholder sizes that ffmpeg and espeak-ng write when their
    output is a pipe: the data chunk is taken to run to the end of the buffer.
    """
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise TranscodeError("not a WAV stream")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            audio_format, channels, rate = struct.unpack_from("<HHI", data, body)
            (bits,) = struct.unpack_from("<H", data, body + 14)
            fmt = (audio_format, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise TranscodeError("WAV data chunk before its fmt chunk")
            audio_format, channels, rate, bits = fmt
            # 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which ffmpeg uses for >2 channels.
            if audio_format not in (1, 0xFFFE) or bits not in (8, 16, 32):
                raise TranscodeError(f"unsupported WAV encoding (format {audio_format}, {bits} bits)")
            width = bits // 8
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            frame = width * channels
            pcm = data[body : body + (end - body) // frame * frame]
            return AudioSegment(data=pcm, sample_width=width, frame_rate=rate, channels=channels)
        pos = body + size + (size & 1)
    raise TranscodeError("WAV stream has no data chunk")


def _decode(source: str, format_hint: str | None, what: str, timeout_s: float) -> AudioSegment:
    args = ["-v", "error"]
    if format_hint:
        args += ["-f", format_hint]
    args += ["-i", source, "-map", "0:a:0", "-vn", "-acodec", "pcm_s16le", "-f", "wav", "-"]
    wav = _run_ffmpeg(args, what=what, timeout_s=timeout_s).stdout
    segment = segment_from_wav(wav)
    if segment.frame_count() == 0:
        raise TranscodeError(f"{what}: decoded no audio")
    return segment


def decode_file(
    path: str | os.PathLike[str], format_hint: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> AudioSegment:
    """Decode any audio file ffmpeg understands into 16-bit PCM, without ffprobe.

    `format_hint` forces the container (ffmpeg ``-f``, e.g. "mp3"); by default
    ffmpeg sniffs the content, so a misnamed file still decodes.
    """
    p = Path(path)
    if not p.is_file():
        raise TranscodeError(f"{p}: no such file")
    return _decode(str(p), format_hint, str(p), timeout_s)


def decode_bytes(
    data: bytes, format_hint: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> AudioSegment:
    """Like `decode_file` for encoded audio held in memory.

    The bytes are spooled to a temporary file rather than piped: from a pipe
    ffmpeg cannot apply an MP3's gapless trim, so durations would differ.
    """
    if not data:
        raise TranscodeError("no bytes to decode")
    with tempfile.TemporaryDirectory(prefix="loa-decode-") as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(data)
        return _decode(str(path), format_hint, "<bytes>", timeout_s)


_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version id


def mp3_gapless_duration_ms(path: str | os.PathLike[str]) -> int | None:
    """Playing time of an MP3 from its Xing/Info + LAME header, encoder delay and padding removed.

    None when the file does not start with such a header (then only ffmpeg's
    estimate or a decode can tell).  Needed because ffmpeg before 6.1 (Debian
    12 ships 5.1) reports the duration *with* the delay and padding, 40-80 ms
    more than it decodes, while newer ffmpeg reports the trimmed time; this
    reads the header itself, so the answer does not depend on the version.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(10)
            skip = 0
            if head[:3] == b"ID3" and len(head) == 10:  # ID3v2: syncsafe size, optional footer
                skip = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
                skip += 10 if head[5] & 0x10 else 0
            fh.seek(skip)
            data = fh.read(4096)
    except OSError:
        return None
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return None
    version, layer = (data[1] >> 3) & 3, (data[1] >> 1) & 3
    rate_index, mono = (data[2] >> 2) & 3, (data[3] >> 6) == 3
    if layer != 1 or version not in _MP3_RATES or rate_index == 3:  # layer III only
        return None
    rate = _MP3_RATES[version][rate_index]
    mpeg1 = version == 3
    samples_per_frame = 1152 if mpeg1 else 576
    pos = 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))
    if data[pos : pos + 4] not in (b"Xing", b"Info") or len(data) < pos + 8:
        return None
    flags = int.from_bytes(data[pos + 4 : pos + 8], "big")
    if not flags & 1:
        return None
    frames = int.from_bytes(data[pos + 8 : pos + 12], "big")
    lame = pos + 8 + 4 + (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
    delay = padding = 0
    if data[lame : lame + 4] in (b"LAME", b"Lavf", b"Lavc") and len(data) >= lame + 24:
        packed = int.from_bytes(data[lame + 21 : lame + 24], "big")
        delay, padding = packed >> 12, packed & 0xFFF
    samples = frames * samples_per_frame - delay - padding
    return round(samples * 1000 / rate) if samples > 0 else None


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")
_OUT_TIME_RE = re.compile(r"^out_time_us=(\d+)\s*$", re.MULTILINE)


def probe_duration_ms(
    path: str | os.PathLike[str], *, exact: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S
) -> int:
    """Duration of an audio file in milliseconds, without ffprobe.

    Reads the duration ffmpeg prints for the container.  When that is missing
    or only estimated from the bitrate (MP3 without a Xing/Info header), or
    when `exact` is set, the file is decoded to the null muxer and the decoded
    time is used instead (costs a full decode, no memory).
    """
    p = Path(path)
    if not p.is_file():
        raise TranscodeError(f"{p}: no such file")
    if not exact:
        # With no output file ffmpeg prints the input's header and exits 1.
        proc = _run_ffmpeg(["-i", str(p)], what=str(p), timeout_s=timeout_s, check=False)
        text = proc.stderr.decode("utf-8", "replace")
        match = _DURATION_RE.search(text)
        if match and "Estimating duration from bitrate" not in text:
            if "Audio: mp3" in text and (gapless := mp3_gapless_duration_ms(p)) is not None:
                return gapless
            hours, minutes, seconds = match.groups()
            return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)
        if "Audio:" not in text:
            raise TranscodeError(f"{p}: no audio stream: {_stderr_tail(proc.stderr)}")
    out = _run_ffmpeg(
        ["-v", "error", "-i", str(p), "-map", "0:a:0", "-f", "null", "-progress", "pipe:1", "-nostats", "-"],
        what=str(p),
        timeout_s=timeout_s,
    ).stdout
    times = _OUT_TIME_RE.findall(out.decode("ascii", "replace"))
    if not times:
        raise TranscodeError(f"{p}: ffmpeg reported no decoded time")
    return round(int(times[-1]) / 1000)
