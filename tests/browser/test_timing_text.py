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


def test_the_timing_reads_in_english_when_the_page_is_english() -> None:
    from server.console.i18n import speaking

    slot = Broadcast(timing="recurring", start_local="2026-12-01T05:30", rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
                     valid_until="2027-01-31", holiday_rule="skip", exdates=["2026-12-25"], slot_minutes=30,
                     play_at=datetime(2026, 11, 30, 22, 30, tzinfo=UTC), repeat_every_min=60, repeat_count=2)
    with speaking("en"):
        assert describe_timing(slot) == ("05:30 Monday to Friday, from 01/12/2026 until 31/01/2027 (not on holidays), "
                                         "except 25/12/2026; repeated every 60 minutes, 2 times; 30-minute slot")
        assert describe_rrule("FREQ=WEEKLY;BYDAY=MO,WE,SU") == "on Monday, Wednesday, Sunday"
    assert describe_timing(slot).startswith("05:30 các ngày thứ Hai–thứ Sáu")
