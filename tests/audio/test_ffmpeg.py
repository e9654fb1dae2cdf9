"""ffmpeg location and ffprobe-free decoding."""

from __future__ import annotations

import os
import shutil
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from audio.errors import TranscodeError
from audio.ffmpeg import (
    AudioSegment,
    configure_pydub,
    decode_bytes,
    decode_file,
    ffmpeg_exe,
    ffprobe_exe,
    probe_duration_ms,
    segment_from_wav,
)


@pytest.fixture
def fresh_lookup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("LOA_FFMPEG", raising=False)
    monkeypatch.delenv("LOA_FFPROBE", raising=False)
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()
    yield
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()


@pytest.fixture(scope="module")
def tone_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from pydub.generators import Sine  # after audio.ffmpeg, which silences pydub's import warning

    configure_pydub()
    tmp = tmp_path_factory.mktemp("tones")
    tone = Sine(440).to_audio_segment(duration=1500, volume=-6).set_channels(2)
    files = {"mp3": tmp / "tone.mp3", "wav": tmp / "tone.wav", "misnamed": tmp / "tone.bin"}
    tone.export(files["mp3"], format="mp3", bitrate="64k")
    tone.export(files["wav"], format="wav")
    shutil.copy(files["mp3"], files["misnamed"])
    text = tmp / "notes.mp3"
    text.write_text("Đây không phải là âm thanh.\n" * 200, encoding="utf-8")
    files["text"] = text
    return files


@pytest.fixture
def no_ffprobe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any use of ffprobe by pydub fail loudly."""

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("ffprobe must not be used")

    monkeypatch.setattr("pydub.audio_segment.mediainfo_json", forbidden)
    monkeypatch.setattr("pydub.utils.mediainfo_json", forbidden)


def test_ffmpeg_exe_finds_a_working_binary(fresh_lookup: None) -> None:
    exe = ffmpeg_exe()
    assert os.access(exe, os.X_OK)
    assert ffmpeg_exe() is exe  # resolved once


def test_loa_ffmpeg_env_wins(fresh_lookup: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    link = tmp_path / "my-ffmpeg"
    link.symlink_to(ffmpeg_exe())
    ffmpeg_exe.cache_clear()
    monkeypatch.setenv("LOA_FFMPEG", str(link))
    assert ffmpeg_exe() == str(link)


def test_bad_loa_ffmpeg_is_an_error(fresh_lookup: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOA_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(TranscodeError, match="LOA_FFMPEG"):
        ffmpeg_exe()


def test_ffprobe_found_on_path_or_none(
    fresh_lookup: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOA_FFMPEG", ffmpeg_exe())  # keep ffmpeg found while PATH changes
    ffmpeg_exe.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ffprobe_exe() is None or Path(ffprobe_exe() or "").name == "ffprobe"
    fake = tmp_path / "ffprobe"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    ffprobe_exe.cache_clear()
    assert ffprobe_exe() == str(fake)


def test_configure_pydub_points_at_our_ffmpeg() -> None:
    configure_pydub()
    assert AudioSegment.converter == ffmpeg_exe()


def test_decode_file_needs_no_ffprobe(tone_files: dict[str, Path], no_ffprobe: None) -> None:
    with pytest.raises(AssertionError, match="ffprobe"):
        AudioSegment.from_file(tone_files["mp3"])  # what pydub alone would do
    seg = decode_file(tone_files["mp3"])
    assert (seg.channels, seg.frame_rate, seg.sample_width) == (2, 44100, 2)
    assert abs(len(seg) - 1500) <= 30
    assert seg.dBFS > -20


def test_decode_sniffs_content_and_honours_hint(tone_files: dict[str, Path], no_ffprobe: None) -> None:
    assert abs(len(decode_file(tone_files["misnamed"])) - 1500) <= 30
    assert abs(len(decode_file(tone_files["misnamed"], "mp3")) - 1500) <= 30
    assert len(decode_file(tone_files["wav"])) == 1500


def test_decode_bytes_matches_decode_file(tone_files: dict[str, Path]) -> None:
    data = tone_files["mp3"].read_bytes()
    assert len(decode_bytes(data, "mp3")) == len(decode_file(tone_files["mp3"]))


@pytest.mark.parametrize("hint", [None, "mp3"])
def test_text_file_named_mp3_is_a_transcode_error(tone_files: dict[str, Path], hint: str | None) -> None:
    # The wording is ffmpeg's and differs by version ("Invalid data found when processing input";
    # 5.1 with the mp3 hint: "Failed to read frame size: Could not seek ... Invalid argument").
    with pytest.raises(TranscodeError, match="ffmpeg exit") as info:
        decode_file(tone_files["text"], hint)
    assert str(tone_files["text"]) in str(info.value)


def test_missing_and_empty_inputs_are_transcode_errors(tmp_path: Path) -> None:
    with pytest.raises(TranscodeError, match="no such file"):
        decode_file(tmp_path / "absent.mp3")
    with pytest.raises(TranscodeError):
        decode_bytes(b"")
    with pytest.raises(TranscodeError):
        decode_bytes(b"\x00" * 4096, "mp3")


def test_probe_duration_without_ffprobe(tone_files: dict[str, Path]) -> None:
    assert probe_duration_ms(tone_files["wav"]) == 1500
    assert abs(probe_duration_ms(tone_files["mp3"]) - 1500) <= 30
    assert abs(probe_duration_ms(tone_files["mp3"], exact=True) - 1500) <= 30
    with pytest.raises(TranscodeError):
        probe_duration_ms(tone_files["text"])


def test_segment_from_wav_accepts_pipe_placeholder_sizes() -> None:
    pcm = struct.pack("<4h", 1, -1, 2, -2)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    wav = (
        b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
        + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"LIST" + struct.pack("<I", 4) + b"INFO"
        + b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm
    )  # fmt: skip
    seg = segment_from_wav(wav)
    assert (seg.frame_rate, seg.channels, seg.frame_count()) == (8000, 1, 4)
    with pytest.raises(TranscodeError):
        segment_from_wav(b"ID3 not a wav at all")
