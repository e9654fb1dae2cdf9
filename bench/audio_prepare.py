"""Upload preparation: Loa's `prepare_file` against a plain ffmpeg transcode of the same upload.

A music-like stereo 44.1 kHz upload (pink noise, a slowly beating chord, 2 s of silence at each end)
is generated once. Loa's run does everything a broadcast needs: probe, one decode with loudness
analysis and silence detection, trim, lead-in and tail, gain, limiting, MP3 encoding, verification
of the encoded file (loudness and true peak) and an atomic install. The reference, on the same file
in the same run: one ffmpeg command decoding to mono 32 kHz MP3 at 64 kbit/s with no analysis at
all, with the same encoder settings as Loa (LAME ``-compression_level``, so the comparison stays
like for like). The two are run alternately N times, so that background load hits both alike, and
the medians are compared: ratio = Loa / ffmpeg alone. Loa's stages are timed by wrapping the
functions of `audio.prepare` that run them (probe, analysis pass, render pass with its parallel
check, install).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import audio.prepare
from audio.ffmpeg import ffmpeg_exe
from audio.loudness import measure
from audio.prepare import _COMPRESSION_LEVEL as COMPRESSION_LEVEL
from audio.prepare import PreparedAudio, prepare_file

# Stage name -> the audio.prepare function that runs it.
STAGES = {"probe": "probe", "analyse": "_analyse", "render + check": "_render", "install": "_install"}


def make_upload(path: Path, minutes: float, fmt: str) -> None:
    seconds = minutes * 60
    chord = "0.1*sin(2*PI*220*t)+0.08*sin(2*PI*277*t)+0.06*sin(2*PI*331*t)"
    mono = "aformat=sample_fmts=fltp:channel_layouts=mono"
    codec = ["-c:a", "pcm_s16le"] if fmt == "wav" else ["-c:a", "libmp3lame", "-b:a", "192k"]
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", f"anoisesrc=c=pink:r=44100:a=0.08:d={seconds}:seed=3",
         "-f", "lavfi", "-i", f"aevalsrc={chord}:s=44100:d={seconds}",
         # aformat on each input: ffmpeg 5.1's amerge cannot choose a format for these sources.
         "-filter_complex", f"[0]{mono}[n];[1]tremolo=f=0.5:d=0.6,{mono}[c];"
         "[n][c]amerge=inputs=2,adelay=2000:all=1,apad=pad_dur=2",
         "-ac", "2", *codec, str(path)],
        check=True,
    )  # fmt: skip


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain_ffmpeg(src: Path, dst: Path) -> None:
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", "-i", str(src),
         "-ac", "1", "-ar", "32000", "-c:a", "libmp3lame", "-b:a", "64k", "-compression_level", COMPRESSION_LEVEL,
         str(dst)],
        check=True,
    )  # fmt: skip


@contextmanager
def stage_timer() -> Iterator[dict[str, list[float]]]:
    """Wall time of every call of each stage, by name, while the block runs."""
    spent: dict[str, list[float]] = {name: [] for name in STAGES}
    originals = {attr: getattr(audio.prepare, attr) for attr in STAGES.values()}

    def timed(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[name].append(time.perf_counter() - start)

        return wrapper

    for name, attr in STAGES.items():
        setattr(audio.prepare, attr, timed(name, originals[attr]))
    try:
        yield spent
    finally:
        for attr, func in originals.items():
            setattr(audio.prepare, attr, func)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--format", choices=("wav", "mp3"), default="wav", help="container of the upload")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, alternating; medians are compared")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loa-bench-") as tmp:
        root = Path(tmp)
        src = root / f"upload.{args.format}"
        print(f"audio prepare: {args.minutes:g}-minute stereo 44.1 kHz {args.format} upload, {args.repeat} runs each, "
              f"ffmpeg {ffmpeg_exe()}", flush=True)  # fmt: skip
        make_upload(src, args.minutes, args.format)
        print(f"  upload: {src.stat().st_size / 1e6:.1f} MB", flush=True)
        plain_times: list[float] = []
        loa_times: list[float] = []
        plain_cpu: list[float] = []
        loa_cpu: list[float] = []
        loads: list[float] = []
        prepared: PreparedAudio | None = None
        with stage_timer() as stages:
            for round_ in range(args.repeat):
                loads.append(os.getloadavg()[0])
                cpu, start = _children_cpu(), time.perf_counter()
                plain_ffmpeg(src, root / "plain.mp3")
                plain_times.append(time.perf_counter() - start)
                plain_cpu.append(_children_cpu() - cpu)
                cpu, start = _children_cpu(), time.perf_counter()
                prepared = prepare_file(src, root / "loa.mp3")
                loa_times.append(time.perf_counter() - start)
                loa_cpu.append(_children_cpu() - cpu)
                print(f"  run {round_ + 1}: ffmpeg alone {plain_times[-1]:.2f} s, Loa prepare {loa_times[-1]:.2f} s "
                      f"(load {loads[-1]:.1f})", flush=True)  # fmt: skip
        assert prepared is not None
        plain_med, loa_med = statistics.median(plain_times), statistics.median(loa_times)
        audio_s = args.minutes * 60 + 4
        child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        plain_loudness = measure(root / "plain.mp3")
        check = measure(prepared.path)  # the reference measurement (ebur128, 192 kHz true peak)
        print(
            f"  ffmpeg alone  {plain_med:6.2f} s median ({audio_s / plain_med:4.0f}x real time), "
            f"{plain_loudness.lufs:.1f} LUFS, {plain_loudness.true_peak_db:.1f} dBTP (not normalised)"
        )
        print(f"  Loa prepare   {loa_med:6.2f} s median ({audio_s / loa_med:4.0f}x real time), "
              f"{prepared.lufs:.1f} LUFS, {prepared.true_peak_db:.2f} dBTP as checked "
              f"({check.lufs:.1f} LUFS, {check.true_peak_db:.1f} dBTP by audio.loudness.measure), "
              f"{prepared.duration_ms / 1000:.1f} s, {prepared.size_bytes / 1e6:.2f} MB")  # fmt: skip
        for name, spent in stages.items():
            if spent:
                print(f"    {name:15s} {statistics.median(spent):6.3f} s median ({len(spent)} calls)")
        plain_cpu_med, loa_cpu_med = statistics.median(plain_cpu), statistics.median(loa_cpu)
        print(
            f"  CPU time (all ffmpeg processes, median): ffmpeg alone {plain_cpu_med:.2f} s, "
            f"Loa {loa_cpu_med:.2f} s (ratio {loa_cpu_med / plain_cpu_med:.2f})"
        )
        print(f"  largest ffmpeg process: {child_rss_mb:.0f} MB resident")
        print(f"  load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}")
        print(f"  ratio Loa/ffmpeg (medians): {loa_med / plain_med:.2f}; per run: "
              + " ".join(f"{lt / pt:.2f}" for lt, pt in zip(loa_times, plain_times, strict=True)))


if __name__ == "__main__":
    main()
