"""As-run filters and the monthly report through HTTP, on SQLite and PostgreSQL (month bounds in Viet Nam time)."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from server.models import Announcement, AsRunEntry, Broadcast, Device, User
from server.reports import Month, parse_local_date
from tests.server.accounts_app import AccountsApp, start

VN = timezone(timedelta(hours=7))
_ids = itertools.count(1)


def vn(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=VN)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccountsApp]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else ""
    for running in start(tmp_path_factory.mktemp(f"reports-{request.param}"), url):
        seed_as_run(running)
        yield running


def seed_as_run(app: AccountsApp) -> None:
    """Two bulletins in November 2026: health (y-te) and news (thoi-su), on a device in each commune."""
    with app.runtime.db.session() as db:
        author = db.query(User).filter(User.username == "editor-a").one().id
        devices = {d.agent_id: d.id for d in db.query(Device)}
        broadcasts = {}
        for key, category in (("health", "y-te"), ("news", "thoi-su")):
            announcement = Announcement(area_id=app.area_ids["D"], title=f"Tin {key}", text="x", category=category,
                                        created_by=author)
            db.add(announcement)
            db.flush()
            broadcast = Broadcast(announcement_id=announcement.id, play_at=vn(1, 8).astimezone(UTC),
                                  created_by=author, area_id=app.area_ids["D"])
            db.add(broadcast)
            db.flush()
            broadcasts[key] = broadcast.id

        def event(agent: str, item: str, kind: str, at: datetime, key: str | None) -> None:
            db.add(AsRunEntry(event_id=f"e{next(_ids)}", device_id=devices[agent], item_id=item, kind=kind,
                              broadcast_id=broadcasts[key] if key else None, at=at.astimezone(UTC),
                              scheduled_at=at.astimezone(UTC), audio_sha256="0" * 64))

        event("dev-a1", "h1", "started", vn(1, 8), "health")
        event("dev-a1", "h1", "finished", vn(1, 8, 3), "health")          # 3 min, completed
        event("dev-b1", "h1", "started", vn(1, 8), "health")
        event("dev-b1", "h1", "preempted", vn(1, 8, 1), "health")         # 1 min, interrupted
        event("dev-a1", "n1", "skipped", vn(15, 6), "news")
        event("dev-a1", "n2", "failed", vn(30, 23, 30), "news")            # last evening of the month
        event("dev-a1", "x1", "started", vn(10, 6), None)                  # no known broadcast: "Khác"
        event("dev-a1", "x1", "finished", vn(10, 6, 2), None)
        event("dev-a1", "o1", "started", vn(31, 23, 30, month=10), "news")  # October in Viet Nam
        event("dev-a1", "d1", "started", vn(1, 0, 10, month=12), "news")   # 30/11 17:10 UTC, but December here


def test_months_and_dates_parse_both_ways() -> None:
    assert Month.parse("11/2026") == Month.parse("2026-11") == Month(2026, 11)
    assert Month(2026, 12).next() == Month(2027, 1) and Month(2026, 1).previous() == Month(2025, 12)
    start, end = Month(2026, 11).bounds("Asia/Ho_Chi_Minh")
    assert start.astimezone(UTC) == datetime(2026, 10, 31, 17, tzinfo=UTC)
    assert end.astimezone(UTC) == datetime(2026, 11, 30, 17, tzinfo=UTC)
    assert parse_local_date("05/09/2026") == parse_local_date("2026-09-05")


def report(app: AccountsApp, username: str, area: str, month: str = "2026-11") -> dict[str, object]:
    response = app.client.get("/api/v1/reports/monthly", params={"area_code": area, "month": month},
                              headers=app.login(username))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_monthly_report_counts_plays_minutes_and_success_by_category(app: AccountsApp) -> None:
    body = report(app, "approver", "D")
    total = body["total"]
    assert total == {"broadcasts": 2, "plays": 5, "aired": 3, "completed": 2, "interrupted": 1, "failed": 1,
                     "skipped": 1, "minutes": 6.0, "success_rate": 60.0}
    lines = {line["key"]: line["tally"] for line in body["by_category"]}  # type: ignore[attr-defined]
    assert list(lines)[:2] == ["thong-bao", "thoi-su"] and len(lines) == 8
    assert lines["y-te"]["minutes"] == 4.0 and lines["y-te"]["success_rate"] == 100.0
    assert lines["thoi-su"]["plays"] == 2 and lines["thoi-su"]["success_rate"] == 0.0
    assert lines["khac"]["minutes"] == 2.0
    assert lines["an-ninh"]["plays"] == 0 and lines["an-ninh"]["success_rate"] is None
    areas = {line["key"]: line["tally"]["plays"] for line in body["by_area"]}  # type: ignore[attr-defined]
    assert areas == {"XA": 4, "XB": 1}
    assert body["devices"] == 2 and body["month"] == "2026-11"


def test_a_commune_report_covers_the_commune_only_and_other_areas_are_hidden(app: AccountsApp) -> None:
    body = report(app, "editor-a", "XA")
    assert body["total"]["plays"] == 4 and body["devices"] == 1  # type: ignore[index]
    assert [line["key"] for line in body["by_area"]] == ["XA"]  # type: ignore[attr-defined]
    hidden = app.client.get("/api/v1/reports/monthly", params={"area_code": "XB", "month": "2026-11"},
                            headers=app.login("editor-a"))
    assert hidden.status_code == 404
    october = report(app, "approver", "D", "10/2026")
    assert october["total"]["plays"] == 1  # type: ignore[index]
    bad = app.client.get("/api/v1/reports/monthly", params={"area_code": "D", "month": "13/2026"},
                         headers=app.login("approver"))
    assert bad.status_code == 422 and "mm/yyyy" in bad.json()["detail"]


def test_csv_export_has_a_bom_and_the_filed_layout(app: AccountsApp) -> None:
    response = app.client.get("/api/v1/reports/monthly.csv", params={"area_code": "D", "month": "2026-11"},
                              headers=app.login("approver"))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert 'filename="bao-cao-D-2026-11.csv"' in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["BÁO CÁO HOẠT ĐỘNG TRUYỀN THANH CƠ SỞ"]
    assert rows[1] == ["Địa bàn", "Huyện Thử (D)"] and rows[2] == ["Tháng", "11/2026"]
    assert rows[4][0] == "Lập lúc" and rows[4][1].startswith("27/11/2026 10:00")
    totals = [r for r in rows if r and r[0] == "Tổng cộng"]
    assert len(totals) == 2 and totals[0] == ["Tổng cộng", "2", "5", "2", "1", "1", "1", "6.0", "60.0"]
    assert ["Y tế", "1", "2", "1", "1", "0", "0", "4.0", "100.0"] in rows


def test_xlsx_export_opens_with_openpyxl(app: AccountsApp) -> None:
    response = app.client.get("/api/v1/reports/monthly.xlsx", params={"area_code": "XA", "month": "2026-11"},
                              headers=app.login("xadmin"))
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0][0] == "BÁO CÁO HOẠT ĐỘNG TRUYỀN THANH CƠ SỞ"
    assert values[1][:2] == ["Địa bàn", "Xã An (XA)"] and values[2][:2] == ["Tháng", "11/2026"]
    total = next(row for row in values if row[0] == "Tổng cộng")
    assert total[1:] == [2, 4, 2, 0, 1, 1, 5.0, 50.0]


def test_as_run_filters_by_area_category_and_local_dates(app: AccountsApp) -> None:
    headers = app.login("approver")

    def items(**params: str) -> list[str]:
        response = app.client.get("/api/v1/as-run", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return sorted({e["item_id"] for e in response.json()})

    assert items(category="y-te") == ["h1"]
    assert items(category="khac") == ["x1"]
    assert items(area_code="XB") == ["h1"]
    assert items(date_from="01/11/2026", date_to="30/11/2026") == ["h1", "n1", "n2", "x1"]
    assert items(date_from="2026-12-01") == ["d1"]
    assert items(date_to="31/10/2026") == ["o1"]
    assert items(agent_id="dev-b1", category="thoi-su") == []
    for params, status in (({"category": "tin-vit"}, 422), ({"date_from": "31/02/2026"}, 422),
                           ({"date_from": "02/11/2026", "date_to": "01/11/2026"}, 422),
                           ({"area_code": "NOPE"}, 404)):
        assert app.client.get("/api/v1/as-run", params=params, headers=headers).status_code == status, params
    hidden = app.client.get("/api/v1/as-run", params={"area_code": "XB"}, headers=app.login("editor-a"))
    assert hidden.status_code == 404


def test_the_console_pages_show_the_report_and_filtered_log(app: AccountsApp) -> None:
    app.client.cookies.clear()
    assert app.client.post("/login", data={"username": "approver", "password": "mat-khau-thu-nghiem-1"},
                           follow_redirects=False).status_code == 303
    page = app.client.get("/console/reports", params={"area_code": "D", "month": "11/2026"})
    assert page.status_code == 200
    assert "<svg" in page.text and 'data-category="y-te" data-minutes="4"' in page.text
    assert 'id="total-plays">5<' in page.text and "60.0%" in page.text
    assert 'href="/api/v1/reports/monthly.xlsx?area_code=D&amp;month=2026-11"' in page.text
    assert app.client.get("/console/reports", params={"month": "hôm qua"}).status_code == 422
    log = app.client.get("/console/as-run", params={"category": "y-te", "date_from": "01/11/2026"})
    assert log.status_code == 200 and log.text.count('data-event-id="') == 4
    assert 'data-filter-extra="category=y-te&amp;date_from=01%2F11%2F2026"' in log.text
    assert app.client.get("/console/as-run", params={"date_to": "99/99/2026"}).status_code == 422
    assert "Số phút phát theo lĩnh vực, tháng 11/2026" in page.text and "4 phút" in page.text
    app.client.cookies.set("loa_lang", "en")  # the chart and the month error follow the console's language
    english = app.client.get("/console/reports", params={"area_code": "D", "month": "11/2026"}).text
    assert "Minutes aired by category, 11/2026" in english and "4 min" in english and "4 phút" not in english
    wrong = app.client.get("/console/reports", params={"month": "hôm qua"})
    assert wrong.status_code == 422 and "Invalid month: enter mm/yyyy" in wrong.text
    app.client.cookies.clear()
