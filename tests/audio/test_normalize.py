"""Tests of the Vietnamese text normaliser (audio.normalize) and its number reader (audio.vi_numbers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audio.normalize import RULES, normalize, trace
from audio.vi_numbers import read_digits, read_number, roman_to_int
from audio.vi_spelling import is_vietnamese_syllable, spell

LETTER = Path(__file__).resolve().parent.parent / "data" / "cong-van-thong-tin-co-so-2021.txt"

# Upper-case words that are ordinary Vietnamese (the signature block of the letter is in capitals).
KNOWN_CAPITAL_WORDS = {"ỦY", "BAN", "NHÂN", "DÂN", "HUYỆN", "CHỦ", "TỊCH", "PHÓ"}

NUMBERS: list[tuple[int | str, str]] = [
    # 0–10
    (0, "không"),
    (1, "một"),
    (2, "hai"),
    (3, "ba"),
    (4, "bốn"),
    (5, "năm"),
    (6, "sáu"),
    (7, "bảy"),
    (8, "tám"),
    (9, "chín"),
    (10, "mười"),
    # 11–19: mười, lăm
    (11, "mười một"),
    (14, "mười bốn"),
    (15, "mười lăm"),
    (17, "mười bảy"),
    (19, "mười chín"),
    # 20–99: mươi, mốt, tư, lăm
    (20, "hai mươi"),
    (21, "hai mươi mốt"),
    (24, "hai mươi tư"),
    (25, "hai mươi lăm"),
    (31, "ba mươi mốt"),
    (44, "bốn mươi tư"),
    (55, "năm mươi lăm"),
    (70, "bảy mươi"),
    (99, "chín mươi chín"),
    # 100–999: linh
    (100, "một trăm"),
    (101, "một trăm linh một"),
    (104, "một trăm linh bốn"),
    (105, "một trăm linh năm"),
    (110, "một trăm mười"),
    (115, "một trăm mười lăm"),
    (121, "một trăm hai mươi mốt"),
    (135, "một trăm ba mươi lăm"),
    (999, "chín trăm chín mươi chín"),
    # thousands: không trăm
    (1000, "một nghìn"),
    (1005, "một nghìn không trăm linh năm"),
    (1010, "một nghìn không trăm mười"),
    (1500, "một nghìn năm trăm"),
    (2016, "hai nghìn không trăm mười sáu"),
    (2021, "hai nghìn không trăm hai mươi mốt"),
    (2024, "hai nghìn không trăm hai mươi tư"),
    (15000, "mười lăm nghìn"),
    (100000, "một trăm nghìn"),
    (250001, "hai trăm năm mươi nghìn không trăm linh một"),
    # millions, billions, bigger
    (1_000_000, "một triệu"),
    (1_000_005, "một triệu không trăm linh năm"),
    (1_050_000, "một triệu không trăm năm mươi nghìn"),
    (21_500_000, "hai mươi mốt triệu năm trăm nghìn"),
    (2_000_000_000, "hai tỷ"),
    (5_000_000_001, "năm tỷ không trăm linh một"),
    (1_000_000_000_000, "một nghìn tỷ"),
    (1_000_500_000_000, "một nghìn tỷ năm trăm triệu"),
    (10**18, "một tỷ tỷ"),
    # strings as written in Vietnamese
    ("1.500.000", "một triệu năm trăm nghìn"),
    ("3,5", "ba phẩy năm"),
    ("0,5", "không phẩy năm"),
    ("3,25", "ba phẩy hai mươi lăm"),
    ("3,05", "ba phẩy không năm"),
    ("2,125", "hai phẩy một hai năm"),
    ("-5", "âm năm"),
    (-21, "âm hai mươi mốt"),
    ("007", "bảy"),
]


@pytest.mark.parametrize(("value", "spoken"), NUMBERS)
def test_read_number(value: int | str, spoken: str) -> None:
    assert read_number(value) == spoken


def test_read_number_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        read_number("12a")


def test_read_digits_spell_and_roman() -> None:
    assert read_digits("0912") == "không chín một hai"
    assert spell("VX") == "vê ích xì"
    assert spell("ĐL") == "đê e lờ"
    assert roman_to_int("XIII") == 13
    assert roman_to_int("IIII") is None
    assert is_vietnamese_syllable("HUYỆN") and not is_vietnamese_syllable("VPTH")


CASES: list[tuple[str, str]] = [
    # numbers in running text
    ("có 0 ca mắc", "có không ca mắc"),
    ("có 10 hộ", "có mười hộ"),
    ("có 15 hộ", "có mười lăm hộ"),
    ("có 21 hộ", "có hai mươi mốt hộ"),
    ("có 105 hộ", "có một trăm linh năm hộ"),
    ("có 1.234 hộ", "có một nghìn hai trăm ba mươi tư hộ"),
    ("kinh phí 1.500.000 đồng", "kinh phí một triệu năm trăm nghìn đồng"),
    ("ngân sách 1.250 tỷ đồng", "ngân sách một nghìn hai trăm năm mươi tỷ đồng"),
    ("mức 1,5 tỷ đồng", "mức một phẩy năm tỷ đồng"),
    ("dân số 1.234.567 người", "dân số một triệu hai trăm ba mươi tư nghìn năm trăm sáu mươi bảy người"),
    ("có 10 000 người", "có mười nghìn người"),
    ("gồm 03 đồng chí", "gồm ba đồng chí"),
    ("nhiệt độ -5 độ", "nhiệt độ âm năm độ"),
    ("giảm -3,5", "giảm âm ba phẩy năm"),
    ("mục 1.2", "mục một chấm hai"),
    ("mã số 0123", "mã số không một hai ba"),
    ("5 năm thực hiện", "năm năm thực hiện"),
    ("năm 2021", "năm hai nghìn không trăm hai mươi mốt"),
    # dates
    ("ngày 20/01/2020", "ngày hai mươi tháng một năm hai nghìn không trăm hai mươi"),
    ("ngày 05/9/2016", "ngày năm tháng chín năm hai nghìn không trăm mười sáu"),
    ("ngày 14/5/2020", "ngày mười bốn tháng năm năm hai nghìn không trăm hai mươi"),
    ("ngày 24/4/2021", "ngày hai mươi tư tháng tư năm hai nghìn không trăm hai mươi mốt"),
    ("ngày 01/12/2021", "ngày một tháng mười hai năm hai nghìn không trăm hai mươi mốt"),
    ("hạn chót 31/12/2021", "hạn chót ngày ba mươi mốt tháng mười hai năm hai nghìn không trăm hai mươi mốt"),
    ("ngày 01-02-2021", "ngày một tháng hai năm hai nghìn không trăm hai mươi mốt"),
    ("ngày 01.02.2021", "ngày một tháng hai năm hai nghìn không trăm hai mươi mốt"),
    ("mồng 5/9", "mồng năm tháng chín"),
    ("khai giảng 5/9", "khai giảng ngày năm tháng chín"),
    ("ngày 2/9", "ngày hai tháng chín"),
    ("tháng 02/2021", "tháng hai năm hai nghìn không trăm hai mươi mốt"),
    ("trong 04/2021", "trong tháng tư năm hai nghìn không trăm hai mươi mốt"),
    ("tháng 5-2021", "tháng năm năm hai nghìn không trăm hai mươi mốt"),
    ("ngày 12 tháng 02 năm 2021", "ngày mười hai tháng hai năm hai nghìn không trăm hai mươi mốt"),
    ("ngày tháng 02 năm 2021", "ngày tháng hai năm hai nghìn không trăm hai mươi mốt"),
    ("tháng 4", "tháng tư"),
    ("tháng 1", "tháng một"),
    ("ngày 05", "ngày năm"),
    ("quý 2/2021", "quý hai năm hai nghìn không trăm hai mươi mốt"),
    # times
    ("lúc 17h30", "lúc mười bảy giờ ba mươi phút"),
    ("lúc 17:30", "lúc mười bảy giờ ba mươi phút"),
    ("lúc 7h", "lúc bảy giờ"),
    ("lúc 7h00", "lúc bảy giờ"),
    ("lúc 7h05", "lúc bảy giờ năm phút"),
    ("lúc 8:00", "lúc tám giờ"),
    ("lúc 5 giờ 30", "lúc năm giờ ba mươi"),
    ("lúc 5 giờ 05 phút", "lúc năm giờ năm phút"),
    ("mở cửa 24h", "mở cửa hai mươi tư giờ"),
    # ranges
    (
        "nhiệm kỳ 2021 - 2026",
        "nhiệm kỳ hai nghìn không trăm hai mươi mốt đến hai nghìn không trăm hai mươi sáu",
    ),
    (
        "giai đoạn 2021-2026",
        "giai đoạn hai nghìn không trăm hai mươi mốt đến hai nghìn không trăm hai mươi sáu",
    ),
    ("từ 12-17 tuổi", "từ mười hai đến mười bảy tuổi"),
    ("mưa 150-200mm", "mưa một trăm năm mươi đến hai trăm mi li mét"),
    ("từ 24/01 đến 26/01", "từ ngày hai mươi tư tháng một đến ngày hai mươi sáu tháng một"),
    ("từ 24/01 - 26/01", "từ ngày hai mươi tư tháng một đến ngày hai mươi sáu tháng một"),
    ("từ 7h30 - 11h", "từ bảy giờ ba mươi phút đến mười một giờ"),
    ("nhiệt độ 25–30°C", "nhiệt độ hai mươi lăm đến ba mươi độ xê"),
    # official document numbers
    ("theo 135/QĐ-TTg", "theo số một trăm ba mươi lăm quyết định thủ tướng chính phủ"),
    ("Quyết định số 135/QĐ-TTg", "Quyết định số một trăm ba mươi lăm quyết định thủ tướng chính phủ"),
    (
        "Văn bản số 19/STTTT-TTBCXB",
        "Văn bản số mười chín sở thông tin và truyền thông thông tin báo chí xuất bản",
    ),
    ("Chỉ thị số 07-CT/TW", "Chỉ thị số không bảy chỉ thị trung ương"),
    ("Kết luận số 01-KL/TW", "Kết luận số không một kết luận trung ương"),
    (
        "Nghị định số 49/2024/NĐ-CP",
        "Nghị định số bốn mươi chín năm hai nghìn không trăm hai mươi tư nghị định chính phủ",
    ),
    (
        "Quyết định số 52/2016/QĐ-TTg",
        "Quyết định số năm mươi hai năm hai nghìn không trăm mười sáu quyết định thủ tướng chính phủ",
    ),
    ("Kế hoạch số 51/KH-UBND", "Kế hoạch số năm mươi mốt kế hoạch ủy ban nhân dân"),
    ("Số: /UBND-TH", "Số: ủy ban nhân dân tổng hợp"),
    ("Số: 123/TB-VP", "Số: một trăm hai mươi ba thông báo văn phòng"),
    (
        "Thông tư số 01/2021/TT-BTTTT",
        "Thông tư số không một năm hai nghìn không trăm hai mươi mốt thông tư bộ thông tin và truyền thông",
    ),
    (
        "Luật số 24/2018/QH14",
        "Luật số hai mươi tư năm hai nghìn không trăm mười tám quốc hội mười bốn",
    ),
    ("Công văn số 25/XYZ-UBND", "Công văn số hai mươi lăm ích xì i dài dét ủy ban nhân dân"),
    ("theo 12/HD-SYT", "theo số mười hai hướng dẫn sở y tế"),
    # abbreviations
    ("UBND huyện", "Ủy ban nhân dân huyện"),
    ("của UBND huyện", "của ủy ban nhân dân huyện"),
    ("bầu cử HĐND các cấp", "bầu cử hội đồng nhân dân các cấp"),
    ("Ủy ban MTTQ xã", "Ủy ban mặt trận tổ quốc xã"),
    ("trường THCS và THPT", "trường trung học cơ sở và trung học phổ thông"),
    ("Sở TT&TT", "Sở thông tin và truyền thông"),
    ("Sở VH-TT&DL", "Sở văn hóa, thể thao và du lịch"),
    ("phòng VHTT huyện", "phòng văn hóa thông tin huyện"),
    ("phòng TTBCXB", "phòng thông tin báo chí xuất bản"),
    ("thành viên BCH", "thành viên ban chấp hành"),
    ("các PCT UBND huyện", "các phó chủ tịch ủy ban nhân dân huyện"),
    ("gửi CT, PCT", "gửi chủ tịch, phó chủ tịch"),
    ("Chánh VP", "Chánh văn phòng"),
    ("Phó VPTH", "Phó văn phòng tổng hợp"),
    ("Lưu: VT", "Lưu: văn thư"),
    ("Chuyên viên VX", "Chuyên viên văn xã"),
    ("theo NĐ-CP", "theo nghị định chính phủ"),
    ("V/v triển khai", "Về việc triển khai"),
    ("nội dung v/v bầu cử", "nội dung về việc bầu cử"),
    ("đ/c Chủ tịch", "đồng chí Chủ tịch"),
    ("TM. ỦY BAN NHÂN DÂN", "Thay mặt ỦY BAN NHÂN DÂN"),
    ("KT. CHỦ TỊCH", "Ký thay CHỦ TỊCH"),
    ("TL. GIÁM ĐỐC", "Thừa lệnh GIÁM ĐỐC"),
    ("tại TP. Tuyên Quang", "tại thành phố Tuyên Quang"),
    ("tại TP.HCM", "tại thành phố Hồ Chí Minh"),
    ("phòng chống dịch COVID-19", "phòng chống dịch cô vít mười chín"),
    ("cúm H5N1", "cúm hát năm en nờ một"),
    ("mạng 5G", "mạng năm giê"),
    ("đài VTV", "đài vê tê vê"),
    ("ký hiệu XYZ", "ký hiệu ích xì i dài dét"),
    ("sóng FM 99,5 MHz", "sóng ép em mờ chín mươi chín phẩy năm mê ga héc"),
    ("các loại v.v.", "các loại vân vân."),
    # units
    ("nhiệt độ 30°C", "nhiệt độ ba mươi độ xê"),
    ("nhiệt độ 30 độ C", "nhiệt độ ba mươi độ xê"),
    ("lượng mưa 50mm", "lượng mưa năm mươi mi li mét"),
    ("cao 120 cm", "cao một trăm hai mươi xăng ti mét"),
    ("dài 5 km", "dài năm ki lô mét"),
    ("tốc độ 60 km/h", "tốc độ sáu mươi ki lô mét trên giờ"),
    ("tốc độ 60km/h", "tốc độ sáu mươi ki lô mét trên giờ"),
    ("diện tích 5 ha", "diện tích năm héc ta"),
    ("nhà 100 m2", "nhà một trăm mét vuông"),
    ("nhà 50m²", "nhà năm mươi mét vuông"),
    ("bê tông 3 m³", "bê tông ba mét khối"),
    ("nặng 20 kg", "nặng hai mươi ki lô gam"),
    ("đạt 25%", "đạt hai mươi lăm phần trăm"),
    ("tăng 0,25%", "tăng không phẩy hai mươi lăm phần trăm"),
    ("giá 100.000đ", "giá một trăm nghìn đồng"),
    ("giá 100.000 đồng", "giá một trăm nghìn đồng"),
    ("giá 500.000 VNĐ", "giá năm trăm nghìn đồng"),
    ("giá 15.000 đồng/kg", "giá mười lăm nghìn đồng trên ki lô gam"),
    ("điện 220V", "điện hai trăm hai mươi vôn"),
    ("cự ly 100m", "cự ly một trăm mét"),
    # Roman numerals
    ("Đại hội XIII của Đảng", "Đại hội mười ba của Đảng"),
    ("Quốc hội khóa XV", "Quốc hội khóa mười lăm"),
    ("Quốc hội khoá XIV", "Quốc hội khoá mười bốn"),
    ("Đại hội Đảng toàn quốc lần thứ XIII", "Đại hội Đảng toàn quốc lần thứ mười ba"),
    ("lần thứ IV", "lần thứ tư"),
    ("lần thứ I", "lần thứ nhất"),
    ("thế kỷ XXI", "thế kỷ hai mươi mốt"),
    ("trong Quý I", "trong Quý một"),
    ("trong Quý I/2021", "trong Quý một năm hai nghìn không trăm hai mươi mốt"),
    ("xem Chương IV", "xem Chương bốn"),
    ("xem Phần II", "xem Phần hai"),
    ("xem Mục III", "xem Mục ba"),
    ("thứ 2", "thứ hai"),
    ("thứ 4", "thứ tư"),
    ("lần thứ 1", "lần thứ nhất"),
    # phones and hotlines
    ("gọi 0912 345 678", "gọi không chín một hai, ba bốn năm, sáu bảy tám"),
    ("gọi 0912.345.678", "gọi không chín một hai, ba bốn năm, sáu bảy tám"),
    ("gọi 0912345678", "gọi không chín một hai, ba bốn năm, sáu bảy tám"),
    ("gọi 0207.3822.456", "gọi không hai không bảy, ba tám hai hai, bốn năm sáu"),
    ("gọi +84 912 345 678", "gọi cộng tám bốn, chín một hai, ba bốn năm, sáu bảy tám"),
    ("đường dây nóng 1900 1234", "đường dây nóng một chín không không, một hai ba bốn"),
    ("tổng đài 19001234", "tổng đài một chín không không, một hai ba bốn"),
    ("gọi 113", "gọi một một ba"),
    # punctuation, list markers, quotes
    ("nghiêm túc thực hiện./.", "nghiêm túc thực hiện."),
    ("Kính gửi:\n- Phòng Văn hóa;\n- Ủy ban nhân dân xã.", "Kính gửi: Phòng Văn hóa; Ủy ban nhân dân xã."),
    ("Yêu cầu:\n\n1. Tuyên truyền\n\n2. Báo cáo", "Yêu cầu: Tuyên truyền. Báo cáo"),
    ("a) Thứ nhất;\nb) Thứ hai.", "Thứ nhất; Thứ hai."),
    ("cụ thể:\n+ Tuyên truyền;\n+ Vận động.", "cụ thể: Tuyên truyền; Vận động."),
    ("về “Đẩy mạnh công tác” và", "về, Đẩy mạnh công tác, và"),
    ("Như trên (Thực hiện);", "Như trên, Thực hiện;"),
    ("kinh tế - xã hội", "kinh tế, xã hội"),
    ("V/v triển khai\nthông tin cơ sở", "Về việc triển khai thông tin cơ sở"),
    ("hai   khoảng\ttrắng", "hai khoảng trắng"),
    ("Có không?  Có!", "Có không? Có!"),
    ("tỷ lệ 3/4", "tỷ lệ ba phần bốn"),
    ("2/3 số hộ", "hai phần ba số hộ"),
    ("đạt 15/20 xã", "đạt mười lăm trên hai mươi xã"),
    ("lượt/ngày", "lượt trên ngày"),
    ("Nam/Nữ", "Nam hoặc Nữ"),
    ("và/hoặc", "và hoặc"),
    ("Khu vực A & B", "Khu vực A và B"),
    ("email: loa@tuyenquang.gov.vn", "email: loa a còng tuyenquang chấm gov chấm vn"),
    # headings in capitals stay as words; sentences from real announcements
    ("I. MỤC ĐÍCH, YÊU CẦU\n1. Mục đích", "MỤC ĐÍCH, YÊU CẦU. Mục đích"),
    (
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM\nĐộc lập - Tự do - Hạnh phúc",
        "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM. Độc lập, Tự do, Hạnh phúc",
    ),
    (
        "Phát từ ngày 24/01 đến 26/01/2021, mỗi ngày 02 lần vào 6h30 và 17h.",
        "Phát từ ngày hai mươi tư tháng một đến ngày hai mươi sáu tháng một năm hai nghìn không trăm "
        "hai mươi mốt, mỗi ngày hai lần vào sáu giờ ba mươi phút và mười bảy giờ.",
    ),
    (
        "Dự báo: mưa 50-100mm, gió cấp 6-7.",
        "Dự báo: mưa năm mươi đến một trăm mi li mét, gió cấp sáu đến bảy.",
    ),
    (
        "Liên hệ: Đ/c Nguyễn Văn A, SĐT: 0912.345.678.",
        "Liên hệ: đồng chí Nguyễn Văn A, số điện thoại: không chín một hai, ba bốn năm, sáu bảy tám.",
    ),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def _normalized_letter() -> str:
    return normalize(LETTER.read_text(encoding="utf-8"))


def test_letter_has_no_digits_slashes_or_unknown_acronyms() -> None:
    spoken = _normalized_letter()
    assert not re.search(r"[0-9]", spoken)
    assert "/" not in spoken
    words = re.findall(r"[^\W\d_]+", spoken)
    capitalised = {w for w in words if sum(ch.isupper() for ch in w) >= 2}
    assert capitalised <= KNOWN_CAPITAL_WORDS
    assert "  " not in spoken and "\n" not in spoken


def test_letter_key_phrases() -> None:
    spoken = _normalized_letter()
    assert spoken.startswith("Số: ủy ban nhân dân tổng hợp.")
    assert (
        "Quyết định số một trăm ba mươi lăm quyết định thủ tướng chính phủ "
        "ngày hai mươi tháng một năm hai nghìn không trăm hai mươi" in spoken
    )
    assert "nhiệm kỳ hai nghìn không trăm hai mươi đến hai nghìn không trăm hai mươi lăm" in spoken
    assert (
        "Chỉ thị số không bảy chỉ thị trung ương ngày năm tháng chín năm hai nghìn không trăm mười sáu"
        in spoken
    )
    assert "Nghị quyết Đại hội mười ba của Đảng" in spoken
    assert (
        "Về việc triển khai thực hiện công tác thông tin cơ sở năm hai nghìn không trăm hai mươi mốt."
        in spoken
    )
    assert "nghiêm túc triển khai thực hiện. Nơi nhận:" in spoken
    assert "Thay mặt ỦY BAN NHÂN DÂN HUYỆN. Ký thay CHỦ TỊCH. PHÓ CHỦ TỊCH. Phạm Thị Nhị Bình" in spoken


def test_empty_and_blank_text() -> None:
    assert normalize("") == ""
    assert normalize(" \n\t ") == ""


def test_quyet_dinh_sentence() -> None:
    spoken = normalize("Quyết định số 135/QĐ-TTg ngày 20/01/2020")
    assert spoken.startswith("Quyết định số một trăm ba mươi lăm ")
    assert spoken.endswith("ngày hai mươi tháng một năm hai nghìn không trăm hai mươi")
    assert "số số" not in spoken


def test_nhiem_ky() -> None:
    assert (
        normalize("nhiệm kỳ 2020 - 2025")
        == "nhiệm kỳ hai nghìn không trăm hai mươi đến hai nghìn không trăm hai mươi lăm"
    )


def test_normalize_is_idempotent_on_the_letter() -> None:
    once = _normalized_letter()
    assert normalize(once) == once


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize_is_idempotent_on_cases(text: str, spoken: str) -> None:
    assert normalize(spoken) == spoken


def test_lexicon_adds_and_overrides() -> None:
    assert normalize("tỉnh TQ", {"TQ": "Tuyên Quang"}) == "tỉnh Tuyên Quang"
    assert normalize("UBND tỉnh", {"UBND": "Ủy ban"}) == "Ủy ban tỉnh"
    # whole words, case-sensitive, longest key first
    lexicon = {"TQ": "Tuyên Quang", "TQ1": "xóm Một", "Na": "Nà"}
    assert normalize("TQ1 và TQ, na", lexicon) == "xóm Một và Tuyên Quang, na"
    assert normalize("TQX", {"TQ": "Tuyên Quang"}) == "Tê quy ích xì"


def test_rules_are_named_and_documented() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert all(r.doc and "\n" not in r.doc for r in RULES)
    steps = trace("ngày 20/01/2020")
    assert [name for name, _ in steps] == ["full_dates"]
