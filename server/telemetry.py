"""Telemetry history of each loudspeaker cluster: sampled from heartbeats, queried for the device page's charts.

Sampling: heartbeats arrive every 30 s; the *first* heartbeat of each aligned bucket of ``sample_s``
seconds (server time, e.g. 10:00:00–10:04:59 for 300 s) is stored, later ones in the bucket are dropped.
Aligned buckets make the samples of every device line up and keep the cost constant whatever the
heartbeat rate. When presence marks a device offline an ``online=False`` sample is stored at once and
the device's bucket is forgotten, so the first heartbeat after it comes back is stored too: charts show
outages as gaps with their true edges. The buckets already sampled are kept in memory only: after a
server restart a device may get one extra sample in the bucket it was in. Sample times are the server's
receipt time (an agent's clock may be off; its offset is one of the series).

Samples are buffered by the ingest thread and written in one bulk insert per ingest batch. The chart
query reads one device's rows through the primary key (device_id, at) and averages them into buckets of
5 min (24 h) or 30 min (7 d): at most ~340 points per chart, whatever the fleet size.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from agents.protocol import Heartbeat
from server.db import Database
from server.errors import Invalid
from server.models import Device, TelemetrySample

log = logging.getLogger(__name__)

TelemetryRange = Literal["24h", "7d"]
RANGES: dict[str, tuple[timedelta, int]] = {"24h": (timedelta(hours=24), 300), "7d": (timedelta(days=7), 1800)}
"""Each chart range: how far back, and the width in seconds of one drawn point (at least the sample interval)."""

NUMERIC_SERIES: tuple[str, ...] = ("cpu_temp_c", "disk_used_percent", "cache_bytes", "volume_percent",
                                   "clock_offset_ms", "link_quality_percent", "outbox_pending")
STATE_SERIES: tuple[str, ...] = ("online", "playing", "amplifier_on")


def disk_used_percent(free_bytes: int | None, total_bytes: int | None) -> float | None:
    if free_bytes is None or not total_bytes or total_bytes <= 0:
        return None
    used = 100.0 * (total_bytes - min(free_bytes, total_bytes)) / total_bytes
    return round(used, 1)


def sample_of(device_id: int, heartbeat: Heartbeat, at: datetime) -> dict[str, Any]:
    """The row stored for one heartbeat."""
    return {"device_id": device_id, "at": at, "online": True, "playing": heartbeat.now_playing is not None,
            "cpu_temp_c": heartbeat.cpu_temp_c,
            "disk_used_percent": disk_used_percent(heartbeat.disk_free_bytes, heartbeat.disk_total_bytes),
            "cache_bytes": heartbeat.cache_bytes, "volume_percent": heartbeat.volume_percent,
            "amplifier_on": heartbeat.amplifier_on,
            "clock_offset_ms": float(heartbeat.clock_offset_ms) if heartbeat.clock_offset_ms is not None else None,
            "link_quality_percent": heartbeat.link_quality_percent, "outbox_pending": heartbeat.outbox_pending}


def offline_sample(device_id: int, at: datetime) -> dict[str, Any]:
    return {"device_id": device_id, "at": at, "online": False, "playing": False, "cpu_temp_c": None,
            "disk_used_percent": None, "cache_bytes": None, "volume_percent": None, "amplifier_on": None,
            "clock_offset_ms": None, "link_quality_percent": None, "outbox_pending": None}


class TelemetryRecorder:
    """Decides which heartbeats become samples and writes them in bulk. Thread-safe: the bridge's ingest
    thread and the silence sweep (on the scheduler's thread) both record through it."""

    def __init__(self, sample_s: int) -> None:
        if sample_s <= 0:
            raise ValueError("sample_s must be positive")
        self.sample_s = sample_s
        self._last_bucket: dict[int, int] = {}
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _bucket(self, at: datetime) -> int:
        return int(at.timestamp()) // self.sample_s

    def heartbeat(self, device_id: int, heartbeat: Heartbeat, at: datetime) -> bool:
        """Queue a sample if this is the device's first heartbeat in the current bucket; True if queued."""
        bucket = self._bucket(at)
        with self._lock:
            if self._last_bucket.get(device_id) == bucket:
                return False
            self._last_bucket[device_id] = bucket
            self._pending.append(sample_of(device_id, heartbeat, at))
        return True

    def offline(self, device_id: int, at: datetime) -> None:
        with self._lock:
            self._last_bucket.pop(device_id, None)
            self._pending.append(offline_sample(device_id, at))

    def flush(self, db: Session) -> int:
        """Insert the queued samples in one statement (in the caller's transaction); returns how many."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        unique = {(row["device_id"], row["at"]): row for row in pending}  # a frozen test clock repeats
        db.execute(insert(TelemetrySample), list(unique.values()))
        return len(unique)


def delete_older_than(db: Database, cutoff: datetime, *, chunk: int = 500) -> int:
    """Delete samples before ``cutoff``, a few hundred devices per transaction so each delete walks the
    primary key (device_id, at) and no transaction holds millions of row locks."""
    deleted = 0
    with db.session() as session:
        device_ids = list(session.scalars(select(Device.id).order_by(Device.id)))
    for start in range(0, len(device_ids), chunk):
        part = device_ids[start:start + chunk]
        with db.session() as session:
            result = session.execute(delete(TelemetrySample).where(TelemetrySample.device_id.in_(part),
                                                                   TelemetrySample.at < cutoff))
            session.commit()
            deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


def purge_expired(db: Database, now: datetime, retention_days: int) -> int:
    deleted = delete_older_than(db, now - timedelta(days=retention_days))
    if deleted:
        log.info("deleted %d telemetry sample(s) older than %d day(s)", deleted, retention_days)
    return deleted


# --- query -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Series:
    """Columns of equal length: ``times[i]`` is the start of point i; a value is None where nothing is known."""

    range: str
    start: datetime
    end: datetime
    step_s: int
    times: list[datetime]
    values: dict[str, list[Any]]


def parse_range(value: str) -> TelemetryRange:
    if value not in RANGES:
        raise Invalid(f"range must be one of {', '.join(RANGES)}")
    return value  # type: ignore[return-value]


def history(db: Session, device_id: int, range_name: TelemetryRange, now: datetime, sample_s: int) -> Series:
    """The device's samples over the range, one point per bucket that has samples (empty buckets are left
    out: the chart shows the time gap). Numbers are averaged over the bucket's online samples; ``online``
    is False when any sample in the bucket is an offline mark, ``playing`` True when any sample played,
    ``amplifier_on`` the last known state."""
    span, width = RANGES[range_name]
    step_s = max(width, sample_s)
    start = now - span
    rows = db.execute(select(TelemetrySample).where(TelemetrySample.device_id == device_id,
                                                    TelemetrySample.at >= start, TelemetrySample.at <= now)
                      .order_by(TelemetrySample.at)).scalars().all()
    buckets: dict[int, list[TelemetrySample]] = {}
    for row in rows:
        buckets.setdefault(int(row.at.timestamp()) // step_s, []).append(row)
    times: list[datetime] = []
    values: dict[str, list[Any]] = {name: [] for name in (*NUMERIC_SERIES, *STATE_SERIES)}
    for bucket, samples in sorted(buckets.items()):
        times.append(datetime.fromtimestamp(bucket * step_s, UTC))
        alive = [s for s in samples if s.online]
        for name in NUMERIC_SERIES:
            values[name].append(_mean(getattr(s, name) for s in alive))
        values["online"].append(len(alive) == len(samples))
        values["playing"].append(any(s.playing for s in alive))
        known = [s.amplifier_on for s in alive if s.amplifier_on is not None]
        values["amplifier_on"].append(known[-1] if known else None)
    return Series(range=range_name, start=start, end=now, step_s=step_s, times=times, values=values)


def _mean(numbers: Iterable[float | int | None]) -> float | None:
    present: Sequence[float | int] = [n for n in numbers if n is not None]
    if not present:
        return None
    return round(sum(present) / len(present), 2)
