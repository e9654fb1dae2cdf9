"""How the console words a broadcast's timing (no browser needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from server.console.schedule_routes import describe_rrule, describe_timing
from server.models import Broadcast


def test_common_rules_read_in_vietnamese() -> None:
    assert describe_rrule("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR") == "các ngày thứ Hai–thứ Sáu"
    assert describe_rrule("FREQ=DAILY") == "hằng ngày"
    assert describe_rrule("FREQ=WEEKLY;BYDAY=SU,MO,TU,WE,TH,FR,SA") == "hằng ngày"
    assert describe_rrule("FREQ=WEEKLY;BYDAY=MO,WE,SU") == "các ngày thứ Hai, thứ Tư, Chủ nhật"
    assert describe_rrule("FREQ=MONTHLY;BYMONTHDAY=1") == "FREQ=MONTHLY;BYMONTHDAY=1"


def test_a_recurring_slot_and_a_once_broadcast() -> None:
    slot = Broadcast(timing="recurring", start_local="2026-12-01T05:30", rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
                     valid_until="2027-01-31", holiday_rule="skip", exdates=["2026-12-25"], slot_minutes=30,
                     play_at=datetime(2026, 11, 30, 22, 30, tzinfo=UTC))
    assert describe_timing(slot) == ("05:30 các ngày thứ Hai–thứ Sáu, từ 01/12/2026 đến 31/01/2027 (nghỉ ngày lễ), "
                                     "trừ 25/12/2026; khung 30 phút")
    once = Broadcast(timing="once", play_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC), rrule="", exdates=[],
                     repeat_every_min=120, repeat_count=3)
    assert describe_timing(once) == "01/12/2026 17:00; lặp lại mỗi 120 phút, 3 lần"
