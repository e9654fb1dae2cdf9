"""Scheduling through HTTP: approval, recurrence, emergencies, cancel, dry-run, inbox, previews, iCal.

Runs against the real runtime (embedded broker) on SQLite and on PostgreSQL; every permission is
checked through the API, not the functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.app import create_app
from server.directory import create_area, create_user, register_device
from server.models import AreaAlias, AuditEvent
from server.permissions import Role
from server.runtime import Runtime
from server.settings import load_settings
from tests.conftest import free_port

PASSWORD = "sched-test-password"
VN = ZoneInfo("Asia/Ho_Chi_Minh")


class Api:
    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime
        self._headers: dict[str, dict[str, str]] = {}

    def as_(self, username: str) -> dict[str, str]:
        if username not in self._headers:
            response = self.client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
            assert response.status_code == 200, response.text
            self.client.cookies.clear()
            self._headers[username] = {"Authorization": f"Bearer {response.json()['token']}"}
        return self._headers[username]

    def post(self, path: str, user: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(path, headers=self.as_(user), json=body)

    def get(self, path: str, user: str, **params: Any) -> Any:
        return self.client.get(path, headers=self.as_(user), params=params)

    def plan_items(self, agent_id: str) -> list[dict[str, Any]]:
        plans = {p.agent_id: p for p in self.runtime.planner.current_plans()}
        return list(json.loads(plans[agent_id].payload)["items"]) if agent_id in plans else []


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root: Path = tmp_path_factory.mktemp(f"sched-{request.param}")
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    settings = load_settings(data_dir=root, database_url=database_url,
                             broker_url=f"mqtt://127.0.0.1:{free_port()}", tts_online=False, http_port=free_port())
    runtime = Runtime(settings)
    with TestClient(create_app(settings, runtime=runtime)) as client:
        with runtime.db.session() as db:
            province = create_area(db, code="p1", name="Tỉnh Một", kind="province", parent_code=None)
            a = create_area(db, code="c-a", name="Xã A", kind="commune", parent_code="p1")
            b = create_area(db, code="c-b", name="Xã B", kind="commune", parent_code="p1")
            db.add(AreaAlias(code="old-a", area_id=a.id, note="merged 2025"))
            create_user(db, username="editor", password=PASSWORD, full_name="E", grants=[(Role.EDITOR, a.id)])
            create_user(db, username="editor.b", password=PASSWORD, full_name="EB", grants=[(Role.EDITOR, b.id)])
            create_user(db, username="editor.p", password=PASSWORD, full_name="EP",
                        grants=[(Role.EDITOR, province.id)])
            create_user(db, username="approver", password=PASSWORD, full_name="A",
                        grants=[(Role.APPROVER, province.id)])
            create_user(db, username="approver.a", password=PASSWORD, full_name="AA", grants=[(Role.APPROVER, a.id)])
            for agent_id, area in (("dev-a1", "c-a"), ("dev-a2", "c-a"), ("dev-b1", "c-b")):
                register_device(db, None, agent_id=agent_id, name=agent_id, area_code=area)
        yield Api(client, runtime)


def _approved_announcement(api: Api, user: str, area: str, text: str) -> dict[str, Any]:
    created = api.post("/api/v1/announcements", user, {"title": text[:40], "text": text, "area_code": area})
    assert created.status_code == 201, created.text
    body = created.json()
    deadline = time.monotonic() + 60
    while body["audio_status"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
        body = api.get(f"/api/v1/announcements/{body['id']}", user).json()
    reviewed = api.post(f"/api/v1/announcements/{body['id']}/review", "approver", {"approve": True})
    assert reviewed.status_code == 200, reviewed.text
    return dict(reviewed.json())


@pytest.fixture(scope="module")
def content(api: Api) -> dict[str, Any]:
    return _approved_announcement(api, "editor", "c-a", "Thông báo lịch tiêm chủng tháng 12.")


@pytest.fixture(scope="module")
def province_content(api: Api) -> dict[str, Any]:
    return _approved_announcement(api, "editor.p", "p1", "Bản tin của tỉnh về phòng chống bão số 3.")


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def local_tomorrow(hour: int, minute: int) -> str:
    day = datetime.now(VN).date() + timedelta(days=1)
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00"


def test_a_broadcast_airs_only_after_someone_else_approves_it(api: Api, content: dict[str, Any]) -> None:
    created = api.post("/api/v1/broadcasts", "editor", {
        "announcement_id": content["id"], "play_at": at(600), "area_codes": ["c-a"]})
    assert created.status_code == 201, created.text
    broadcast = created.json()
    assert broadcast["status"] == "submitted" and broadcast["target_devices"] == 2
    assert broadcast["id"] not in {i["broadcast_id"] for i in api.plan_items("dev-a1")}

    own = api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "editor", {"approve": True})
    assert own.status_code == 403
    outsider = api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "editor.b", {"approve": True})
    assert outsider.status_code == 404  # commune B cannot even see it
    approved = api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "approver.a", {"approve": True})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert broadcast["id"] in {i["broadcast_id"] for i in api.plan_items("dev-a1")}
    assert broadcast["id"] not in {i["broadcast_id"] for i in api.plan_items("dev-b1")}
    again = api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "approver", {"approve": True})
    assert again.status_code == 409


def test_rejection_needs_a_comment_and_an_edit_resubmits(api: Api, content: dict[str, Any]) -> None:
    body = {"announcement_id": content["id"], "play_at": at(900), "area_codes": ["c-a"]}
    broadcast = api.post("/api/v1/broadcasts", "editor", body).json()
    silent = api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "approver", {"approve": False})
    assert silent.status_code == 422 and "comment" in silent.json()["detail"]
    rejected = api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "approver",
                        {"approve": False, "comment": "Sai giờ phát"}).json()
    assert rejected["status"] == "rejected" and rejected["review_comment"] == "Sai giờ phát"
    edited = api.client.put(f"/api/v1/broadcasts/{broadcast['id']}", headers=api.as_("editor"),
                            json={**body, "play_at": at(1200)})
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "submitted" and edited.json()["revision"] == 2
    draft = api.post("/api/v1/broadcasts", "editor", {**body, "submit": False}).json()
    assert draft["status"] == "draft"
    assert api.post(f"/api/v1/broadcasts/{draft['id']}/review", "approver", {"approve": True}).status_code == 409
    assert api.post(f"/api/v1/broadcasts/{draft['id']}/submit", "editor").json()["status"] == "submitted"
    deleted = api.client.delete(f"/api/v1/broadcasts/{draft['id']}", headers=api.as_("editor"))
    assert deleted.status_code == 204
    assert api.get(f"/api/v1/broadcasts/{draft['id']}", "editor").status_code == 404


def test_a_weekday_morning_slot_recurs_at_0530_local_on_weekdays_only(api: Api, content: dict[str, Any]) -> None:
    created = api.post("/api/v1/broadcasts", "editor", {
        "announcement_id": content["id"], "title": "Chương trình buổi sáng", "slot_minutes": 30,
        "timing": {"kind": "recurring", "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "start": local_tomorrow(5, 30)},
        "area_codes": ["c-a"]})
    assert created.status_code == 201, created.text
    broadcast = created.json()
    assert broadcast["timing"] == "recurring" and broadcast["rrule"] == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
    api.post(f"/api/v1/broadcasts/{broadcast['id']}/review", "approver", {"approve": True})
    occurrences = api.get(f"/api/v1/broadcasts/{broadcast['id']}/occurrences", "editor", days=14).json()
    assert 8 <= len(occurrences) <= 10
    for occurrence in occurrences:
        local = datetime.fromisoformat(occurrence["play_at"]).astimezone(VN)
        assert (local.hour, local.minute) == (5, 30) and local.weekday() < 5
    schedule = api.get("/api/v1/schedule", "editor", area_code="c-a", days=7).json()
    assert any(o["broadcast_id"] == broadcast["id"] for o in schedule)
    assert [o["play_at"] for o in schedule] == sorted(o["play_at"] for o in schedule)
    assert api.get("/api/v1/schedule", "editor", area_code="c-b").status_code == 404

    ical = api.get("/api/v1/schedule/ical", "editor", area_code="c-a")
    assert ical.status_code == 200 and ical.headers["content-type"].startswith("text/calendar")
    text = ical.text
    assert text.startswith("BEGIN:VCALENDAR\r\n") and "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR" in text
    assert "DTSTART;TZID=Asia/Ho_Chi_Minh:" in text
    start_line = next(line for line in text.split("\r\n") if line.startswith("DTSTART;TZID=Asia/Ho_Chi_Minh:")
                      and line.endswith("T053000"))
    rule = rrulestr("RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
                    dtstart=datetime.strptime(start_line.split(":")[1], "%Y%m%dT%H%M%S"))
    assert rule[0].weekday() < 5


def test_bad_rules_and_times_are_refused_with_a_reason(api: Api, content: dict[str, Any]) -> None:
    base = {"announcement_id": content["id"], "area_codes": ["c-a"]}
    cases = [
        ({"timing": {"kind": "recurring", "rrule": "FREQ=SECONDLY", "start": local_tomorrow(5, 30)}}, "SECONDLY"),
        ({"timing": {"kind": "recurring", "rrule": "FREQ=DAILY;BYHOUR=99", "start": local_tomorrow(5, 30)}}, ""),
        ({"timing": {"kind": "recurring", "rrule": "FREQ=DAILY", "start": local_tomorrow(5, 30),
                     "valid_until": "2020-01-01"}}, "never airs"),
        ({"timing": {"kind": "recurring", "rrule": "FREQ=DAILY", "start": "", "tz": "Asia/Ho_Chi_Minh"}}, "start"),
        ({"timing": {"kind": "recurring", "rrule": "FREQ=DAILY", "start": local_tomorrow(5, 30),
                     "tz": "Mars/Olympus"}}, ""),
        ({"timing": {"kind": "once"}}, "timing.at"),
        ({"play_at": at(600), "repeat": {"every_minutes": 120}}, "count or until"),
        ({"play_at": at(600), "priority": "emergency", "mode": "bulletin"}, "inbox"),
    ]
    for extra, words in cases:
        response = api.post("/api/v1/broadcasts", "editor", {**base, **extra})
        assert response.status_code == 422, (extra, response.text)
        assert words in response.json()["detail"], (extra, response.json())


def test_old_commune_codes_still_resolve_as_targets(api: Api, content: dict[str, Any]) -> None:
    response = api.post("/api/v1/broadcasts", "editor", {
        "announcement_id": content["id"], "play_at": at(700), "area_codes": ["old-a"]})
    assert response.status_code == 201, response.text
    assert response.json()["target_devices"] == 2 and response.json()["area_codes"] == ["c-a"]


def test_an_emergency_needs_the_area_name_typed_and_then_airs_at_once(api: Api, content: dict[str, Any]) -> None:
    body = {"announcement_id": content["id"], "priority": "emergency", "area_codes": ["c-a"], "exercise": True}
    wrong = api.post("/api/v1/broadcasts", "editor", {**body, "confirm": "xã b"})
    assert wrong.status_code == 422 and "Xã A" in wrong.json()["detail"]
    # The console words the refusal itself from the code and the name to type.
    assert wrong.json()["error"] == {"code": "confirm_name", "name": "Xã A", "message": wrong.json()["detail"]}
    sent = api.post("/api/v1/broadcasts", "editor", {**body, "confirm": "xã a"})
    assert sent.status_code == 201, sent.text
    emergency = sent.json()
    assert emergency["status"] == "approved" and emergency["timing"] == "now" and emergency["exercise"] is True
    items = [i for i in api.plan_items("dev-a2") if i["broadcast_id"] == emergency["id"]]
    assert len(items) == 1 and items[0]["priority"] == "emergency" and items[0]["exercise"] is True
    progress = api.get(f"/api/v1/broadcasts/{emergency['id']}/progress", "editor").json()
    assert progress["targeted"] == 2 and progress["status"] == "approved"

    message = _approved_announcement(api, "editor", "c-a", "Thông báo kết thúc diễn tập.")
    cancelled = api.post(f"/api/v1/broadcasts/{emergency['id']}/cancel", "editor",
                         {"reason": "Kết thúc diễn tập", "message_announcement_id": message["id"]})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert all(i["broadcast_id"] != emergency["id"] for i in api.plan_items("dev-a2"))
    messages = [b for b in api.get("/api/v1/broadcasts", "editor").json() if b["announcement_id"] == message["id"]]
    assert len(messages) == 1 and messages[0]["status"] == "approved" and messages[0]["priority"] == "emergency"
    assert any(i["broadcast_id"] == messages[0]["id"] for i in api.plan_items("dev-a2"))
    assert api.post(f"/api/v1/broadcasts/{emergency['id']}/cancel", "editor").status_code == 409


def test_with_second_person_rule_an_emergency_waits_for_an_approver(api: Api, content: dict[str, Any]) -> None:
    original = api.runtime.settings
    api.runtime.settings = original.model_copy(update={"emergency_confirmation": "second_person"})
    try:
        sent = api.post("/api/v1/broadcasts", "editor", {
            "announcement_id": content["id"], "priority": "emergency", "area_codes": ["c-a"], "confirm": "Xã A"})
        assert sent.status_code == 201 and sent.json()["status"] == "submitted"
        time.sleep(2.5)  # longer than the lead: "now" must mean the approval, not the writing
        approved_at = datetime.now(UTC)
        approved = api.post(f"/api/v1/broadcasts/{sent.json()['id']}/review", "approver.a", {"approve": True})
        assert approved.json()["status"] == "approved"
        items = [i for i in api.plan_items("dev-a1") if i["broadcast_id"] == sent.json()["id"]]
        assert len(items) == 1 and datetime.fromisoformat(items[0]["play_at"]) >= approved_at
    finally:
        api.runtime.settings = original


def test_dry_run_lists_every_conflict_with_its_rule_and_saves_nothing(api: Api, content: dict[str, Any]) -> None:
    play_at = datetime.now(UTC) + timedelta(minutes=30)
    first = api.post("/api/v1/broadcasts", "editor", {
        "announcement_id": content["id"], "play_at": play_at.isoformat(), "area_codes": ["c-a"]}).json()
    api.post(f"/api/v1/broadcasts/{first['id']}/review", "approver", {"approve": True})
    before = len(api.get("/api/v1/broadcasts", "editor").json())
    overlapping = {"announcement_id": content["id"], "play_at": (play_at + timedelta(seconds=1)).isoformat(),
                   "area_codes": ["c-a"]}
    queued = api.post("/api/v1/broadcasts/dry-run", "editor", overlapping).json()
    assert queued["target_devices"] == 2 and queued["refused"] is False
    rules = {(c["agent_id"], c["resolution"]) for c in queued["conflicts"] if c["other_broadcast_id"] == first["id"]}
    assert rules == {("dev-a1", "queued_after"), ("dev-a2", "queued_after")}
    assert all(c["rule"] for c in queued["conflicts"])
    assert {c["resolution"] for c in queued["conflicts"]} <= {"preempts", "queued_after", "refused", "trimmed",
                                                              "resumed"}  # codes the console has labels for
    urgent = api.post("/api/v1/broadcasts/dry-run", "editor", {**overlapping, "priority": "priority"}).json()
    assert {c["resolution"] for c in urgent["conflicts"] if c["other_broadcast_id"] == first["id"]} == {"preempts"}
    original = api.runtime.settings
    api.runtime.settings = original.model_copy(update={"equal_priority": "refuse"})
    try:
        refused = api.post("/api/v1/broadcasts/dry-run", "editor", overlapping).json()
        assert refused["refused"] is True
        assert {c["resolution"] for c in refused["conflicts"] if c["other_broadcast_id"] == first["id"]} \
            == {"refused"}
        not_saved = api.post("/api/v1/broadcasts", "editor", overlapping)
        assert not_saved.status_code == 409 and "equal priority" in not_saved.json()["detail"]
        error = not_saved.json()["error"]
        assert error["code"] == "conflict_refused" and error["resolution"] == "refused"
        assert error["other_broadcast_id"] == first["id"] and error["devices"] == 2
    finally:
        api.runtime.settings = original
    assert len(api.get("/api/v1/broadcasts", "editor").json()) == before
    outsider = api.post("/api/v1/broadcasts/dry-run", "editor.b", overlapping)
    assert outsider.status_code == 404


def test_a_normal_bulletin_waits_in_each_commune_inbox(api: Api, province_content: dict[str, Any]) -> None:
    sent = api.post("/api/v1/broadcasts", "editor.p", {
        "announcement_id": province_content["id"], "mode": "bulletin", "play_at": at(3600), "area_codes": ["p1"]})
    assert sent.status_code == 201, sent.text
    bulletin = sent.json()
    api.post(f"/api/v1/broadcasts/{bulletin['id']}/review", "approver", {"approve": True})
    status = api.get(f"/api/v1/broadcasts/{bulletin['id']}/inbox", "editor.p").json()
    assert {(e["area_code"], e["status"]) for e in status} == {("c-a", "pending"), ("c-b", "pending")}
    assert all(bulletin["id"] != i["broadcast_id"] for i in api.plan_items("dev-a1"))  # not aired directly

    mine = [e for e in api.get("/api/v1/inbox", "editor").json() if e["bulletin_id"] == bulletin["id"]]
    theirs = [e for e in api.get("/api/v1/inbox", "editor.b").json() if e["bulletin_id"] == bulletin["id"]]
    assert [e["area_code"] for e in mine] == ["c-a"] and [e["area_code"] for e in theirs] == ["c-b"]
    assert api.post(f"/api/v1/inbox/{theirs[0]['id']}/decline", "editor", {"reason": "x"}).status_code == 404
    no_reason = api.post(f"/api/v1/inbox/{theirs[0]['id']}/decline", "editor.b", {"reason": " "})
    assert no_reason.status_code == 422
    declined = api.post(f"/api/v1/inbox/{theirs[0]['id']}/decline", "editor.b", {"reason": "Đã phát hôm qua"})
    assert declined.json()["status"] == "declined"

    scheduled = api.post(f"/api/v1/inbox/{mine[0]['id']}/schedule", "editor",
                         {"timing": {"kind": "once", "at": at(1800)}})
    assert scheduled.status_code == 201, scheduled.text
    local = scheduled.json()
    assert local["area_codes"] == ["c-a"] and local["announcement_ids"] == [province_content["id"]]
    api.post(f"/api/v1/broadcasts/{local['id']}/review", "approver.a", {"approve": True})
    assert any(i["broadcast_id"] == local["id"] for i in api.plan_items("dev-a1"))
    final = {e["area_code"]: e for e in api.get(f"/api/v1/broadcasts/{bulletin['id']}/inbox", "editor.p").json()}
    assert final["c-a"]["status"] == "scheduled" and final["c-a"]["broadcast_id"] == local["id"]
    assert final["c-b"]["status"] == "declined" and final["c-b"]["reason"] == "Đã phát hôm qua"
    twice = api.post(f"/api/v1/inbox/{mine[0]['id']}/schedule", "editor", {"timing": {"kind": "once", "at": at(900)}})
    assert twice.status_code == 409
    with api.runtime.db.session() as db:  # both decisions are in the audit trail, by whom and on what
        trail = {(e.action, e.target, e.username, e.result) for e in db.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(["inbox.decline", "inbox.schedule"])))}
    assert ("inbox.decline", f"broadcast:{bulletin['id']}", "editor.b", "") in trail
    assert ("inbox.schedule", f"broadcast:{local['id']}", "editor", "submitted") in trail


def test_a_priority_bulletin_goes_into_the_next_programme(api: Api, province_content: dict[str, Any]) -> None:
    own = _approved_announcement(api, "editor.b", "c-b", "Chương trình phát thanh buổi chiều của xã B.")
    programme = api.post("/api/v1/broadcasts", "editor.b", {
        "announcement_id": own["id"], "title": "Buổi chiều", "slot_minutes": 20,
        "timing": {"kind": "recurring", "rrule": "FREQ=DAILY", "start": local_tomorrow(17, 0)},
        "area_codes": ["c-b"]}).json()
    api.post(f"/api/v1/broadcasts/{programme['id']}/review", "approver", {"approve": True})
    sent = api.post("/api/v1/broadcasts", "editor.p", {
        "announcement_id": province_content["id"], "mode": "bulletin", "priority": "priority", "play_at": at(3600),
        "area_codes": ["c-b"]}).json()
    api.post(f"/api/v1/broadcasts/{sent['id']}/review", "approver", {"approve": True})
    entries = api.get(f"/api/v1/broadcasts/{sent['id']}/inbox", "editor.p").json()
    assert [(e["area_code"], e["status"]) for e in entries] == [("c-b", "inserted")]
    inserted = api.get(f"/api/v1/broadcasts/{entries[0]['broadcast_id']}", "editor.b").json()
    local = datetime.fromisoformat(inserted["play_at"]).astimezone(VN)
    assert local.date() == datetime.now(VN).date() + timedelta(days=1)
    assert (local.hour, local.minute) == (17, 0) and inserted["priority"] == "priority"
    assert inserted["status"] == "approved"
    # In the device's plan the bulletin starts the programme; the programme's own item queues after it.
    items = {i["broadcast_id"]: i for i in api.plan_items("dev-b1")}
    assert items[inserted["id"]]["play_at"] < items[programme["id"]]["play_at"]
