"""Turn spoken text into the file that is broadcast.

`render_speech` takes text that is already written the way it should be read
aloud (number and abbreviation expansion happens before, elsewhere), speaks it
through whatever `TtsChain` (or any `TtsEngine`) the caller supplies (the seam that lets the server
choose engines and tests substitute them), and hands the speech to
`audio.prepare.prepare_segment`, which trims it, adds the lead-in (silence or
a chime), optional jingles and the tail, brings it to the loudness target
(compressed as speech, measured, gain and limiter, verified on the encoded file) and encodes it in the
single distribution format every loudspeaker agent can play.  pydub joins
the in-memory pieces; nothing here needs ffprobe.
"""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from audio.errors import TranscodeError
from audio.ffmpeg import AudioSegment, configure_pydub
from audio.loudness import SPEECH_COMPRESSOR, LoudnessTarget
from audio.prepare import prepare_segment
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
    lufs: float  # integrated loudness of `data`, measured after encoding
    true_peak_db: float  # true peak of `data` (dBTP), measured after encoding


def _to_distribution_pcm(segment: AudioSegment) -> AudioSegment:
    return (
        segment.set_channels(DISTRIBUTION.channels)
        .set_frame_rate(DISTRIBUTION.sample_rate)
        .set_sample_width(2)
    )


def encode_distribution(segment: AudioSegment) -> bytes:
    """Encode as mono 32 kHz MP3 at 64 kbit/s CBR, peak-normalised to -1 dBFS.

    A plain in-memory encoder for short clips (previews, tests): the
    peak normalisation only guards against clipping.  Broadcast files go
    through `render_speech` / `audio.prepare`, which normalise loudness.
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
                "-compression_level", "7",  # LAME's quality, as audio.prepare (docs/audio.md)
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
    spoken_text: str,
    chain: TtsEngine,
    *,
    lead_in_ms: int = 600,
    tail_ms: int = 400,
    target: LoudnessTarget | None = None,
    chime: Path | None = None,
    intro: Path | None = None,
    outro: Path | None = None,
) -> RenderedAudio:
    """Speak `spoken_text` and return the encoded, loudness-normalised broadcast file.

    The lead-in (silence, or `chime` then silence) lets amplifiers that are
    switched on with the stream settle before the first syllable; the tail
    keeps the last one from being cut when they switch off.  Silence the
    engine put at either end is trimmed first, so the lead-in is what it
    says.  Raises TtsError, TranscodeError or InvalidAudio (a jingle that is
    not audio).
    """
    if lead_in_ms < 0 or tail_ms < 0:
        raise ValueError("lead_in_ms and tail_ms must not be negative")
    speech = chain.synthesize(spoken_text)
    # Mono 16-bit (no-ops for espeak-ng and Piper); the resampling to the distribution rate is
    # left to ffmpeg in audio.prepare, which does it better and faster than pydub.
    voice = speech.audio.set_channels(DISTRIBUTION.channels).set_sample_width(2)
    if voice.frame_count() == 0:
        raise TranscodeError("the TTS engine returned no audio")
    with tempfile.TemporaryDirectory(prefix="loa-render-") as tmp:
        prepared = prepare_segment(
            voice, Path(tmp) / "speech.mp3", target=target or LoudnessTarget(), lead_in_ms=lead_in_ms,
            tail_ms=tail_ms, chime=chime, intro=intro, outro=outro, compressor=SPEECH_COMPRESSOR,
        )  # fmt: skip
        data = prepared.path.read_bytes()
    return RenderedAudio(
        data=data,
        sha256=prepared.sha256,
        duration_ms=prepared.duration_ms,
        engine=speech.engine,
        voice=speech.voice,
        mime=DISTRIBUTION_MIME,
        lufs=prepared.lufs,
        true_peak_db=prepared.true_peak_db,
    )
