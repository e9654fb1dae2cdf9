"""Errors of the server layer (see `schedules.errors` for the whole tree).

HTTP status codes are attached only in `server.api.errors`; services raise these.
"""

from __future__ import annotations

from schedules.errors import LoaError


class ServerError(LoaError):
    """Base of the server layer's errors.

    ``code`` and ``details`` let a client word the error in its own language (the console does); the
    message stays the English explanation for API users and logs.
    """

    def __init__(self, message: str = "", *, code: str = "", **details: str | int | None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class ConfigError(ServerError):
    """Settings that cannot work (bad URL, default secret in production, …)."""


class NotFound(ServerError):
    """The thing asked for does not exist, or the user may not know that it does."""


class Forbidden(ServerError):
    """The user's roles do not allow this action on this area."""


class Invalid(ServerError):
    """A request that parsed but breaks a rule (time in the past, audio not approved, …)."""


class Conflict(ServerError):
    """The request clashes with the current state (duplicate name, wrong workflow step, …)."""


class Unauthorized(ServerError):
    """No valid session or token."""


class TooLarge(Invalid):
    """An upload over the configured size limit."""
