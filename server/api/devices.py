"""Loudspeaker clusters: registration and live status."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from agents.protocol import Plan, valid_agent_id
from schedules import AreaTree
from server import audit, telemetry
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import DeviceCreate, DevicePublic, DeviceRegistered
from server.coordinates import Latitude, Longitude, both_or_neither
from server.device_commands import (
    CommandStatus,
    ConsoleCommand,
    SentCommand,
    build_command,
    command_status,
    record_no_answer,
    record_sent,
    sent_from_event,
    stored_command,
)
from server.directory import area_by_code, get_visible_device, load_tree, register_device, require, visible_devices
from server.errors import Conflict, Invalid, NotFound
from server.models import (
    AgentPlan,
    Announcement,
    Area,
    AsRunEntry,
    AuditEvent,
    Broadcast,
    BroadcastTarget,
    Device,
    DeviceStatus,
)
from server.permissions import Action, Principal
from server.runtime import Runtime
from server.security import mosquitto_password_hash, new_token, token_digest

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


def device_public(device: Device, status: DeviceStatus | None, area: Area) -> DevicePublic:
    return DevicePublic(agent_id=device.agent_id, name=device.name, area_code=area.code, area_name=area.name,
                        state=status.state if status else "unknown",
                        now_playing=status.now_playing if status else None,
                        last_seen_at=status.last_seen_at if status else None,
                        plan_version_acked=status.plan_version_acked if status else 0,
                        latitude=device.latitude, longitude=device.longitude,
                        telemetry=status.heartbeat if status else None)


@router.get("")
def list_devices(db: DbSession, principal: CurrentPrincipal) -> list[DevicePublic]:
    return [device_public(d, s, a) for d, s, a in visible_devices(db, principal)]


@router.get("/{agent_id}")
def get_device(agent_id: str, db: DbSession, principal: CurrentPrincipal) -> DevicePublic:
    device = get_visible_device(db, principal, agent_id)
    return device_public(device, db.get(DeviceStatus, device.id), db.get_one(Area, device.area_id))


@router.post("", status_code=201)
def post_device(body: DeviceCreate, db: DbSession, principal: CurrentPrincipal,
                runtime: RuntimeDep) -> DeviceRegistered:
    check_point(body.latitude, body.longitude)
    if body.agent_id == runtime.settings.broker_username:
        raise Conflict(f"{body.agent_id} is the server's own broker account: choose another device id")
    device, token = register_device(db, principal, agent_id=body.agent_id, name=body.name,
                                    area_code=body.area_code, latitude=body.latitude, longitude=body.longitude)
    audit.record(db, principal, "device.register", target=f"device:{device.agent_id}", area_id=device.area_id,
                 details={"name": device.name, "area_code": body.area_code})
    db.commit()
    runtime.planner.recompile()  # a new cluster gets at once what its area already airs
    return DeviceRegistered(agent_id=device.agent_id, token=token, broker_account=runtime.broker_accounts.sync())


# --- administration: edit, rotate the secret, remove (the console's admin pages) ----------------------
# Every action needs the admin role (Action.MANAGE) on the device's area; a device outside the user's
# areas is a 404 so that its existence does not leak.

class DevicePoint(BaseModel):
    latitude: Latitude = None
    longitude: Longitude = None

    @model_validator(mode="after")
    def _both(self) -> DevicePoint:
        both_or_neither(self.latitude, self.longitude)
        return self


def check_point(latitude: float | None, longitude: float | None) -> None:
    """The registration body accepts any coordinates; a cluster must be in Viet Nam (422 otherwise)."""
    try:
        DevicePoint(latitude=latitude, longitude=longitude)
    except ValidationError as exc:
        raise Invalid("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from exc


class DeviceUpdate(BaseModel):
    """Only the fields sent change; ``latitude`` and ``longitude`` go together (both null clears them)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    area_code: str | None = Field(default=None, min_length=1, max_length=32)
    latitude: Latitude = None
    longitude: Longitude = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return None if value is None else " ".join(value.split())

    @model_validator(mode="after")
    def _point(self) -> DeviceUpdate:
        if len({"latitude", "longitude"} & self.model_fields_set) == 1:
            raise ValueError("send latitude and longitude together")
        both_or_neither(self.latitude, self.longitude)
        return self


def managed_device(db: DbSession, principal: CurrentPrincipal, agent_id: str, refusal: str) -> Device:
    if not valid_agent_id(agent_id):
        raise Invalid(f"{agent_id!r} is not a valid agent id")
    device = get_visible_device(db, principal, agent_id)
    require(principal, Action.MANAGE, db.get_one(Area, device.area_id), load_tree(db), refusal)
    return device


@router.patch("/{agent_id}")
def patch_device(agent_id: str, body: DeviceUpdate, db: DbSession, principal: CurrentPrincipal,
                 runtime: RuntimeDep) -> DevicePublic:
    device = managed_device(db, principal, agent_id, "changing this device needs the admin role")
    before = {"name": device.name, "area_id": device.area_id, "latitude": device.latitude,
              "longitude": device.longitude}
    moved = False
    if body.area_code is not None:
        area = area_by_code(db, body.area_code)
        require(principal, Action.MANAGE, area, load_tree(db), "moving devices there needs the admin role")
        moved = area.id != device.area_id
        device.area_id = area.id
    if body.name is not None:
        device.name = body.name
    if "latitude" in body.model_fields_set:
        device.latitude, device.longitude = body.latitude, body.longitude
    after = {"name": device.name, "area_id": device.area_id, "latitude": device.latitude,
             "longitude": device.longitude}
    changes = {key: {"old": before[key], "new": after[key]} for key in before if before[key] != after[key]}
    audit.record(db, principal, "device.edit", target=f"device:{device.agent_id}", area_id=device.area_id,
                 details={"changes": changes, **({"area_code": body.area_code} if moved else {})})
    db.commit()
    if moved:
        runtime.planner.recompile()  # it now airs what its new area airs
    return device_public(device, db.get(DeviceStatus, device.id), db.get_one(Area, device.area_id))


@router.post("/{agent_id}/secret")
def rotate_secret(agent_id: str, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> DeviceRegistered:
    """A new secret, shown once; the old one stops working for audio downloads at once, and on the broker
    at once when the server manages its password file (otherwise by hand, docs/operations.md)."""
    device = managed_device(db, principal, agent_id, "a new secret needs the admin role")
    token = new_token()
    device.token_hash = token_digest(token)
    device.broker_password_hash = mosquitto_password_hash(token)
    audit.record(db, principal, "device.rotate_secret", target=f"device:{device.agent_id}", area_id=device.area_id)
    db.commit()
    return DeviceRegistered(agent_id=device.agent_id, token=token, broker_account=runtime.broker_accounts.sync())


@router.delete("/{agent_id}", status_code=204)
def delete_device(agent_id: str, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> None:
    """Remove a device registered by mistake; one with an as-run history or named in a broadcast stays
    (its history belongs to the reports): give it a new secret instead to shut it out."""
    device = managed_device(db, principal, agent_id, "removing this device needs the admin role")
    if (db.scalar(select(AsRunEntry.id).where(AsRunEntry.device_id == device.id).limit(1)) is not None
            or db.scalar(select(BroadcastTarget.id).where(BroadcastTarget.device_id == device.id).limit(1))
            is not None):
        raise Conflict(f"{agent_id} has an as-run history or is named in a broadcast: it cannot be removed")
    audit.record(db, principal, "device.delete", target=f"device:{agent_id}", area_id=device.area_id,
                 details={"name": device.name})
    db.delete(device)
    db.commit()
    runtime.broker_accounts.sync()
    runtime.bridge.clear_plan(agent_id)  # what it would have aired stays off the broker too
    runtime.planner.recompile()


# --- operation: telemetry history, current plan, commands (the console's device page) -----------------
# Reading needs VIEW on the device's area (404 outside it); commands need OPERATE (403 without it).

class TelemetryPublic(BaseModel):
    agent_id: str
    range: str
    start: datetime
    end: datetime
    step_s: int
    """Each point stands for this many seconds from its time; a longer jump between two points is a gap."""
    times: list[datetime]
    series: dict[str, list[float | bool | None]]
    """cpu_temp_c, disk_used_percent, cache_bytes, volume_percent, clock_offset_ms, link_quality_percent,
    outbox_pending (averages; null: nothing known), online, playing, amplifier_on."""


@router.get("/{agent_id}/telemetry")
def get_telemetry(agent_id: str, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep,
                  range: Annotated[str, Query(max_length=8, description="24h or 7d")] = "24h") -> TelemetryPublic:
    device = get_visible_device(db, principal, agent_id)
    history = telemetry.history(db, device.id, telemetry.parse_range(range), runtime.now(),
                                runtime.settings.telemetry_sample_s)
    return TelemetryPublic(agent_id=device.agent_id, range=history.range, start=history.start, end=history.end,
                           step_s=history.step_s, times=history.times, series=history.values)


class PlanItemPublic(BaseModel):
    id: str
    broadcast_id: int
    title: str
    priority: str
    play_at: datetime
    duration_ms: int
    stop_at: datetime | None
    exercise: bool


class DevicePlanPublic(BaseModel):
    agent_id: str
    version: int
    """The version last published to the device (0: none yet)."""
    acked_version: int
    """The version the device confirmed it stored."""
    published_at: datetime | None
    items: list[PlanItemPublic]
    """What has not finished yet, in playing order."""


def device_plan(db: Session, device: Device, now: datetime) -> DevicePlanPublic:
    stored = db.get(AgentPlan, device.id)
    status = db.get(DeviceStatus, device.id)
    items: list[PlanItemPublic] = []
    if stored is not None and stored.payload:
        plan = Plan.from_dict(stored.payload)
        titles = _broadcast_titles(db, {i.broadcast_id for i in plan.items if not i.title})
        for item in sorted(plan.items, key=lambda i: i.play_at):
            end = item.stop_at or item.play_at + timedelta(milliseconds=item.audio.duration_ms)
            if end < now:
                continue
            items.append(PlanItemPublic(id=item.id, broadcast_id=item.broadcast_id,
                                        title=item.title or titles.get(item.broadcast_id, ""),
                                        priority=item.priority.name.lower(), play_at=item.play_at,
                                        duration_ms=item.audio.duration_ms, stop_at=item.stop_at,
                                        exercise=item.exercise))
    return DevicePlanPublic(agent_id=device.agent_id, version=stored.version if stored else 0,
                            acked_version=status.plan_version_acked if status else 0,
                            published_at=stored.published_at if stored else None, items=items)


def _broadcast_titles(db: Session, broadcast_ids: set[int]) -> dict[int, str]:
    if not broadcast_ids:
        return {}
    rows = db.execute(select(Broadcast.id, Broadcast.title, Announcement.title)
                      .join(Announcement, Announcement.id == Broadcast.announcement_id)
                      .where(Broadcast.id.in_(broadcast_ids))).all()
    return {bid: own or announcement for bid, own, announcement in rows}


@router.get("/{agent_id}/plan")
def get_plan(agent_id: str, db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep) -> DevicePlanPublic:
    return device_plan(db, get_visible_device(db, principal, agent_id), runtime.now())


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ConsoleCommand
    args: dict[str, Any] = Field(default_factory=dict)
    """play_now: {"announcement_id"}; set_volume: {"percent": 0–100}; amplifier: {"state": "on"|"off"|"auto"};
    stop, resync: {}."""


class CommandPublic(BaseModel):
    id: str
    agent_id: str
    name: str
    sent_by: str
    issued_at: datetime
    expires_at: datetime
    status: CommandStatus
    """pending (no answer yet), ok, refused (see error), no_answer (expired without an answer)."""
    error: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


def operated_device(db: Session, principal: Principal, agent_id: str) -> tuple[Device, AreaTree]:
    device = get_visible_device(db, principal, agent_id)
    tree = load_tree(db)
    require(principal, Action.OPERATE, db.get_one(Area, device.area_id), tree,
            "operating this loudspeaker cluster needs the operator role on its area")
    return device, tree


def command_public(runtime: Runtime, sent: SentCommand, stored: AuditEvent | None = None) -> CommandPublic:
    """The command's state: the agent's answer from memory, else as stored in its audit event."""
    result = runtime.bridge.stats.command_results.get(sent.id)
    status = command_status(sent, result, runtime.now())
    error = result.error if result else ""
    if result is None and stored is not None:
        if stored.outcome in ("ok", "refused"):
            status, error = ("ok" if stored.outcome == "ok" else "refused"), stored.result
        elif status == "no_answer":
            record_no_answer(stored)
    return CommandPublic(id=sent.id, agent_id=sent.agent_id, name=sent.name, sent_by=sent.sent_by,
                         issued_at=sent.issued_at, expires_at=sent.expires_at, status=status, error=error,
                         data=dict(result.data) if result else {})


@router.post("/{agent_id}/commands", status_code=202)
def post_command(agent_id: str, body: CommandIn, db: DbSession, principal: CurrentPrincipal,
                 runtime: RuntimeDep) -> CommandPublic:
    visible = get_visible_device(db, principal, agent_id)
    with audit.refusals_recorded(db, principal, "device.command", target=f"device:{visible.agent_id}",
                                 area_id=visible.area_id, details={"command": body.name, "args": body.args}):
        device, tree = operated_device(db, principal, agent_id)
    command = build_command(db, principal, device, tree, body.name, body.args, now=runtime.now(),
                            public_url=runtime.settings.effective_public_url)
    if not runtime.bridge.connected:
        raise Conflict("the server is not connected to the broker; try again in a moment")
    sent = record_sent(db, runtime.commands, command, device, principal, body.args)
    db.commit()  # in the trail before the agent can answer (the answer updates this event)
    runtime.bridge.send_command(command, agent_id=device.agent_id)
    return command_public(runtime, sent)


@router.get("/{agent_id}/commands/{command_id}")
def get_command(agent_id: str, command_id: str, db: DbSession, principal: CurrentPrincipal,
                runtime: RuntimeDep) -> CommandPublic:
    device, _tree = operated_device(db, principal, agent_id)
    stored = stored_command(db, command_id)
    sent = runtime.commands.get(command_id) or (sent_from_event(stored) if stored is not None else None)
    if sent is None or sent.agent_id != device.agent_id:
        raise NotFound(f"no command {command_id} for {agent_id}")
    return command_public(runtime, sent, stored)
