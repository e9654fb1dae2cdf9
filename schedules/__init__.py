"""The scheduling domain: pure logic, no I/O. Everything else depends on it; it depends on nothing.

The package root needs only the standard library (the agent imports it). `schedules.timing`,
`schedules.broadcasts`, `schedules.calendars` and `schedules.ical` need the server extra and are imported
by their full names. docs/scheduling.md describes the rules and the API.
"""

from schedules.errors import LoaError, ScheduleError
from schedules.incremental import PlanCompiler
from schedules.model import Area, AreaId, AudioAsset, Device, DeviceAgentId, Occurrence, OnPreempt, Priority
from schedules.plans import (
    TICK,
    CompiledPlans,
    Conflict,
    DeviceTimeline,
    EqualPriority,
    PlannedItem,
    Resolution,
    compile_device,
    compile_plans,
    dry_run,
)
from schedules.targets import AreaTree, resolve_area_codes, resolve_targets

__all__ = [
    "TICK", "Area", "AreaId", "AreaTree", "AudioAsset", "CompiledPlans", "Conflict", "Device", "DeviceAgentId",
    "DeviceTimeline", "EqualPriority", "LoaError", "Occurrence", "OnPreempt", "PlanCompiler", "PlannedItem",
    "Priority", "Resolution", "ScheduleError", "compile_device", "compile_plans", "dry_run", "resolve_area_codes",
    "resolve_targets",
]
