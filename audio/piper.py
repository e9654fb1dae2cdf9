"""Piper: a local neural voice, used when an operator installs one.

Piper voices are an ONNX model (``*.onnx``) with a JSON config beside it
(``*.onnx.json``).  No package registry ships a Vietnamese voice, so Piper is
optional: `PiperEngine` is only put in the chain when a model path is
configured, and the `piper-tts` package (with onnxruntime) is imported on the
first synthesis, never at import, so the agent and a default server do not
need it.  Nothing is ever downloaded: a missing model or config is a
`TtsError` that says which file is missing.

Loaded voices are shared by every engine that names the same files (loading
takes about a second), and are reloaded when a file changes on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audio.errors import TtsError
from audio.ffmpeg import AudioSegment
from audio.tts import Speech, _require_text, format_speed

if TYPE_CHECKING:
    from piper import PiperVoice

log = logging.getLogger(__name__)

__all__ = ["PiperEngine"]

# (model, config, model mtime, config mtime) -> loaded voice
_VOICES: dict[tuple[str, str, int, int], PiperVoice] = {}
_VOICES_LOCK = threading.Lock()


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


class PiperEngine:
    """A Piper voice from a local ``.onnx`` model and its ``.onnx.json`` config.

    `speaker` picks a speaker of a multi-speaker voice (None: the voice's
    default); `length_scale` > 1 speaks slower, < 1 faster;
    `sentence_silence_ms` is inserted between sentences, which Piper
    synthesises one at a time.
    """

    name = "piper"

    def __init__(
        self,
        model_path: Path,
        *,
        config_path: Path | None = None,
        speaker: int | None = None,
        length_scale: float = 1.0,
        sentence_silence_ms: int = 200,
    ) -> None:
        if not 0.1 <= length_scale <= 5.0:
            raise ValueError("length_scale must be within 0.1..5.0")
        if speaker is not None and speaker < 0:
            raise ValueError("speaker must not be negative")
        if sentence_silence_ms < 0:
            raise ValueError("sentence_silence_ms must not be negative")
        self.model_path = Path(model_path)
        self.config_path = Path(config_path) if config_path is not None else Path(f"{self.model_path}.json")
        self.speaker = speaker
        self.length_scale = length_scale
        self.sentence_silence_ms = sentence_silence_ms

    @property
    def voice_name(self) -> str:
        """The model's file name without ``.onnx`` (e.g. "vi_VN-vais1000-medium"), plus "#speaker"."""
        stem = self.model_path.name.removesuffix(".onnx")
        return stem if self.speaker is None else f"{stem}#{self.speaker}"

    def cache_key_parts(self) -> tuple[str, ...]:
        """Engine, voice and speed.  The voice is named by its file name, the model's size and a digest of
        its config, so replacing the model with another one makes a new key without hashing 60 MB."""
        try:
            size = str(self.model_path.stat().st_size)
        except OSError:
            size = "missing"
        return (
            self.name,
            f"voice={self.voice_name}",
            f"model_size={size}",
            f"config={_file_digest(self.config_path)}",
            f"length_scale={format_speed(self.length_scale)}",
            f"sentence_silence_ms={self.sentence_silence_ms}",
        )

    def _load(self) -> PiperVoice:
        for what, path in (("voice model", self.model_path), ("voice config", self.config_path)):
            if not path.is_file():
                raise TtsError(
                    f"Piper {what} not found: {path} (install the voice's .onnx model and its .onnx.json "
                    "config there, or remove the Piper voice from the settings)"
                )
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise TtsError(f"Piper is not installed ({exc}): pip install piper-tts") from exc
        model_stat, config_stat = self.model_path.stat(), self.config_path.stat()
        key = (
            os.path.realpath(self.model_path),
            os.path.realpath(self.config_path),
            model_stat.st_mtime_ns,
            config_stat.st_mtime_ns,
        )
        with _VOICES_LOCK:
            voice = _VOICES.get(key)
            if voice is None:
                try:
                    voice = PiperVoice.load(self.model_path, config_path=self.config_path)
                except Exception as exc:  # bad JSON, not an ONNX model, onnxruntime errors
                    raise TtsError(f"cannot load Piper voice {self.model_path}: {exc}") from exc
                for stale in [k for k in _VOICES if k[:2] == key[:2]]:
                    del _VOICES[stale]  # the files changed: drop the old session
                _VOICES[key] = voice
                log.info("loaded Piper voice %s (%d Hz)", self.model_path.name, voice.config.sample_rate)
        return voice

    def synthesize(self, text: str) -> Speech:
        _require_text(text)
        voice = self._load()
        speakers = int(voice.config.num_speakers)
        if self.speaker is not None and self.speaker >= max(speakers, 1):
            raise TtsError(f"Piper voice {self.voice_name} has {speakers} speaker(s); no speaker {self.speaker}")
        try:
            from piper import SynthesisConfig

            config = SynthesisConfig(speaker_id=self.speaker, length_scale=self.length_scale)
            chunks: list[Any] = list(voice.synthesize(text, syn_config=config))
        except Exception as exc:  # onnxruntime and phonemizer errors
            raise TtsError(f"Piper failed: {exc}") from exc
        pcm = [chunk.audio_int16_bytes for chunk in chunks if len(chunk.audio_float_array)]
        if not pcm:
            raise TtsError("Piper produced no audio")
        rate = int(voice.config.sample_rate)
        gap = bytes(2 * (rate * self.sentence_silence_ms // 1000))
        audio = AudioSegment(data=gap.join(pcm), sample_width=2, frame_rate=rate, channels=1)
        return Speech(audio=audio, engine=self.name, voice=self.voice_name)
