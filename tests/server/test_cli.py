"""The `loa` command's text and audio tools, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from audio.ffmpeg import ffmpeg_exe


def loa(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=120)


def test_tts_normalize_reads_an_argument() -> None:
    result = loa("tts", "normalize", "nhiệm kỳ 2020 - 2025")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("nhiệm kỳ hai nghìn không trăm hai mươi đến "
                                     "hai nghìn không trăm hai mươi lăm")


def test_tts_normalize_reads_standard_input_line_by_line() -> None:
    result = loa("tts", "normalize", stdin="Quyết định số 135/QĐ-TTg\n\n17h30\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[1] == "" and lines[2] == "mười bảy giờ ba mươi phút"
    assert lines[0].startswith("Quyết định số một trăm ba mươi lăm")


def test_audio_prepare_prints_the_facts_as_json(tmp_path: Path) -> None:
    source = tmp_path / "in.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    "-ac", "2", str(source)], check=True)
    result = loa("audio", "prepare", str(source), "-o", str(tmp_path / "out.mp3"))
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert set(facts) == {"duration_s", "lufs", "true_peak_db", "sha256", "codec", "sample_rate"}
    assert abs(facts["lufs"] + 16) <= 1 and facts["true_peak_db"] <= -1.5 and facts["sample_rate"] == 32000


def test_audio_prepare_refuses_non_audio_with_a_message(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp3"
    bogus.write_text("not audio")
    result = loa("audio", "prepare", str(bogus), "-o", str(tmp_path / "out.mp3"))
    assert result.returncode == 2 and result.stderr.startswith("loa: ")


def test_tts_say_writes_an_mp3_with_the_chosen_engine(tmp_path: Path) -> None:
    out = tmp_path / "say.mp3"
    result = loa("tts", "say", "Xin chào bà con lúc 7h", "-o", str(out), "--engine", "espeak-ng")
    assert result.returncode == 0, result.stderr
    assert "engine espeak-ng" in result.stdout and out.stat().st_size > 1000

