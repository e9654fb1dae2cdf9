"""Monthly reports per area: JSON, CSV (UTF-8 with BOM) and XLSX."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.api.admin_schemas import MonthlyReportPublic, ReportLinePublic, TallyPublic
from server.api.deps import CurrentPrincipal, DbSession, RuntimeDep
from server.report_files import file_stem, to_csv, to_xlsx
from server.reports import Month, MonthlyReport, Tally, monthly_report

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

AreaCode = Annotated[str, Query(min_length=1, max_length=32)]
MonthText = Annotated[str, Query(min_length=6, max_length=7, description="yyyy-mm (or mm/yyyy)")]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def tally_public(t: Tally) -> TallyPublic:
    return TallyPublic(broadcasts=t.broadcasts, plays=t.plays, aired=t.aired, completed=t.completed,
                       interrupted=t.interrupted, failed=t.failed, skipped=t.skipped, minutes=t.minutes,
                       success_rate=t.success_rate)


def report_public(r: MonthlyReport) -> MonthlyReportPublic:
    return MonthlyReportPublic(
        area_code=r.area_code, area_name=r.area_name, month=r.month.iso, generated_at=r.generated_at,
        timezone=r.timezone, devices=r.devices, total=tally_public(r.total),
        by_category=[ReportLinePublic(key=x.key, label=x.label, tally=tally_public(x.tally)) for x in r.by_category],
        by_area=[ReportLinePublic(key=x.key, label=x.label, tally=tally_public(x.tally)) for x in r.by_area])


def build(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep, area_code: str,
          month: str) -> MonthlyReport:
    timezone = runtime.settings.timezone or "Asia/Ho_Chi_Minh"
    return monthly_report(db, principal, area_code, Month.parse(month), now=runtime.now(), timezone=timezone)


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


@router.get("/monthly")
def get_monthly(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep, area_code: AreaCode,
                month: MonthText) -> MonthlyReportPublic:
    return report_public(build(db, principal, runtime, area_code, month))


@router.get("/monthly.csv", response_class=Response)
def get_monthly_csv(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep, area_code: AreaCode,
                    month: MonthText) -> Response:
    report = build(db, principal, runtime, area_code, month)
    return Response(to_csv(report), media_type="text/csv; charset=utf-8",
                    headers=_attachment(f"{file_stem(report)}.csv"))


@router.get("/monthly.xlsx", response_class=Response)
def get_monthly_xlsx(db: DbSession, principal: CurrentPrincipal, runtime: RuntimeDep, area_code: AreaCode,
                     month: MonthText) -> Response:
    report = build(db, principal, runtime, area_code, month)
    return Response(to_xlsx(report), media_type=XLSX_TYPE, headers=_attachment(f"{file_stem(report)}.xlsx"))
