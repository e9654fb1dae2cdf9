"""Settings an administrator may change at run time from the console, stored in ``app_settings``.

Precedence, lowest first: built-in defaults < the TOML file < ``LOA_*`` environment variables < values
changed in the console. A console value is validated by the same ``Settings`` model as the file (a new
``Settings`` is built with the change, so every range and rule applies), stored, and put into use at once
by ``Runtime.apply_settings``; at start-up the stored values are applied again over the file and the
environment. Removing a console value (``None``) returns the key to what the file/environment say.

Only keys that the code reads from ``runtime.settings`` at the moment of use are listed here. Secrets
(passwords, ``secret_key``, database and broker URLs) are never listed: the console neither shows nor
changes them. Left out because they are captured once at start-up: ``equal_priority`` (the planner's
compiler), ``loudness_lufs``, ``true_peak_db`` and ``lead_in_ms`` (the renderer's options).
"""

from __future__ import annotations

import logging
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from annotated_types import Ge, Gt, Le
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from schedules import AreaId
from server.directory import load_tree
from server.errors import Forbidden
from server.models import AppSetting, Area, User
from server.permissions import Action, Principal
from server.settings import Settings

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EditableSetting:
    key: str
    group: str
    """broadcast | uploads | audio | alerts | map | telemetry: how the console groups them."""

    @property
    def kind(self) -> str:
        """How the console asks for it: bool, choice, int, float, text, list."""
        annotation = Settings.model_fields[self.key].annotation
        if annotation is bool:
            return "bool"
        if typing.get_origin(annotation) is typing.Literal:
            return "choice"
        if annotation is int:
            return "int"
        if annotation is float:
            return "float"
        if typing.get_origin(annotation) is list:
            return "list"
        return "text"

    @property
    def choices(self) -> tuple[str, ...]:
        annotation = Settings.model_fields[self.key].annotation
        return tuple(str(c) for c in typing.get_args(annotation)) if self.kind == "choice" else ()

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The (minimum, maximum) the Settings model allows, for the form's min/max."""
        low: float | None = None
        high: float | None = None
        for rule in Settings.model_fields[self.key].metadata:
            if isinstance(rule, Ge | Gt):
                low = float(rule.ge if isinstance(rule, Ge) else rule.gt)  # type: ignore[arg-type]
            elif isinstance(rule, Le):
                high = float(rule.le)  # type: ignore[arg-type]
        return low, high


EDITABLE: tuple[EditableSetting, ...] = (
    EditableSetting("broadcast_review", "broadcast"),
    EditableSetting("emergency_confirmation", "broadcast"),
    EditableSetting("play_lead_s", "broadcast"),
    EditableSetting("equal_priority", "broadcast"),
    EditableSetting("loudness_lufs", "audio"),
    EditableSetting("true_peak_db", "audio"),
    EditableSetting("lead_in_ms", "audio"),
    EditableSetting("max_upload_mb", "uploads"),
    EditableSetting("max_upload_minutes", "uploads"),
    EditableSetting("alert_offline_minutes", "alerts"),
    EditableSetting("alert_clock_offset_ms", "alerts"),
    EditableSetting("alert_disk_percent", "alerts"),
    EditableSetting("alert_email_to", "alerts"),
    EditableSetting("alert_webhook_url", "alerts"),
    EditableSetting("map_tile_url", "map"),
    EditableSetting("telemetry_retention_days", "telemetry"),
)
EDITABLE_KEYS: frozenset[str] = frozenset(s.key for s in EDITABLE)


class SettingsRejected(ValueError):
    """Values the Settings model refuses; ``problems`` maps each key to its message."""

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems.items()))
        self.problems = problems


@dataclass(frozen=True)
class SettingState:
    setting: EditableSetting
    value: Any
    """In use now."""
    configured: Any
    """What the file / environment / default say (in use when there is no console value)."""
    changed_in_console: bool
    updated_at: datetime | None
    updated_by: str | None


def require_installation_admin(db: Session, principal: Principal) -> None:
    """Settings apply to the whole installation: only an admin of every root area (the province) may
    read or change them."""
    tree = load_tree(db)
    roots = db.scalars(select(Area.id).where(Area.parent_id.is_(None))).all()
    if not roots or not all(principal.can(Action.MANAGE, AreaId(root), tree) for root in roots):
        raise Forbidden("installation settings need the admin role at the top of the area tree")


def with_values(base: Settings, values: dict[str, Any]) -> Settings:
    """``base`` with ``values`` applied, validated by the Settings model (raises SettingsRejected)."""
    unknown = sorted(set(values) - EDITABLE_KEYS)
    if unknown:
        raise SettingsRejected({key: "cannot be changed from the console" for key in unknown})
    try:
        return Settings.model_validate({**base.model_dump(), **values})
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else "settings"
            problems.setdefault(key, str(error["msg"]).removeprefix("Value error, "))
        raise SettingsRejected(problems) from exc


def stored_values(db: Session) -> dict[str, AppSetting]:
    return {row.key: row for row in db.scalars(select(AppSetting)).all()}


def setting_states(db: Session, runtime: Runtime) -> list[SettingState]:
    rows = stored_values(db)
    names = {user_id: username for user_id, username in db.execute(select(User.id, User.username))}
    current = runtime.settings.model_dump(mode="json")
    configured = runtime.configured_settings.model_dump(mode="json")
    states = []
    for setting in EDITABLE:
        row = rows.get(setting.key)
        states.append(SettingState(
            setting=setting, value=current[setting.key], configured=configured[setting.key],
            changed_in_console=row is not None, updated_at=row.updated_at if row else None,
            updated_by=names.get(row.updated_by_id) if row and row.updated_by_id else None))
    return states


def change_settings(db: Session, runtime: Runtime, principal: Principal, changes: dict[str, Any]) -> Settings:
    """Store ``changes`` (key → new value, or None to return to the configured value) and return the
    settings to use. All keys are validated together before anything is stored; the caller commits and
    then hands the result to ``Runtime.apply_settings`` (nothing is in use that is not stored)."""
    require_installation_admin(db, principal)
    rows = stored_values(db)
    kept = {key: row.value for key, row in rows.items() if key in EDITABLE_KEYS and key not in changes}
    overrides = {key: value for key, value in changes.items() if value is not None}
    effective = with_values(runtime.configured_settings, {**kept, **overrides})
    plain = effective.model_dump(mode="json")
    now = runtime.now()
    for key in changes:
        row = rows.get(key)
        if key not in overrides:
            if row is not None:
                db.delete(row)
        elif row is None:
            db.add(AppSetting(key=key, value=plain[key], updated_at=now, updated_by_id=principal.user_id))
        else:
            row.value, row.updated_at, row.updated_by_id = plain[key], now, principal.user_id
    db.flush()
    return effective


def apply_stored_settings(db: Session, runtime: Runtime) -> None:
    """At start-up: the console's values over the file and environment. A stored value the current
    rules refuse (a key no longer editable, a range made narrower) is skipped with a warning."""
    values: dict[str, Any] = {}
    for key, row in stored_values(db).items():
        try:
            with_values(runtime.configured_settings, {**values, key: row.value})
        except SettingsRejected as exc:
            log.warning("ignoring the console's setting %s=%r: %s", key, row.value, exc)
            continue
        values[key] = row.value
    if values:
        runtime.apply_settings(with_values(runtime.configured_settings, values))
        log.info("settings changed in the console: %s", ", ".join(sorted(values)))
