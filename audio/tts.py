"""Text-to-speech engines behind one small protocol.

`TtsEngine` is the seam: the server builds a `TtsChain` (Google's gTTS when
online, the local espeak-ng as the fallback that always works) and tests or
deployments swap in other engines without touching the renderer.  Every
engine returns a `Speech` (a pydub segment plus which engine and voice made
it) or raises `TtsError`.

gTTS needs the network, so every request carries a timeout; espeak-ng runs
in-process through ctypes (the `espeakng-loader` wheel ships the library and
its Vietnamese voices), or through the `espeak-ng` executable as a last resort.
A Piper neural voice (`audio.piper`) joins the chain when an operator installs
one.

Every engine also has `cache_key_parts()`: the strings that, with the text,
decide what it says (engine name, voice, speed).  `audio.tts_cache.CachedChain`
hashes them so the same announcement is never synthesised twice and audio
made online by gTTS is reused when the link is down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from audio.errors import TtsError
from audio.ffmpeg import AudioSegment, decode_bytes, segment_from_wav

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CACHE_MAX_BYTES",
    "ESPEAK_VOICES",
    "EspeakEngine",
    "GttsEngine",
    "Speech",
    "TtsChain",
    "TtsEngine",
    "chunk_text",
    "default_chain",
    "format_speed",
]

DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3  # 2 GiB of cached speech (see audio.tts_cache)
ESPEAK_VOICES = ("vi", "vi-VN-x-central", "vi-VN-x-south")  # northern, central, southern


@dataclass(frozen=True)
class Speech:
    audio: AudioSegment
    engine: str  # "gtts" | "espeak-ng" | ...
    voice: str  # e.g. "vi", "vi-VN-x-south"


@runtime_checkable
class TtsEngine(Protocol):
    name: str

    def synthesize(self, text: str) -> Speech: ...


# ---------------------------------------------------------------- chunking

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def _split_words(text: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > max_chars:  # a "word" longer than a chunk: cut it
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:max_chars])
            word = word[max_chars:]
        if current and len(current) + 1 + len(word) > max_chars:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts


def chunk_text(text: str, max_chars: int = 200) -> list[str]:
    """Split text into pieces of at most `max_chars`, cutting at sentence ends,
    then at clause punctuation, then between words; adjacent short pieces are
    merged back so there are as few requests as possible.  Pieces with nothing
    to pronounce (only punctuation) are dropped."""
    if max_chars < 20:
        raise ValueError("max_chars must be at least 20")
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for clause in _CLAUSE_END.split(sentence):
            pieces.extend(_split_words(clause, max_chars))
    chunks: list[str] = []
    for piece in pieces:
        if not any(ch.isalnum() for ch in piece):
            continue
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks


def format_speed(value: float) -> str:
    """A speed or scale as a stable string for cache keys (1 → "1", 0.9 → "0.9")."""
    return f"{float(value):g}"


def _require_text(text: str) -> None:
    if not any(ch.isalnum() for ch in text):
        raise TtsError("nothing to speak: the text has no letters or digits")


# ---------------------------------------------------------------- gTTS


class GttsEngine:
    """Google Translate's TTS through gTTS.

    Each chunk of ≤200 characters is fetched with `timeout_s` per network
    operation and retried `retries` times with exponential backoff; the first
    chunk that exhausts its retries fails the whole synthesis.  Worst case for
    a dead link is therefore about ``(retries + 1) * timeout_s`` plus backoff.
    """

    name = "gtts"

    def __init__(
        self,
        *,
        lang: str = "vi",
        timeout_s: float = 6.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        tld: str = "com.vn",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive: without it a stalled link hangs forever")
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must not be negative")
        self.lang = lang
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.tld = tld

    def cache_key_parts(self) -> tuple[str, ...]:
        """Engine, voice and speed: timeouts and retries do not change the audio."""
        return (self.name, f"lang={self.lang}", f"tld={self.tld}", "speed=normal")

    def synthesize(self, text: str) -> Speech:
        _require_text(text)
        chunks = chunk_text(text)
        audio: AudioSegment | None = None
        for chunk in chunks:
            mp3 = self._fetch(chunk)
            try:
                part = decode_bytes(mp3, "mp3")
            except Exception as exc:
                raise TtsError(f"gTTS returned undecodable audio: {exc}") from exc
            audio = part if audio is None else audio + part
        assert audio is not None  # chunk_text returns at least one chunk for speakable text
        return Speech(audio=audio, engine=self.name, voice=self.lang)

    def _fetch(self, chunk: str) -> bytes:
        import requests
        from gtts import gTTS, gTTSError

        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                buf = io.BytesIO()
                # lang_check=False: the language list is local anyway and a bad
                # language should surface as a TtsError like any other failure.
                request = gTTS(chunk, lang=self.lang, tld=self.tld, lang_check=False, timeout=self.timeout_s)
                request.write_to_fp(buf)
                data = buf.getvalue()
                if not data:
                    raise TtsError("gTTS returned no audio")
                return data
            except (gTTSError, requests.RequestException, OSError, TtsError) as exc:
                status = getattr(getattr(exc, "rsp", None), "status_code", None)
                retriable = not (isinstance(status, int) and 400 <= status < 500 and status != 429)
                log.info("gTTS attempt %d/%d failed: %s", attempt + 1, attempts, exc)
                if attempt + 1 == attempts or not retriable:
                    raise TtsError(f"gTTS failed after {attempt + 1} attempt(s): {exc}") from exc
            except AssertionError as exc:  # gTTS asserts when nothing is left to speak
                raise TtsError(f"gTTS rejected the text: {exc}") from exc
        raise AssertionError("unreachable")


# ---------------------------------------------------------------- espeak-ng

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000  # otherwise a missing data dir calls exit()
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_EE_OK = 0
_EE_NOT_FOUND = 2
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# libespeak-ng keeps one global synthesiser per process: every call goes
# through this lock, and each library file is initialised once.
_ESPEAK_LOCK = threading.Lock()
_ESPEAK_LIBS: dict[str, _EspeakLib] = {}


class _EspeakLib:
    """An initialised libespeak-ng. Only touch it while holding `_ESPEAK_LOCK`."""

    def __init__(self, library_path: str, data_path: str | None) -> None:
        lib = ctypes.CDLL(library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        path_arg = data_path.encode() if data_path else None
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path_arg, _ESPEAK_INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise TtsError(f"espeak_Initialize failed ({rate}); data path {data_path!r}")
        self.lib = lib
        self.sample_rate = rate
        self.data_path = data_path
        self.voice: str | None = None
        self._chunks: list[bytes] = []
        # ctypes keeps no reference to callbacks: hold it for the library's lifetime.
        self._callback = _SynthCallback(self._on_samples)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_samples(self, wav: Any, num_samples: int, _events: Any) -> int:
        if wav and num_samples > 0:
            self._chunks.append(ctypes.string_at(wav, num_samples * 2))
        return 0  # 0 = continue

    def synthesize(self, text: str, voice: str, rate_wpm: int) -> bytes:
        if voice != self.voice:
            err = self.lib.espeak_SetVoiceByName(voice.encode())
            if err != _EE_OK:
                self.voice = None
                reason = "not found" if err == _EE_NOT_FOUND else f"error {err}"
                raise TtsError(f"espeak-ng voice {voice!r}: {reason}")
            self.voice = voice
        self.lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0)
        self._chunks = []
        encoded = text.encode("utf-8")
        err = self.lib.espeak_Synth(
            encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        self.lib.espeak_Synchronize()
        pcm, self._chunks = b"".join(self._chunks), []
        if err != _EE_OK:
            raise TtsError(f"espeak_Synth failed (error {err})")
        return pcm


def _default_library_paths() -> tuple[str | None, str | None]:
    """(library, data dir) when the caller gave none: env, then the pip wheel, then the system."""
    env_lib = os.environ.get("LOA_ESPEAK_LIBRARY")
    env_data = os.environ.get("LOA_ESPEAK_DATA")
    if env_lib:
        return env_lib, env_data
    try:
        import espeakng_loader

        return espeakng_loader.get_library_path(), env_data or espeakng_loader.get_data_path()
    except Exception:  # not installed, or a wheel without its data
        return ctypes.util.find_library("espeak-ng"), env_data


def _load_espeak(library_path: str, data_path: str | None) -> _EspeakLib:
    """Caller holds `_ESPEAK_LOCK`."""
    key = os.path.realpath(library_path) if os.path.sep in library_path else library_path
    lib = _ESPEAK_LIBS.get(key)
    if lib is None:
        lib = _EspeakLib(library_path, data_path)
        _ESPEAK_LIBS[key] = lib
    elif data_path and lib.data_path and data_path != lib.data_path:
        log.warning(
            "libespeak-ng %s is already initialised with data %s; ignoring %s", key, lib.data_path, data_path
        )
    return lib


class EspeakEngine:
    """espeak-ng: robotic but offline, instant and always available.

    Voices: "vi" (northern), "vi-VN-x-central", "vi-VN-x-south".  Uses
    libespeak-ng through ctypes (by default the one in `espeakng-loader`;
    `library_path`/`data_path` or $LOA_ESPEAK_LIBRARY/$LOA_ESPEAK_DATA choose
    another), and the `espeak-ng` executable if no library can be loaded.
    """

    name = "espeak-ng"

    def __init__(
        self,
        *,
        voice: str = "vi",
        rate_wpm: int = 150,
        library_path: str | None = None,
        data_path: str | None = None,
    ) -> None:
        if not 80 <= rate_wpm <= 450:
            raise ValueError("rate_wpm must be within espeak-ng's 80..450")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.library_path = library_path
        self.data_path = data_path

    def cache_key_parts(self) -> tuple[str, ...]:
        """Engine, voice and rate (the library's location does not change the audio)."""
        return (self.name, f"voice={self.voice}", f"rate_wpm={self.rate_wpm}")

    def synthesize(self, text: str) -> Speech:
        _require_text(text)
        library_path: str | None
        data_path: str | None
        if self.library_path is not None:
            library_path, data_path = self.library_path, self.data_path
        else:
            library_path, default_data = _default_library_paths()
            data_path = self.data_path or default_data
        load_error: Exception | None = None
        if library_path:
            with _ESPEAK_LOCK:
                try:
                    lib = _load_espeak(library_path, data_path)
                except (OSError, TtsError) as exc:
                    load_error = exc
                else:
                    pcm = lib.synthesize(text, self.voice, self.rate_wpm)
                    return self._speech(pcm, lib.sample_rate)
        exe = shutil.which("espeak-ng")
        if exe is None:
            reason = f"cannot load {library_path}: {load_error}" if library_path else "no libespeak-ng found"
            raise TtsError(f"espeak-ng unavailable ({reason}) and no espeak-ng executable on PATH")
        log.info("libespeak-ng unavailable (%s); using %s", load_error or "not found", exe)
        # The executable brings its own data; only pass an explicitly chosen one
        # (the pip wheel's data need not match a system binary's version).
        return self._run_executable(exe, text, self.data_path)

    def _speech(self, pcm: bytes, sample_rate: int) -> Speech:
        if not pcm:
            raise TtsError("espeak-ng produced no audio")
        audio = AudioSegment(data=pcm, sample_width=2, frame_rate=sample_rate, channels=1)
        return Speech(audio=audio, engine=self.name, voice=self.voice)

    def _run_executable(self, exe: str, text: str, data_path: str | None) -> Speech:
        cmd = [exe, "--stdout", "-b", "1", "-v", self.voice, "-s", str(self.rate_wpm)]
        if data_path:
            cmd += ["--path", data_path]
        try:
            proc = subprocess.run(
                cmd, input=text.encode("utf-8"), capture_output=True, timeout=120, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TtsError(f"{exe} failed: {exc}") from exc
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise TtsError(f"{exe} exit {proc.returncode}: {err or 'no audio'}")
        try:
            audio = segment_from_wav(proc.stdout)
        except Exception as exc:
            raise TtsError(f"{exe} wrote no usable WAV: {exc}") from exc
        if audio.frame_count() == 0:
            raise TtsError(f"{exe} produced no audio")
        return Speech(audio=audio, engine=self.name, voice=self.voice)


# ---------------------------------------------------------------- chain


class TtsChain:
    """Tries engines in order and returns the first success.

    A chain is itself a `TtsEngine`, so chains nest.  Any exception from an
    engine counts as a failure (a bug in one engine must not silence an
    announcement that the next engine could have spoken).
    """

    name = "chain"

    def __init__(self, engines: Sequence[TtsEngine]) -> None:
        if not engines:
            raise ValueError("a TtsChain needs at least one engine")
        self.engines: tuple[TtsEngine, ...] = tuple(engines)

    def synthesize(self, text: str) -> Speech:
        _require_text(text)
        reasons: list[str] = []
        last: Exception | None = None
        for engine in self.engines:
            try:
                return self._attempt(engine, text)
            except Exception as exc:
                last = exc
                reasons.append(f"{engine.name}: {exc}")
                log.warning(
                    "TTS engine %s failed: %s", engine.name, exc, exc_info=not isinstance(exc, TtsError)
                )
        raise TtsError("all TTS engines failed: " + "; ".join(reasons)) from last

    def _attempt(self, engine: TtsEngine, text: str) -> Speech:
        """One engine's try; subclasses MAY wrap it (the cache does) and MUST raise on failure."""
        return engine.synthesize(text)


def default_chain(
    *,
    online: bool = True,
    gtts_timeout_s: float = 6.0,
    espeak_voice: str = "vi",
    espeak_rate_wpm: int = 150,
    piper_model: Path | None = None,
    cache_dir: Path | None = None,
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
) -> TtsChain:
    """gTTS (when online), then Piper (when a voice model is given), then espeak-ng.

    With `cache_dir` the chain is an `audio.tts_cache.CachedChain`: each
    engine's result is kept on disk, so a text is never synthesised twice by
    the same engine and gTTS audio made earlier is reused when the network
    is down; `cache_max_bytes` bounds it (least recently used entries go
    first).  Without it, a plain `TtsChain`.  Nothing is loaded here: Piper's
    model and packages load on its first synthesis.
    """
    engines: list[TtsEngine] = []
    if online:
        engines.append(GttsEngine(timeout_s=gtts_timeout_s))
    if piper_model is not None:
        from audio.piper import PiperEngine

        engines.append(PiperEngine(Path(piper_model)))
    engines.append(EspeakEngine(voice=espeak_voice, rate_wpm=espeak_rate_wpm))
    if cache_dir is None:
        return TtsChain(engines)
    from audio.tts_cache import CachedChain

    return CachedChain(engines, Path(cache_dir), max_bytes=cache_max_bytes)
