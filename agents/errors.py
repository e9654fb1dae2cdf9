"""Errors of the agent layer (see `schedules.errors` for the whole tree)."""

from __future__ import annotations

from schedules.errors import LoaError


class AgentError(LoaError):
    """Base of the agent layer's errors."""


class ProtocolError(AgentError):
    """A message that does not follow protocol v1 (docs/protocol.md): logged and dropped."""


class FetchError(AgentError):
    """Audio could not be downloaded or did not match its sha256."""


class PlaybackError(AgentError):
    """The player backend could not play a file."""


class ConfigError(AgentError):
    """The agent's configuration file is missing, unreadable or invalid."""


class HardwareError(AgentError):
    """A relay, a mixer or another device program of the Pi failed; playback goes on and a fault is raised."""
