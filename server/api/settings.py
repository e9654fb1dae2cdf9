"""Installation settings that may change at run time (server/app_settings.py): read and change them.

Only an admin at the top of the area tree may; secrets are never part of these answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from server import audit
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.app_settings import SettingsRejected, change_settings, require_installation_admin, setting_states

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


class SettingPublic(BaseModel):
    key: str
    group: str
    kind: str
    """bool | choice | int | float | text | list."""
    choices: list[str]
    minimum: float | None
    maximum: float | None
    value: Any
    configured: Any
    """The value from the configuration file / environment / default, used when the console sets none."""
    changed_in_console: bool
    updated_at: datetime | None
    updated_by: str | None


class SettingsChange(BaseModel):
    """Key → new value; null removes the console's value (the configured one applies again)."""

    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any] = Field(min_length=1, max_length=50)


def _listing(db: DbSession, runtime: RuntimeDep) -> list[SettingPublic]:
    result = []
    for state in setting_states(db, runtime):
        low, high = state.setting.bounds
        result.append(SettingPublic(
            key=state.setting.key, group=state.setting.group, kind=state.setting.kind,
            choices=list(state.setting.choices), minimum=low, maximum=high, value=state.value,
            configured=state.configured, changed_in_console=state.changed_in_console,
            updated_at=state.updated_at, updated_by=state.updated_by))
    return result


@router.get("")
def get_settings(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> list[SettingPublic]:
    require_installation_admin(db, principal)
    return _listing(db, runtime)


@router.put("")
def put_settings(body: SettingsChange, db: DbSession, principal: CurrentPrincipal,
                 runtime: RuntimeDep) -> list[SettingPublic]:
    before = runtime.settings.model_dump(mode="json")
    try:
        effective = change_settings(db, runtime, principal, body.values)
    except SettingsRejected as exc:
        # The same structured 422 as a malformed body: one {"field", "message"} per refused key.
        raise RequestValidationError([{"loc": ("body", "values", key), "msg": message, "type": "value_error"}
                                      for key, message in exc.problems.items()]) from exc
    after = effective.model_dump(mode="json")
    for key in body.values:  # one event per key: "who changed max_upload_mb" is one filter away
        audit.record(db, principal, "setting.change", target=f"setting:{key}",
                     details={"old": audit.setting_value(key, before[key]),
                              "new": audit.setting_value(key, after[key]),
                              "console_value_removed": body.values[key] is None})
    db.commit()
    runtime.apply_settings(effective)
    return _listing(db, runtime)
