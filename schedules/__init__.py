"""The scheduling domain: pure logic, no I/O. Everything else depends on it; it depends on nothing."""

from schedules.errors import LoaError, ScheduleError
from schedules.model import Area, AreaId, AudioAsset, Device, DeviceAgentId, Occurrence, Priority
from schedules.plans import CompiledPlans, Conflict, PlannedItem, compile_plans
from schedules.targets import AreaTree, resolve_targets

__all__ = [
    "Area", "AreaId", "AreaTree", "AudioAsset", "CompiledPlans", "Conflict", "Device", "DeviceAgentId",
    "LoaError", "Occurrence", "PlannedItem", "Priority", "ScheduleError", "compile_plans", "resolve_targets",
]
