"""Loudness measurement (ebur128) and the gain/limiter stage built from it."""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from audio.errors import TranscodeError
from audio.ffmpeg import ffmpeg_exe
from audio.loudness import (
    BAND_STOP_DB,
    BAND_STOP_HZ,
    CHECK_PEAK_MARGIN_DB,
    MAX_GAIN_DB,
    SPEECH_COMPRESSOR,
    Compressor,
    Loudness,
    LoudnessTarget,
    _inverse_chebyshev_sections,
    apply_filter,
    band_limit_filter,
    compressor_filter,
    encoded_check_filter,
    gain_for,
    limiter_limit_db,
    measure,
    parse_ebur128,
    parse_encoded_check,
)
from tests.audio.test_prepare import ffmpeg, make_audio


@pytest.fixture(scope="session")
def signals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loudness")
    made: dict[str, Path] = {}
    # A 997 Hz sine at -20 dBFS peak measures -23.0 LUFS (BS.1770: a full-scale one is -3.01).
    made["sine"] = root / "sine.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=f=997:r=48000:d=5", "-af", "volume=0.8", "-ac", "1", str(made["sine"]))
    made["silence"] = root / "silence.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "3", str(made["silence"]))
    made["music"] = make_audio(root / "music.mp3", pad_s=0, options=["-c:a", "libmp3lame"])
    made["hot"] = make_audio(root / "hot.wav", noise=1.0, tone=1.0, gain_db=6.0, pad_s=0)
    return made


def test_measure_a_reference_sine(signals: dict[str, Path]) -> None:
    result = measure(signals["sine"])
    assert result.lufs == pytest.approx(-23.0, abs=0.2)
    assert result.true_peak_db == pytest.approx(-20.0, abs=0.2)
    assert result.lra < 1.0
    assert not result.is_silent


def test_measure_digital_silence_without_crashing(signals: dict[str, Path]) -> None:
    result = measure(signals["silence"])
    assert result.lufs == -70.0
    assert result.true_peak_db == -math.inf
    assert result.is_silent
    assert gain_for(result, LoudnessTarget()) == 0.0  # silence is never amplified


def test_measure_downmix_matches_the_mono_distribution(signals: dict[str, Path]) -> None:
    stereo, mono = measure(signals["music"]), measure(signals["music"], downmix_mono=True)
    assert math.isfinite(stereo.lufs) and math.isfinite(mono.lufs)
    assert stereo.lufs != mono.lufs  # uncorrelated channels lose power in a downmix


def test_hot_input_is_seen_as_hot(signals: dict[str, Path]) -> None:
    result = measure(signals["hot"])
    assert result.true_peak_db >= 0.0
    assert gain_for(result, LoudnessTarget()) < 0


def test_measure_errors(tmp_path: Path) -> None:
    with pytest.raises(TranscodeError, match="no such file"):
        measure(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(TranscodeError):
        measure(junk)


def test_gain_is_capped_for_near_silence() -> None:
    target = LoudnessTarget()
    assert gain_for(-26.0, target) == pytest.approx(10.0)
    assert gain_for(-60.0, target) == MAX_GAIN_DB  # would be +44 dB of hiss
    assert gain_for(-70.0, target) == 0.0
    assert gain_for(-math.inf, target) == 0.0
    assert gain_for(-5.0, target) == pytest.approx(-11.0)


def test_filter_string() -> None:
    chain = apply_filter(6.5, limiter_limit_db(LoudnessTarget()))
    assert chain.startswith("volume=6.500dB")
    # Limited 1.2 dB under the -1.5 dBTP ceiling (-2.7 dBFS), without alimiter's auto-levelling and delay.
    assert "alimiter=limit=0.732825" in chain and "level=0" in chain and "latency=1" in chain


def _response_db(sections: Sequence[tuple[float, ...]], freq: float, rate: int = 32000) -> float:
    z = complex(math.cos(2 * math.pi * freq / rate), math.sin(2 * math.pi * freq / rate))
    h = complex(1.0)
    for b0, b1, b2, a1, a2 in sections:
        h *= (b0 + b1 / z + b2 / z**2) / (1 + a1 / z + a2 / z**2)
    return 20 * math.log10(abs(h))


def test_band_limit_design() -> None:
    """The low-pass keeps the speech band flat and is at least BAND_STOP_DB down from BAND_STOP_HZ."""
    sections = _inverse_chebyshev_sections(32000, BAND_STOP_HZ, BAND_STOP_DB, 6)
    assert all(abs(_response_db(sections, f)) < 0.01 for f in (100, 1000, 3000, 6000))
    assert -0.25 < _response_db(sections, 8000) < 0
    assert -4.0 < _response_db(sections, 9200) < -2.5
    stopband = [_response_db(sections, f) for f in range(12000, 16001, 50)]
    assert max(stopband) <= -BAND_STOP_DB + 0.01
    for _b0, _b1, _b2, a1, a2 in sections:  # stable: both poles inside the unit circle
        assert a2 < 1 and abs(a1) < 1 + a2
    with pytest.raises(ValueError):
        _inverse_chebyshev_sections(32000, 17000, 60, 6)


@pytest.mark.parametrize(
    ("freq", "low", "high"),
    [
        (50, -14.0, -11.0),
        (1000, -0.1, 0.1),
        (7000, -0.2, 0.1),
        (12000, -200.0, -BAND_STOP_DB + 0.1),
        (15000, -200.0, -BAND_STOP_DB + 0.1),
    ],
)
def test_band_limit_in_ffmpeg(freq: int, low: float, high: float) -> None:
    """The filter string does in ffmpeg what the design says (steady state of a 0 dBFS-ish tone)."""
    stats = "astats=measure_perchannel=none:measure_overall=RMS_level"
    chain = f"aformat=sample_fmts=dbl,{band_limit_filter()},atrim=start=0.5,{stats}"
    log = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-f", "lavfi", "-i", f"sine=f={freq}:r=32000:d=2",
         "-af", chain, "-f", "null", "-"], capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    rms = float(re.findall(r"RMS level dB:\s*(-?[\d.]+|-inf)", log)[-1])
    sine_rms = 20 * math.log10(0.125 / math.sqrt(2))  # lavfi's sine has amplitude 1/8
    assert low <= rms - sine_rms <= high, rms - sine_rms


def test_compressor_threshold_follows_the_peak() -> None:
    # -20 dB under a full-scale peak is 0.1; under a -10 dBFS peak, -30 dBFS.
    assert "threshold=0.100000:ratio=4:attack=0.5:release=80:makeup=1" in compressor_filter(SPEECH_COMPRESSOR)
    assert "threshold=0.031623" in compressor_filter(SPEECH_COMPRESSOR, -10.0)
    assert "threshold=0.100000" in compressor_filter(SPEECH_COMPRESSOR, -math.inf)  # silence: as dBFS
    assert "threshold=0.001000" in compressor_filter(Compressor(threshold_db=-60.0), -20.0)  # acompressor's floor
    with pytest.raises(ValueError):
        Compressor(ratio=0.5)
    with pytest.raises(ValueError):
        Compressor(threshold_db=3.0)


def test_speech_compressor_lowers_the_crest_factor(tmp_path: Path) -> None:
    # Bursts a full-scale click above a steady tone: the limiter alone would have to take it all.
    src = tmp_path / "peaky.wav"
    ffmpeg(
        "-f", "lavfi", "-i", "aevalsrc='0.15*sin(2*PI*220*t)*(1+5*lt(mod(t,1),0.03))':s=32000:d=6", str(src)
    )  # fmt: skip
    out = tmp_path / "compressed.wav"
    ffmpeg("-i", str(src), "-af", compressor_filter(SPEECH_COMPRESSOR, 0.0), str(out))
    before, after = measure(src), measure(out)
    assert after.true_peak_db - after.lufs < before.true_peak_db - before.lufs - 3.0


def test_parse_ebur128_summary() -> None:
    log = """[Parsed_ebur128_0 @ 0x1] Summary:

  Integrated loudness:
    I:         -18.3 LUFS
    Threshold: -28.6 LUFS

  Loudness range:
    LRA:         6.1 LU
    Threshold: -38.7 LUFS
    LRA low:   -22.4 LUFS
    LRA high:  -16.3 LUFS

  True peak:
    Peak:       -0.4 dBFS
"""
    assert parse_ebur128("noise before\n" + log) == Loudness(lufs=-18.3, true_peak_db=-0.4, lra=6.1)
    no_peak = parse_ebur128(log.split("  True peak:")[0])
    assert no_peak.lufs == -18.3 and math.isnan(no_peak.true_peak_db)
    with pytest.raises(TranscodeError):
        parse_ebur128("no summary here")


def test_parse_encoded_check() -> None:
    ebur128 = (
        "[Parsed_ebur128_1 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -16.1 LUFS\n"
        "  Loudness range:\n    LRA:         3.2 LU\n"
    )
    astats = "[Parsed_astats_3 @ 0x2] Overall\n[Parsed_astats_3 @ 0x2] Peak level dB: -2.731904\n"
    assert parse_encoded_check(astats + ebur128) == Loudness(lufs=-16.1, true_peak_db=-2.731904, lra=3.2)
    silent = parse_encoded_check(ebur128.replace("-16.1", "-70.0") + astats.replace("-2.731904", "-inf"))
    assert silent.is_silent and silent.true_peak_db == -math.inf
    with pytest.raises(TranscodeError, match="no peak"):
        parse_encoded_check(ebur128)


def _check(path: Path) -> Loudness:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-af", encoded_check_filter(), "-f", "null", "-"],
        capture_output=True, check=True,
    )  # fmt: skip
    return parse_encoded_check(proc.stderr.decode("utf-8", "replace"))


@pytest.mark.parametrize(
    "source",
    [
        # A sine at a quarter of the sample rate, sampled 45 degrees off its crests: every sample is
        # 3 dB under the true peak, which a sample-peak reading would miss entirely.
        "aevalsrc=0.7*sin(2*PI*8000*t+PI/4):s=32000:d=4",
        "anoisesrc=c=white:a=0.9:r=32000:d=4:seed=1",  # dense overs up to the codec's cut-off
        "aevalsrc=0.9*sgn(sin(2*PI*1000*t)):s=32000:d=4",  # a square wave: Gibbs overshoot
        "aevalsrc=0.05*sin(2*PI*440*t)+0.9*lt(mod(t\\,0.5)\\,0.0005):s=32000:d=4",  # clicks
    ],
    ids=["sine-fs4", "white", "square", "clicks"],
)
def test_encoded_check_reads_true_peaks_like_measure(source: str, tmp_path: Path) -> None:
    """The cheaper check of encoded files (4x oversampling) agrees with ebur128's 192 kHz true peak."""
    mp3 = tmp_path / "check.mp3"
    ffmpeg("-f", "lavfi", "-i", source, "-ac", "1", "-c:a", "libmp3lame", "-b:a", "64k", str(mp3))
    reference, checked = measure(mp3), _check(mp3)
    assert checked.lufs == reference.lufs
    # ebur128 prints its peak to 0.1 dB: it may be up to 0.05 dB off in either direction.
    assert abs(checked.true_peak_db - reference.true_peak_db) <= CHECK_PEAK_MARGIN_DB + 0.05, (checked, reference)


def test_encoded_check_sees_inter_sample_peaks(tmp_path: Path) -> None:
    mp3 = tmp_path / "fs4.mp3"
    ffmpeg("-f", "lavfi", "-i", "aevalsrc=0.7*sin(2*PI*8000*t+PI/4):s=32000:d=4", "-c:a", "libmp3lame",
           "-b:a", "64k", str(mp3))  # fmt: skip
    sample_peak = parse_ebur128(
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(mp3), "-af", "ebur128=framelog=verbose:peak=sample",
             "-f", "null", "-"], capture_output=True, check=True,
        ).stderr.decode()
    ).true_peak_db  # fmt: skip
    # The crests are at 20*log10(0.7) = -3.1 dBTP; the samples at -6.1 dBFS, plus the codec's noise.
    true_peak = _check(mp3).true_peak_db
    assert abs(true_peak - 20 * math.log10(0.7)) <= 0.3
    assert true_peak >= sample_peak + 1.5


def test_target_validation_and_tolerance() -> None:
    target = LoudnessTarget()
    assert (target.lufs, target.true_peak_db, target.tolerance_lu) == (-16.0, -1.5, 1.0)
    assert Loudness(-16.9, -1.6, 3.0).within(target)
    assert not Loudness(-17.1, -3.0, 3.0).within(target)
    assert not Loudness(-16.0, -1.4, 3.0).within(target)
    with pytest.raises(ValueError):
        LoudnessTarget(lufs=0.0)
    with pytest.raises(ValueError):
        LoudnessTarget(true_peak_db=1.0)


def test_hot_clipped_input_lands_on_target_under_the_ceiling(signals: dict[str, Path], tmp_path: Path) -> None:
    """Gain alone would clip this input (facts.md: pyloudnorm reached peak 1.38); gain + limiter does not."""
    from audio.prepare import prepare_file

    ours = prepare_file(signals["hot"], tmp_path / "ours.mp3")
    measured = measure(ours.path)
    assert abs(measured.lufs - -16.0) <= 0.5
    assert measured.true_peak_db <= -1.5


def test_peaky_input_is_limited_under_the_ceiling(tmp_path: Path) -> None:
    """A quiet tone with full-scale clicks: the gain it needs puts the clicks ~14 dB over full scale."""
    from audio.prepare import prepare_file

    src = tmp_path / "clicks.wav"
    ffmpeg("-f", "lavfi", "-i", "aevalsrc=0.03*sin(2*PI*440*t)+0.95*lt(mod(t\\,0.5)\\,0.002):s=44100:d=6",
           "-ac", "2", str(src))  # fmt: skip
    before = measure(src, downmix_mono=True)
    assert before.true_peak_db > -1.0 and before.lufs < -25.0
    prepared = prepare_file(src, tmp_path / "out.mp3")
    measured = measure(prepared.path)
    assert abs(measured.lufs - -16.0) <= 1.0
    assert measured.true_peak_db <= -1.5
