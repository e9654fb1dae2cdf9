"""Request and response bodies of API v1 (``XCreate`` in, ``XPublic`` out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.protocol import valid_agent_id

Priority = Literal["normal", "priority", "emergency"]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


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
    broker_account: Literal["manual", "unchanged", "updated", "failed"] = "manual"
    """What became of the agent's broker account (server.broker_accounts): "manual" when the operator
    keeps Mosquitto's password file, "failed" when the server could not update it (see its log)."""


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
    telemetry: dict[str, Any] | None = None
    """The last heartbeat as the agent sent it: volume, amplifier, clock offset, disk, temperature, faults…"""


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


class TimingIn(BaseModel):
    """once: at ``at``; now: as soon as every agent can start in step; recurring: an RFC 5545 RRULE
    whose first instant is ``start`` (local wall-clock time in ``tz``)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["once", "now", "recurring"]
    at: datetime | None = None
    rrule: str = Field(default="", max_length=500)
    start: str = Field(default="", max_length=19, pattern=r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?)?$")
    tz: str = Field(default="Asia/Ho_Chi_Minh", max_length=64)
    valid_until: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    exdates: list[str] = Field(default_factory=list, max_length=1000)
    holidays: Literal["ignore", "skip", "only"] = "ignore"


class RepeatIn(BaseModel):
    """Air again every ``every_minutes``, ``count`` times in all and/or until ``until``."""

    model_config = ConfigDict(extra="forbid")
    every_minutes: int = Field(ge=1, le=24 * 60)
    count: int | None = Field(default=None, ge=1, le=100)
    until: datetime | None = None


class BroadcastCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    announcement_id: int | None = Field(default=None, gt=0)
    """A single item (older clients); ``announcement_ids`` gives a programme."""
    announcement_ids: list[int] = Field(default_factory=list, max_length=50)
    title: str = Field(default="", max_length=300)
    play_at: datetime | None = None
    """Older clients: absent means now, otherwise once at this time (with its offset, e.g. +07:00)."""
    timing: TimingIn | None = None
    repeat: RepeatIn | None = None
    priority: Priority = "normal"
    mode: Literal["direct", "bulletin"] = "direct"
    slot_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    on_preempt: Literal["skip", "resume"] = "skip"
    exercise: bool = False
    area_codes: list[str] = Field(default_factory=list, max_length=500)
    agent_ids: list[str] = Field(default_factory=list, max_length=5000)
    submit: bool = True
    """False keeps it as a draft."""
    confirm: str = Field(default="", max_length=300)
    """Emergencies with typed confirmation: the owning area's name, typed by the sender."""

    def item_ids(self) -> list[int]:
        ids = list(self.announcement_ids)
        if self.announcement_id is not None and self.announcement_id not in ids:
            ids.insert(0, self.announcement_id)
        return ids

    def effective_timing(self) -> TimingIn:
        if self.timing is not None:
            return self.timing
        return TimingIn(kind="once", at=self.play_at) if self.play_at is not None else TimingIn(kind="now")


class BroadcastPublic(BaseModel):
    id: int
    announcement_id: int
    announcement_ids: list[int]
    title: str
    area_code: str | None
    priority: str
    mode: str
    timing: str
    play_at: datetime
    rrule: str
    start_local: str
    tz: str
    valid_until: str | None
    exdates: list[str]
    holidays: str
    repeat_every_min: int | None
    repeat_count: int | None
    repeat_until: datetime | None
    slot_minutes: int | None
    on_preempt: str
    exercise: bool
    status: str
    review_comment: str
    revision: int
    created_by: int
    target_devices: int
    area_codes: list[str]
    agent_ids: list[str]


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    comment: str = Field(default="", max_length=2000)


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)
    message_announcement_id: int | None = Field(default=None, gt=0)
    """An approved announcement aired at once on the same targets to tell people the alert is over."""


class ConflictPublic(BaseModel):
    agent_id: str
    item_id: str
    other_id: str
    broadcast_id: int | None
    other_broadcast_id: int | None
    at: datetime | None
    resolution: str
    rule: str


class DryRunPublic(BaseModel):
    target_devices: int
    occurrences: int
    conflicts: list[ConflictPublic]
    refused: bool


class OccurrencePublic(BaseModel):
    id: str
    broadcast_id: int
    title: str
    priority: str
    play_at: datetime
    end_at: datetime
    devices: int
    exercise: bool


class InboxEntryPublic(BaseModel):
    id: int
    bulletin_id: int
    title: str
    priority: str
    area_code: str
    area_name: str
    status: str
    reason: str
    broadcast_id: int | None
    created_at: datetime
    decided_at: datetime | None


class InboxDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


class BroadcastProgress(BaseModel):
    """Live counts for an emergency: targeted, acknowledged (plan or command), started, finished, failed."""

    broadcast_id: int
    status: str
    targeted: int
    acknowledged: int
    started: int
    finished: int
    failed: int


class AsRunPublic(BaseModel):
    event_id: str
    agent_id: str
    broadcast_id: int | None
    item_id: str
    kind: str
    at: datetime
    scheduled_at: datetime
    detail: str
