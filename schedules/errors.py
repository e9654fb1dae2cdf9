"""The root of Loa's error tree.

    LoaError
    ├── ScheduleError          schedules/   (invalid timing, unknown target, …)
    ├── AudioError             audio/       (TtsError, TranscodeError, …)
    ├── AgentError             agents/      (ProtocolError, FetchError, PlaybackError, …)
    └── ServerError            server/      (ConfigError, NotFound, Conflict, …)

It lives in `schedules`, the innermost package, because every other package may depend on it and it
on nothing. Foreign errors (paho, gTTS, ffmpeg, SQLAlchemy) are translated into this tree where they
enter, with ``raise … from exc``.
"""

from __future__ import annotations


class LoaError(Exception):
    """Base of every error Loa raises on purpose."""


class ScheduleError(LoaError):
    """A schedule, target or timing that the domain rules refuse."""
