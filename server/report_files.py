"""The monthly report as a province files it: CSV (UTF-8 with BOM, for Excel), XLSX, and an SVG chart.

Layout of both files: title, area, month, generated at, the table by category with its totals row, then
the table by area (the area's direct subdivisions) with its totals row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from html import escape
from zoneinfo import ZoneInfo

from server.console.i18n import translate
from server.reports import MonthlyReport, ReportLine, Tally

TITLE = "BÁO CÁO HOẠT ĐỘNG TRUYỀN THANH CƠ SỞ"
HEADERS = ["Số bản tin", "Lượt phát", "Phát trọn vẹn", "Bị ngắt giữa chừng", "Lỗi", "Bỏ qua", "Số phút phát",
           "Tỷ lệ thành công (%)"]
TOTAL_LABEL = "Tổng cộng"
AREA_KIND_LABELS = {"province": "Tỉnh", "district": "Huyện", "commune": "Xã", "village": "Thôn", "group": "Tổ"}


def _generated(report: MonthlyReport) -> str:
    local = report.generated_at.astimezone(ZoneInfo(report.timezone))
    return local.strftime("%d/%m/%Y %H:%M")


def _numbers(tally: Tally) -> list[int | float | str]:
    rate = tally.success_rate
    return [tally.broadcasts, tally.plays, tally.completed, tally.interrupted, tally.failed, tally.skipped,
            tally.minutes, "" if rate is None else rate]


def _header_lines(report: MonthlyReport) -> list[list[str]]:
    return [[TITLE], ["Địa bàn", f"{report.area_name} ({report.area_code})"], ["Tháng", report.month.label],
            ["Số cụm loa", str(report.devices)], ["Lập lúc", f"{_generated(report)} (giờ Việt Nam)"]]


def _table(first: str, lines: Iterable[ReportLine], total: Tally) -> list[list[object]]:
    rows: list[list[object]] = [[first, *HEADERS]]
    rows += [[line.label, *_numbers(line.tally)] for line in lines]
    rows.append([TOTAL_LABEL, *_numbers(total)])
    return rows


def file_stem(report: MonthlyReport) -> str:
    return f"bao-cao-{report.area_code}-{report.month.iso}"


def to_csv(report: MonthlyReport) -> bytes:
    """UTF-8 with a byte-order mark: without it Excel shows Vietnamese as mojibake."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(_header_lines(report))
    writer.writerow([])
    writer.writerow(["Theo lĩnh vực"])
    writer.writerows(_table("Lĩnh vực", report.by_category, report.total))
    writer.writerow([])
    writer.writerow(["Theo địa bàn"])
    writer.writerows(_table("Địa bàn", report.by_area, report.total))
    return out.getvalue().encode("utf-8-sig")


def to_xlsx(report: MonthlyReport) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"Báo cáo {report.month.month:02d}-{report.month.year}"
    width = len(HEADERS) + 1
    sheet.append([TITLE])
    sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
    sheet["A1"].font = Font(bold=True, size=14)
    sheet["A1"].alignment = Alignment(horizontal="center")
    for label, value in _header_lines(report)[1:]:
        sheet.append([label, value])
        sheet.cell(row=sheet.max_row, column=1).font = Font(bold=True)
    thin = Side(style="thin", color="999999")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    head_fill = PatternFill("solid", fgColor="DCE6F1")

    def table(caption: str, rows: list[list[object]]) -> None:
        sheet.append([])
        sheet.append([caption])
        sheet.cell(row=sheet.max_row, column=1).font = Font(bold=True, size=12)
        for index, row in enumerate(rows):
            sheet.append(row)
            line = sheet.max_row
            for column in range(1, width + 1):
                cell = sheet.cell(row=line, column=column)
                cell.border = border
                if index == 0:
                    cell.font = Font(bold=True)
                    cell.fill = head_fill
                    cell.alignment = Alignment(wrap_text=True, vertical="center", horizontal="center")
                elif index == len(rows) - 1:
                    cell.font = Font(bold=True)
                if column == width - 1 and index > 0:
                    cell.number_format = "0.0"

    table("Theo lĩnh vực", _table("Lĩnh vực", report.by_category, report.total))
    table("Theo địa bàn", _table("Địa bàn", report.by_area, report.total))
    sheet.column_dimensions["A"].width = 34
    for column in range(2, width + 1):
        sheet.column_dimensions[get_column_letter(column)].width = 14
    sheet.page_setup.orientation = "landscape"
    sheet.page_setup.fitToWidth = 1
    book.properties.title = f"{TITLE} — {report.area_name} — {report.month.label}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def chart_svg(report: MonthlyReport) -> str:
    """Minutes aired by category as horizontal bars, with each bar's success rate (no script, no CDN).

    Worded in the console's current language (`server.console.i18n.speaking`), like the page around it.
    """
    lines = report.by_category
    bar_h, gap, label_w, bar_w, value_w = 22, 8, 190, 420, 150
    height = len(lines) * (bar_h + gap) + gap + 20
    width = label_w + bar_w + value_w
    top = max((line.tally.minutes for line in lines), default=0.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="report-chart" '
             f'role="img" aria-labelledby="chart-title"><title id="chart-title">'
             f'{escape(translate("Số phút phát theo lĩnh vực, tháng %(month)s", month=report.month.label))}'
             f'</title>']
    for index, line in enumerate(lines):
        y = gap + index * (bar_h + gap)
        length = 0 if line.tally.minutes <= 0 else max(2.0, bar_w * line.tally.minutes / top)
        rate = line.tally.success_rate
        value = translate("%(minutes)s phút", minutes=f"{line.tally.minutes:g}") + (
            f" · {rate:g}%" if rate is not None else "")
        parts.append(
            f'<g class="bar" data-category="{escape(line.key)}" data-minutes="{line.tally.minutes:g}">'
            f'<text x="{label_w - 8}" y="{y + bar_h * 0.7:.1f}" text-anchor="end" font-size="13">'
            f'{escape(translate(line.label))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{length:.1f}" height="{bar_h}" rx="3" fill="#0b5cad"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="12" fill="#1d2630">'
            f'{escape(value)}</text></g>')
    axis_y = height - 16
    parts.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + bar_w}" y2="{axis_y}" stroke="#9aa7b3"/>'
                 f'<text x="{label_w}" y="{height - 2}" font-size="11" fill="#5d6b78">0</text>'
                 f'<text x="{label_w + bar_w}" y="{height - 2}" font-size="11" fill="#5d6b78" text-anchor="end">'
                 f'{escape(translate("%(minutes)s phút", minutes=f"{top:g}"))}</text></svg>')
    return "".join(parts)


__all__ = ["AREA_KIND_LABELS", "HEADERS", "TITLE", "chart_svg", "file_stem", "to_csv", "to_xlsx"]
