"""What an uploaded file really is, and whether Loa accepts it.

Commune officials upload whatever their phone or browser made (mp3, wav,
m4a/aac, ogg/opus, webm, amr, flac), often with a wrong or missing
extension.  `probe` asks ffmpeg what the *content* is and never looks at the
name.  It uses ffprobe's JSON when an ffprobe exists, and otherwise parses
the header that ``ffmpeg -i FILE`` prints, because the ffmpeg shipped in the
``imageio-ffmpeg`` wheel comes without ffprobe.  When the container does not
state a duration (browser WebM recordings) or only estimates it from the
bitrate (AMR, raw AAC, MP3 without a Xing header), the file is decoded to the
null muxer to measure it (as `audio.ffmpeg.probe_duration_ms` does): a full decode, but streaming, so memory stays flat.

`check_upload` applies the limits before anything else runs: size first,
from the file system, so an oversized upload never reaches ffmpeg.  Refusals
are `InvalidAudio` (or its subclasses) with a short message an official can
act on.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio.errors import AudioError, TranscodeError
from audio.ffmpeg import ffmpeg_exe, ffprobe_exe, mp3_gapless_duration_ms

__all__ = [
    "AudioTooLarge",
    "AudioTooLong",
    "InvalidAudio",
    "ProbeResult",
    "UploadLimits",
    "check_upload",
    "format_duration",
    "format_size",
    "probe",
]

PROBE_TIMEOUT_S = 60.0
DECODE_TIMEOUT_S = 900.0  # measuring a 2-hour file means decoding all of it


class InvalidAudio(AudioError):
    """The file is not usable audio: not audio at all, empty, or without an audio stream."""


class AudioTooLarge(InvalidAudio):
    """The file is bigger than the upload limit."""


class AudioTooLong(InvalidAudio):
    """The recording lasts longer than the upload limit."""


@dataclass(frozen=True)
class ProbeResult:
    format_name: str  # ffmpeg's demuxer name(s), e.g. "mp3", "wav", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # e.g. "mp3", "aac", "opus", "amr_nb", "pcm_s16le"
    duration_ms: int
    sample_rate: int
    channels: int
    bit_rate: int | None  # bits per second; None when the container does not say


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 200 * 1024 * 1024
    max_duration_s: int = 7200


# ---------------------------------------------------------------- messages

_MB = 1024 * 1024
_KB = 1024


def _ceil_to(value: float, step: float) -> float:
    # A little tolerance so 200.0000001 does not become 200.1.
    return math.ceil(value / step - 1e-9) * step


def format_size(size_bytes: int) -> str:
    """'250 MB', '1.5 MB', '800 KB', '12 bytes' (rounded up, so an excess never reads as the limit)."""
    if size_bytes >= _MB:
        value, unit = size_bytes / _MB, "MB"
    elif size_bytes >= _KB:
        value, unit = size_bytes / _KB, "KB"
    else:
        return f"{size_bytes} bytes"
    shown = _ceil_to(value, 1.0) if value >= 100 else _ceil_to(value, 0.1)
    text = f"{shown:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def format_duration(seconds: float) -> str:
    """'2 h 10 min', '2 h', '3 min 20 s', '12 s' (rounded up to the unit shown)."""
    if seconds >= 3600:
        minutes = math.ceil(seconds / 60 - 1e-9)
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if seconds >= 60:
        whole = math.ceil(seconds - 1e-9)
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    if seconds >= 10 or float(seconds).is_integer():
        return f"{math.ceil(seconds - 1e-9)} s"
    return f"{_ceil_to(seconds, 0.1):.1f} s"


# ---------------------------------------------------------------- probing

_NOT_AUDIO = "the file is not a sound recording in a format we can read"
_NO_STREAM = "the file has no audio stream"
_EMPTY_FILE = "the file is empty"
_NO_SOUND = "the recording is empty (it lasts 0 seconds)"
_UNDECODABLE = "the recording is damaged and cannot be played"

_LAYOUT_CHANNELS = {
    "mono": 1,
    "stereo": 2,
    "downmix": 2,
    "2.1": 3,
    "3.0": 3,
    "3.0(back)": 3,
    "4.0": 4,
    "quad": 4,
    "quad(side)": 4,
    "3.1": 4,
    "5.0": 5,
    "5.0(side)": 5,
    "4.1": 5,
    "5.1": 6,
    "5.1(side)": 6,
    "6.0": 6,
    "6.0(front)": 6,
    "hexagonal": 6,
    "6.1": 7,
    "6.1(back)": 7,
    "6.1(front)": 7,
    "7.0": 7,
    "7.0(front)": 7,
    "7.1": 8,
    "7.1(wide)": 8,
    "7.1(wide-side)": 8,
    "octagonal": 8,
}

_INPUT_RE = re.compile(r"^Input #0, (.+?), from ", re.MULTILINE)
_DURATION_RE = re.compile(r"Duration:\s*(?:(\d+):(\d\d):(\d\d(?:\.\d+)?)|N/A)(?:.*?bitrate:\s*(\d+) kb/s)?")
_AUDIO_RE = re.compile(r"^\s*Stream #0:\d+\S*: Audio: (\w+)(.*)$", re.MULTILINE)
_RATE_RE = re.compile(r",\s*(\d+) Hz")
_LAYOUT_RE = re.compile(r",\s*(\d+) Hz,\s*([^,]+)")
_STREAM_BITRATE_RE = re.compile(r",\s*(\d+) kb/s")
_N_CHANNELS_RE = re.compile(r"(\d+) channels?")


def _channels_of(layout: str) -> int:
    layout = layout.strip()
    match = _N_CHANNELS_RE.match(layout)
    if match:
        return int(match.group(1))
    if layout in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[layout]
    base = layout.split("(")[0]
    return _LAYOUT_CHANNELS.get(base, 0)


def _run(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TranscodeError(f"{cmd[0]} took longer than {timeout_s:g}s to read the file") from exc
    except OSError as exc:
        raise TranscodeError(f"cannot run {cmd[0]}: {exc}") from exc


_OUT_TIME_RE = re.compile(r"^out_time_us=(\d+)\s*$", re.MULTILINE)


def _exact_duration_ms(path: Path) -> int:
    """Decode the first audio stream to the null muxer and return the decoded time (0 if none)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
           "-f", "null", "-progress", "pipe:1", "-nostats", "-"]  # fmt: skip
    proc = _run(cmd, DECODE_TIMEOUT_S)
    if proc.returncode != 0:
        raise InvalidAudio(_UNDECODABLE)
    times = _OUT_TIME_RE.findall(proc.stdout.decode("ascii", "replace"))
    return round(int(times[-1]) / 1000) if times else 0


def _mp3_duration_ms(path: Path, reported_ms: int) -> int:
    """The gapless playing time from the MP3's own header, else what ffmpeg/ffprobe reported.

    ffmpeg 5.1 (Debian 12) counts the encoder delay and padding in the duration
    it reports for an MP3 with a LAME/Info header (40-80 ms too long); ffmpeg 7+
    does not.  Reading the header makes the result the same with both.
    """
    gapless = mp3_gapless_duration_ms(path)
    return reported_ms if gapless is None else gapless


def _probe_ffmpeg(path: Path) -> ProbeResult:
    """Parse the input header ``ffmpeg -i`` prints (it exits 1: no output file is given)."""
    proc = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], PROBE_TIMEOUT_S)
    text = proc.stderr.decode("utf-8", "replace")
    input_match = _INPUT_RE.search(text)
    if input_match is None:
        raise InvalidAudio(_NOT_AUDIO)
    audio = _AUDIO_RE.search(text)
    if audio is None:
        raise InvalidAudio(_NO_STREAM)
    codec, details = audio.group(1), audio.group(2)
    rate_match = _RATE_RE.search(details)
    layout_match = _LAYOUT_RE.search(details)
    sample_rate = int(rate_match.group(1)) if rate_match else 0
    channels = _channels_of(layout_match.group(2)) if layout_match else 0
    bit_rate: int | None = None
    stream_rate = _STREAM_BITRATE_RE.search(details)
    duration_match = _DURATION_RE.search(text)
    if stream_rate:
        bit_rate = int(stream_rate.group(1)) * 1000
    elif duration_match and duration_match.group(4):
        bit_rate = int(duration_match.group(4)) * 1000
    duration_ms: int | None = None
    if duration_match and duration_match.group(1) is not None:
        hours, minutes, seconds = duration_match.group(1, 2, 3)
        duration_ms = round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)
    if duration_ms is None or "Estimating duration from bitrate" in text:
        duration_ms = _exact_duration_ms(path)
    elif codec == "mp3":
        duration_ms = _mp3_duration_ms(path, duration_ms)
    return ProbeResult(
        format_name=input_match.group(1),
        codec=codec,
        duration_ms=duration_ms,
        sample_rate=sample_rate,
        channels=channels,
        bit_rate=bit_rate,
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _parse_ffprobe(data: dict[str, Any], warnings_text: str, path: Path) -> ProbeResult:
    fmt = data.get("format") or {}
    streams = [s for s in data.get("streams") or [] if s.get("codec_type") == "audio"]
    if not fmt and not data.get("streams"):
        raise InvalidAudio(_NOT_AUDIO)
    if not streams:
        raise InvalidAudio(_NO_STREAM)
    stream = streams[0]
    channels = _int_or_none(stream.get("channels")) or _channels_of(str(stream.get("channel_layout") or ""))
    duration_s = fmt.get("duration") or stream.get("duration")
    duration_ms: int | None = None
    if duration_s not in (None, "N/A"):
        try:
            duration_ms = round(float(duration_s) * 1000)
        except ValueError:
            duration_ms = None
    if duration_ms is None or "Estimating duration from bitrate" in warnings_text:
        duration_ms = _exact_duration_ms(path)
    elif stream.get("codec_name") == "mp3":
        duration_ms = _mp3_duration_ms(path, duration_ms)
    return ProbeResult(
        format_name=str(fmt.get("format_name") or ""),
        codec=str(stream.get("codec_name") or "unknown"),
        duration_ms=duration_ms,
        sample_rate=_int_or_none(stream.get("sample_rate")) or 0,
        channels=channels,
        bit_rate=_int_or_none(stream.get("bit_rate")) or _int_or_none(fmt.get("bit_rate")),
    )


def _probe_ffprobe(exe: str, path: Path) -> ProbeResult:
    cmd = [exe, "-v", "warning", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = _run(cmd, PROBE_TIMEOUT_S)
    if proc.returncode != 0:
        raise InvalidAudio(_NOT_AUDIO)
    try:
        data = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as exc:
        raise TranscodeError(f"ffprobe printed unreadable JSON for {path}") from exc
    return _parse_ffprobe(data, proc.stderr.decode("utf-8", "replace"), path)


def probe(path: Path) -> ProbeResult:
    """Describe the first audio stream of `path` from its content (the name is ignored).

    Raises InvalidAudio for an empty file, non-audio content or a file
    without an audio stream or without any sound, TranscodeError when ffmpeg
    itself cannot run.
    """
    # Absolute, so that a name like "a:b.mp3" is never read as an ffmpeg protocol.
    p = Path(path).absolute()
    try:
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidAudio("the file was not found") from exc
    if size == 0:
        raise InvalidAudio(_EMPTY_FILE)
    exe = ffprobe_exe()
    result = _probe_ffprobe(exe, p) if exe else _probe_ffmpeg(p)
    if result.duration_ms <= 0:
        raise InvalidAudio(_NO_SOUND)
    return result


def check_upload(path: Path, limits: UploadLimits) -> ProbeResult:
    """Refuse what Loa will not broadcast; return the probe of what it will.

    The size is checked from the file system before ffmpeg runs; then the
    content is probed and its duration compared with the limit.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidAudio("the file was not found") from exc
    if size > limits.max_bytes:
        raise AudioTooLarge(f"the file is {format_size(size)}; the limit is {format_size(limits.max_bytes)}")
    result = probe(p)
    if result.duration_ms > limits.max_duration_s * 1000:
        raise AudioTooLong(
            f"the recording lasts {format_duration(result.duration_ms / 1000)}; "
            f"the limit is {format_duration(limits.max_duration_s)}"
        )
    return result
