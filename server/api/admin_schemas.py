"""Bodies of the auth, users and reports endpoints (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from server.permissions import Role

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"


class LoginPublic(BaseModel):
    token: str
    csrf_token: str
    expires_at: datetime
    username: str
    full_name: str
    roles: list[str]
    must_change_password: bool
    """True after an admin reset: only ``POST /api/v1/auth/password`` (and me, logout) work until then."""


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class GrantCreate(BaseModel):
    role: Role
    area_code: str = Field(min_length=1, max_length=32)


class GrantPublic(BaseModel):
    role: str
    area_code: str
    area_name: str


class UserCreate(BaseModel):
    username: str = Field(min_length=2, max_length=64, pattern=USERNAME_PATTERN,
                          description="lowercase letters, digits, '.', '_' and '-'")
    full_name: str = Field(default="", max_length=200)
    grants: list[GrantCreate] = Field(min_length=1, max_length=50)

    @field_validator("full_name")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class UserPublic(BaseModel):
    username: str
    full_name: str
    is_active: bool
    locked: bool
    must_change_password: bool
    created_at: datetime
    password_changed_at: datetime | None
    grants: list[GrantPublic]
    manageable: bool
    """The caller may disable, enable and reset this user (all of the user's roles are in the caller's areas)."""


class UserCreated(UserPublic):
    one_time_password: str
    """Shown once: the user must change it at the first log-in."""


class PasswordReset(BaseModel):
    username: str
    one_time_password: str
    """Shown once: the user must change it at the next log-in."""


class TallyPublic(BaseModel):
    broadcasts: int
    plays: int
    aired: int
    completed: int
    interrupted: int
    failed: int
    skipped: int
    minutes: float
    success_rate: float | None
    """Percent of due plays that aired; null when nothing was due."""


class ReportLinePublic(BaseModel):
    key: str
    label: str
    tally: TallyPublic


class MonthlyReportPublic(BaseModel):
    area_code: str
    area_name: str
    month: str
    """yyyy-mm"""
    generated_at: datetime
    timezone: str
    devices: int
    by_category: list[ReportLinePublic]
    by_area: list[ReportLinePublic]
    total: TallyPublic
