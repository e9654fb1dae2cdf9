"""TTS engines and the fallback chain. Nothing here touches the network:
gTTS is pointed at servers on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gtts.tts
import pytest

from audio.errors import TtsError
from audio.ffmpeg import AudioSegment, configure_pydub
from audio.tts import (
    ESPEAK_VOICES,
    EspeakEngine,
    GttsEngine,
    Speech,
    TtsChain,
    TtsEngine,
    chunk_text,
    default_chain,
)
from tests.audio.conftest import SilentServer, point_gtts_at

SENTENCE = "Thông báo của Ủy ban nhân dân xã về lịch tiêm chủng cho trẻ em dưới năm tuổi."
PARAGRAPH = (
    "Kính thưa bà con, Ủy ban nhân dân xã thông báo lịch tiêm chủng mở rộng tháng này. "
    "Đề nghị các hộ gia đình có trẻ em dưới năm tuổi đưa trẻ đến trạm y tế xã vào sáng thứ bảy, "
    "mang theo sổ tiêm chủng; nếu trẻ đang sốt hoặc ho, xin báo cho cán bộ y tế biết trước. "
    "Trân trọng cảm ơn!"
)






@pytest.fixture
def fake_google(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Answers every TTS request with 300 ms of tone, the way Google frames it."""
    from pydub.generators import Sine  # after audio.ffmpeg, which silences pydub's import warning

    configure_pydub()
    tone = Sine(440).to_audio_segment(duration=300, volume=-10).set_frame_rate(24000)
    mp3 = tone.export(format="mp3", bitrate="32k").read()
    body = '[["wrb.fr","jQ1olc","[\\"' + base64.b64encode(mp3).decode() + '\\"]",null,null,null,"generic"]]'
    payload = (")]}'\n\n" + body + "\n").encode()
    requests_seen: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests_seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    point_gtts_at(monkeypatch, server.server_address[1])
    yield requests_seen
    server.shutdown()
    server.server_close()


class _Failing:
    def __init__(self, name: str, exc: Exception) -> None:
        self.name = name
        self.exc = exc

    def synthesize(self, text: str) -> Speech:
        raise self.exc


# ---------------------------------------------------------------- chunking


def test_chunks_are_bounded_and_lose_no_words() -> None:
    text = " ".join([PARAGRAPH] * 4)
    chunks = chunk_text(text)
    assert all(0 < len(c) <= 200 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    assert len(chunks) <= len(text) // 100  # short pieces are merged back


def test_chunks_prefer_sentence_then_clause_boundaries() -> None:
    chunks = chunk_text(PARAGRAPH, max_chars=120)
    assert chunks[0].endswith("tháng này.")
    assert all(c[-1] in ".,;!" for c in chunks), chunks


def test_unpunctuated_text_and_huge_words_are_still_cut() -> None:
    words = ("loa " * 150).strip()
    assert all(len(c) <= 200 for c in chunk_text(words))
    assert [len(c) for c in chunk_text("x" * 450)] == [200, 200, 50]
    assert chunk_text(" ... !!! ") == []


# ---------------------------------------------------------------- gTTS


@pytest.mark.timeout(15)
def test_gtts_gives_up_on_a_stalled_link_within_its_timeout(stalled_google: SilentServer) -> None:
    engine = GttsEngine(timeout_s=0.5, retries=0)
    start = time.monotonic()
    with pytest.raises(TtsError, match="gTTS failed") as info:
        engine.synthesize(SENTENCE)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 1.5, elapsed
    assert isinstance(info.value.__cause__, gtts.tts.gTTSError)
    assert len(stalled_google.connections) == 1


@pytest.mark.timeout(15)
def test_gtts_retries_with_backoff(stalled_google: SilentServer) -> None:
    engine = GttsEngine(timeout_s=0.25, retries=2, backoff_s=0.05)
    start = time.monotonic()
    with pytest.raises(TtsError, match="3 attempt"):
        engine.synthesize(SENTENCE)
    elapsed = time.monotonic() - start
    # 3 x 0.25 s timeouts + 0.05 + 0.10 s backoff
    assert 0.85 <= elapsed < 2.0, elapsed
    assert len(stalled_google.connections) == 3


@pytest.mark.timeout(15)
def test_gtts_decodes_and_joins_chunks(fake_google: list[bytes]) -> None:
    speech = GttsEngine(timeout_s=2.0).synthesize(PARAGRAPH)
    assert (speech.engine, speech.voice) == ("gtts", "vi")
    requests = len(fake_google)
    assert requests >= len(chunk_text(PARAGRAPH)) >= 2
    # Each response is a separate MP3; concatenated ones keep their frame padding.
    assert 280 * requests <= len(speech.audio) <= 400 * requests
    assert all(b"vi" in body for body in fake_google)


def test_gtts_requires_a_timeout() -> None:
    with pytest.raises(ValueError):
        GttsEngine(timeout_s=0)


# ---------------------------------------------------------------- espeak-ng


@pytest.mark.parametrize("voice", ESPEAK_VOICES)
def test_espeak_speaks_vietnamese_in_each_voice(voice: str) -> None:
    speech = EspeakEngine(voice=voice).synthesize(SENTENCE)
    audio = speech.audio
    assert (speech.engine, speech.voice) == ("espeak-ng", voice)
    assert (audio.channels, audio.sample_width, audio.frame_rate) == (1, 2, 22050)
    assert 2000 < len(audio) < 15000
    assert audio.rms > 500 and audio.dBFS > -30


def test_espeak_rate_changes_duration() -> None:
    slow = EspeakEngine(rate_wpm=100).synthesize(SENTENCE).audio
    fast = EspeakEngine(rate_wpm=250).synthesize(SENTENCE).audio
    assert len(slow) > 1.5 * len(fast)


def test_espeak_unknown_voice_is_a_tts_error() -> None:
    with pytest.raises(TtsError, match="not found"):
        EspeakEngine(voice="xx-no-such-voice").synthesize(SENTENCE)


def test_espeak_is_safe_from_many_threads() -> None:
    engines = [EspeakEngine(voice=v) for v in ESPEAK_VOICES] * 3
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda e: e.synthesize(SENTENCE), engines))
    for engine, speech in zip(engines, results, strict=True):
        assert speech.voice == engine.voice
        reference = results[ESPEAK_VOICES.index(engine.voice)]
        assert abs(len(speech.audio) - len(reference.audio)) < 50  # not mixed with another voice's samples


def _fake_espeak_cli(directory: Path) -> Path:
    """An `espeak-ng` executable that records its input and writes 0.5 s of WAV."""
    script = directory / "espeak-ng"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, wave, pathlib\n"
        "pathlib.Path(sys.argv[0] + '.log').write_text(' '.join(sys.argv[1:]) + '\\n' + "
        "sys.stdin.buffer.read().decode('utf-8'), encoding='utf-8')\n"
        "w = wave.open(sys.stdout.buffer, 'wb')\n"
        "w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)\n"
        "w.writeframes(b'\\x10\\x20' * 11025)\n"
        "w.close()\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def test_espeak_falls_back_to_the_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = _fake_espeak_cli(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine = EspeakEngine(voice="vi-VN-x-south", library_path=str(tmp_path / "missing-libespeak-ng.so"))
    speech = engine.synthesize(SENTENCE)
    assert (speech.engine, speech.voice, len(speech.audio)) == ("espeak-ng", "vi-VN-x-south", 500)
    args, text = Path(str(script) + ".log").read_text(encoding="utf-8").split("\n", 1)
    assert "--stdout" in args and "-v vi-VN-x-south" in args
    assert text == SENTENCE


def test_espeak_without_library_or_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TtsError, match="no espeak-ng executable"):
        EspeakEngine(library_path=str(tmp_path / "missing.so")).synthesize(SENTENCE)


# ---------------------------------------------------------------- chain


@pytest.mark.timeout(15)
def test_chain_falls_back_to_espeak_when_gtts_stalls(
    stalled_google: SilentServer, caplog: pytest.LogCaptureFixture
) -> None:
    chain = TtsChain([GttsEngine(timeout_s=0.3, retries=0), EspeakEngine()])
    with caplog.at_level(logging.WARNING, logger="audio.tts"):
        speech = chain.synthesize(SENTENCE)
    assert speech.engine == "espeak-ng"
    assert speech.voice == "vi"
    assert len(speech.audio) > 2000
    assert any("gtts failed" in r.getMessage() for r in caplog.records)


def test_chain_reports_every_reason_when_all_fail() -> None:
    chain = TtsChain([_Failing("one", TtsError("link down")), _Failing("two", RuntimeError("bug"))])
    with pytest.raises(TtsError, match=r"one: link down; two: bug") as info:
        chain.synthesize(SENTENCE)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_chain_returns_first_success_and_is_an_engine() -> None:
    audio = AudioSegment.silent(100)

    class Ok:
        name = "ok"

        def synthesize(self, text: str) -> Speech:
            return Speech(audio=audio, engine="ok", voice="test")

    chain = TtsChain([_Failing("bad", TtsError("x")), Ok(), _Failing("never", AssertionError())])
    assert chain.synthesize(SENTENCE).engine == "ok"
    assert isinstance(chain, TtsEngine)
    assert TtsChain([chain]).synthesize(SENTENCE).engine == "ok"


def test_chain_rejects_empty_text_and_empty_engine_list() -> None:
    with pytest.raises(TtsError, match="nothing to speak"):
        TtsChain([EspeakEngine()]).synthesize("  …  ")
    with pytest.raises(ValueError):
        TtsChain([])


def test_default_chain() -> None:
    online = default_chain(gtts_timeout_s=2.5, espeak_voice="vi-VN-x-central")
    assert [e.name for e in online.engines] == ["gtts", "espeak-ng"]
    gtts_engine = online.engines[0]
    assert isinstance(gtts_engine, GttsEngine) and gtts_engine.timeout_s == 2.5
    espeak_engine = online.engines[1]
    assert isinstance(espeak_engine, EspeakEngine) and espeak_engine.voice == "vi-VN-x-central"
    assert [e.name for e in default_chain(online=False).engines] == ["espeak-ng"]
