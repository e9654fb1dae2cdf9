"""Player backends: the file sink's records, and the ALSA path's decoding (its output: test_player_alsa.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from agents.errors import PlaybackError
from agents.player import AlsaPlayer, FileSinkPlayer
from audio.ffmpeg import ffmpeg_exe
from tests.agents.fakes import item


def tone_mp3(path: Path, seconds: float = 0.5) -> bytes:
    import subprocess

    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-ac", "1", "-b:a", "64k", str(path)], check=True)
    return path.read_bytes()


async def test_file_sink_records_start_end_and_the_sha256_of_what_it_read(tmp_path: Path) -> None:
    audio = tmp_path / "a.mp3"
    data = tone_mp3(audio)
    sink = tmp_path / "sink.jsonl"
    player = FileSinkPlayer(sink, "agent-1")
    entry = item("x", 0, duration_ms=100, data=data)
    prepared = await player.prepare(audio, entry)
    await player.play(prepared)
    records = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [r["event"] for r in records] == ["start", "end"]
    assert records[0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert 0.09 <= records[1]["at"] - records[0]["at"] < 0.3


async def test_file_sink_writes_stop_when_cancelled(tmp_path: Path) -> None:
    audio = tmp_path / "a.mp3"
    data = tone_mp3(audio)
    sink = tmp_path / "sink.jsonl"
    player = FileSinkPlayer(sink, "agent-1")
    prepared = await player.prepare(audio, item("x", 0, duration_ms=5000, data=data))
    task = asyncio.create_task(player.play(prepared))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [json.loads(line)["event"] for line in sink.read_text().splitlines()] == ["start", "stop"]


async def test_alsa_player_reports_undecodable_audio(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp3"
    bogus.write_bytes(b"this is not audio at all" * 10)
    player = AlsaPlayer(tmp_path / "decoded", ffmpeg=ffmpeg_exe(), play_command=("aplay",))
    with pytest.raises(PlaybackError, match="could not decode"):
        await player.prepare(bogus, item("x", 0, data=bogus.read_bytes()))
