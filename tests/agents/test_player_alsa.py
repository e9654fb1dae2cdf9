"""AlsaPlayer's output with real processes: a raw-PCM recorder script (exact bytes and timing), ALSA's
``null`` device through the real ``aplay``, and the whole start path of an agent (priming, release)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import struct
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from agents.cache import AudioCache
from agents.core import Agent, AgentSettings
from agents.errors import PlaybackError
from agents.journal import Journal
from agents.player import AlsaPlayer, Prepared, wav_data
from agents.protocol import AsRunEvent, Plan, Topics, encode
from audio.ffmpeg import ffmpeg_exe
from tests.agents.fakes import FakeLink, item, serve_audio
from tests.agents.test_player import tone_mp3

PREROLL_S = 1.5
needs_aplay = pytest.mark.skipif(shutil.which("aplay") is None, reason="aplay (alsa-utils) is not installed")

RECORDER = """#!{python}
# A raw-PCM player for tests: records when it was started and when its first byte came (monotonic and
# wall clock), and everything it read; with --realtime it reads no faster than a 48 kHz mono s16 card.
import json, os, sys, time
log, realtime = sys.argv[1], "--realtime" in sys.argv
spawned = [time.monotonic(), time.time()]
with open(log + ".spawn", "w") as f:
    json.dump({{"pid": os.getpid(), "spawned": spawned, "argv": sys.argv[1:]}}, f)
data, first = bytearray(), None
while True:
    chunk = os.read(0, 4800 if realtime else 65536)
    if not chunk:
        break
    if first is None:
        first = [time.monotonic(), time.time()]
    data += chunk
    if realtime:
        time.sleep(max(0.0, first[0] + len(data) / 96000 - time.monotonic()))
open(log + ".pcm", "wb").write(data)
with open(log + ".json", "w") as f:
    json.dump({{"spawned": spawned, "first": first, "ended": [time.monotonic(), time.time()]}}, f)
"""


def recorder(tmp_path: Path, *extra: str) -> tuple[tuple[str, ...], Path]:
    script = tmp_path / "rawrecorder"
    script.write_text(RECORDER.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return (str(script), str(tmp_path / "rec"), "{device}", *extra), tmp_path / "rec"


def children(name: str, marker: Path | None = None) -> list[int]:
    """Live (not zombie) child processes of this one whose command name is ``name`` (and whose command line
    has ``marker`` in it: a test's own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        ours = comm == name and int(fields[1]) == os.getpid() and fields[0] != "Z"
        if ours and (marker is None or str(marker).encode() in (entry / "cmdline").read_bytes()):
            found.append(int(entry.name))
    return found


async def gone(pid: int, within_s: float = 2.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # terminated; the event loop's child watcher has yet to reap it
            await asyncio.sleep(0.01)
            continue
        await asyncio.sleep(0.01)
    return False


async def running(log: Path) -> dict[str, object]:
    """Wait until the recorder writing ``log`` has started (a Python interpreter: slow on a loaded machine)."""
    spawn = log.with_suffix(".spawn")
    deadline = time.monotonic() + 10
    while not spawn.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.02)  # and has written it
    result: dict[str, object] = json.loads(spawn.read_text())
    return result


async def prepared_tone(tmp_path: Path, seconds: float, **player_args: object) -> tuple[AlsaPlayer, Prepared]:
    audio = tmp_path / "tone.mp3"
    data = tone_mp3(audio, seconds)
    player = AlsaPlayer(tmp_path / "decoded", ffmpeg=ffmpeg_exe(), **player_args)  # type: ignore[arg-type]
    return player, await player.prepare(audio, item("x", 0, duration_ms=int(seconds * 1000), data=data))


def pcm_of(prepared: Prepared) -> bytes:
    wav = prepared.detail
    assert isinstance(wav, Path)
    data = wav_data(wav)
    return wav.read_bytes()[data.start:data.end]


def wav_bytes(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"".join(cid + struct.pack("<I", len(c)) + c + b"\0" * (len(c) % 2) for cid, c in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def fmt(channels: int = 1, rate: int = 48000, bits: int = 16, tag: int = 1) -> tuple[bytes, bytes]:
    return b"fmt ", struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8,
                                bits)


def test_the_data_chunk_is_found_after_other_chunks_and_the_format_checked(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes((b"LIST", b"INFOISFT\x05\0\0\0Lavf\0"), fmt(), (b"data", b"\1\2\3\4")))
    data = wav_data(wav)
    assert wav.read_bytes()[data.start:data.end] == b"\1\2\3\4" and data.start > 44
    for bad, message in [(fmt(channels=2), "not 48000 Hz mono"), (fmt(rate=44100), "not 48000 Hz mono"),
                         (fmt(bits=24), "not 48000 Hz mono"), (fmt(tag=3), "not 48000 Hz mono")]:
        wav.write_bytes(wav_bytes(bad, (b"data", b"\0\0")))
        with pytest.raises(PlaybackError, match=message):
            wav_data(wav)
    wav.write_bytes(wav_bytes(fmt()))
    with pytest.raises(PlaybackError, match="no data chunk"):
        wav_data(wav)
    wav.write_bytes(b"ID3 not a wav at all")
    with pytest.raises(PlaybackError, match="not a WAV file"):
        wav_data(wav)


def test_aplay_gets_raw_pcm_options_and_other_players_run_as_given(tmp_path: Path) -> None:
    aplay = AlsaPlayer(tmp_path, device="hw:1,0", play_command=("/usr/bin/aplay", "-q"), buffer_ms=120, period_ms=30)
    assert aplay.player_argv() == ["/usr/bin/aplay", "-q", "-D", "hw:1,0", "-t", "raw", "-f", "S16_LE", "-r", "48000",
                                   "-c", "1", "--buffer-time=120000", "--period-time=30000"]
    own_buffer = AlsaPlayer(tmp_path, play_command=("aplay", "--buffer-time=500000"))
    assert own_buffer.player_argv()[-1] == "1"  # the site's buffer setting, not the default
    pacat = AlsaPlayer(tmp_path, device="sink1", play_command=("pacat", "--raw", "--device={device}"))
    assert pacat.player_argv() == ["pacat", "--raw", "--device=sink1"]


async def test_a_primed_output_gets_its_first_bytes_at_once_and_exactly_the_pcm(tmp_path: Path) -> None:
    command, log = recorder(tmp_path)
    player, prepared = await prepared_tone(tmp_path, 2.0, device="card7", play_command=command)
    pcm = pcm_of(prepared)
    assert len(pcm) == 2 * 48000 * 2
    await player.prime(prepared, 0)
    spawn = await running(log)  # the recorder is running before the start
    assert spawn["argv"] == [str(log), "card7"]
    called = time.monotonic()
    await player.play(prepared)
    returned = time.monotonic()
    record = json.loads(log.with_suffix(".json").read_text())
    assert isinstance(spawn["spawned"], list) and spawn["spawned"][0] < called
    first_byte_ms = (record["first"][0] - called) * 1000
    assert 0 <= first_byte_ms < 50, first_byte_ms  # a pipe write; generous for a loaded CI machine
    assert log.with_suffix(".pcm").read_bytes() == pcm
    assert 1.95 <= returned - called < 2.5  # the recorder is not paced: play waits for the audio's end


async def test_a_resumed_output_starts_at_the_exact_byte_of_its_offset(tmp_path: Path) -> None:
    command, log = recorder(tmp_path)
    player, prepared = await prepared_tone(tmp_path, 2.0, play_command=command)
    pcm = pcm_of(prepared)
    await player.prime(prepared, 1500)
    await running(log)
    called = time.monotonic()
    await player.play(prepared, 1500)
    got = log.with_suffix(".pcm").read_bytes()
    assert got == pcm[1500 * 48 * 2:] and len(got) == 500 * 48 * 2
    assert 0.45 <= time.monotonic() - called < 1.0


async def test_priming_takes_the_process_start_out_of_the_start(tmp_path: Path) -> None:
    command, log = recorder(tmp_path)
    player, prepared = await prepared_tone(tmp_path, 0.2, play_command=command)
    delays = {}
    for primed in (False, True):
        log.with_suffix(".spawn").unlink(missing_ok=True)
        if primed:
            await player.prime(prepared, 0)
            await running(log)
        called = time.monotonic()
        await player.play(prepared)
        delays[primed] = json.loads(log.with_suffix(".json").read_text())["first"][0] - called
        assert log.with_suffix(".pcm").read_bytes() == pcm_of(prepared)
    # Starting a Python interpreter alone takes well over 10 ms; a primed one only reads a pipe.
    assert delays[True] < min(0.05, delays[False]), delays


async def test_cancelling_stops_the_output_process_before_the_cancellation_propagates(tmp_path: Path) -> None:
    command, log = recorder(tmp_path, "--realtime")
    player, prepared = await prepared_tone(tmp_path, 5.0, play_command=command)
    await player.prime(prepared, 0)
    pid = (await running(log))["pid"]
    task = asyncio.create_task(player.play(prepared))
    await asyncio.sleep(0.5)
    assert pid in children("rawrecorder", tmp_path)  # still playing, at the pace of a sound card
    cancelled = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled < 0.5
    assert pid not in children("rawrecorder", tmp_path)
    assert not log.with_suffix(".json").exists()  # it was stopped, not run to the end


async def test_a_player_that_fails_is_a_playback_error_with_its_message(tmp_path: Path) -> None:
    missing, prepared = await prepared_tone(tmp_path, 0.2, play_command=(str(tmp_path / "no-such-player"),))
    await missing.prime(prepared, 0)
    with pytest.raises(PlaybackError, match="cannot run"):
        await missing.play(prepared)
    failing = AlsaPlayer(tmp_path / "decoded", play_command=(sys.executable, "-c", "import sys; "
                                                             "sys.stderr.write('no such card'); sys.exit(3)"))
    await failing.prime(prepared, 0)
    await asyncio.sleep(0.3)  # it has died before the start
    with pytest.raises(PlaybackError, match=r"exited 3.*no such card"):
        await failing.play(prepared)
    with pytest.raises(PlaybackError, match=r"exited 3.*no such card"):
        await failing.play(prepared)  # not primed: started at play


@needs_aplay
async def test_aplay_on_the_null_device_is_open_before_the_start_and_plays_the_item(tmp_path: Path) -> None:
    player, prepared = await prepared_tone(tmp_path, 0.5, device="null")
    await player.prime(prepared, 0)
    await asyncio.sleep(0.3)
    primed = children("aplay")
    assert len(primed) == 1  # open and waiting for samples
    called = time.monotonic()
    await player.play(prepared)
    assert 0.45 <= time.monotonic() - called < 0.9
    assert not children("aplay")


@needs_aplay
async def test_aplay_that_cannot_open_its_device_is_a_playback_error(tmp_path: Path) -> None:
    player, prepared = await prepared_tone(tmp_path, 0.2, device="no-such-pcm")
    await player.prime(prepared, 0)
    await asyncio.sleep(0.3)
    with pytest.raises(PlaybackError, match=r"aplay exited 1.*no-such-pcm"):
        await player.play(prepared)


@needs_aplay
async def test_a_primed_aplay_that_is_not_played_is_stopped(tmp_path: Path) -> None:
    player, prepared = await prepared_tone(tmp_path, 0.5, device="null", primed_ttl_s=0.5)
    await player.prime(prepared, 0)
    first = children("aplay")
    assert len(first) == 1
    player.release(prepared)  # the item was dropped at its instant
    assert await gone(first[0])
    await player.prime(prepared, 0)
    second = children("aplay")
    await player.prime(prepared, 500)  # a new prime replaces a stale one
    third = children("aplay")
    assert await gone(second[0]) and len(third) == 1 and third != second
    await asyncio.sleep(0.7)  # never played nor released: it expires
    assert await gone(third[0]) and not children("aplay")
    await player.prime(prepared, 0)
    await player.play(prepared)  # the device is free again
    assert not children("aplay")


async def make_alsa_agent(tmp_path: Path, player: AlsaPlayer, data: bytes, events: list[AsRunEvent],
                          **settings_args: float) -> tuple[Agent, Journal, httpx.AsyncClient]:
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.start()
    http = httpx.AsyncClient(transport=serve_audio({}))
    cache = AudioCache(tmp_path / "cache", http, "t" * 32, attempts=2)
    cache.start()
    cache.path_for(hashlib.sha256(data).hexdigest()).write_bytes(data)
    # A long pre-roll: the recorder is a Python interpreter, which takes a while to start on a loaded machine.
    settings = AgentSettings(agent_id="test-agent", heartbeat_s=3600, outbox_resend_s=3600, preroll_s=PREROLL_S,
                             **settings_args)
    agent = Agent(settings, link=FakeLink(), player=player, cache=cache, journal=journal, on_event=events.append)
    agent.before_connect()
    await agent.start()
    agent.on_connected()
    return agent, journal, http


async def test_an_agent_primes_the_output_and_writes_the_first_samples_at_the_instant(tmp_path: Path) -> None:
    data = tone_mp3(tmp_path / "tone.mp3", 0.5)
    command, log = recorder(tmp_path)
    events: list[AsRunEvent] = []
    agent, journal, http = await make_alsa_agent(
        tmp_path, AlsaPlayer(tmp_path / "decoded", ffmpeg=ffmpeg_exe(), play_command=command), data, events)
    try:
        planned = item("on-time", PREROLL_S + 1.0, duration_ms=500, data=data)
        agent.on_message(Topics.plan("test-agent"),
                         encode(Plan(agent_id="test-agent", version=1, issued_at=datetime.now(UTC), items=(planned,))))
        await asyncio.sleep(planned.play_at.timestamp() - time.time() - 0.1)
        primed = children("rawrecorder", tmp_path)  # the process exists (its interpreter may still be starting)
        await asyncio.sleep(planned.play_at.timestamp() - time.time() + 1.0)
    finally:
        await agent.stop()
        await http.aclose()
        journal.stop()
    play_at = planned.play_at.timestamp()
    record = json.loads(log.with_suffix(".json").read_text())
    assert len(primed) == 1 and record["spawned"][1] < play_at  # started within the pre-roll
    late_ms = (record["first"][1] - play_at) * 1000
    assert -1 <= late_ms < 50, late_ms  # precision is the benchmark's business; here: no spawn at the start
    assert [e.kind for e in events if e.item_id == "on-time"] == ["started", "finished"]


async def test_an_agent_releases_a_primed_output_when_the_item_is_withdrawn_before_its_instant(
        tmp_path: Path) -> None:
    data = tone_mp3(tmp_path / "tone.mp3", 0.5)
    command, log = recorder(tmp_path)
    events: list[AsRunEvent] = []
    agent, journal, http = await make_alsa_agent(
        tmp_path, AlsaPlayer(tmp_path / "decoded", ffmpeg=ffmpeg_exe(), play_command=command), data, events)
    try:
        planned = item("withdrawn", PREROLL_S + 1.0, duration_ms=500, data=data)
        agent.on_message(Topics.plan("test-agent"),
                         encode(Plan(agent_id="test-agent", version=1, issued_at=datetime.now(UTC), items=(planned,))))
        play_at = planned.play_at.timestamp()
        # Primed a pre-roll (1.5 s here) ahead; withdrawn well before the gate opens (0.04 s ahead), with room
        # for a loaded machine.
        await asyncio.sleep(play_at - time.time() - 0.5)
        primed = children("rawrecorder", tmp_path)
        assert len(primed) == 1
        agent.on_message(Topics.plan("test-agent"),
                         encode(Plan(agent_id="test-agent", version=2, issued_at=datetime.now(UTC), items=())))
        await asyncio.sleep(play_at - time.time() + 0.3)
        assert await gone(primed[0])
    finally:
        await agent.stop()
        await http.aclose()
        journal.stop()
    assert not log.with_suffix(".pcm").exists() or log.with_suffix(".pcm").read_bytes() == b""
    assert not [e for e in events if e.item_id == "withdrawn" and e.kind == "started"]


async def test_an_output_process_that_hangs_is_killed_after_the_items_end(tmp_path: Path) -> None:
    # A player that never reads its input nor exits: what aplay does when its USB sound card is pulled out.
    stuck = tmp_path / "stuckplayer"
    stuck.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(600)\n")
    stuck.chmod(stuck.stat().st_mode | stat.S_IEXEC)
    data = tone_mp3(tmp_path / "tone.mp3", 0.5)
    events: list[AsRunEvent] = []
    agent, journal, http = await make_alsa_agent(
        tmp_path, AlsaPlayer(tmp_path / "decoded", ffmpeg=ffmpeg_exe(), play_command=(str(stuck),)), data, events,
        play_overrun_s=0.5)
    try:
        planned = item("hung", PREROLL_S + 0.5, duration_ms=500, data=data)
        agent.on_message(Topics.plan("test-agent"),
                         encode(Plan(agent_id="test-agent", version=1, issued_at=datetime.now(UTC), items=(planned,))))
        await asyncio.sleep(planned.play_at.timestamp() - time.time() + 0.2)
        hung = children("stuckplayer", tmp_path)
        assert len(hung) == 1  # playing, and going nowhere
        await asyncio.sleep(planned.play_at.timestamp() + 0.5 + 0.5 + 0.5 - time.time())
        assert await gone(hung[0])
        assert [e.kind for e in events if e.item_id == "hung"] == ["started", "failed"]
    finally:
        await agent.stop()
        await http.aclose()
        journal.stop()
