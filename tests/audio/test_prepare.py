"""Uploads in every accepted format become the one broadcast file, at the loudness target.

Fixtures are generated at test time with the same ffmpeg the code uses
(lavfi sources): stereo 44.1 kHz pink noise plus a tone, 5 s long with 2 s
of digital silence before and after, in each container/codec an official
might upload.  `make_audio` is shared with the probe and loudness tests.
"""

from __future__ import annotations

import functools
import itertools
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from audio.ffmpeg import AudioSegment, decode_file, ffmpeg_exe
from audio.loudness import BAND_STOP_DB, MAX_GAIN_DB, Compressor, Loudness, LoudnessTarget, measure
from audio.prepare import PreparedAudio, prepare_file, prepare_segment
from audio.probe import InvalidAudio, probe

TARGET = LoudnessTarget()
CONTENT_S = 5.0
PAD_S = 2.0

# name -> (file name, ffmpeg output options); the extension is only for humans
FORMATS: dict[str, tuple[str, list[str]]] = {
    "mp3": ("in.mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    "wav": ("in.wav", ["-c:a", "pcm_s16le"]),
    "m4a": ("in.m4a", ["-c:a", "aac", "-b:a", "96k", "-f", "ipod"]),
    "ogg": ("in.ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
    "opus": ("in.opus", ["-c:a", "libopus", "-b:a", "48k"]),
    "webm": ("in.webm", ["-c:a", "libopus", "-b:a", "48k", "-f", "webm"]),
    # AMR-NB is narrow-band mono: 8 kHz is all it can carry.
    "amr": ("in.amr", ["-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-ar", "8000", "-ac", "1"]),
    "flac": ("in.flac", ["-c:a", "flac"]),
}


def ffmpeg(*args: str, exe: str | None = None) -> None:
    subprocess.run([exe or ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y", *args], check=True)


@functools.cache
def _has_encoder(exe: str, codec: str) -> bool:
    listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False).stdout
    return re.search(rf"^\s*A\S*\s+{re.escape(codec)}\s", listing, re.MULTILINE) is not None


def fixture_ffmpeg(options: Sequence[str]) -> str:
    """The ffmpeg that writes a fixture: the one the code uses, unless it lacks the encoder.

    Debian's ffmpeg has no AMR encoder (libopencore_amrnb is only in libavcodec-extra) but
    decodes AMR natively, which is what Loa needs; such a fixture is written with the
    pip-shipped ffmpeg instead, and the code under test still reads it with its own.
    """
    exe = ffmpeg_exe()
    codec = options[options.index("-c:a") + 1] if "-c:a" in options else None
    if codec is None or _has_encoder(exe, codec):
        return exe
    try:
        import imageio_ffmpeg

        fallback = str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:  # ImportError, or RuntimeError when the wheel has no binary
        fallback = None
    if fallback and _has_encoder(fallback, codec):
        return fallback
    pytest.skip(f"no ffmpeg here can encode {codec} to make the fixture")


def make_audio(
    path: Path,
    *,
    content_s: float = CONTENT_S,
    pad_s: float = PAD_S,
    noise: float = 0.1,
    tone: float = 0.1,  # amplitude of the tone (1.0 = full scale)
    gain_db: float = 0.0,
    options: list[str] | None = None,
) -> Path:
    """Stereo 44.1 kHz: pink noise (left) and a 330 Hz tone (right), with `pad_s` of silence at both ends."""
    pad_ms = round(pad_s * 1000)
    # lavfi's sine has amplitude 1/8.  amerge cannot pick a format for two lavfi sources of
    # different sample formats in ffmpeg 5.1 (Debian 12): both are made float mono first.
    mono = "aformat=sample_fmts=fltp:channel_layouts=mono"
    chain = f"[0]{mono}[n];[1]volume={tone * 8:g},{mono}[t];[n][t]amerge=inputs=2,volume={gain_db}dB"
    if pad_ms:
        chain += f",adelay={pad_ms}:all=1,apad=pad_dur={pad_s}"
    options = options or ["-c:a", "pcm_s16le"]
    ffmpeg(
        "-f", "lavfi", "-i", f"anoisesrc=c=pink:r=44100:a={noise}:d={content_s}:seed=7",
        "-f", "lavfi", "-i", f"sine=f=330:r=44100:d={content_s}",
        "-filter_complex", chain, "-ac", "2", *options, str(path),
        exe=fixture_ffmpeg(options),
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uploads")
    made = {}
    for name, (filename, options) in FORMATS.items():
        made[name] = make_audio(root / filename, options=options)
    # About -35 LUFS after the mono downmix, and a clipped one peaking at 0 dBFS.
    made["quiet"] = make_audio(root / "quiet.wav", gain_db=-8.6, pad_s=0)
    made["hot"] = make_audio(root / "hot.wav", noise=1.0, tone=1.0, gain_db=6.0, pad_s=0)
    made["silent"] = root / "silent.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "4", str(made["silent"]))
    return made


def assert_distribution(prepared: PreparedAudio, *, peak_bound: bool = True) -> None:
    assert (prepared.codec, prepared.sample_rate, prepared.channels) == ("mp3", 32000, 1)
    info = probe(prepared.path)
    assert (info.format_name, info.codec, info.sample_rate, info.channels) == ("mp3", "mp3", 32000, 1)
    assert prepared.size_bytes == prepared.path.stat().st_size
    # The returned figures are those of the encoded file (its loudness, and its true peak or a bound
    # on it: see docs/audio.md); decode the file and check them independently.
    measured = measure(prepared.path)
    assert abs(measured.lufs - TARGET.lufs) <= TARGET.tolerance_lu, measured
    assert measured.true_peak_db <= TARGET.true_peak_db, measured
    assert abs(prepared.lufs - measured.lufs) <= 0.2
    # ebur128 prints its peak to 0.1 dB, and the two oversamplers may differ by CHECK_PEAK_MARGIN_DB.
    if peak_bound:
        assert prepared.true_peak_db >= measured.true_peak_db - 0.15, (prepared, measured)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_prepares_to_the_distribution_format(fmt: str, uploads: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_file(uploads[fmt], tmp_path / "out.mp3")
    assert prepared.path == tmp_path / "out.mp3"
    assert_distribution(prepared)
    # 2 s of silence at each end were trimmed (50 ms kept before the sound, 150 ms after)
    # and replaced by the 600 ms lead-in and the 400 ms tail.
    expected_ms = 600 + CONTENT_S * 1000 + 50 + 150 + 400
    assert abs(prepared.duration_ms - expected_ms) <= 150, prepared.duration_ms
    decoded = decode_file(prepared.path)
    assert decoded[:500].max_dBFS < -50  # the lead-in is silent
    assert decoded[800:1500].dBFS > -30  # and the sound follows right after it
    assert abs(len(decoded) - prepared.duration_ms) <= 100


def test_uploads_are_not_compressed_unless_asked(
    uploads: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import audio.prepare as prepare

    dynamics: list[str] = []
    real_analyse = prepare._analyse

    def analyse(*args: Any, **kwargs: Any) -> Any:
        dynamics.append(args[6])
        return real_analyse(*args, **kwargs)

    monkeypatch.setattr(prepare, "_analyse", analyse)
    assert_distribution(prepare_file(uploads["wav"], tmp_path / "plain.mp3"))
    compressed = prepare_file(uploads["wav"], tmp_path / "compressed.mp3", compressor=Compressor())
    assert_distribution(compressed)
    assert dynamics[0] == "" and dynamics[1].startswith("acompressor=threshold=0.100000:")


def test_quiet_and_hot_uploads_reach_the_target(uploads: dict[str, Path], tmp_path: Path) -> None:
    quiet_in, hot_in = measure(uploads["quiet"], downmix_mono=True), measure(uploads["hot"])
    assert -37.0 <= quiet_in.lufs <= -33.0
    assert hot_in.true_peak_db >= 0.0
    for name in ("quiet", "hot"):
        prepared = prepare_file(uploads[name], tmp_path / f"{name}.mp3")
        assert_distribution(prepared)
        assert abs(prepared.duration_ms - (600 + CONTENT_S * 1000 + 400)) <= 150


def test_silence_is_not_amplified_into_noise(uploads: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_file(uploads["silent"], tmp_path / "silent.mp3")
    assert prepared.lufs == -70.0
    assert decode_file(prepared.path).max_dBFS < -60
    # Nothing to trim towards: the silence is kept, with lead-in and tail.
    assert abs(prepared.duration_ms - (600 + 4000 + 400)) <= 150


def test_near_silent_hiss_gets_at_most_the_gain_cap(tmp_path: Path) -> None:
    hiss = make_audio(tmp_path / "hiss.wav", noise=0.0005, tone=0.0, gain_db=-20.0, pad_s=0)
    before = measure(hiss, downmix_mono=True)
    prepared = prepare_file(hiss, tmp_path / "hiss.mp3", trim_silence=False)
    assert prepared.lufs <= before.lufs + 30.0 + 0.5
    assert prepared.lufs < TARGET.lufs - 1.0  # left quiet rather than pumped up to -16


def test_extension_is_ignored(uploads: dict[str, Path], tmp_path: Path) -> None:
    misnamed = tmp_path / "recording.mp3"
    misnamed.write_bytes(uploads["wav"].read_bytes())
    assert probe(misnamed).format_name == "wav"
    assert_distribution(prepare_file(misnamed, tmp_path / "out.mp3"))
    no_extension = tmp_path / "upload"
    no_extension.write_bytes(uploads["m4a"].read_bytes())
    assert_distribution(prepare_file(no_extension, tmp_path / "out2.mp3"))


def test_progress_rises_to_one(uploads: dict[str, Path], tmp_path: Path) -> None:
    seen: list[float] = []
    prepare_file(uploads["flac"], tmp_path / "out.mp3", progress=seen.append)
    assert len(seen) >= 3
    assert all(0.0 <= v <= 1.0 for v in seen)
    assert all(b > a for a, b in itertools.pairwise(seen))
    assert seen[-1] == 1.0


def test_progress_lines_map_onto_the_bar() -> None:
    # What ffmpeg's -progress prints every half second of a long encode.
    import io

    from audio.prepare import _Progress, _pump_progress

    seen: list[float] = []
    bar = _Progress(seen.append)
    lines = b"out_time_us=N/A\nprogress=continue\nout_time_us=2500000\nout_time_us=5000000\nout_time_us=9000000\n"
    _pump_progress(io.BytesIO(lines), bar.stage(0.2, 0.6, 10_000))
    assert seen == pytest.approx([0.3, 0.4, 0.56])
    _pump_progress(io.BytesIO(b"out_time_us=1000000\n"), bar.stage(0.2, 0.6, 10_000))  # a retry: never backwards
    assert len(seen) == 3


def test_chime_intro_and_outro_are_assembled_and_levelled(uploads: dict[str, Path], tmp_path: Path) -> None:
    chime, intro, outro = tmp_path / "chime.wav", tmp_path / "intro.ogg", tmp_path / "outro.mp3"
    ffmpeg("-f", "lavfi", "-i", "sine=f=880:r=44100:d=0.5", "-af", "volume=-6dB", str(chime))
    make_audio(intro, content_s=1.5, pad_s=0, gain_db=-10.0, options=["-c:a", "libvorbis"])
    make_audio(outro, content_s=1.0, pad_s=0, gain_db=4.0, options=["-c:a", "libmp3lame"])
    prepared = prepare_file(uploads["wav"], tmp_path / "out.mp3", chime=chime, intro=intro, outro=outro)
    assert_distribution(prepared)
    # chime 500 + gap 300, intro 1500 + gap 300, content 5200, gap 300 + outro 1000, tail 400
    expected = 500 + 300 + 1500 + 300 + 5200 + 300 + 1000 + 400
    assert abs(prepared.duration_ms - expected) <= 200, prepared.duration_ms
    decoded = decode_file(prepared.path)
    assert decoded[50:450].dBFS > -30  # the chime opens the file
    assert decoded[550:750].max_dBFS < -50  # then silence before the intro


def test_prepare_segment_for_tts_output(tmp_path: Path) -> None:
    from pydub.generators import Sine  # after audio.ffmpeg, which silences pydub's import warning

    speech = Sine(300, sample_rate=22050).to_audio_segment(duration=3000, volume=-30.0)
    speech = AudioSegment.silent(700, 22050) + speech + AudioSegment.silent(900, 22050)
    prepared = prepare_segment(speech, tmp_path / "tts.mp3", lead_in_ms=1000, tail_ms=200)
    assert_distribution(prepared)
    assert abs(prepared.duration_ms - (1000 + 50 + 3000 + 150 + 200)) <= 150


def test_untrimmed_keeps_the_original_silence(uploads: dict[str, Path], tmp_path: Path) -> None:
    prepared = prepare_file(uploads["flac"], tmp_path / "out.mp3", trim_silence=False, lead_in_ms=0, tail_ms=0)
    assert abs(prepared.duration_ms - (PAD_S * 2 + CONTENT_S) * 1000) <= 100


def test_other_targets(uploads: dict[str, Path], tmp_path: Path) -> None:
    target = LoudnessTarget(lufs=-23.0, true_peak_db=-3.0)
    prepared = prepare_file(uploads["hot"], tmp_path / "out.mp3", target=target)
    measured = measure(prepared.path)
    assert abs(measured.lufs - -23.0) <= 1.0 and measured.true_peak_db <= -3.0


def test_refuses_non_audio_and_leaves_no_output(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp3"
    text.write_text("Kính thưa bà con\n")
    with pytest.raises(InvalidAudio, match="not a sound recording"):
        prepare_file(text, tmp_path / "out.mp3")
    assert list(tmp_path.iterdir()) == [text]  # no output, no temporary file left beside it


def test_negative_padding_is_rejected(uploads: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        prepare_file(uploads["wav"], tmp_path / "out.mp3", lead_in_ms=-1)


def test_output_is_deterministic(uploads: dict[str, Path], tmp_path: Path) -> None:
    # The store is content-addressed: the same upload must give the same bytes.
    first = prepare_file(uploads["ogg"], tmp_path / "a.mp3")
    second = prepare_file(uploads["ogg"], tmp_path / "b.mp3")
    assert first.sha256 == second.sha256


# Hard cases for the true-peak bound used without decoding (MP3_PEAK_ALLOWANCE_DB): dense highs,
# Gibbs overshoot, deep lows, tones inside and at the edge of the band limit, clicks, and a sine
# sampled off its crests. Each must come out at the target, under the ceiling, with a stored peak
# that really bounds the decoded file's.
HARD_SOURCES = {
    "white": "anoisesrc=c=white:a=0.9:r=44100:d=6:seed=1",
    "pink": "anoisesrc=c=pink:a=0.9:r=44100:d=6:seed=1",
    "brown": "anoisesrc=c=brown:a=0.9:r=44100:d=6:seed=1",
    "square": "aevalsrc=0.9*sgn(sin(2*PI*440*t)):s=44100:d=6",
    "sine1k": "sine=f=1000:r=44100:d=6",
    "sine8k": "sine=f=8000:r=44100:d=6",
    "clicks": "aevalsrc=0.05*sin(2*PI*440*t)+0.95*lt(mod(t\\,0.5)\\,0.0005):s=44100:d=6",
    "sine-fs4": "aevalsrc=0.7*sin(2*PI*8000*t+PI/4):s=32000:d=6",
}
# Tones the band limit removes (at least BAND_STOP_DB down from 12 kHz): the 15 kHz one used to gain
# 1.6 dB over the stored bound at LAME's cut-off. They cannot reach the target (the gain is capped, as
# for hiss) and must not: nothing of them may come back near the ceiling.
OUT_OF_BAND_SOURCES = {
    "sine12k": "sine=f=12000:r=44100:d=6",
    "sine15k": "sine=f=15000:r=44100:d=6",
}


@pytest.mark.parametrize("name", list(HARD_SOURCES))
def test_hard_signals_stay_under_the_ceiling_when_decoded(name: str, tmp_path: Path) -> None:
    """Decodes real outputs: the loudness and the stored true-peak bound hold for the encoded file."""
    src = tmp_path / "in.wav"
    ffmpeg("-f", "lavfi", "-i", HARD_SOURCES[name], "-ac", "2", "-c:a", "pcm_s16le", str(src))
    assert_distribution(prepare_file(src, tmp_path / "out.mp3", trim_silence=False))


@pytest.mark.parametrize("name", list(OUT_OF_BAND_SOURCES))
def test_out_of_band_tones_are_removed_not_pumped_up(name: str, tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    ffmpeg("-f", "lavfi", "-i", OUT_OF_BAND_SOURCES[name], "-ac", "2", "-c:a", "pcm_s16le", str(src))
    before = measure(src, downmix_mono=True)
    prepared = prepare_file(src, tmp_path / "out.mp3", trim_silence=False)
    measured = measure(prepared.path)
    # Removed: the tone loses BAND_STOP_DB and the gain is capped at MAX_GAIN_DB, so what is left is
    # mostly the click of its abrupt start and end (broadband: the filter passes it, the limiter holds it).
    assert before.lufs > TARGET.lufs - 3.0
    assert BAND_STOP_DB - MAX_GAIN_DB >= 20.0
    assert measured.lufs < TARGET.lufs - 15.0, (before, measured)
    assert measured.true_peak_db <= TARGET.true_peak_db, measured
    assert abs(prepared.lufs - measured.lufs) <= 0.5, (prepared, measured)
    assert prepared.true_peak_db >= measured.true_peak_db - 0.15, (prepared, measured)


def test_mp3_is_decoded_when_the_peak_bound_is_too_close(
    uploads: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no room left for the allowance, the encoded file itself is measured (the old full check)."""
    import audio.prepare

    calls: list[Path] = []
    real = audio.prepare._check_encoded

    def counting(path: Path, total_ms: int) -> Loudness:
        calls.append(path)
        return real(path, total_ms)

    monkeypatch.setattr(audio.prepare, "MP3_PEAK_ALLOWANCE_DB", 20.0)
    monkeypatch.setattr(audio.prepare, "_check_encoded", counting)
    prepared = prepare_file(uploads["wav"], tmp_path / "out.mp3")
    assert calls, "the MP3 was not decoded"
    measured = measure(prepared.path)
    assert abs(prepared.lufs - measured.lufs) <= 0.2
    assert abs(prepared.true_peak_db - measured.true_peak_db) <= 0.2


# --- the silence at the ends, found in the intermediate (audio.prepare._trim_range) -------------------


def _float_wav(path: Path, samples: list[float]) -> Path:
    """A mono 32 kHz float WAV like the analysis pass writes (ffmpeg's header, then the samples)."""
    import array

    raw = path.with_suffix(".f32")
    raw.write_bytes(array.array("f", samples).tobytes())
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "f32le", "-ar", "32000", "-ac", "1", "-i", str(raw),
                    "-c:a", "pcm_f32le", "-f", "wav", str(path)], check=True)
    return path


@pytest.mark.parametrize(
    ("lead_s", "tail_s", "expected"),
    [
        # 1 s of silence, 0.5 s of sound, 1 s of silence: 50 ms kept before, 150 ms after.
        (1.0, 1.0, (32000 - 1600, 48000 + 4800)),
        # Under SILENCE_MIN_S (0.25 s) of quiet at an end is part of the item, not silence.
        (0.2, 1.0, (0, 6400 + 16000 + 4800)),
        (1.0, 0.2, (32000 - 1600, 32000 + 16000 + 6400)),
    ],
)
def test_silence_at_the_ends_is_found_in_the_intermediate(
        tmp_path: Path, lead_s: float, tail_s: float, expected: tuple[int, int]) -> None:
    from audio.prepare import _trim_range

    lead, tail = round(lead_s * 32000), round(tail_s * 32000)
    # -60 dBFS hiss in the "silence" (under the -50 dB threshold), a 0.1 full-scale sound between.
    quiet = [0.001 * (-1) ** i for i in range(max(lead, tail))]
    wav = _float_wav(tmp_path / "i.wav", quiet[:lead] + [0.1] * 16000 + quiet[:tail])
    frames, start, end = _trim_range(wav, True)
    assert frames == lead + 16000 + tail
    assert (start, end) == expected
    assert _trim_range(wav, False) == (frames, 0, frames)


def test_an_intermediate_without_sound_or_without_samples_is_not_trimmed(tmp_path: Path) -> None:
    from audio.prepare import _trim_range

    assert _trim_range(_float_wav(tmp_path / "quiet.wav", [0.003] * 64000), True) == (64000, 0, 64000)
    # A sound in the last block of a long file and one sample of it: found from both ends.
    long = [0.0] * 200_000 + [-0.5] + [0.0] * 100
    assert _trim_range(_float_wav(tmp_path / "late.wav", long), True) == (200_101, 200_000 - 1600, 200_101)
