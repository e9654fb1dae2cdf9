"""Offline TTS of a whole official letter: normalise, synthesise (espeak-ng, uncached), encode for distribution.

The letter is tests/data/cong-van-thong-tin-co-so-2021.txt (a district's official letter, about 3.7 minutes
spoken). Each stage is timed separately, best of N runs: `audio.normalize.normalize`, `EspeakEngine.synthesize`
(no cache), and `audio.render.render_speech` as it is when the bench runs, given the speech already made (so
the "encode" stage is render_speech's own work: padding, resampling, loudness or peak normalisation, MP3
encoding, measuring the result). The goal is a total of at most 2 s on a 2-core machine. The real-time factor
is total time / audio duration.

For comparison it also times `fast_encode`, the bare floor of an encoder: peak gain only (no loudness
normalisation), raw PCM piped into one ffmpeg (which resamples), no temporary files, the duration from
counting MP3 frames instead of decoding, with LAME's default algorithm quality and with
``-compression_level 7``. ``--profile`` prints where render_speech spends its time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from audio.ffmpeg import AudioSegment, ffmpeg_exe
from audio.normalize import normalize
from audio.render import render_speech
from audio.tts import EspeakEngine, Speech

LETTER = Path(__file__).resolve().parent.parent / "tests" / "data" / "cong-van-thong-tin-co-so-2021.txt"
GOAL_S = 2.0
T = TypeVar("T")

# MPEG audio frame header tables (MPEG-1/2/2.5 Layer III), enough to count frames.
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


class _Ready:
    """An engine that hands back speech made beforehand, so render_speech is timed without synthesis."""

    name = "ready"

    def __init__(self, speech: Speech) -> None:
        self.speech = speech

    def synthesize(self, text: str) -> Speech:
        return self.speech


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def mp3_duration_ms(data: bytes) -> int:
    """Duration of an MP3 stream by counting its Layer III frames (a Xing/Info frame carries no audio)."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:  # ID3v2 tag: syncsafe size
        pos = 10 + ((data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F))
    samples = 0
    rate = 0
    first = True
    while pos + 4 <= len(data):
        b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
        if data[pos] != 0xFF or (b1 & 0xE0) != 0xE0 or (b1 >> 1) & 3 != 1:  # not a Layer III sync
            pos += 1
            continue
        version = (b1 >> 3) & 3
        bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
        if version == 1 or bitrate_index in (0, 15) or rate_index == 3:
            pos += 1
            continue
        rate = _RATES[version][rate_index]
        mpeg1 = version == 3
        bitrate = (_BITRATES_V1 if mpeg1 else _BITRATES_V2)[bitrate_index] * 1000
        per_frame = 1152 if mpeg1 else 576
        length = (144 if mpeg1 else 72) * bitrate // rate + padding
        mono = b3 >> 6 == 3
        side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
        tag = data[pos + 4 + side : pos + 8 + side]
        if not (first and tag in (b"Xing", b"Info")):
            samples += per_frame
        first = False
        pos += length
    return round(samples * 1000 / rate) if rate else 0


def fast_encode(
    segment: AudioSegment, *, lead_in_ms: int = 600, tail_ms: int = 400, compression_level: int | None = 7
) -> tuple[bytes, int]:
    """A candidate for render.py: the distribution MP3 (mono, 32 kHz, 64 kbit/s CBR, peak -1 dBFS, padded with
    silence) and its duration in ms, with one ffmpeg process reading raw PCM on stdin and writing MP3 on stdout.

    ``compression_level`` is LAME's algorithm quality (0 best/slowest .. 9 worst/fastest; None: LAME's default,
    what render.py used until 2026-11-27; audio.prepare now uses 7); 7 turns off LAME's slowest psychoacoustic
    search and roughly halves encoding time.
    """
    mono = segment.set_channels(1).set_sample_width(2)  # no-ops for espeak-ng and Piper output
    rate = mono.frame_rate
    silence = bytes(2 * (rate * lead_in_ms // 1000)), bytes(2 * (rate * tail_ms // 1000))
    pcm = silence[0] + mono.raw_data + silence[1]
    peak = mono.max
    gain_db = -1.0 - 20 * math.log10(peak / 32768) if peak else 0.0
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
           "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
           "-af", f"volume={gain_db:.4f}dB", "-ar", "32000", "-ac", "1",
           "-c:a", "libmp3lame", "-b:a", "64k",
           *(["-compression_level", str(compression_level)] if compression_level is not None else []),
           "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
           "-write_xing", "0", "-id3v2_version", "0", "-f", "mp3", "pipe:1"]  # fmt: skip
    proc = subprocess.run(cmd, input=pcm, capture_output=True, check=False, timeout=300)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"ffmpeg exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    return proc.stdout, mp3_duration_ms(proc.stdout)


def _profile_render(spoken: str, speech: Speech, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    render_speech(spoken, _Ready(speech))
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--text", type=Path, default=LETTER, help="the letter to speak")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    parser.add_argument("--voice", default="vi", help="espeak-ng voice")
    parser.add_argument("--no-compare", action="store_true", help="do not time the candidate encoder")
    parser.add_argument("--profile", action="store_true", help="cProfile one render_speech call")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    letter = args.text.read_text(encoding="utf-8")
    engine = EspeakEngine(voice=args.voice)
    print(f"tts letter: {args.text.name}, {len(letter)} characters, espeak-ng voice {args.voice}, "
          f"best of {args.runs}", flush=True)
    runs: list[tuple[float, float, float]] = []
    spoken = ""
    speech: Speech | None = None
    duration_ms = size = 0
    for run in range(args.runs):
        t_norm, spoken = _timed(partial(normalize, letter))
        t_synth, made = _timed(partial(engine.synthesize, spoken))
        t_encode, rendered = _timed(partial(render_speech, spoken, _Ready(made)))
        speech = made
        duration_ms, size = rendered.duration_ms, len(rendered.data)
        runs.append((t_norm, t_synth, t_encode))
        print(f"  run {run + 1}: normalise {t_norm:.3f} s, synthesise {t_synth:.3f} s, encode {t_encode:.3f} s, "
              f"total {sum(runs[-1]):.3f} s", flush=True)
    assert speech is not None
    best = min(runs, key=sum)
    total = sum(best)
    audio_s = duration_ms / 1000
    print(f"  spoken text       {len(spoken)} characters")
    print(f"  normalise         {min(r[0] for r in runs):7.3f} s  (best)")
    print(f"  synthesise        {min(r[1] for r in runs):7.3f} s  (best; espeak-ng, uncached)")
    print(f"  encode            {min(r[2] for r in runs):7.3f} s  (best; audio.render.render_speech)")
    print(f"  total             {total:7.3f} s  (best run)")
    print(f"  audio             {audio_s:7.1f} s, {size / 1e6:.2f} MB; real-time factor {total / audio_s:.4f} "
          f"({audio_s / total:.0f}x faster than real time)")
    print(f"  goal <= {GOAL_S:.1f} s: {'met' if total <= GOAL_S else 'MISSED'}")

    if not args.no_compare:
        t_synth = min(r[1] for r in runs) + min(r[0] for r in runs)
        print("  floor without loudness normalisation (peak gain + one MP3 encode):")
        for label, level in (("LAME default quality", None), ("-compression_level 7", 7)):
            timings: list[float] = []
            for _ in range(args.runs):
                elapsed, (data, ms) = _timed(partial(fast_encode, speech.audio, compression_level=level))
                timings.append(elapsed)
            print(f"    fast_encode, {label:21} {min(timings):6.3f} s -> total {t_synth + min(timings):.3f} s"
                  f" ({len(data) / 1e6:.2f} MB, {ms / 1000:.1f} s)")
    if args.profile:
        _profile_render(spoken, speech, 25)


if __name__ == "__main__":
    main()
