"""Errors of the audio layer (see `schedules.errors` for the whole tree)."""

from __future__ import annotations

from schedules.errors import LoaError


class AudioError(LoaError):
    """Base of the audio layer's errors."""


class TtsError(AudioError):
    """A text-to-speech engine failed (network, timeout, missing voice)."""


class TranscodeError(AudioError):
    """ffmpeg (or pydub on top of it) could not decode or encode audio."""
