"""The audit trail: who did what, when, to which area or device, and what came of it.

A forged or mistaken broadcast reaching loudspeakers is a public false alarm, so every security-relevant
action is written to ``audit_events`` in the same transaction as the action itself (it is committed with
it, or rolled back with it). A refusal is the exception: the request fails and its transaction rolls back,
so `record_refusal` rolls back first and commits the refusal alone.

Secrets are never stored: passwords, device secrets and tokens are kept out by the callers, and any
details key that names one is dropped here as well (`clean_details`).

Reading the trail (who may see which events) is in ``server/api/audit.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete
from sqlalchemy.orm import Session

from server.db import Database
from server.errors import Forbidden, ServerError
from server.models import AuditEvent, User
from server.permissions import Principal

log = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = (
    "auth.login", "auth.logout", "auth.password_change", "auth.login_failed", "auth.lockout",
    "device.command", "server.command", "device.register", "device.edit", "device.rotate_secret", "device.delete",
    "broadcast.create", "broadcast.update", "broadcast.delete", "broadcast.submit", "broadcast.approve",
    "broadcast.reject", "broadcast.cancel",
    "emergency.send", "emergency.confirm", "emergency.reject", "emergency.cancel",
    "announcement.create", "announcement.approve", "announcement.reject",
    "inbox.schedule", "inbox.decline",
    "user.create", "user.disable", "user.enable", "user.reset_password", "user.grant", "user.revoke",
    "area.create", "area.edit", "area.alias_add", "area.alias_remove",
    "setting.change",
    "lexicon.add", "lexicon.delete",
)
"""Every action code written; the console labels each one (admin_audit.html)."""
OUTCOMES: tuple[str, ...] = ("ok", "refused", "failed", "pending", "no_answer")

_SECRET_WORDS = ("password", "secret", "token")
_REDACTED_SETTINGS = frozenset({"alert_webhook_url"})
"""Settings whose value may carry a credential (a webhook URL often embeds its key): only the host is kept."""

Actor = Principal | User | None


def clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` without any key that names a secret, at any depth."""
    cleaned: dict[str, Any] = {}
    for key, value in details.items():
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            continue
        cleaned[str(key)] = _clean_value(value)
    return cleaned


def _clean_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return clean_details(value)
    if isinstance(value, list | tuple):
        return [_clean_value(v) for v in value]
    return value


def setting_value(key: str, value: Any) -> Any:
    """A setting's value as the trail keeps it: URLs that may hold a key shrink to scheme and host."""
    if key in _REDACTED_SETTINGS and isinstance(value, str) and value:
        parts = urlsplit(value)
        return f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "…"
    return value


def purge_expired(db: Database, now: datetime, retention_days: int) -> int:
    """Delete events older than `retention_days` (0: none); returns how many went."""
    if retention_days <= 0:
        return 0
    with db.session() as session:
        deleted = session.execute(delete(AuditEvent).where(AuditEvent.at < now - timedelta(days=retention_days)))
        count = int(getattr(deleted, "rowcount", 0) or 0)
    if count:
        log.info("deleted %d audit event(s) older than %d day(s)", count, retention_days)
    return count


def record(db: Session, actor: Actor, action: str, *, target: str, area_id: int | None = None,
           details: Mapping[str, Any] | None = None, outcome: str = "ok", result: str = "",
           ref: str | None = None, username: str | None = None) -> AuditEvent:
    """Add an event to ``db`` (the caller's transaction commits it with the action).

    ``actor`` is the user acting (a Principal or a User row); ``username`` overrides the name kept, e.g.
    the name typed in a failed log-in that matches no user."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown audit outcome {outcome!r}")
    user_id = actor.user_id if isinstance(actor, Principal) else actor.id if actor is not None else None
    name = username if username is not None else actor.username if actor is not None else ""
    event = AuditEvent(user_id=user_id, username=name[:64], action=action, area_id=area_id, target=target[:200],
                       details=clean_details(details or {}), outcome=outcome, result=result[:2000], ref=ref)
    db.add(event)
    return event


def record_refusal(db: Session, actor: Actor, action: str, *, target: str, reason: str,
                   area_id: int | None = None, details: Mapping[str, Any] | None = None) -> None:
    """A refused attempt, committed on its own: the refused request's own changes are rolled back first."""
    db.rollback()
    record(db, actor, action, target=target, area_id=area_id, details=details, outcome="refused", result=reason)
    db.commit()
    log.warning("refused %s on %s for %s: %s", action, target, getattr(actor, "username", "?"), reason)


def confirm_name_refusal(exc: ServerError) -> bool:
    """An emergency sent without typing the area's name: worth the trail like a permission refusal."""
    return exc.code == "confirm_name"


@contextmanager
def refusals_recorded(db: Session, actor: Actor, action: str, *, target: str | Callable[[], str],
                      area_id: int | Callable[[], int | None] | None = None,
                      details: Mapping[str, Any] | None = None,
                      also: Callable[[ServerError], bool] = lambda exc: False) -> Iterator[None]:
    """Record a refusal (403, or an error ``also`` accepts) raised inside the block, then let it go on.

    ``target`` and ``area_id`` may be callables, read only when a refusal happens."""
    try:
        yield
    except ServerError as exc:
        if not isinstance(exc, Forbidden) and not also(exc):
            raise
        record_refusal(db, actor, action, target=target() if callable(target) else target,
                       area_id=area_id() if callable(area_id) else area_id, details=details, reason=str(exc))
        raise
