"""Turn spoken text into the file that is broadcast.

`render_speech` takes text that is already written the way it should be read
aloud (number and abbreviation expansion happens before, elsewhere), speaks it
through whatever `TtsChain` (or any `TtsEngine`) the caller supplies (the seam that lets the server
choose engines and tests substitute them), pads it with silence and encodes
it in the single distribution format every loudspeaker agent can play.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

from audio.errors import TranscodeError
from audio.ffmpeg import AudioSegment, configure_pydub, decode_bytes
from audio.tts import TtsEngine

__all__ = ["DISTRIBUTION", "AudioFormat", "RenderedAudio", "encode_distribution", "render_speech"]


@dataclass(frozen=True)
class AudioFormat:
    codec: str
    sample_rate: int
    channels: int
    bitrate: str


# Speech through horn loudspeakers: 32 kHz mono at 64 kbit/s is transparent
# enough and keeps files small for 3G/4G links to the agents.
DISTRIBUTION = AudioFormat(codec="mp3", sample_rate=32000, channels=1, bitrate="64k")
DISTRIBUTION_MIME = "audio/mpeg"
PEAK_DBFS = -1.0


@dataclass(frozen=True)
class RenderedAudio:
    data: bytes  # the encoded distribution file
    sha256: str  # hex of data
    duration_ms: int
    engine: str
    voice: str
    mime: str  # "audio/mpeg"


def _to_distribution_pcm(segment: AudioSegment) -> AudioSegment:
    return (
        segment.set_channels(DISTRIBUTION.channels)
        .set_frame_rate(DISTRIBUTION.sample_rate)
        .set_sample_width(2)
    )


def encode_distribution(segment: AudioSegment) -> bytes:
    """Encode as mono 32 kHz MP3 at 64 kbit/s CBR, peak-normalised to -1 dBFS.

    The peak normalisation is only a guard against clipping (espeak-ng peaks
    at full scale); loudness normalisation belongs to a later stage.
    """
    pcm = _to_distribution_pcm(segment)
    if pcm.frame_count() == 0:
        raise TranscodeError("nothing to encode: empty segment")
    peak = pcm.max_dBFS
    if math.isfinite(peak):  # -inf for pure silence
        pcm = pcm.apply_gain(PEAK_DBFS - peak)
    configure_pydub()
    out = io.BytesIO()
    try:
        pcm.export(
            out,
            format=DISTRIBUTION.codec,
            codec="libmp3lame",
            bitrate=DISTRIBUTION.bitrate,
            parameters=[
                "-ar", str(DISTRIBUTION.sample_rate),
                "-ac", str(DISTRIBUTION.channels),
                # No version strings in the file: the same speech gives the same
                # bytes, hence the same sha256, across ffmpeg builds where possible.
                "-fflags", "+bitexact",
                "-flags:a", "+bitexact",
                "-map_metadata", "-1",
            ],
        )  # fmt: skip
    except Exception as exc:  # pydub raises CouldntEncodeError, or OSError if ffmpeg cannot start
        raise TranscodeError(f"MP3 encoding failed: {exc}") from exc
    data = out.getvalue()
    if not data:
        raise TranscodeError("MP3 encoding produced no data")
    return data


def render_speech(
    spoken_text: str, chain: TtsEngine, *, lead_in_ms: int = 600, tail_ms: int = 400
) -> RenderedAudio:
    """Speak `spoken_text` and return the encoded broadcast file.

    The lead-in silence lets amplifiers that are switched on with the stream
    settle before the first syllable; the tail keeps the last one from being
    cut when they switch off.  Raises TtsError or TranscodeError.
    """
    if lead_in_ms < 0 or tail_ms < 0:
        raise ValueError("lead_in_ms and tail_ms must not be negative")
    speech = chain.synthesize(spoken_text)
    voice = _to_distribution_pcm(speech.audio)
    rate = DISTRIBUTION.sample_rate
    assembled = AudioSegment.silent(lead_in_ms, rate) + voice + AudioSegment.silent(tail_ms, rate)
    data = encode_distribution(assembled)
    # Measure what was actually written: MP3 pads to whole frames.
    duration_ms = len(decode_bytes(data, DISTRIBUTION.codec))
    return RenderedAudio(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        duration_ms=duration_ms,
        engine=speech.engine,
        voice=speech.voice,
        mime=DISTRIBUTION_MIME,
    )
