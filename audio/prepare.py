"""Turn any accepted recording into the one broadcast file, at a steady loudness.

Every item the agents play is mono 32 kHz MP3 at 64 kbit/s
(`audio.render.DISTRIBUTION`), at the same integrated loudness and under the
same true-peak ceiling (`audio.loudness`), starts after a lead-in that lets
amplifiers switched on with the stream wake up, and carries no dead air at
either end.  `prepare_file` does this for uploads, `prepare_segment` for
TTS output held in memory.

Everything streams through ffmpeg, file in and file out, so a two-hour
upload needs no more memory than a short one:

1. **Analyse** (one decode of the upload): downmix to mono, compress
   (synthesised speech only, `audio.loudness.SPEECH_COMPRESSOR`), resample to
   32 kHz once and band-limit to the horns' band
   (`audio.loudness.band_limit_filter`: 100 Hz high-pass, steep low-pass
   ~9 kHz, so nothing reaches LAME's own cut-off); then, in a second ffmpeg
   on the other core, measure the integrated loudness (``ebur128``) and
   write the result as a 32-bit float mono WAV
   intermediate (7.7 MB a minute: a two-hour upload needs about 0.9 GB of
   temporary disk and no memory).  The silence at both ends is then found in
   the intermediate itself (a memory-mapped scan from each end).
2. **Render** (from the intermediate): trim, apply the computed gain,
   join lead-in / chime / jingles / tail, limit, encode MP3 once.  A second
   ffmpeg on the other core runs the same (deterministic) filter graph on the
   same inputs and measures loudness and true peak of its output
   (`audio.loudness.encoded_check_filter`): exactly what LAME is fed.
3. **Verify**: the encoded file's loudness is that measurement less
   `ENCODER_LOSS_LU`, its true peak at most that measurement plus
   `audio.loudness.MP3_PEAK_ALLOWANCE_DB`; the MP3 gets a decode-free sanity
   check (LAME header length, size) and is decoded and measured only when the
   peak bound does not clear the ceiling.  If the result missed the target,
   pass 2 is repeated with a corrected gain or a lower limit (at most twice),
   then the file is moved into place atomically.  The first pass already aims
   `ENCODER_LOSS_LU` high for what MP3 takes off, so one encode is the rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from audio.errors import TranscodeError
from audio.ffmpeg import AudioSegment, ffmpeg_exe, mp3_gapless_duration_ms
from audio.loudness import (
    CHECK_PEAK_MARGIN_DB,
    MAX_GAIN_DB,
    MP3_PEAK_ALLOWANCE_DB,
    Compressor,
    Loudness,
    LoudnessTarget,
    band_limit_filter,
    compressor_filter,
    encoded_check_filter,
    gain_filter,
    gain_for,
    limiter_filter,
    limiter_limit_db,
    measure,
    measure_filter,
    parse_ebur128,
    parse_encoded_check,
)
from audio.probe import InvalidAudio, ProbeResult, probe

log = logging.getLogger(__name__)

__all__ = ["CHIME_GAP_MS", "JINGLE_GAP_MS", "PreparedAudio", "ProgressCallback", "prepare_file", "prepare_segment"]

ProgressCallback = Callable[[float], None]

# The distribution format (see audio.render.DISTRIBUTION and docs/audio.md);
# repeated here because audio.render builds on this module.
_CODEC = "mp3"
_ENCODER = "libmp3lame"
_RATE = 32000
_CHANNELS = 1
_BITRATE = "64k"
_BITRATE_BPS = 64000
# LAME's algorithm quality (0 best/slowest .. 9 fastest). 7 turns off the slowest psychoacoustic
# search and roughly halves encoding time; at 64 kbit/s mono 32 kHz it measured no worse than the
# default (3) against the source waveform, see docs/audio.md.
_COMPRESSION_LEVEL = "7"

CHIME_GAP_MS = 300  # silence after a chime, before the first word
JINGLE_GAP_MS = 300  # between an intro/outro jingle and the content
SILENCE_THRESHOLD_DB = -50.0  # below this (sample level) counts as silence at the ends
SILENCE_MIN_S = 0.25
KEEP_BEFORE_MS = 50  # kept before the first sound: soft onsets start under the threshold
KEEP_AFTER_MS = 150  # kept after the last sound: decays and reverb tails
# The limiter is left out when every peak after the gain stays this far under its limit
# (it would do nothing but cost ~10 % of the encode); the verification catches the rest.
LIMITER_SKIP_HEADROOM_DB = 0.5
MAX_ATTEMPTS = 3  # render passes: the first one and up to two corrections
# MP3 at 64 kbit/s takes 0.3-0.5 LU off (measured: espeak-ng speech 0.4-0.5, pink noise ~0.5),
# so the first pass aims this much above the target instead of finding it out with a second encode.
ENCODER_LOSS_LU = 0.4
# After a pass, items up to a minute are re-rendered when they miss by more than 0.3 LU (cheap;
# silence padding shifts a few-second clip); longer ones only when they miss by more than half the
# tolerance (a correction costs a whole second encode, and the result is still well within spec).
CHEAP_RERENDER_MS = 60 * 1000
SHORT_AIM_LU = 0.3
LONG_AIM_LU = 0.5
_ANALYSE_SHARE = 0.25  # share of the progress bar for pass 1 (pass 2 encodes: the rest)
# ffmpeg (6.1 and later) hands every packet and frame from thread to thread; with the WAV demuxer's
# 4 KB packets and 1152-sample MP3 frames that overhead cost as much CPU as the filters themselves.
# Large frames in the filter graphs (no padding: `p=0`) and 64 KB packets from Loa's own WAV streams
# cut the CPU of each pass by a quarter to a third (docs/audio.md).
_BATCH = "asetnsamples=n=16384:p=0"
_WAV_INPUT = ("-f", "wav", "-max_size", "65536")  # only for WAV Loa wrote: other demuxers refuse the option
# Taps of the resampler in the analysis pass (swresample's filter_size; its default is 32).
_RESAMPLE_TAPS = 16
# Every piece of a broadcast (content, chime, jingles) is band-limited at 32 kHz before the gain and
# the limiter, in the graph that already resamples it (audio.loudness.band_limit_filter).
_BAND = band_limit_filter(_RATE)


@dataclass(frozen=True)
class PreparedAudio:
    path: Path
    sha256: str
    size_bytes: int
    duration_ms: int
    lufs: float  # measured on the encoded file; -70 for silence
    true_peak_db: float  # measured on the encoded file; -inf for digital silence
    codec: str
    sample_rate: int
    channels: int


# ---------------------------------------------------------------- running ffmpeg


class _Progress:
    """Maps ffmpeg's out_time onto [lo, hi] of the caller's bar; never goes backwards."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = -1.0

    def report(self, value: float) -> None:
        value = min(max(value, 0.0), 1.0)
        if self._callback is not None and value > self._last + 1e-4:
            self._last = value
            self._callback(value)

    def stage(self, lo: float, hi: float, total_ms: int) -> Callable[[int], None]:
        def on_time(out_time_us: int) -> None:
            if total_ms > 0:
                self.report(lo + (hi - lo) * min(out_time_us / 1000 / total_ms, 1.0))

        return on_time


_OUT_TIME_RE = re.compile(r"^out_time_us=(\d+)\s*$")


def _pump_progress(stream: IO[bytes], on_time: Callable[[int], None] | None) -> None:
    for raw in stream:
        match = _OUT_TIME_RE.match(raw.decode("ascii", "replace"))
        if match and on_time is not None:
            on_time(int(match.group(1)))


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return "(no log)"
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(" ")]
    return " | ".join(kept[-lines:]) or "(no output)"


def _kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(OSError):
            proc.kill()


def _timeout_for(duration_ms: int) -> float:
    # ffmpeg runs at 100x real time or better; this only catches a wedged process.
    return max(120.0, duration_ms / 1000)


def _ffmpeg_cmd(*args: str) -> list[str]:
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y", *args]


# ---------------------------------------------------------------- pass 1: analyse


@dataclass(frozen=True)
class _Analysis:
    loudness: Loudness  # of the whole upload after downmix; true_peak_db is the *sample* peak
    frames: int  # samples in the intermediate
    start_frame: int  # first sample to keep
    end_frame: int  # one past the last sample to keep


def _sound_span(samples: np.ndarray, threshold: float) -> tuple[int, int] | None:
    """Index of the first sample at or above `threshold` (absolute) and one past the last, or None.

    Reads the intermediate from both ends in blocks, so a file with a few seconds of silence at each
    end costs a few blocks, not a pass over the whole (it is memory-mapped, never read whole).
    """
    block = 1 << 16
    first = None
    for lo in range(0, len(samples), block):
        loud = np.flatnonzero(np.abs(samples[lo : lo + block]) >= threshold)
        if loud.size:
            first = lo + int(loud[0])
            break
    if first is None:
        return None
    for hi in range(len(samples), first, -block):
        lo = max(first, hi - block)
        loud = np.flatnonzero(np.abs(samples[lo:hi]) >= threshold)
        if loud.size:
            return first, lo + int(loud[-1]) + 1
    return first, first + 1


def _trim_range(intermediate: Path, enabled: bool) -> tuple[int, int, int]:
    """(frames, first frame to keep, one past the last) of the intermediate.

    Silence at an end (every sample under SILENCE_THRESHOLD_DB) is cut when it lasts SILENCE_MIN_S or
    more, keeping KEEP_BEFORE_MS before the first sound and KEEP_AFTER_MS after the last.  The scan
    reads the band-limited intermediate, so a DC offset or rumble under 100 Hz counts as silence.
    """
    offset, frames = _wav_data(intermediate, 4)
    if not enabled or frames == 0:
        return frames, 0, frames
    samples = np.memmap(intermediate, dtype="<f4", mode="r", offset=offset, shape=(frames,))
    try:
        span = _sound_span(samples, 10 ** (SILENCE_THRESHOLD_DB / 20))
    finally:
        del samples
    if span is None:  # silence throughout: nothing to trim towards
        return frames, 0, frames
    min_silence = round(SILENCE_MIN_S * _RATE)
    sound_start, sound_end = span
    start = max(0, sound_start - round(KEEP_BEFORE_MS * _RATE / 1000)) if sound_start >= min_silence else 0
    end = min(frames, sound_end + round(KEEP_AFTER_MS * _RATE / 1000)) if frames - sound_end >= min_silence else frames
    return frames, start, end


def _wav_data(path: Path, bytes_per_frame: int) -> tuple[int, int]:
    """(offset of the samples, frames) in a WAV ffmpeg wrote to a seekable file (RIFF, or RF64 beyond 4 GB)."""
    with path.open("rb") as fh:
        header = fh.read(4096)
        size = fh.seek(0, os.SEEK_END)
    if header[:4] not in (b"RIFF", b"RF64") or header[8:12] != b"WAVE":
        raise TranscodeError("intermediate is not a WAV file")
    pos = 12
    while pos + 8 <= len(header):
        chunk, length = header[pos : pos + 4], int.from_bytes(header[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            body = pos + 8
            data_len = size - body if length in (0, 0xFFFFFFFF) else min(length, size - body)
            return body, data_len // bytes_per_frame
        pos += 8 + length + (length & 1)
    raise TranscodeError("intermediate WAV has no data chunk")


class _Probing:
    """`probe` on a thread: the analysis pass starts at the same time instead of ~70 ms later."""

    def __init__(self, src: Path) -> None:
        self._src = src
        self._result: ProbeResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="loa-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = probe(self._src)
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self) -> ProbeResult:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def _analyse(
    src: Path,
    intermediate: Path,
    work: Path,
    duration: int | _Probing,
    trim: bool,
    progress_for: Callable[[int], Callable[[int], None]],
    dynamics: str = "",
) -> _Analysis:
    """Decode once into the intermediate; a second ffmpeg fed by a pipe analyses the same samples.

    The decoder downmixes, resamples and band-limits, and streams the result as a float WAV to its
    stdout; the analyser, on the other core, writes the intermediate and measures it (loudness,
    sample peak), reporting progress; then the silence at the ends is found in the intermediate.
    `dynamics` (a compressor filter, or "") is applied before the resampler, so the intermediate
    and the loudness measured are those of the compressed audio.  `duration` is the source's length
    in ms, or the probe still running on it: its verdict comes first (a refused upload stops both
    ffmpegs), and only then are the time-out and the progress bar (`progress_for(duration_ms)`) set up.
    """
    # Downmix first, then resample with a 16-tap filter (swresample's default, 32 taps, was a third of
    # this pass's CPU): its softer transition only lets aliases through above ~12 kHz, which the band
    # limit that follows removes (docs/audio.md, "Analysis pass").
    mono = "aformat=sample_fmts=flt:channel_layouts=mono"
    resample = f"aresample={_RATE}:filter_size={_RESAMPLE_TAPS},{mono}"
    # The decoder (decode, downmix, resample, compression, band limit) and the analyser (intermediate
    # file, loudness) each get a core, about half the work each.  The band limit comes last, at 32 kHz,
    # so the loudness and peak are those of what the limiter and LAME will get (docs/audio.md, "Band
    # limit").  A compressor works at the input's own rate (TTS engines speak at 16-24 kHz: fewer
    # samples for the costliest filter of this pass), before the resampler.  The silence at the ends
    # is found afterwards, in the intermediate (`_trim_range`; silencedetect cost 0.1-0.15 s of CPU
    # per 10 minutes here).
    chain = f"{_BATCH},{mono},{dynamics},{resample},{_BAND}" if dynamics else f"{_BATCH},{mono},{resample},{_BAND}"
    decode_cmd = _ffmpeg_cmd(
        "-i", str(src), "-map", "0:a:0", "-af", chain, "-c:a", "pcm_f32le", "-f", "wav", "pipe:1",
    )  # fmt: skip
    analyse_cmd = _ffmpeg_cmd(
        *_WAV_INPUT, "-i", "pipe:0",
        "-filter_complex", f"[0:a:0]{_BATCH},asplit=2[file][m];[m]{measure_filter(peak='sample')}[null]",
        "-map", "[file]", "-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", str(intermediate),
        "-map", "[null]", "-f", "null", "-progress", "pipe:1", "-",
    )  # fmt: skip
    decode_log, analyse_log = work / "decode.log", work / "analyse.log"
    procs: list[subprocess.Popen[bytes]] = []
    with decode_log.open("wb") as dlog, analyse_log.open("wb") as alog:
        try:
            decoder = subprocess.Popen(decode_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=dlog)
            procs.append(decoder)
            analyser = subprocess.Popen(analyse_cmd, stdin=decoder.stdout, stdout=subprocess.PIPE, stderr=alog)
            procs.append(analyser)
            assert decoder.stdout is not None and analyser.stdout is not None
            decoder.stdout.close()  # the analyser holds it now
            duration_ms = duration if isinstance(duration, int) else duration.result().duration_ms
            timer = threading.Timer(_timeout_for(duration_ms), _kill_all, [procs])
            timer.start()
            try:
                _pump_progress(analyser.stdout, progress_for(duration_ms))
                decode_rc, analyse_rc = decoder.wait(), analyser.wait()
            finally:
                timer.cancel()
        finally:
            _kill_all([p for p in procs if p.poll() is None])
            for p in procs:
                p.wait()
                if p.stdout is not None:
                    p.stdout.close()
    if decode_rc != 0:
        # probe() accepted the file, so a failure here is the content's fault.
        raise InvalidAudio(f"the recording is damaged and cannot be played ({_tail(decode_log, 2)})")
    if analyse_rc != 0:
        raise TranscodeError(f"loudness analysis failed (ffmpeg exit {analyse_rc}): {_tail(analyse_log)}")
    loudness = parse_ebur128(analyse_log.read_text("utf-8", "replace"))  # true_peak_db: the sample peak
    frames, start, end = _trim_range(intermediate, trim)
    if frames == 0:
        raise InvalidAudio("the recording contains no sound that can be played")
    return _Analysis(loudness=loudness, frames=frames, start_frame=start, end_frame=end)


# ---------------------------------------------------------------- pass 2: render + verify


@dataclass(frozen=True)
class _Piece:
    """One input of the assembly: a file with its gain, or silence."""

    path: Path | None
    gain_db: float = 0.0
    silence_ms: int = 0
    duration_ms: int = 0
    peak_db: float = -math.inf  # true peak before the gain


@dataclass(frozen=True)
class _RenderResult:
    """What a render pass measured: figures for the encoded file, and whether the MP3 itself was decoded."""

    loudness: Loudness  # lufs and true_peak_db of the encoded file (an estimate and a bound, see below)
    pre_encode: Loudness | None  # the limiter's output as measured beside the encoder (None: not measured)
    decoded: bool  # True when the figures were measured by decoding the MP3


def _encoded_estimate(pre: Loudness) -> Loudness:
    """The encoded file's loudness and a bound on its true peak, from the signal the encoder was fed.

    MP3 at 64 kbit/s took 0.3-0.5 LU off every signal measured (`ENCODER_LOSS_LU` is the middle) and,
    the signal being band-limited first, changed the true peak by -0.8 ... +0.1 dB
    (`MP3_PEAK_ALLOWANCE_DB` is the bound used).
    """
    if pre.is_silent:
        return pre
    return Loudness(lufs=pre.lufs - ENCODER_LOSS_LU, true_peak_db=pre.true_peak_db + MP3_PEAK_ALLOWANCE_DB, lra=pre.lra)


def _check_encoded(path: Path, total_ms: int) -> Loudness:
    """Decode the MP3 and measure it (loudness, 4x oversampled true peak): the full check."""
    cmd = _ffmpeg_cmd("-f", _CODEC, "-i", str(path), "-af", encoded_check_filter(), "-f", "null", "-")
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=_timeout_for(total_ms), check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TranscodeError("the check of the encoded file took too long") from exc
    text = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 0:
        with contextlib.suppress(TranscodeError):
            return parse_encoded_check(text)
    log.warning("check of the encoded file failed; measuring it with ebur128 instead")
    return measure(path)


def _sane_encoding(path: Path, total_ms: int) -> bool:
    """Cheap sanity check of the encoded file without decoding it: LAME header, length and size."""
    duration = mp3_gapless_duration_ms(path)
    if duration is None or abs(duration - total_ms) > 50:
        return False
    expected = total_ms / 1000 * _BITRATE_BPS / 8
    return abs(path.stat().st_size - expected) <= 0.02 * expected + 4096


def _render(
    intermediate: Path,
    analysis: _Analysis,
    content_gain_db: float,
    before: Sequence[_Piece],
    after: Sequence[_Piece],
    limit_db: float | None,
    out: Path,
    work: Path,
    total_ms: int,
    on_time: Callable[[int], None],
    ceiling_db: float,
) -> _RenderResult:
    """Encode once; what LAME is fed is measured by a parallel ffmpeg running the same filter graph.

    Every filter of the assembly is deterministic, so the second ffmpeg, on the other core, measures
    loudness and the 4x oversampled true peak of exactly the samples LAME was given, without a copy
    of them from the encoder.  The encoded file's figures are derived from that
    (`_encoded_estimate`); the MP3 is decoded and measured only when the derived peak bound does not
    clear `ceiling_db` by `CHECK_PEAK_MARGIN_DB`, or when the cheap sanity check of the file fails.
    `limit_db` None leaves the limiter out (the peaks are known to be well under it).
    """
    fmt = f"aformat=sample_fmts=flt:sample_rates={_RATE}:channel_layouts=mono"
    inputs: list[str] = [*_WAV_INPUT, "-i", str(intermediate)]
    n_inputs = 1
    graph: list[str] = []
    labels: list[str] = []

    def add(piece: _Piece) -> None:
        nonlocal n_inputs
        label = f"p{len(labels)}"
        if piece.path is None:
            frames = round(piece.silence_ms * _RATE / 1000)
            if frames <= 0:
                return
            graph.append(f"anullsrc=r={_RATE}:cl=mono,atrim=end_sample={frames},{fmt}[{label}]")
        else:
            inputs.extend(["-i", str(piece.path)])
            graph.append(f"[{n_inputs}:a:0]{fmt},{_BAND},{gain_filter(piece.gain_db)}[{label}]")
            n_inputs += 1
        labels.append(label)

    for piece in before:
        add(piece)
    content = f"c{len(labels)}"
    graph.append(
        f"[0:a:0]atrim=start_sample={analysis.start_frame}:end_sample={analysis.end_frame},"
        f"asetpts=PTS-STARTPTS,{_BATCH},{fmt},{gain_filter(content_gain_db)}[{content}]"
    )
    labels.append(content)
    for piece in after:
        add(piece)
    joined = "".join(f"[{label}]" for label in labels)
    limiter = "" if limit_db is None else f",{limiter_filter(limit_db)}"
    graph.append(f"{joined}concat=n={len(labels)}:v=0:a=1{limiter}[out]")
    assembly = ";".join(graph)

    read_fd, write_fd = os.pipe()
    encode_cmd = _ffmpeg_cmd(
        *inputs, "-filter_complex", assembly, "-progress", f"pipe:{write_fd}",
        "-map", "[out]", "-c:a", _ENCODER, "-b:a", _BITRATE, "-compression_level", _COMPRESSION_LEVEL,
        "-ar", str(_RATE), "-ac", str(_CHANNELS),
        # No version strings or tags: the same input gives the same bytes (the store is content-addressed).
        "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1", "-f", _CODEC, str(out),
    )  # fmt: skip
    # The measurer runs the same assembly on the same inputs: every filter in it (trim, gain, concat,
    # biquads, alimiter) is deterministic, sample by sample, so it measures exactly the samples LAME gets,
    # without the encoder process having to copy them to it (docs/audio.md, "Benchmark: uploads").
    measure_cmd = _ffmpeg_cmd(
        *inputs, "-filter_complex", f"{assembly};[out]{encoded_check_filter()}[checked]",
        "-map", "[checked]", "-f", "null", "-",
    )  # fmt: skip
    encode_log, measure_log = work / "render.log", work / "measure.log"
    procs: list[subprocess.Popen[bytes]] = []
    with encode_log.open("wb") as elog, measure_log.open("wb") as mlog:
        try:
            encoder = subprocess.Popen(
                encode_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=elog, pass_fds=(write_fd,)
            )
        finally:
            os.close(write_fd)
        procs.append(encoder)
        try:
            measurer = subprocess.Popen(measure_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=mlog)
            procs.append(measurer)
            timer = threading.Timer(_timeout_for(total_ms), _kill_all, [procs])
            timer.start()
            try:
                with os.fdopen(read_fd, "rb") as progress_stream:
                    read_fd = -1
                    _pump_progress(progress_stream, on_time)
                encode_rc, measure_rc = encoder.wait(), measurer.wait()
            finally:
                timer.cancel()
        finally:
            if read_fd >= 0:
                os.close(read_fd)
            _kill_all([p for p in procs if p.poll() is None])
            for p in procs:
                p.wait()
    if encode_rc != 0:
        raise TranscodeError(f"encoding failed (ffmpeg exit {encode_rc}): {_tail(encode_log)}")
    pre: Loudness | None = None
    if measure_rc == 0:
        with contextlib.suppress(TranscodeError):
            pre = parse_encoded_check(measure_log.read_text("utf-8", "replace"))
    if pre is None:
        log.warning("measurement beside the encoder failed (%s); decoding the file instead", _tail(measure_log, 2))
    elif not _sane_encoding(out, total_ms):
        log.warning("encoded file failed its sanity check (length or size); decoding it")
    else:
        estimate = _encoded_estimate(pre)
        if not estimate.true_peak_db + CHECK_PEAK_MARGIN_DB > ceiling_db:  # -inf and in range: no decode
            return _RenderResult(loudness=estimate, pre_encode=pre, decoded=False)
    return _RenderResult(loudness=_check_encoded(out, total_ms), pre_encode=pre, decoded=True)


def _piece_for(path: Path, target: LoudnessTarget) -> _Piece:
    info = probe(path)
    loudness = measure(path, downmix_mono=True, band_limited=True)
    # Jingles are band-limited and levelled like the content (a chime under 0.4 s measures as silence: gain 0).
    return _Piece(
        path=path, gain_db=_first_gain(loudness, target), duration_ms=info.duration_ms, peak_db=loudness.true_peak_db
    )


def _first_gain(loudness: Loudness, target: LoudnessTarget) -> float:
    """The gain to the target plus the encoder's expected loss (none for silence), at most MAX_GAIN_DB."""
    gain = gain_for(loudness, target)
    return gain if loudness.is_silent else min(gain + ENCODER_LOSS_LU, MAX_GAIN_DB)


def _needs_limiter(analysis: _Analysis, gain_db: float, pieces: Sequence[_Piece], limit_db: float) -> bool:
    peaks = [analysis.loudness.true_peak_db + gain_db]  # sample peak of the content
    peaks += [p.peak_db + p.gain_db for p in pieces if p.path is not None]
    threshold = limit_db - LIMITER_SKIP_HEADROOM_DB
    # NaN (no peak reported) compares False: treat it as "needs the limiter".
    return any(not (peak <= threshold) for peak in peaks)


def _silence(ms: int) -> _Piece:
    return _Piece(path=None, silence_ms=max(ms, 0), duration_ms=max(ms, 0))


def _install(produced: Path, dst: Path) -> tuple[str, int]:
    """Copy into a temporary file beside `dst`, hashing on the way, fsync, rename. Returns (sha256, size)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    size = 0
    try:
        with produced.open("rb") as inp, os.fdopen(fd, "wb") as out:
            while chunk := inp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


def prepare_file(
    src: Path,
    dst: Path,
    *,
    target: LoudnessTarget = LoudnessTarget(),  # noqa: B008 - frozen dataclass, safe as a default
    lead_in_ms: int = 600,
    tail_ms: int = 400,
    chime: Path | None = None,
    intro: Path | None = None,
    outro: Path | None = None,
    trim_silence: bool = True,
    compressor: Compressor | None = None,
    progress: ProgressCallback | None = None,
    work_dir: Path | None = None,
) -> PreparedAudio:
    """Prepare `src` (any accepted format, whatever its name) as the broadcast file `dst`.

    Lead-in: `lead_in_ms` of silence; or, with a `chime`, the chime followed
    by silence so that chime and silence together last at least
    `lead_in_ms` (and the silence at least `CHIME_GAP_MS`).  `intro` and
    `outro` jingles are levelled to the target like the content and set
    `JINGLE_GAP_MS` apart from it.  `progress` receives rising values in
    0.0–1.0, ending with 1.0.  Temporary files (about 7.7 MB per minute of
    audio) go to `work_dir`, default the system's temporary directory.
    `compressor` (off by default for uploads; its threshold is then in dBFS)
    is applied to the content before the loudness is measured.

    Raises InvalidAudio (the upload is not usable), TranscodeError (ffmpeg
    failed), ValueError (bad arguments).
    """
    return _prepare(
        src, dst, target=target, lead_in_ms=lead_in_ms, tail_ms=tail_ms, chime=chime, intro=intro, outro=outro,
        trim_silence=trim_silence, dynamics="" if compressor is None else compressor_filter(compressor),
        progress=progress, work_dir=work_dir,
    )  # fmt: skip


def _prepare(
    src: Path,
    dst: Path,
    *,
    target: LoudnessTarget,
    lead_in_ms: int,
    tail_ms: int,
    chime: Path | None,
    intro: Path | None,
    outro: Path | None,
    trim_silence: bool,
    dynamics: str,
    progress: ProgressCallback | None,
    work_dir: Path | None,
    duration_ms: int | None = None,
) -> PreparedAudio:
    """`prepare_file`; `duration_ms` given (a WAV Loa wrote itself) spares the probe of `src`."""
    if lead_in_ms < 0 or tail_ms < 0:
        raise ValueError("lead_in_ms and tail_ms must not be negative")
    # Absolute paths: ffmpeg would read a name like "a:b.mp3" as a protocol.
    src, dst = Path(src).absolute(), Path(dst).absolute()
    bar = _Progress(progress)
    bar.report(0.0)
    # The probe (refusals, the duration) runs beside the chime/jingle measurements and the analysis.
    duration: int | _Probing = _Probing(src) if duration_ms is None else duration_ms
    before: list[_Piece] = []
    after: list[_Piece] = []
    if chime is not None:
        chime_piece = _piece_for(Path(chime).absolute(), target)
        before += [chime_piece, _silence(max(CHIME_GAP_MS, lead_in_ms - chime_piece.duration_ms))]
    else:
        before.append(_silence(lead_in_ms))
    if intro is not None:
        before += [_piece_for(Path(intro).absolute(), target), _silence(JINGLE_GAP_MS)]
    if outro is not None:
        after += [_silence(JINGLE_GAP_MS), _piece_for(Path(outro).absolute(), target)]
    after.append(_silence(tail_ms))

    with tempfile.TemporaryDirectory(prefix="loa-prepare-", dir=work_dir) as tmp:
        work = Path(tmp).absolute()
        intermediate = work / "content.wav"
        analysis = _analyse(src, intermediate, work, duration, trim_silence,
                            lambda ms: bar.stage(0.0, _ANALYSE_SHARE, ms), dynamics)
        content_ms = round((analysis.end_frame - analysis.start_frame) * 1000 / _RATE)
        total_ms = content_ms + sum(p.duration_ms for p in (*before, *after))
        gain = _first_gain(analysis.loudness, target)
        limit = limiter_limit_db(target)
        force_limiter = False
        history: list[tuple[float, float]] = []  # (gain, resulting LUFS) of earlier passes
        out = work / "out.mp3"
        result: Loudness | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            use_limiter = force_limiter or _needs_limiter(analysis, gain, before + after, limit)
            rendered = _render(
                intermediate, analysis, gain, before, after, limit if use_limiter else None, out, work, total_ms,
                bar.stage(_ANALYSE_SHARE, 0.97, total_ms), target.true_peak_db,
            )  # fmt: skip
            result = rendered.loudness
            silent = analysis.loudness.is_silent or result.is_silent
            capped = gain >= MAX_GAIN_DB - 1e-6 and result.lufs < target.lufs
            aim = min(SHORT_AIM_LU if total_ms <= CHEAP_RERENDER_MS else LONG_AIM_LU, target.tolerance_lu)
            lufs_ok = silent or capped or abs(result.lufs - target.lufs) <= aim
            peak_ok = result.true_peak_db + CHECK_PEAK_MARGIN_DB <= target.true_peak_db
            log.debug(
                "attempt %d: gain %.2f dB, limiter %s -> %s (MP3 decoded: %s)",
                attempt, gain, f"{limit:.2f} dBFS" if use_limiter else "off", result, rendered.decoded,
            )  # fmt: skip
            if lufs_ok and peak_ok:
                break
            if attempt == MAX_ATTEMPTS:
                if result.within(target):
                    break
                log.warning(
                    "%s: after %d passes the result is %.2f LUFS / %.2f dBTP (target %.1f LUFS, ceiling %.1f dBTP)",
                    src, attempt, result.lufs, result.true_peak_db, target.lufs, target.true_peak_db,
                )  # fmt: skip
                break
            if not lufs_ok:
                # dB in -> LU out is 1:1 until the limiter bites; from the second correction on,
                # use the slope seen between the last two passes (the limiter flattens it).
                slope = 1.0
                if history and abs(gain - history[-1][0]) > 0.1:
                    prev_gain, prev_lufs = history[-1]
                    slope = min(max((result.lufs - prev_lufs) / (gain - prev_gain), 0.3), 1.0)
                history.append((gain, result.lufs))
                gain = min(gain + (target.lufs - result.lufs) / slope, MAX_GAIN_DB)
            if not peak_ok:
                if use_limiter:
                    limit -= result.true_peak_db + CHECK_PEAK_MARGIN_DB - target.true_peak_db + 0.3
                force_limiter = True
        assert result is not None
        sha256, size = _install(out, dst)
    # Loa wrote this file itself: the format is known, and the LAME header it carries gives the
    # exact playing time, so no probe is needed (it would cost another ffmpeg run).
    played_ms = mp3_gapless_duration_ms(dst)
    if played_ms is None:
        played_ms = probe(dst).duration_ms
    bar.report(1.0)
    return PreparedAudio(
        path=dst,
        sha256=sha256,
        size_bytes=size,
        duration_ms=played_ms,
        lufs=result.lufs,
        true_peak_db=result.true_peak_db,
        codec=_CODEC,
        sample_rate=_RATE,
        channels=_CHANNELS,
    )


def prepare_segment(
    segment: AudioSegment,
    dst: Path,
    *,
    target: LoudnessTarget = LoudnessTarget(),  # noqa: B008 - frozen dataclass, safe as a default
    lead_in_ms: int = 600,
    tail_ms: int = 400,
    chime: Path | None = None,
    intro: Path | None = None,
    outro: Path | None = None,
    trim_silence: bool = True,
    compressor: Compressor | None = None,
    progress: ProgressCallback | None = None,
    work_dir: Path | None = None,
) -> PreparedAudio:
    """`prepare_file` for audio held in memory (TTS output): spooled to a WAV first.

    pydub writes WAV itself, so neither ffmpeg nor ffprobe is involved before
    `prepare_file` takes over.  Here the `compressor` threshold is relative to
    the segment's sample peak (`audio.render.render_speech` passes
    `audio.loudness.SPEECH_COMPRESSOR`).
    """
    if len(segment) == 0:
        raise TranscodeError("nothing to prepare: empty segment")
    dynamics = "" if compressor is None else compressor_filter(compressor, segment.max_dBFS)
    with tempfile.TemporaryDirectory(prefix="loa-segment-", dir=work_dir) as tmp:
        wav = Path(tmp) / "segment.wav"
        segment.export(str(wav), format="wav")
        return _prepare(
            wav, dst, target=target, lead_in_ms=lead_in_ms, tail_ms=tail_ms, chime=chime, intro=intro,
            outro=outro, trim_silence=trim_silence, dynamics=dynamics, progress=progress, work_dir=work_dir,
            duration_ms=len(segment),
        )  # fmt: skip
