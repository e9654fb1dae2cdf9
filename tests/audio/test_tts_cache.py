"""The TTS disk cache and `CachedChain`. Nothing touches the network: gTTS is pointed at a server on
127.0.0.1 that accepts connections and never answers."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from audio.errors import TtsError
from audio.ffmpeg import AudioSegment
from audio.tts import EspeakEngine, GttsEngine, Speech, TtsChain, TtsEngine, default_chain
from audio.tts_cache import CachedChain, TtsCache, cache_key, engine_cache_key
from tests.audio.conftest import SilentServer

TEXT = "Thông báo của Ủy ban nhân dân xã về lịch tiêm chủng cho trẻ em dưới năm tuổi."


def _tone(ms: int, seed: int = 0) -> AudioSegment:
    """Distinct, non-silent 16-bit mono audio (a sawtooth whose step depends on `seed`)."""
    frames = 16 * ms
    step = 97 + seed
    samples = b"".join(((i * step) % 20000 - 10000).to_bytes(2, "little", signed=True) for i in range(frames))
    return AudioSegment(data=samples, sample_width=2, frame_rate=16000, channels=1)


class Counting:
    """A fake engine that counts its calls; `fail_after` successes, then TtsError."""

    def __init__(self, name: str = "fake", *, voice: str = "v1", speed: str = "1",
                 fail_after: int | None = None, delay_s: float = 0.0) -> None:
        self.name = name
        self.voice = voice
        self.speed = speed
        self.fail_after = fail_after
        self.delay_s = delay_s
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def cache_key_parts(self) -> tuple[str, ...]:
        return (self.name, f"voice={self.voice}", f"speed={self.speed}")

    def synthesize(self, text: str) -> Speech:
        with self._lock:
            self.calls.append(text)
            n = len(self.calls)
        if self.fail_after is not None and n > self.fail_after:
            raise TtsError(f"{self.name} is offline")
        time.sleep(self.delay_s)
        return Speech(audio=_tone(300 + len(text) % 50, seed=len(text)), engine=self.name, voice=self.voice)





def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*/*.json"))


# ---------------------------------------------------------------- keys


def test_key_changes_with_text_engine_voice_and_speed() -> None:
    base = cache_key(TEXT, ("espeak-ng", "voice=vi", "rate_wpm=150"))
    assert base == cache_key(TEXT, ("espeak-ng", "voice=vi", "rate_wpm=150"))  # stable
    variants = {
        cache_key(TEXT + " ", ("espeak-ng", "voice=vi", "rate_wpm=150")),
        cache_key(TEXT, ("gtts", "voice=vi", "rate_wpm=150")),
        cache_key(TEXT, ("espeak-ng", "voice=vi-VN-x-south", "rate_wpm=150")),
        cache_key(TEXT, ("espeak-ng", "voice=vi", "rate_wpm=151")),
        cache_key(TEXT, ("espeak-ng", "voice=vi,rate_wpm=150")),  # no ambiguity from joining
    }
    assert base not in variants and len(variants) == 5
    assert len(base) == 64 and all(c in "0123456789abcdef" for c in base)


def test_real_engines_keys_follow_voice_and_speed_not_transport_settings() -> None:
    def key(engine: TtsEngine, text: str = TEXT) -> str | None:
        return engine_cache_key(engine, text)

    espeak = key(EspeakEngine())
    assert espeak == key(EspeakEngine(voice="vi", rate_wpm=150, library_path="/elsewhere/libespeak-ng.so"))
    assert len({espeak, key(EspeakEngine(voice="vi-VN-x-south")), key(EspeakEngine(rate_wpm=170)),
                key(EspeakEngine(), "Khác."), key(GttsEngine())}) == 5
    assert key(GttsEngine(timeout_s=1, retries=5)) == key(GttsEngine())  # the network does not change audio
    assert key(GttsEngine(lang="en")) != key(GttsEngine())
    assert key(TtsChain([EspeakEngine()])) is None  # which engine answers is not known in advance


# ---------------------------------------------------------------- hits


def test_a_hit_returns_the_same_audio_without_calling_the_engine(tmp_path: Path) -> None:
    engine = Counting(voice="north")
    chain = CachedChain([engine], tmp_path)
    first = chain.synthesize(TEXT)
    second = CachedChain([engine], tmp_path).synthesize(TEXT)  # another instance: the cache is on disk
    assert engine.calls == [TEXT]
    assert (second.engine, second.voice) == ("fake", "north")
    assert second.audio.raw_data == first.audio.raw_data
    assert (second.audio.frame_rate, second.audio.channels, second.audio.sample_width) == (16000, 1, 2)
    chain.synthesize("Một văn bản khác.")
    assert len(engine.calls) == 2
    assert chain.cache.stats.hits == 0 and chain.cache.stats.stores == 2
    assert isinstance(chain, TtsChain) and isinstance(chain, TtsEngine)


def test_another_voice_or_speed_is_synthesised_again(tmp_path: Path) -> None:
    north, south, fast = Counting(voice="north"), Counting(voice="south"), Counting(voice="north", speed="1.2")
    for engine in (north, south, fast, north):
        CachedChain([engine], tmp_path).synthesize(TEXT)
    assert (len(north.calls), len(south.calls), len(fast.calls)) == (1, 1, 1)
    assert len(_entries(tmp_path)) == 3


def test_real_espeak_is_cached(tmp_path: Path) -> None:
    chain = CachedChain([EspeakEngine()], tmp_path)
    made = chain.synthesize(TEXT)
    again = chain.synthesize(TEXT)
    assert chain.cache.stats.hits == 1
    assert (again.engine, again.voice) == ("espeak-ng", "vi")
    assert again.audio.raw_data == made.audio.raw_data and again.audio.frame_rate == made.audio.frame_rate
    meta = json.loads(_entries(tmp_path)[0].read_text(encoding="utf-8"))
    assert meta["engine"] == "espeak-ng" and meta["key_parts"] == ["espeak-ng", "voice=vi", "rate_wpm=150"]
    assert meta["text"] == TEXT


def test_an_engine_without_cache_key_parts_is_called_every_time(tmp_path: Path) -> None:
    inner = Counting()
    chain = CachedChain([TtsChain([inner])], tmp_path)
    chain.synthesize(TEXT)
    chain.synthesize(TEXT)
    assert len(inner.calls) == 2 and _entries(tmp_path) == []


# ---------------------------------------------------------------- offline reuse


def test_gtts_audio_is_reused_when_gtts_then_fails(tmp_path: Path) -> None:
    online = Counting("gtts", voice="vi", fail_after=1)
    fallback = Counting("espeak-ng", voice="vi")
    chain = CachedChain([online, fallback], tmp_path)
    made = chain.synthesize(TEXT)
    assert made.engine == "gtts"
    reused = chain.synthesize(TEXT)
    assert reused.engine == "gtts" and reused.audio.raw_data == made.audio.raw_data
    assert fallback.calls == [] and len(online.calls) == 1  # cached: gTTS is not even asked
    # A new text while offline: gTTS fails, espeak-ng speaks, and only espeak-ng's audio is cached.
    assert chain.synthesize("Tin mới.").engine == "espeak-ng"
    assert len(online.calls) == 2
    assert chain.synthesize("Tin mới.").engine == "espeak-ng"
    assert len(online.calls) == 3 and len(fallback.calls) == 1  # gTTS is tried first again: it may be back


@pytest.mark.timeout(20)
def test_seeded_gtts_audio_is_returned_without_touching_a_stalled_network(
    tmp_path: Path, stalled_google: SilentServer
) -> None:
    gtts_engine = GttsEngine(timeout_s=1.2, retries=0)
    seeded = Speech(audio=_tone(800, seed=3), engine="gtts", voice="vi")
    TtsCache(tmp_path).put(cache_key(TEXT, gtts_engine.cache_key_parts()), seeded, text=TEXT)

    chain = CachedChain([gtts_engine, EspeakEngine()], tmp_path)
    start = time.monotonic()
    speech = chain.synthesize(TEXT)
    elapsed = time.monotonic() - start
    assert (speech.engine, speech.voice) == ("gtts", "vi")
    assert speech.audio.raw_data == seeded.audio.raw_data
    assert stalled_google.connections == [] and elapsed < 0.8

    # An unseeded text does reach the (stalled) network, times out and falls back.
    other = chain.synthesize("Kính thưa bà con.")
    assert other.engine == "espeak-ng" and len(stalled_google.connections) == 1


def test_every_failure_is_reported_and_nothing_is_cached(tmp_path: Path) -> None:
    chain = CachedChain([Counting("a", fail_after=0), Counting("b", fail_after=0)], tmp_path)
    with pytest.raises(TtsError, match=r"all TTS engines failed: a: a is offline; b: b is offline"):
        chain.synthesize(TEXT)
    assert _entries(tmp_path) == []
    with pytest.raises(TtsError, match="nothing to speak"):
        chain.synthesize(" … ")


# ---------------------------------------------------------------- corruption


@pytest.mark.parametrize("damage", ["wav-garbage", "wav-truncated", "wav-missing", "sidecar-garbage",
                                    "sidecar-other-text", "wav-altered-same-size"])
def test_a_corrupted_entry_is_ignored_and_rewritten(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Counting()
    chain = CachedChain([engine], tmp_path)
    made = chain.synthesize(TEXT)
    (sidecar,) = _entries(tmp_path)
    wav = sidecar.with_suffix(".wav")
    data = wav.read_bytes()
    if damage == "wav-garbage":
        wav.write_bytes(b"not a wav at all")
    elif damage == "wav-truncated":
        wav.write_bytes(data[: len(data) // 2])
    elif damage == "wav-missing":
        wav.unlink()
    elif damage == "sidecar-garbage":
        sidecar.write_bytes(b"{\x00 broken")
    elif damage == "sidecar-other-text":
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        sidecar.write_text(json.dumps({**meta, "text": "something else"}), encoding="utf-8")
    else:
        wav.write_bytes(data[:-2] + bytes([data[-2] ^ 0xFF, data[-1]]))
    with caplog.at_level(logging.WARNING, logger="audio.tts_cache"):
        again = chain.synthesize(TEXT)
    assert len(engine.calls) == 2  # the damaged entry was not used
    assert again.audio.raw_data == made.audio.raw_data
    assert chain.cache.stats.corrupt == 1
    assert any("bad entry" in r.getMessage() for r in caplog.records)
    # ... and was rewritten whole: the next call is a hit.
    assert chain.synthesize(TEXT).audio.raw_data == made.audio.raw_data
    assert len(engine.calls) == 2 and chain.cache.stats.hits == 1


def test_an_unwritable_cache_never_fails_a_synthesis(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    engine = Counting()
    with caplog.at_level(logging.WARNING, logger="audio.tts_cache"):
        assert CachedChain([engine], blocker).synthesize(TEXT).engine == "fake"
        assert CachedChain([engine], blocker).synthesize(TEXT).engine == "fake"
    assert len(engine.calls) == 2
    assert any("cannot store" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- size


def _age(cache: TtsCache, key: str, *, written_s_ago: float, used_s_ago: float) -> None:
    folder = cache.directory / key[:2]
    now = time.time()
    os.utime(folder / f"{key}.wav", (now - written_s_ago, now - written_s_ago))
    os.utime(folder / f"{key}.json", (now - used_s_ago, now - used_s_ago))


def test_eviction_drops_least_recently_used_and_keeps_recent_entries(tmp_path: Path) -> None:
    probe = TtsCache(tmp_path / "probe")
    probe.put("ab" * 32, Speech(_tone(200), "fake", "v"), text="x0")
    entry_size = probe.total_bytes()

    cache = TtsCache(tmp_path / "c", max_bytes=2 * entry_size + entry_size // 2)  # room for two entries
    keys = {name: cache_key(name, ("fake",)) for name in ("a", "b", "c", "d")}
    for i, name in enumerate(("a", "b", "c")):
        cache.put(keys[name], Speech(_tone(200, seed=i), "fake", "v"), text=f"x{i}")
    # All three were written two hours ago; "a" was heard 10 minutes ago, "c" 50, "b" 90.
    _age(cache, keys["a"], written_s_ago=7200, used_s_ago=600)
    _age(cache, keys["b"], written_s_ago=7200, used_s_ago=5400)
    _age(cache, keys["c"], written_s_ago=7200, used_s_ago=3000)
    assert cache.get(keys["c"]) is not None  # a hit makes "c" the most recently used
    cache.put(keys["d"], Speech(_tone(200, seed=3), "fake", "v"), text="x3")  # over the bound: evict

    assert keys["a"] not in cache and keys["b"] not in cache
    assert keys["c"] in cache and keys["d"] in cache
    assert cache.total_bytes() <= cache.max_bytes
    assert cache.stats.evicted == 2
    assert len(list((tmp_path / "c").glob("*/*.wav"))) == 2


def test_entries_written_in_the_last_hour_are_never_evicted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = TtsCache(tmp_path, max_bytes=1000)  # smaller than one entry
    keys = [cache_key(str(i), ("fake",)) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="audio.tts_cache"):
        for i, key in enumerate(keys):
            cache.put(key, Speech(_tone(200, seed=i), "fake", "v"), text=str(i))
    assert all(key in cache for key in keys) and cache.stats.evicted == 0
    assert any("less than 3600 s old" in r.getMessage() for r in caplog.records)
    _age(cache, keys[1], written_s_ago=3700, used_s_ago=3700)
    cache.evict()
    assert keys[1] not in cache and keys[0] in cache and keys[2] in cache


def test_the_chain_bounds_its_cache(tmp_path: Path) -> None:
    chain = CachedChain([Counting()], tmp_path, max_bytes=30_000, min_age_s=0)
    for i in range(10):
        chain.synthesize(f"Thông báo số {i}.")
    assert 0 < chain.cache.total_bytes() <= 30_000
    assert chain.cache.stats.evicted > 0


def test_orphans_and_stale_temporary_files_are_cleaned(tmp_path: Path) -> None:
    cache = TtsCache(tmp_path)
    key = cache_key(TEXT, ("fake",))
    cache.put(key, Speech(_tone(100), "fake", "v"), text=TEXT)
    folder = tmp_path / key[:2]
    orphan = folder / f"{'0' * 64}.wav"
    temp = folder / f".{key}.wav.abc.tmp"
    fresh_temp = folder / f".{key}.json.def.tmp"
    for path in (orphan, temp, fresh_temp):
        path.write_bytes(b"x" * 100)
    old = time.time() - 7200
    os.utime(orphan, (old, old))
    os.utime(temp, (old, old))
    cache.evict()
    assert not orphan.exists() and not temp.exists()
    assert fresh_temp.exists()  # may be a write in progress
    assert cache.get(key) is not None


# ---------------------------------------------------------------- threads


@pytest.mark.timeout(60)
def test_two_threads_share_one_cache_safely(tmp_path: Path) -> None:
    engine = Counting(delay_s=0.05)
    texts = [f"Thông báo số {i % 5}." for i in range(40)]
    chains = [CachedChain([engine], tmp_path), CachedChain([engine], tmp_path)]  # like two workers
    shared = CachedChain([engine], tmp_path)
    barrier = threading.Barrier(2)

    def work(worker: int) -> list[Speech]:
        barrier.wait()
        own = chains[worker]
        return [(own if i % 2 else shared).synthesize(text) for i, text in enumerate(texts)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(work, [0, 1]))
    for speeches in results:
        for text, speech in zip(texts, speeches, strict=True):
            assert speech.audio.raw_data == _tone(300 + len(text) % 50, seed=len(text)).raw_data
    # One chain serialises its own callers per text; separate instances may both make a text at most once each.
    assert len(engine.calls) <= 3 * 5
    assert len(_entries(tmp_path)) == 5
    assert not list(tmp_path.glob("*/.*.tmp"))
    fresh = Counting(delay_s=0)
    for text in set(texts):
        CachedChain([fresh], tmp_path).synthesize(text)
    assert fresh.calls == []  # every entry on disk is whole


@pytest.mark.timeout(60)
def test_one_chain_synthesises_each_text_once_under_contention(tmp_path: Path) -> None:
    engine = Counting(delay_s=0.2)
    chain = CachedChain([engine], tmp_path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(chain.synthesize, [TEXT] * 6 + ["Khác."] * 2))
    assert sorted(engine.calls) == sorted([TEXT, "Khác."])
    assert len({r.audio.raw_data for r in results[:6]}) == 1


# ---------------------------------------------------------------- default_chain


def test_default_chain_with_a_cache(tmp_path: Path) -> None:
    chain = default_chain(online=True, gtts_timeout_s=2.5, espeak_voice="vi-VN-x-south", espeak_rate_wpm=170,
                          cache_dir=tmp_path / "tts", cache_max_bytes=10_000_000)
    assert isinstance(chain, CachedChain)
    assert [e.name for e in chain.engines] == ["gtts", "espeak-ng"]
    assert chain.cache.max_bytes == 10_000_000 and chain.cache.directory == tmp_path / "tts"
    espeak = chain.engines[1]
    assert isinstance(espeak, EspeakEngine) and (espeak.voice, espeak.rate_wpm) == ("vi-VN-x-south", 170)
    assert not (tmp_path / "tts").exists()  # nothing happens until something is spoken
    plain = default_chain(online=False)
    assert type(plain) is TtsChain and [e.name for e in plain.engines] == ["espeak-ng"]
