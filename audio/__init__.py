"""Loa's audio layer: Vietnamese text normalisation, text-to-speech, the broadcast format, storage.

It knows nothing of the server: it takes text and files and returns audio and facts about it.
`audio.normalize.normalize` and `audio.probe.probe` are not re-exported here: a function of the same
name as its module would hide the module.
"""

from audio.errors import AudioError, TranscodeError, TtsError
from audio.loudness import Loudness, LoudnessTarget, measure
from audio.prepare import PreparedAudio, prepare_file, prepare_segment
from audio.probe import AudioTooLarge, AudioTooLong, InvalidAudio, ProbeResult, UploadLimits, check_upload
from audio.render import DISTRIBUTION, RenderedAudio, render_speech
from audio.store import AudioStore
from audio.tts import EspeakEngine, GttsEngine, Speech, TtsChain, TtsEngine, default_chain

__all__ = [
    "DISTRIBUTION", "AudioError", "AudioStore", "AudioTooLarge", "AudioTooLong", "EspeakEngine", "GttsEngine",
    "InvalidAudio", "Loudness", "LoudnessTarget", "PreparedAudio", "ProbeResult", "RenderedAudio", "Speech",
    "TranscodeError", "TtsChain", "TtsEngine", "TtsError", "UploadLimits", "check_upload", "default_chain",
    "measure", "prepare_file", "prepare_segment", "render_speech",
]
