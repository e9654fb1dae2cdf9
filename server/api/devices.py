"""Loudspeaker clusters: registration and live status."""

from __future__ import annotations

from fastapi import APIRouter

from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.api.schemas import DeviceCreate, DevicePublic, DeviceRegistered
from server.directory import get_visible_device, register_device, visible_devices
from server.models import Area, Device, DeviceStatus

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
    device, token = register_device(db, principal, agent_id=body.agent_id, name=body.name,
                                    area_code=body.area_code, latitude=body.latitude, longitude=body.longitude)
    db.commit()
    runtime.planner.recompile()  # a new cluster gets at once what its area already airs
    return DeviceRegistered(agent_id=device.agent_id, token=token)
