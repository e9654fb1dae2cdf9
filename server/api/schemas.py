"""Request and response bodies of API v1 (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.protocol import valid_agent_id

Priority = Literal["normal", "priority", "emergency"]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginPublic(BaseModel):
    token: str
    csrf_token: str
    expires_at: datetime
    username: str
    full_name: str
    roles: list[str]


class AreaCreate(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["province", "district", "commune", "village", "group"]
    parent_code: str | None = None


class AreaPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    parent_id: int | None
    code: str
    name: str
    kind: str


class DeviceCreate(BaseModel):
    agent_id: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=200)
    area_code: str = Field(min_length=1, max_length=32)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    @field_validator("agent_id")
    @classmethod
    def _agent_id(cls, value: str) -> str:
        if not valid_agent_id(value):
            raise ValueError("lowercase letters, digits, '-' and '_' only, starting with a letter or digit")
        return value


class DeviceRegistered(BaseModel):
    agent_id: str
    token: str
    """The agent's secret, shown once: put it in the agent's configuration."""


class DevicePublic(BaseModel):
    agent_id: str
    name: str
    area_code: str
    area_name: str
    state: str
    now_playing: str | None
    last_seen_at: datetime | None
    plan_version_acked: int
    latitude: float | None
    longitude: float | None


class AnnouncementCreate(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    text: str = Field(min_length=1, max_length=20_000)
    area_code: str = Field(min_length=1, max_length=32)

    @field_validator("text", "title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class AnnouncementPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    area_id: int
    title: str
    kind: str
    text: str
    spoken_text: str
    upload_name: str
    audio_status: str
    audio_error: str
    progress: int
    audio_sha256: str | None
    engine: str
    voice: str
    fallback_used: bool
    review_status: str
    review_comment: str
    created_at: datetime


class ReviewRequest(BaseModel):
    approve: bool
    comment: str = Field(default="", max_length=2000)


class BroadcastCreate(BaseModel):
    announcement_id: int = Field(gt=0)
    play_at: datetime | None = None
    """Absent means now. With a time, it must carry its offset (e.g. +07:00)."""
    priority: Priority = "normal"
    area_codes: list[str] = Field(default_factory=list, max_length=500)
    agent_ids: list[str] = Field(default_factory=list, max_length=5000)


class BroadcastPublic(BaseModel):
    id: int
    announcement_id: int
    title: str
    priority: str
    play_at: datetime
    status: str
    target_devices: int


class AsRunPublic(BaseModel):
    event_id: str
    agent_id: str
    broadcast_id: int | None
    item_id: str
    kind: str
    at: datetime
    scheduled_at: datetime
    detail: str
