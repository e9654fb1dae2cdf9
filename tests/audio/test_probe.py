"""Probing uploads from their content, with and without ffprobe, and the upload limits."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

import audio.probe as probe_module
from audio.ffmpeg import ffmpeg_exe, ffprobe_exe
from audio.probe import (
    AudioTooLarge,
    AudioTooLong,
    InvalidAudio,
    ProbeResult,
    UploadLimits,
    check_upload,
    format_duration,
    format_size,
    probe,
)
from tests.audio.test_prepare import FORMATS, ffmpeg, make_audio

EXPECTED_CODEC = {
    "mp3": ("mp3", "mp3"),
    "wav": ("wav", "pcm_s16le"),
    "m4a": ("mov,mp4,m4a,3gp,3g2,mj2", "aac"),
    "ogg": ("ogg", "vorbis"),
    "opus": ("ogg", "opus"),
    "webm": ("matroska,webm", "opus"),
    "amr": ("amr", "amr_nb"),
    "flac": ("flac", "flac"),
}


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("probe")
    made = {name: make_audio(root / filename, content_s=2.0, pad_s=0.5, options=options)
            for name, (filename, options) in FORMATS.items()}  # fmt: skip
    # A browser (MediaRecorder) WebM is written as a stream: no duration in its header.
    streamed = root / "streamed.webm"
    with streamed.open("wb") as out:
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=f=440:r=48000:d=3",
             "-c:a", "libopus", "-f", "webm", "pipe:1"], stdout=out, check=True,
        )  # fmt: skip
    made["streamed_webm"] = streamed
    made["png"] = root / "picture.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1", str(made["png"]))
    made["text"] = root / "notes.mp3"
    made["text"].write_text("Thông báo lịch tiêm chủng\n" * 20)
    made["random"] = root / "random.mp3"
    made["random"].write_bytes(random.Random(42).randbytes(20_000))
    made["empty"] = root / "empty.wav"
    made["empty"].write_bytes(b"")
    made["header_only"] = root / "header_only.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0", str(made["header_only"]))
    return made


@pytest.fixture(params=["ffprobe", "ffmpeg-only"])
def probe_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once through ffprobe (skipped where there is none) and once without it."""
    if request.param == "ffmpeg-only":
        monkeypatch.setattr(probe_module, "ffprobe_exe", lambda: None)
    elif ffprobe_exe() is None:
        pytest.skip("no ffprobe here (set LOA_FFPROBE to run this path); its JSON parsing is tested separately")
    return str(request.param)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_probe_reads_every_format(fmt: str, samples: dict[str, Path], probe_path: str) -> None:
    result = probe(samples[fmt])
    assert (result.format_name, result.codec) == EXPECTED_CODEC[fmt]
    assert abs(result.duration_ms - 3000) <= 60, result
    if fmt == "amr":
        assert (result.sample_rate, result.channels) == (8000, 1)
    else:
        assert result.sample_rate in (44100, 48000)  # opus always decodes at 48 kHz
        assert result.channels == 2
    assert result.bit_rate is None or result.bit_rate > 1000


def test_probe_measures_a_webm_without_duration(samples: dict[str, Path], probe_path: str) -> None:
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(samples["streamed_webm"])],
                            capture_output=True, check=False).stderr.decode()  # fmt: skip
    assert "Duration: N/A" in header  # the case this test is about
    result = probe(samples["streamed_webm"])
    assert result.codec == "opus"
    assert abs(result.duration_ms - 3000) <= 30


def test_probe_ignores_the_file_name(samples: dict[str, Path], tmp_path: Path, probe_path: str) -> None:
    misnamed = tmp_path / "song.mp3"
    misnamed.write_bytes(samples["wav"].read_bytes())
    assert probe(misnamed).format_name == "wav"
    nameless = tmp_path / "blob"
    nameless.write_bytes(samples["amr"].read_bytes())
    assert probe(nameless).codec == "amr_nb"


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ("png", "the file has no audio stream"),
        ("text", "the file is not a sound recording in a format we can read"),
        ("random", "the file is not a sound recording in a format we can read"),
        ("empty", "the file is empty"),
        ("header_only", "the recording is empty"),
    ],
)
def test_probe_refuses_what_is_not_audio(sample: str, message: str, samples: dict[str, Path], probe_path: str) -> None:
    with pytest.raises(InvalidAudio) as caught:
        probe(samples[sample])
    assert str(caught.value).startswith(message)
    assert not isinstance(caught.value, AudioTooLarge | AudioTooLong)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio, match="not found"):
        check_upload(tmp_path / "nothing.mp3", UploadLimits())


def test_ffprobe_json_is_parsed(samples: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The ffprobe path on recorded output, so it is covered where no ffprobe is installed."""
    recorded: dict[str, Any] = {
        "streams": [
            {"index": 0, "codec_type": "video", "codec_name": "mjpeg"},  # cover art comes first
            {"index": 1, "codec_type": "audio", "codec_name": "mp3", "sample_rate": "44100",
             "channels": 2, "channel_layout": "stereo", "duration": "3.000000", "bit_rate": "128000"},
        ],
        "format": {"format_name": "mp3", "duration": "3.030000", "bit_rate": "129000"},
    }  # fmt: skip
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, json.dumps(recorded).encode(), b"")

    monkeypatch.setattr(probe_module, "ffprobe_exe", lambda: "/opt/ffmpeg/ffprobe")
    monkeypatch.setattr(probe_module, "_run", fake_run)
    # The recording is not of this file: keep its LAME header (read for MP3 durations) out of it.
    monkeypatch.setattr(probe_module, "mp3_gapless_duration_ms", lambda _path: None)
    result = probe(samples["mp3"])
    assert result == ProbeResult("mp3", "mp3", 3030, 44100, 2, 128000)
    assert calls[0][0] == "/opt/ffmpeg/ffprobe" and "json" in calls[0]

    recorded["streams"] = [recorded["streams"][0]]
    with pytest.raises(InvalidAudio, match="no audio stream"):
        probe(samples["mp3"])

    def failing(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(cmd, 1, b"", b"Invalid data found when processing input")

    monkeypatch.setattr(probe_module, "_run", failing)
    with pytest.raises(InvalidAudio, match="not a sound recording"):
        probe(samples["mp3"])


def test_ffprobe_without_duration_falls_back_to_decoding(
    samples: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = {"streams": [{"codec_type": "audio", "codec_name": "opus", "sample_rate": "48000", "channels": 1}],
                "format": {"format_name": "matroska,webm"}}  # fmt: skip
    real_run = probe_module._run

    def fake_ffprobe(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[bytes]:
        if cmd[0] != "ffprobe":
            return real_run(cmd, timeout_s)  # the decode that measures the duration
        return subprocess.CompletedProcess(cmd, 0, json.dumps(recorded).encode(), b"")

    monkeypatch.setattr(probe_module, "ffprobe_exe", lambda: "ffprobe")
    monkeypatch.setattr(probe_module, "_run", fake_ffprobe)
    assert abs(probe(samples["streamed_webm"]).duration_ms - 3000) <= 30


# ---------------------------------------------------------------- limits


def test_check_upload_accepts_within_limits(samples: dict[str, Path]) -> None:
    result = check_upload(samples["m4a"], UploadLimits())
    assert result.codec == "aac"


def test_oversized_file_is_refused_before_ffmpeg_runs(
    samples: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(path: Path) -> ProbeResult:
        raise AssertionError("probed an oversized file")

    monkeypatch.setattr(probe_module, "probe", no_probe)
    size = samples["wav"].stat().st_size
    with pytest.raises(AudioTooLarge) as caught:
        check_upload(samples["wav"], UploadLimits(max_bytes=100 * 1024))
    assert str(caught.value) == f"the file is {format_size(size)}; the limit is 100 KB"
    assert isinstance(caught.value, InvalidAudio)


def test_overlong_recording_is_refused(samples: dict[str, Path]) -> None:
    with pytest.raises(AudioTooLong) as caught:
        check_upload(samples["ogg"], UploadLimits(max_duration_s=2))
    assert str(caught.value) == "the recording lasts 3 s; the limit is 2 s"
    assert isinstance(caught.value, InvalidAudio)


def test_limit_messages_read_like_the_brief() -> None:
    assert format_size(250 * 1024 * 1024) == "250 MB"
    assert format_size(200 * 1024 * 1024) == "200 MB"
    assert format_size(1536 * 1024) == "1.5 MB"
    assert format_size(800) == "800 bytes"
    assert format_duration(2 * 3600 + 10 * 60) == "2 h 10 min"
    assert format_duration(7200) == "2 h"
    assert format_duration(7200.4) == "2 h 1 min"  # an excess never reads as the limit itself
    assert format_duration(200) == "3 min 20 s"
    assert format_duration(2.5) == "2.5 s"


def test_mp3_duration_excludes_encoder_delay_and_padding(samples: dict[str, Path], probe_path: str) -> None:
    """ffmpeg 5.1 reports an MP3's duration with LAME's delay and padding (~50 ms more); 7+ without."""
    assert probe(samples["mp3"]).duration_ms == probe_module._exact_duration_ms(samples["mp3"].absolute())
