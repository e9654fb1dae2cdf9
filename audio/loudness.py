"""Loudness: measure it (EBU R128 / ITU-R BS.1770) and bring audio to one target.

Listeners in a commune hear announcements, TTS bulletins and relayed
programmes one after another through the same horns, so every item must be
equally loud (integrated loudness, default −16 LUFS, the usual target for
speech on small speakers) and must never clip (true-peak ceiling, default
−1.5 dBTP, measured on the encoded file because MP3 encoding adds overs).

One-pass ``loudnorm`` misses its target (−17.4 LUFS measured here) and a
plain gain clips hot files, so Loa works in two passes: the loudness is
measured with ffmpeg's ``ebur128`` filter, then a computed gain and a
look-ahead limiter (``alimiter``, a sample-peak limiter set below the
ceiling by a safety margin for inter-sample and encoder overs) are applied,
and the encoded result is measured again (`audio.prepare` retries with a
corrected gain or a lower limit if it missed).  Quiet input is raised by at
most `MAX_GAIN_DB` so a near-silent recording is not turned into hiss, and
digital silence (which measures −70 LUFS, −inf dBTP) is left alone.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from audio.errors import TranscodeError
from audio.ffmpeg import ffmpeg_exe

__all__ = [
    "BAND_HIGHPASS_HZ",
    "BAND_STOP_DB",
    "BAND_STOP_HZ",
    "LIMITER_MARGIN_DB",
    "MAX_GAIN_DB",
    "MP3_PEAK_ALLOWANCE_DB",
    "SILENCE_LUFS",
    "SPEECH_COMPRESSOR",
    "Compressor",
    "Loudness",
    "LoudnessTarget",
    "apply_filter",
    "band_limit_filter",
    "compressor_filter",
    "encoded_check_filter",
    "gain_filter",
    "gain_for",
    "limiter_filter",
    "limiter_limit_db",
    "measure",
    "measure_filter",
    "parse_ebur128",
    "parse_encoded_check",
]

MAX_GAIN_DB = 30.0
# ebur128's absolute gate: anything at or below this is silence as far as loudness goes.
SILENCE_LUFS = -70.0
# The limiter works on samples at 32 kHz: the true peak of its output reads up to ~0.5 dB over its
# limit on transients (clicks, pink noise), and MP3 adds up to `MP3_PEAK_ALLOWANCE_DB`; it is set this
# far below the ceiling so that the limited signal's true peak plus the allowance clears the ceiling
# without decoding the MP3 (audio.prepare, docs/audio.md). History: 1.0 until 2026-11-27 (every MP3
# decoded), then 2.0 with a 1.5 dB allowance, 1.2 since the band limit (third round, same day).
LIMITER_MARGIN_DB = 1.2
# What MP3 at 64 kbit/s (mono 32 kHz, LAME level 7) was measured to add to the true peak of the
# band-limited signal it encodes (`band_limit_filter`): -0.8 ... +0.1 dB over white/pink/brown noise,
# sines at 1, 8, 12 and 15 kHz, a square wave, clicks, an fs/4 sine off its crests and espeak-ng speech,
# limited or not, with both ffmpeg builds. Without the band limit it was up to +1.25 dB (white noise,
# a 15 kHz tone: LAME's brick-wall low-pass at ~15.3 kHz) and 1.5 was used. The true peak measured
# before the encoder plus this is taken as a bound for the encoded file; when that bound does not
# clear the ceiling the MP3 itself is decoded and measured.
MP3_PEAK_ALLOWANCE_DB = 0.5
MEASURE_TIMEOUT_S = 900.0

# The broadcast band (docs/audio.md, "Band limit"): horn loudspeakers reproduce roughly 300 Hz-7 kHz,
# speech intelligibility (Vietnamese tones ride on the harmonics, consonant noise lies under ~8 kHz)
# needs nothing above 8 kHz, and LAME at 64 kbit/s mono 32 kHz passes flat to 15 kHz and cuts
# brick-wall at ~15.3 kHz, where its filter adds overshoot the limiter cannot see. So every item is
# filtered before it is measured and limited: a gentle 2nd-order Butterworth high-pass (rumble only
# costs amplifier power in a horn) and a 6th-order inverse-Chebyshev (type II) low-pass, flat (no
# ripple) to within 0.2 dB up to 8 kHz, -3 dB at ~9.2 kHz and at least BAND_STOP_DB down from
# BAND_STOP_HZ on: with the gain capped at MAX_GAIN_DB, nothing near the encoder's cut-off can come
# back within 30 dB of full scale.
BAND_HIGHPASS_HZ = 100.0
BAND_STOP_HZ = 12000.0
BAND_STOP_DB = 60.0
BAND_LOWPASS_ORDER = 6
# The check of an encoded file oversamples 4x (32 kHz -> 128 kHz, ffmpeg's default resampler)
# instead of ebur128's 192 kHz in double precision: the same peaks within ebur128's 0.1 dB
# rounding on the test signals, for half the CPU of that part (docs/audio.md). Its reading must clear
# the ceiling by this much, for what the two interpolators may disagree on.
CHECK_PEAK_RATE = 128000
CHECK_PEAK_MARGIN_DB = 0.1


@dataclass(frozen=True)
class LoudnessTarget:
    lufs: float = -16.0
    true_peak_db: float = -1.5
    tolerance_lu: float = 1.0

    def __post_init__(self) -> None:
        if not -40.0 <= self.lufs <= -5.0:
            raise ValueError("target loudness must be between -40 and -5 LUFS")
        if not -12.0 <= self.true_peak_db <= 0.0:
            raise ValueError("true-peak ceiling must be between -12 and 0 dBTP")
        if self.tolerance_lu <= 0:
            raise ValueError("tolerance must be positive")


@dataclass(frozen=True)
class Loudness:
    lufs: float  # integrated loudness; SILENCE_LUFS (-70) for silence
    true_peak_db: float  # dBTP; -inf for digital silence
    lra: float  # loudness range, LU

    @property
    def is_silent(self) -> bool:
        return not math.isfinite(self.lufs) or self.lufs <= SILENCE_LUFS + 0.05

    def within(self, target: LoudnessTarget) -> bool:
        """Within ±tolerance of the target and at or under the true-peak ceiling."""
        return abs(self.lufs - target.lufs) <= target.tolerance_lu and self.true_peak_db <= target.true_peak_db


def measure_filter(*, peak: str = "true") -> str:
    """The analysis filter; its summary goes to ffmpeg's log (stderr) when the stream ends.

    `peak` is "true" (4x oversampled true peak, the costly part), "sample" or "none".
    """
    if peak not in ("true", "sample", "none"):
        raise ValueError(f"peak must be 'true', 'sample' or 'none', not {peak!r}")
    # framelog=verbose keeps the per-frame lines out of the log at ffmpeg's default level; the
    # summary is logged at info level either way.  (``framelog=quiet`` would do the same but only
    # exists from ffmpeg 7; Debian 12 ships 5.1, which rejects it and fails the whole graph.)
    return "ebur128=framelog=verbose" + ("" if peak == "none" else f":peak={peak}")


_Biquad = tuple[float, float, float, float, float]  # b0, b1, b2, a1, a2 (a0 = 1)


def _inverse_chebyshev_sections(rate: int, stop_hz: float, stop_db: float, order: int) -> list[_Biquad]:
    """Biquads (b0, b1, b2, a1, a2; a0 = 1) of a type-II Chebyshev low-pass, each with unity gain at DC.

    Analogue prototype with its stopband edge at 1 rad/s, scaled to the pre-warped edge and mapped by
    the bilinear transform: poles are the reciprocals of the type-I poles of ripple factor
    1/sqrt(10^(stop_db/10) - 1), zeros lie on the imaginary axis at 1/cos(theta_k).
    """
    if order % 2 or not 0 < stop_hz < rate / 2:
        raise ValueError("the low-pass needs an even order and a stopband edge under Nyquist")
    eps = 1 / math.sqrt(10 ** (stop_db / 10) - 1)
    mu = math.asinh(1 / eps) / order
    edge = 2 * rate * math.tan(math.pi * stop_hz / rate)  # pre-warped, rad/s
    k2 = 2.0 * rate
    sections: list[_Biquad] = []
    for k in range(1, order // 2 + 1):
        theta = (2 * k - 1) * math.pi / (2 * order)
        pole = edge / complex(-math.sinh(mu) * math.sin(theta), math.cosh(mu) * math.cos(theta))
        zero_w = edge / math.cos(theta)  # zeros at +-j*zero_w
        # Bilinear transform of (s^2 + w^2) / (s^2 - 2 Re(p) s + |p|^2), normalised to unity at DC.
        b0, b1, b2 = k2 * k2 + zero_w**2, 2 * (zero_w**2 - k2 * k2), k2 * k2 + zero_w**2
        m2, re2 = abs(pole) ** 2, 2 * pole.real
        a0, a1, a2 = k2 * k2 - re2 * k2 + m2, 2 * (m2 - k2 * k2), k2 * k2 + re2 * k2 + m2
        dc = (b0 + b1 + b2) / (a0 + a1 + a2)
        sections.append((b0 / a0 / dc, b1 / a0 / dc, b2 / a0 / dc, a1 / a0, a2 / a0))
    return sections


def band_limit_filter(rate: int = 32000) -> str:
    """The broadcast band limit at `rate` Hz (see BAND_STOP_HZ): high-pass, then the steep low-pass."""
    stages = [f"highpass=f={BAND_HIGHPASS_HZ:g}:p=2"]  # Q 0.707: Butterworth
    for b0, b1, b2, a1, a2 in _inverse_chebyshev_sections(rate, BAND_STOP_HZ, BAND_STOP_DB, BAND_LOWPASS_ORDER):
        stages.append(f"biquad=b0={b0:.10g}:b1={b1:.10g}:b2={b2:.10g}:a0=1:a1={a1:.10g}:a2={a2:.10g}")
    return ",".join(stages)


def encoded_check_filter() -> str:
    """Loudness and true peak of a decoded stream, cheaper than `measure_filter` (see `CHECK_PEAK_RATE`).

    Large frames first (fewer hand-overs between ffmpeg's threads), then ``ebur128`` without
    peak, then the oversampled peak (``astats``).  Read the log with `parse_encoded_check`.
    """
    # The null muxer takes 16-bit PCM, and left to itself ffmpeg would convert before astats,
    # clipping every over at 0 dBFS: the peak is read in float.
    return (
        "asetnsamples=n=32768:p=0,ebur128=framelog=verbose,"
        f"aresample={CHECK_PEAK_RATE},aformat=sample_fmts=flt|fltp|dbl|dblp,"
        "astats=measure_perchannel=none:measure_overall=Peak_level"
    )


_ASTATS_PEAK_RE = re.compile(r"\bPeak level dB:\s*(-?(?:\d+(?:\.\d+)?|inf))")


def parse_encoded_check(log: str) -> Loudness:
    """The result of `encoded_check_filter`: ebur128's loudness with the oversampled peak."""
    loudness = parse_ebur128(log)
    peaks = _ASTATS_PEAK_RE.findall(log)
    if not peaks:
        raise TranscodeError("ffmpeg printed no peak level")
    return Loudness(lufs=loudness.lufs, true_peak_db=_number(peaks[-1]), lra=loudness.lra)


_I_RE = re.compile(r"\bI:\s*(-?(?:\d+(?:\.\d+)?|inf))\s*LUFS")
_LRA_RE = re.compile(r"\bLRA:\s*(-?(?:\d+(?:\.\d+)?|inf))\s*LU\b")
_PEAK_RE = re.compile(r"\bPeak:\s*(-?(?:\d+(?:\.\d+)?|inf))\s*dBFS")


def _number(text: str) -> float:
    return float(text)  # float() reads "inf" and "-inf"


def parse_ebur128(log: str) -> Loudness:
    """Read the summary the ``ebur128`` filter prints at the end of a run.

    With ``peak=sample`` true_peak_db holds the sample peak; without a peak
    mode there is no peak line and it is NaN.
    """
    # The last summary wins: a log can hold more than one run's output.
    start = log.rfind("Summary:")
    if start < 0:
        raise TranscodeError("ffmpeg printed no loudness summary")
    summary = log[start:]
    i_match, lra_match = _I_RE.search(summary), _LRA_RE.search(summary)
    if i_match is None:
        raise TranscodeError("ffmpeg's loudness summary has no integrated loudness")
    lufs = max(_number(i_match.group(1)), SILENCE_LUFS)
    peak_match = _PEAK_RE.search(summary)
    true_peak = _number(peak_match.group(1)) if peak_match else math.nan
    lra = _number(lra_match.group(1)) if lra_match else 0.0
    return Loudness(lufs=lufs, true_peak_db=true_peak, lra=lra)


def measure(
    path: Path, *, downmix_mono: bool = False, band_limited: bool = False, timeout_s: float = MEASURE_TIMEOUT_S
) -> Loudness:
    """Integrated loudness, true peak and loudness range of the first audio stream of `path`.

    `downmix_mono` measures the file as it will sound after Loa's downmix to
    the mono distribution format (what matters for a jingle or an upload);
    `band_limited` (with `downmix_mono`) also resamples to 32 kHz and applies
    `band_limit_filter`, as `audio.prepare` does before levelling a jingle.
    Streams the decode through ffmpeg: no memory grows with the file.
    """
    p = Path(path).absolute()  # "a:b.wav" must not be read as an ffmpeg protocol
    if not p.is_file():
        raise TranscodeError(f"{p}: no such file")
    if band_limited and not downmix_mono:
        raise ValueError("band_limited applies to the mono downmix")
    chain = ("aformat=channel_layouts=mono," if downmix_mono else "") + measure_filter()
    if band_limited:
        chain = (
            f"aformat=sample_fmts=flt:sample_rates=32000:channel_layouts=mono,{band_limit_filter()},{measure_filter()}"
        )
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", str(p), "-map", "0:a:0",
           "-af", chain, "-f", "null", "-"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TranscodeError(f"{p}: loudness measurement took longer than {timeout_s:g}s") from exc
    except OSError as exc:
        raise TranscodeError(f"cannot run ffmpeg: {exc}") from exc
    log = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = " | ".join(line.strip() for line in log.splitlines()[-4:] if line.strip())
        raise TranscodeError(f"{p}: loudness measurement failed (ffmpeg exit {proc.returncode}): {tail}")
    return parse_ebur128(log)


def gain_for(measured: Loudness | float, target: LoudnessTarget, *, max_gain_db: float = MAX_GAIN_DB) -> float:
    """The gain in dB that brings `measured` to the target: 0 for silence, at most `max_gain_db`."""
    lufs = measured.lufs if isinstance(measured, Loudness) else measured
    if not math.isfinite(lufs) or lufs <= SILENCE_LUFS + 0.05:
        return 0.0
    return min(target.lufs - lufs, max_gain_db)


def limiter_limit_db(target: LoudnessTarget, margin_db: float = LIMITER_MARGIN_DB) -> float:
    """Sample-peak level the limiter holds (dBFS): the ceiling less the encoder margin."""
    return target.true_peak_db - margin_db


def gain_filter(gain_db: float) -> str:
    """The gain stage (float precision, so nothing clips before the limiter)."""
    return f"volume={gain_db:.3f}dB:precision=float"


def limiter_filter(limit_db: float, *, attack_ms: float = 5.0, release_ms: float = 50.0) -> str:
    """A look-ahead limiter holding sample peaks at `limit_db` dBFS.

    ``level=0`` stops alimiter from auto-levelling its output up to the
    limit, ``latency=1`` removes its look-ahead delay so timing is unchanged.
    """
    limit = min(max(10 ** (limit_db / 20), 0.0625), 1.0)  # alimiter accepts 0.0625..1
    return f"alimiter=limit={limit:.6f}:attack={attack_ms:g}:release={release_ms:g}:level=0:latency=1"


@dataclass(frozen=True)
class Compressor:
    """A downward compressor (``acompressor``, RMS detection, no make-up gain), before the loudness gain.

    `threshold_db` is relative to the input's sample peak where that is known
    (speech handed to `audio.prepare.prepare_segment`), so it acts on the top
    `-threshold_db` dB of the range whatever the engine's output level; for a
    file whose peak is not known in advance it is taken as dBFS.
    """

    threshold_db: float = -20.0
    ratio: float = 4.0
    attack_ms: float = 0.5
    release_ms: float = 80.0

    def __post_init__(self) -> None:
        if not -60.0 <= self.threshold_db <= 0.0:
            raise ValueError("compressor threshold must be between -60 and 0 dBFS")
        if not 1.0 <= self.ratio <= 20.0:
            raise ValueError("compressor ratio must be between 1 and 20")
        if not (0.01 <= self.attack_ms <= 2000.0 and 0.01 <= self.release_ms <= 9000.0):
            raise ValueError("compressor attack must be 0.01-2000 ms and release 0.01-9000 ms")


# Speech from TTS engines is very peaky (espeak-ng: about -19 LUFS with peaks at full scale, a
# crest factor the limiter alone can only absorb by costing ~1.5 LU and a second encode). 4:1 above
# -20 dBFS (peak-relative for speech) with a fast attack evens the syllables out; the limiter then
# has little left to do, so one render pass lands on the target (see docs/audio.md).
SPEECH_COMPRESSOR = Compressor()


def compressor_filter(compressor: Compressor, peak_db: float = 0.0) -> str:
    """The compressor stage for input peaking at `peak_db` dBFS; ``makeup=1`` (the loudness gain follows)."""
    peak = peak_db if math.isfinite(peak_db) else 0.0
    threshold = min(max(10 ** ((peak + compressor.threshold_db) / 20), 0.001), 1.0)  # acompressor: 2^-10..1
    return (
        f"acompressor=threshold={threshold:.6f}:ratio={compressor.ratio:g}:attack={compressor.attack_ms:g}"
        f":release={compressor.release_ms:g}:makeup=1"
    )


def apply_filter(gain_db: float, limit_db: float) -> str:
    """Filter chain for the second pass: the gain, then the limiter."""
    return f"{gain_filter(gain_db)},{limiter_filter(limit_db)}"
