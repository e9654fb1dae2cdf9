"""`loa demo`: the whole system in one process with demo data.

Server (API + console) on http://127.0.0.1:8000, the embedded MQTT broker, SQLite, five simulated
loudspeaker clusters (the real agent code with file sinks) in the former Sơn Dương district of Tuyên
Quang, demo users for every role, and a first announcement scheduled within a minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import uvicorn

from agents.sim import SimulatedAgent, Simulator, sim_config
from server.api.schemas import BroadcastCreate, TimingIn
from server.app import create_app
from server.broadcasts import create_broadcast, review_broadcast
from server.content import create_announcement, review_announcement
from server.directory import create_area, create_user, principal_of, register_device
from server.models import Announcement, User
from server.permissions import Role
from server.runtime import Runtime
from server.settings import load_settings

log = logging.getLogger(__name__)

DEMO_PASSWORD = "loa-demo-2026"

AREAS = [
    # code, name, kind, parent
    ("08", "Tỉnh Tuyên Quang", "province", None),
    ("08-076", "Huyện Sơn Dương (cũ)", "district", "08"),
    ("08-076-tantrao", "Xã Tân Trào", "commune", "08-076"),
    ("08-076-hoplac", "Xã Hồng Lạc", "commune", "08-076"),
]

USERS = [
    # username, full name, role, area
    ("admin", "Quản trị hệ thống", Role.ADMIN, "08"),
    ("bientap.huyen", "Biên tập viên huyện", Role.EDITOR, "08-076"),
    ("bientap.tantrao", "Biên tập viên xã Tân Trào", Role.EDITOR, "08-076-tantrao"),
    ("pheduyet", "Lãnh đạo phê duyệt", Role.APPROVER, "08-076"),
    ("vanhanh", "Cán bộ vận hành", Role.OPERATOR, "08-076"),
]

DEVICES = [
    # agent id, name, area, latitude, longitude
    ("tq-tantrao-c01", "Cụm loa Thôn Tân Lập", "08-076-tantrao", 21.7805, 105.4322),
    ("tq-tantrao-c02", "Cụm loa Thôn Mỏ Ché", "08-076-tantrao", 21.7751, 105.4410),
    ("tq-tantrao-c03", "Cụm loa Thôn Cả", "08-076-tantrao", 21.7702, 105.4298),
    ("tq-hoplac-c01", "Cụm loa Thôn Hợp Thành", "08-076-hoplac", 21.6502, 105.3601),
    ("tq-hoplac-c02", "Cụm loa Thôn Đồng Mới", "08-076-hoplac", 21.6455, 105.3700),
]

FIRST_TEXT = (
    "Thông báo của Ủy ban nhân dân xã Tân Trào: thực hiện Quyết định số 135/QĐ-TTg ngày 20/01/2020, "
    "từ 17h30 ngày 28/11/2026 xã tổ chức họp dân tại nhà văn hóa các thôn. Đề nghị bà con đến dự đúng giờ."
)


@dataclass(frozen=True)
class DemoData:
    agents: list[SimulatedAgent]


def seed(runtime: Runtime, tokens_file: Path) -> DemoData:
    """Create the demo tree, users and devices once; later runs reuse them (tokens kept in a 0600 file)."""
    with runtime.db.session() as db:
        if db.query(User).filter(User.username == "admin").first() is None:
            ids = {}
            for code, name, kind, parent in AREAS:
                ids[code] = create_area(db, code=code, name=name, kind=kind, parent_code=parent).id
            for username, full_name, role, area in USERS:
                create_user(db, username=username, password=DEMO_PASSWORD, full_name=full_name,
                            grants=[(role, ids[area])])
            tokens = {}
            for agent_id, name, area, lat, lon in DEVICES:
                _device, token = register_device(db, None, agent_id=agent_id, name=name, area_code=area,
                                                  latitude=lat, longitude=lon)
                tokens[agent_id] = token
            tokens_file.write_text(json.dumps(tokens, indent=2))
            os.chmod(tokens_file, 0o600)
    tokens = json.loads(tokens_file.read_text())
    return DemoData(agents=[SimulatedAgent(agent_id, token) for agent_id, token in tokens.items()])


async def schedule_first_announcement(runtime: Runtime) -> None:
    """Write, render, approve and schedule a first bulletin ~45 s from now, as the demo users would."""
    with runtime.db.session() as db:
        editor = principal_of(db.query(User).filter(User.username == "bientap.tantrao").one())
        announcement = create_announcement(db, editor, title="Thông báo họp dân", text=FIRST_TEXT,
                                           area_code="08-076-tantrao")
        announcement_id = announcement.id
    await asyncio.wrap_future(runtime.renderer.submit(announcement_id))
    with runtime.db.session() as db:
        row = db.get(Announcement, announcement_id)
        if row is None or row.audio_status != "ready":
            log.error("demo announcement could not be rendered: %s", row.audio_error if row else "missing")
            return
        approver = principal_of(db.query(User).filter(User.username == "pheduyet").one())
        review_announcement(db, approver, announcement_id, approve=True, comment="Đồng ý phát (dữ liệu mẫu)")
        now = runtime.now()
        requests = [
            BroadcastCreate(announcement_id=announcement_id, play_at=now + timedelta(seconds=45),
                            area_codes=["08-076-tantrao"]),
            # The commune's two daily slots (programmes of up to 30 minutes; weekdays only in the afternoon).
            BroadcastCreate(announcement_id=announcement_id, title="Chương trình buổi sáng", slot_minutes=30,
                            timing=TimingIn(kind="recurring", rrule="FREQ=DAILY", start=_tomorrow_at(now, 5, 30),
                                            holidays="skip"),
                            area_codes=["08-076-tantrao"]),
            BroadcastCreate(announcement_id=announcement_id, title="Chương trình buổi chiều", slot_minutes=30,
                            timing=TimingIn(kind="recurring", rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
                                            start=_tomorrow_at(now, 17, 0), holidays="skip"),
                            area_codes=["08-076-tantrao"]),
        ]
        for request in requests:
            broadcast, _ = create_broadcast(db, editor, request, now=now, settings=runtime.settings)
            if broadcast.status == "submitted":
                review_broadcast(db, approver, broadcast.id, approve=True, comment="Đồng ý (dữ liệu mẫu)", now=now)
    await asyncio.to_thread(runtime.planner.recompile)


def _tomorrow_at(now: datetime, hour: int, minute: int) -> str:
    local = now.astimezone(ZoneInfo("Asia/Ho_Chi_Minh")) + timedelta(days=1)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0, tzinfo=None).isoformat()


async def run_demo(*, data_dir: Path, port: int, broker_port: int, fresh: bool) -> None:
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(data_dir=data_dir, http_port=port, broker_url=f"mqtt://127.0.0.1:{broker_port}",
                             embedded_broker=True)
    runtime = Runtime(settings)
    app = create_app(settings, runtime=runtime)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.http_host, port=port, log_level="warning"))
    serve = asyncio.create_task(server.serve())
    while not server.started:
        if serve.done():
            await serve  # raises the start-up error
            return
        await asyncio.sleep(0.05)
    demo = seed(runtime, data_dir / "agent-tokens.json")
    simulator = Simulator([sim_config(a, root=data_dir / "agents", mqtt_url=settings.broker_url, heartbeat_s=10)
                           for a in demo.agents])
    await simulator.start()
    await simulator.wait_connected(15)
    await schedule_first_announcement(runtime)
    url = f"http://127.0.0.1:{port}"
    print(f"""
Loa demo is running.
  Console:   {url}/console          (API docs: {url}/docs)
  Log in as: bientap.tantrao / {DEMO_PASSWORD}   (commune editor)
             pheduyet / {DEMO_PASSWORD}          (approver)    vanhanh / {DEMO_PASSWORD} (operator)
             admin / {DEMO_PASSWORD}             (province admin)
  Broker:    {settings.broker_url} (embedded)   Data: {data_dir.resolve()}
  {len(demo.agents)} simulated clusters; a first announcement plays in Xã Tân Trào in about 45 seconds.
  What the clusters "play" is written to {data_dir.resolve()}/agents/<agent>/sink.jsonl
Press Ctrl+C to stop.""", flush=True)
    try:
        await serve
    finally:
        await simulator.stop()
