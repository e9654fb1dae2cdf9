"""Rendering spoken text into the distribution MP3."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from audio.errors import TranscodeError, TtsError
from audio.ffmpeg import AudioSegment, decode_bytes
from audio.loudness import LoudnessTarget, measure
from audio.render import DISTRIBUTION, RenderedAudio, encode_distribution, render_speech
from audio.tts import EspeakEngine, Speech, TtsChain


def _sine(freq: int, duration_ms: int, volume: float) -> AudioSegment:
    from pydub.generators import Sine  # after audio.ffmpeg, which silences pydub's import warning

    return Sine(freq, sample_rate=44100).to_audio_segment(duration=duration_ms, volume=volume)


TEXT = (
    "Kính thưa bà con, Ủy ban nhân dân xã thông báo lịch tiêm chủng mở rộng tháng này. "
    "Đề nghị các hộ gia đình đưa trẻ đến trạm y tế xã vào sáng thứ bảy."
)


class _ToneEngine:
    """A deterministic engine: 2 s of loud stereo 44.1 kHz tone, whatever the text."""

    name = "tone"

    def synthesize(self, text: str) -> Speech:
        tone = _sine(330, 2000, 0.0).set_channels(2)
        return Speech(audio=tone, engine=self.name, voice="a4")


@pytest.fixture(scope="module")
def espeak_render() -> RenderedAudio:
    return render_speech(TEXT, TtsChain([EspeakEngine()]))


def test_render_decodes_back_as_distribution_format(espeak_render: RenderedAudio) -> None:
    decoded = decode_bytes(espeak_render.data, "mp3")
    assert (decoded.channels, decoded.frame_rate) == (DISTRIBUTION.channels, DISTRIBUTION.sample_rate)
    assert abs(len(decoded) - espeak_render.duration_ms) <= 100
    assert espeak_render.sha256 == hashlib.sha256(espeak_render.data).hexdigest()
    assert (espeak_render.engine, espeak_render.voice, espeak_render.mime) == (
        "espeak-ng",
        "vi",
        "audio/mpeg",
    )
    assert espeak_render.data[:3] == b"ID3" or espeak_render.data[0] == 0xFF


def test_render_adds_lead_in_and_tail_and_meets_loudness_target(
    espeak_render: RenderedAudio, tmp_path: Path
) -> None:
    # Peak normalisation was replaced by loudness normalisation (-16 LUFS, -1.5 dBTP ceiling).
    decoded = decode_bytes(espeak_render.data, "mp3")
    speech_ms = len(EspeakEngine().synthesize(TEXT).audio)
    assert abs(espeak_render.duration_ms - (600 + speech_ms + 400)) <= 150  # engine's own silence is trimmed
    assert decoded[:550].max_dBFS < -50  # the amplifier's settling time stays silent
    assert abs(espeak_render.lufs - -16.0) <= 1.0
    assert espeak_render.true_peak_db <= -1.5
    path = tmp_path / "speech.mp3"
    path.write_bytes(espeak_render.data)
    measured = measure(path)  # what the agents will play, measured independently
    assert abs(measured.lufs - -16.0) <= 1.0 and measured.true_peak_db <= -1.5


def test_speech_is_compressed_and_meets_the_target_in_one_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    # espeak-ng speech is peaky (full-scale peaks at about -19 LUFS): without the speech compressor the
    # limiter took ~1.5 LU off and every render needed three encodes (docs/audio.md).
    import audio.prepare as prepare

    dynamics: list[str] = []
    encodes: list[float] = []
    real_analyse, real_render = prepare._analyse, prepare._render

    def analyse(*args: Any, **kwargs: Any) -> Any:
        dynamics.append(args[6])
        return real_analyse(*args, **kwargs)

    def render(*args: Any, **kwargs: Any) -> Any:
        encodes.append(args[2])  # the gain
        return real_render(*args, **kwargs)

    monkeypatch.setattr(prepare, "_analyse", analyse)
    monkeypatch.setattr(prepare, "_render", render)
    rendered = render_speech(TEXT, TtsChain([EspeakEngine()]))
    assert dynamics and dynamics[0].startswith("acompressor=")
    assert len(encodes) == 1
    assert abs(rendered.lufs - -16.0) <= 0.3 and rendered.true_peak_db <= -1.5


def test_render_duration_is_exact_for_known_audio() -> None:
    rendered = render_speech("anything", TtsChain([_ToneEngine()]), lead_in_ms=1000, tail_ms=500)
    assert abs(rendered.duration_ms - 3500) <= 100
    decoded = decode_bytes(rendered.data, "mp3")
    assert (decoded.channels, decoded.frame_rate) == (1, 32000)
    assert abs(len(decoded) - 3500) <= 100
    assert rendered.engine == "tone"
    # 64 kbit/s constant bitrate (plus a few hundred bytes of headers)
    kbps = len(rendered.data) * 8 / rendered.duration_ms
    assert 60 <= kbps <= 70


def test_encode_distribution_normalises_loud_and_quiet_input() -> None:
    quiet = _sine(440, 1000, -30.0)
    decoded = decode_bytes(encode_distribution(quiet), "mp3")
    assert -2.0 <= decoded.max_dBFS <= 0.0
    silent = decode_bytes(encode_distribution(AudioSegment.silent(1000, 22050)), "mp3")
    assert silent.max_dBFS < -60


def test_encode_distribution_rejects_empty_audio() -> None:
    with pytest.raises(TranscodeError):
        encode_distribution(AudioSegment.empty())


def test_render_propagates_tts_failure_and_checks_padding() -> None:
    class Broken:
        name = "broken"

        def synthesize(self, text: str) -> Speech:
            raise TtsError("no voice")

    with pytest.raises(TtsError, match="broken: no voice"):
        render_speech(TEXT, TtsChain([Broken()]))
    with pytest.raises(ValueError):
        render_speech(TEXT, TtsChain([_ToneEngine()]), lead_in_ms=-1)


def test_same_audio_encodes_to_the_same_bytes() -> None:
    # The store is content-addressed, so identical input must give an identical file.
    tone = _sine(440, 1500, -3.0)
    assert encode_distribution(tone) == encode_distribution(tone)


def test_render_takes_a_loudness_target() -> None:
    rendered = render_speech("anything", TtsChain([_ToneEngine()]), target=LoudnessTarget(lufs=-20.0))
    assert abs(rendered.lufs - -20.0) <= 1.0
    assert rendered.true_peak_db <= -1.5
