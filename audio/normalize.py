"""Vietnamese text normalisation for text-to-speech: turns a written announcement into its spoken form.

`normalize(text, lexicon)` first applies the administrator's lexicon (whole words, case-sensitive,
longest key first), then every rule of `RULES` in order. Each rule is a small named function with a
regular expression and a one-line docstring; to add one, write it with `@rule(pattern)` and put it in
`RULES` at the right place (`trace()` shows what each rule did to a text). Word lists live in
`audio.vi_dictionary`, number reading in `audio.vi_numbers`.

Reading style for official document numbers: "[số] <number> [năm <year>] <document type> <issuer>";
"/" and "-" are not read, and "số" is added unless the text already says "số" just before:
  "Quyết định số 52/2016/QĐ-TTg" → "Quyết định số năm mươi hai năm hai nghìn không trăm mười sáu
  quyết định thủ tướng chính phủ"; "theo 07-CT/TW" → "theo số không bảy chỉ thị trung ương".
A number with a leading zero is a code and is read digit by digit (so are phone numbers).
Dates read "ngày D tháng M năm Y" ("ngày" added when missing, month 4 → "tư"); ranges read "đến".
The output has no digits and no "/"; acronyms are expanded or spelled; sentence punctuation is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

from audio.vi_dictionary import (
    ABBREVIATIONS,
    DOCUMENT_TYPES,
    ISSUING_BODIES,
    PER_WORDS,
    PUNCTUATED_ABBREVIATIONS,
    ROMAN_CONTEXT_WORDS,
    SYMBOLS,
    TITLE_ABBREVIATIONS,
    UNITS,
)
from audio.vi_numbers import (
    read_code_number,
    read_digits,
    read_integer,
    read_month,
    read_number,
    read_ordinal,
    read_written_number,
    roman_to_int,
)
from audio.vi_rules import Rule, rule
from audio.vi_spelling import UPPER_LETTERS, has_vietnamese_letters, is_vietnamese_syllable, spell

__all__ = ["RULES", "Rule", "normalize", "read_number", "rule", "trace"]

UPPER = "A-Z" + UPPER_LETTERS  # for character classes


def _alternation(keys: Iterable[str]) -> str:
    """Regex alternation of literal keys, longest first (so "TT&TT" wins over "TT")."""
    words = sorted((k for k in keys if k), key=len, reverse=True)
    return "|".join(re.escape(w) for w in words)


def _preceded_by(match: re.Match[str], words_regex: str) -> bool:
    """True if the text just before the match ends with one of the words (case-insensitive)."""
    before = match.string[max(0, match.start() - 40) : match.start()]
    return re.search(rf"(?i)(?<![\w])(?:{words_regex})[ \t]*:?[ \t]*$", before) is not None


def _valid_day_month(day: int, month: int) -> bool:
    return 1 <= day <= 31 and 1 <= month <= 12


def _lookup(token: str, tables: tuple[Mapping[str, str], ...]) -> str | None:
    for table in tables:
        if token in table:
            return table[token]
    return None


_IN_TEXT = (ABBREVIATIONS, ISSUING_BODIES, DOCUMENT_TYPES)


def _read_symbol(symbol: str) -> str:
    """Read a document symbol such as "QĐ-TTg" or "STTTT-TTBCXB" or "QH14", part by part."""
    spoken: list[str] = []
    for i, part in enumerate(symbol.split("-")):
        letters = part.rstrip("0123456789")
        digits = part[len(letters) :]
        tables = (DOCUMENT_TYPES, ISSUING_BODIES, ABBREVIATIONS) if i == 0 else _IN_TEXT[1:] + _IN_TEXT[:1]
        spoken.append(_lookup(letters, tables) or spell(letters))
        if digits:
            spoken.append(read_code_number(digits))
    return " ".join(spoken)


def _padded(match: re.Match[str], spoken: str) -> str:
    """Add spaces around `spoken` where the match touches a letter or digit."""
    text, start, end = match.string, match.start(), match.end()
    left = " " if start > 0 and text[start - 1].isalnum() else ""
    right = " " if end < len(text) and text[end].isalnum() else ""
    return f"{left}{spoken}{right}"


def _is_caps_syllable(word: str) -> bool:
    return len(word) >= 2 and word.isupper() and is_vietnamese_syllable(word)


def _in_caps_heading(match: re.Match[str]) -> bool:
    """True if a neighbouring word on the same line is also an upper-case Vietnamese syllable."""
    text = match.string
    before = re.search(r"([^\W\d_]+)[ \t]+$", text[max(0, match.start() - 40) : match.start()])
    after = re.match(r"[ \t]+([^\W\d_]+)", text[match.end() : match.end() + 40])
    return any(m is not None and _is_caps_syllable(m.group(1)) for m in (before, after))


# --- rules, in the order they run ------------------------------------------------------------------

_MARKER = r"(?:[-+*•–]|\d{1,2}(?:\.\d{1,2})*[.)]|[a-zđ]\)|[IVX]{1,4}[.)])[ \t]+"


@rule(r"[ \t]*\./\.")
def end_of_document_mark(m: re.Match[str]) -> str:
    """Replace the "./." that closes an official document by a full stop."""
    return "."


@rule(rf"(?<=[^\s.,;:!?])[ \t]*(?=\n[ \t]*(?:\n|{_MARKER}|[{UPPER}]))")
def line_breaks_end_sentences(m: re.Match[str]) -> str:
    """End a line with "." when it lacks punctuation and a blank line, list item or capital follows."""
    return "."


@rule(rf"^[ \t]*{_MARKER}", re.MULTILINE)
def list_markers(m: re.Match[str]) -> str:
    """Drop list markers at the start of a line ("- ", "+ ", "1. ", "1.2. ", "a) ", "II. ")."""
    return ""


@rule(rf"(?<![\w/.])(?:{_alternation(PUNCTUATED_ABBREVIATIONS)})(?![\w/])")
def punctuated_abbreviations(m: re.Match[str]) -> str:
    """Expand abbreviations written with "/" or "." ("V/v" → "về việc", "TP.HCM", "v.v.")."""
    spoken = PUNCTUATED_ABBREVIATIONS[m.group(0)]
    rest = m.string[m.end() :]
    if m.group(0).endswith(".") and re.match(rf"[ \t]*(?:$|\n|[{UPPER}])", rest):
        spoken += "."
    return spoken


@rule(rf"(?<![\w.])({_alternation(TITLE_ABBREVIATIONS)})\.(?=[ \t]*[{UPPER}])")
def title_abbreviations(m: re.Match[str]) -> str:
    """Expand signature formulas and titles before a capital ("TM." → "thay mặt", "KT." → "ký thay")."""
    return TITLE_ABBREVIATIONS[m.group(1)]


@rule(r"(?<![\w.,+])(?:\+84[ .-]?|0)\d{2,3}(?:[ .-]?\d{2,4}){2,3}(?![\w]|[.,]\d)")
def phone_numbers(m: re.Match[str]) -> str:
    """Read phone numbers digit by digit in groups: "0912 345 678", "0912.345.678", "+84 912 345 678"."""
    raw, prefix = m.group(0), ""
    if raw.startswith("+84"):
        raw, prefix = raw[3:], "cộng tám bốn, "
    digits = re.sub(r"\D", "", raw)
    if len(digits) not in ((9, 10) if prefix else (10, 11)):
        return m.group(0)
    if re.search(r"[ .-]", raw.strip()):
        groups = [g for g in re.split(r"[ .-]", raw) if g]
    else:
        sizes = {9: (3, 3, 3), 10: (4, 3, 3), 11: (4, 4, 3)}[len(digits)]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        groups = [digits[s : s + n] for s, n in zip(starts, sizes, strict=True)]
    return prefix + ", ".join(read_digits(g) for g in groups)


@rule(r"(?<![\w.,])(1[89]00)[ .]?(\d{4}|\d{2}[ .]\d{2}|\d{3}[ .]?\d{3})(?![\w]|[.,]\d)")
def hotline_numbers(m: re.Match[str]) -> str:
    """Read 1900/1800 hotlines digit by digit: "1900 1234" → "một chín không không, một hai ba bốn"."""
    if _preceded_by(m, "năm"):
        return m.group(0)
    return f"{read_digits(m.group(1))}, {read_digits(m.group(2))}"


@rule(
    r"(?<![\w])((?i:mã số|mã|số hiệu|số tài khoản|tài khoản|số thẻ|biển số|số máy|số hộ chiếu)[: \t]+)"
    r"(\d+)(?![\w]|[.,]\d)"
)
def code_digits(m: re.Match[str]) -> str:
    """Read numbers after "mã số", "số tài khoản"… digit by digit: "mã số 0123" → "mã số không một hai ba"."""
    return m.group(1) + read_digits(m.group(2))


@rule(r"(?<![\w.,])\d{1,3}(?: \d{3})+(?![\w]|[.,]\d)")
def space_grouped_numbers(m: re.Match[str]) -> str:
    """Rewrite thousands grouped by spaces as dots: "10 000 người" → "10.000 người"."""
    return m.group(0).replace(" ", ".")


@rule(r"(?<![\w])((?i:gọi|tổng đài|đường dây nóng|hotline)(?:[ \t]+(?i:số))?)[ \t]+(11[1-5])(?![\w.,])")
def emergency_numbers(m: re.Match[str]) -> str:
    """Read emergency numbers digit by digit after "gọi", "tổng đài": "gọi 113" → "gọi một một ba"."""
    return f"{m.group(1)} {read_digits(m.group(2))}"


_SYM_PART = r"[A-ZĐ][A-Za-zĐđ&]*\d*"
_SYMBOL = rf"{_SYM_PART}(?:-{_SYM_PART})*"


def _document_number(m: re.Match[str], number: str | None, year: str | None, symbol: str) -> str:
    spoken = [] if _preceded_by(m, "số") else ["số"]
    if number:
        spoken.append(read_code_number(number))
    if year:
        spoken += ["năm", read_integer(int(year))]
    spoken.append(_read_symbol(symbol))
    return " ".join(spoken)


@rule(rf"(?<![\w/])(\d+)-({_SYM_PART})/({_SYMBOL})(?![\w/])")
def party_document_numbers(m: re.Match[str]) -> str:
    """Read Party document numbers N-TYPE/ISSUER: "07-CT/TW" → "không bảy chỉ thị trung ương"."""
    return _document_number(m, m.group(1), None, f"{m.group(2)}-{m.group(3)}")


@rule(rf"(?<![\w/])(\d+)?/(?:(\d{{4}})/)?({_SYMBOL})(?![\w/])")
def document_numbers(m: re.Match[str]) -> str:
    """Read N/SYMBOL and N/YYYY/SYMBOL: "49/2024/NĐ-CP" → "… năm hai nghìn … nghị định chính phủ"."""
    return _document_number(m, m.group(1), m.group(2), m.group(3))


@rule(r"(?<![\w.,/-])(\d{1,2})([.-])(\d{1,2})\2(\d{4})(?![\w/-]|[.,]\d)")
def dotted_or_dashed_dates(m: re.Match[str]) -> str:
    """Rewrite "20.01.2020" and "20-01-2020" as "20/01/2020" (read by full_dates)."""
    day, month, year = m.group(1), m.group(3), m.group(4)
    return f"{day}/{month}/{year}" if _valid_day_month(int(day), int(month)) else m.group(0)


@rule(r"(?<![\w])((?i:tháng)[ \t]+\d{1,2})[-.](\d{4})(?![\w/-]|[.,]\d)")
def dashed_month_year(m: re.Match[str]) -> str:
    """Rewrite "tháng 5-2021" as "tháng 5/2021" (read by month_year)."""
    return f"{m.group(1)}/{m.group(2)}"


@rule(r"(?<=\d)[ \t]*[–—-][ \t]*(?=\d)")
def number_ranges(m: re.Match[str]) -> str:
    """Read a dash between two numbers as "đến": "2021 - 2026", "12-17 tuổi", "150-200mm"."""
    return " đến "


def _day_prefix(m: re.Match[str]) -> str:
    return "" if _preceded_by(m, "ngày|mồng|mùng") else "ngày "


@rule(r"(?<![\w/.,])(\d{1,2})/(\d{1,2})/(\d{4})(?![\w/]|[.,]\d)")
def full_dates(m: re.Match[str]) -> str:
    """Read dd/mm/yyyy: "20/01/2020" → "ngày hai mươi tháng một năm hai nghìn không trăm hai mươi"."""
    day, month, year = (int(g) for g in m.groups())
    if not _valid_day_month(day, month):
        return m.group(0)
    return f"{_day_prefix(m)}{read_integer(day)} tháng {read_month(month)} năm {read_integer(year)}"


@rule(r"(?<![\w])((?i:quý))[ \t]+([1-4]|IV|I{1,3})/(\d{4})(?![\w/]|[.,]\d)")
def quarter_of_year(m: re.Match[str]) -> str:
    """Read "quý 1/2021" and "Quý I/2021" as "quý một năm hai nghìn không trăm hai mươi mốt"."""
    quarter = int(m.group(2)) if m.group(2).isdigit() else roman_to_int(m.group(2)) or 0
    return f"{m.group(1)} {read_integer(quarter)} năm {read_integer(int(m.group(3)))}"


@rule(r"(?<![\w/.,])(\d{1,2})/(\d{4})(?![\w/]|[.,]\d)")
def month_year(m: re.Match[str]) -> str:
    """Read mm/yyyy: "tháng 02/2021" → "tháng hai năm hai nghìn không trăm hai mươi mốt"."""
    month, year = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        return m.group(0)
    prefix = "" if _preceded_by(m, "tháng") else "tháng "
    return f"{prefix}{read_month(month)} năm {read_integer(year)}"


@rule(
    r"(?<![\w/.,])(?:((?i:tỷ lệ|tỉ lệ|chiếm)[ \t]+)(\d+)/(\d+)"
    r"|(\d+)/(\d+)(?=[ \t]+(?:số|tổng)(?![\w])))"
)
def fractions(m: re.Match[str]) -> str:
    """Read fractions after "tỷ lệ"/"chiếm" or before "số"/"tổng": "2/3 số hộ" → "hai phần ba số hộ"."""
    prefix, numerator, denominator = m.groups()[:3] if m.group(1) else ("", *m.groups()[3:])
    return f"{prefix}{read_integer(int(numerator))} phần {read_integer(int(denominator))}"


@rule(r"(?<![\w/.,])(\d{1,2})/(\d{1,2})(?![\w/]|[.,]\d)")
def day_month(m: re.Match[str]) -> str:
    """Read d/m: "5/9" → "ngày năm tháng chín", "ngày 24/01" → "ngày hai mươi tư tháng một"."""
    day, month = int(m.group(1)), int(m.group(2))
    if not _valid_day_month(day, month):
        return m.group(0)
    return f"{_day_prefix(m)}{read_integer(day)} tháng {read_month(month)}"


@rule(r"(?<![\w/.,])(\d+)/(\d+)(?![\w/]|[.,]\d)")
def ratios(m: re.Match[str]) -> str:
    """Read any other N/M as "N trên M": "15/20 xã" → "mười lăm trên hai mươi xã"."""
    return f"{read_code_number(m.group(1))} trên {read_code_number(m.group(2))}"


@rule(r"(?<![\w.,:])(\d{1,2})[hH](?:(\d{2})(?:'|ph|p)?)?(?![\w])")
def clock_times_h(m: re.Match[str]) -> str:
    """Read "17h30" → "mười bảy giờ ba mươi phút", "7h" and "7h00" → "bảy giờ"."""
    minutes = int(m.group(2) or 0)
    if minutes >= 60:
        return m.group(0)
    spoken = f"{read_integer(int(m.group(1)))} giờ"
    return f"{spoken} {read_integer(minutes)} phút" if minutes else spoken


@rule(r"(?<![\w.,:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\w:]|[.,]\d)")
def clock_times_colon(m: re.Match[str]) -> str:
    """Read "17:30" → "mười bảy giờ ba mươi phút" (and "17:30:15" with "giây")."""
    hours, minutes, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if hours > 24 or minutes >= 60 or seconds >= 60:
        return m.group(0)
    spoken = f"{read_integer(hours)} giờ"
    if minutes:
        spoken += f" {read_integer(minutes)} phút"
    if seconds:
        spoken += f" {read_integer(seconds)} giây"
    return spoken


@rule(r"(?<![\w])((?i:tháng))[ \t]+(\d{1,2})(?![\w/]|[.,]\d)")
def month_names(m: re.Match[str]) -> str:
    """Read the month after "tháng": "tháng 4" → "tháng tư", "tháng 02" → "tháng hai"."""
    month = int(m.group(2))
    return f"{m.group(1)} {read_month(month)}" if 1 <= month <= 12 else m.group(0)


@rule(r"(?<![\w])((?i:thứ))[ \t]+(\d+)(?![\w/]|[.,]\d)")
def ordinals(m: re.Match[str]) -> str:
    """Read the number after "thứ": "thứ 1" → "thứ nhất", "thứ 4" → "thứ tư", "thứ 2" → "thứ hai"."""
    return f"{m.group(1)} {read_ordinal(int(m.group(2)))}"


@rule(rf"(?<![\w])((?i:{_alternation(ROMAN_CONTEXT_WORDS)}))[ \t]+([IVXL]+)(?:/(\d{{4}}))?(?![\w])")
def roman_numerals(m: re.Match[str]) -> str:
    """Read Roman numerals after Đại hội, khóa, lần thứ, thế kỷ, Quý, Chương…: "Đại hội XIII"."""
    value = roman_to_int(m.group(2))
    if value is None:
        return m.group(0)
    keyword = m.group(1)
    spoken = f"{keyword} {read_ordinal(value) if keyword.lower().endswith('thứ') else read_integer(value)}"
    return f"{spoken} năm {read_integer(int(m.group(3)))}" if m.group(3) else spoken


_UNIT_ALT = _alternation(UNITS)


@rule(rf"(?<=\d)[ \t]?({_UNIT_ALT})(?![\w])")
def units_after_numbers(m: re.Match[str]) -> str:
    """Read units after a number: "150mm" → "150 mi li mét", "60 km/h", "25%", "30°C", "100.000đ"."""
    return " " + UNITS[m.group(1)]


@rule(rf"(?<=\w)[ \t]*/[ \t]*({_UNIT_ALT})(?![\w])")
def per_unit(m: re.Match[str]) -> str:
    """Read "/unit" as "trên": "đồng/kg" → "đồng trên ki lô gam"."""
    return " trên " + UNITS[m.group(1)]


@rule(r"(?<![\w])((?i:độ))[ \t]+C(?![\w])")
def degrees_celsius(m: re.Match[str]) -> str:
    """Read "độ C" as "độ xê"."""
    return f"{m.group(1)} xê"


@rule(r"(?<![\w])(?=[A-ZĐ\d]*\d)(?=[A-ZĐ\d]*[A-ZĐ])[A-ZĐ\d]+(?![\w])")
def letter_digit_codes(m: re.Match[str]) -> str:
    """Read codes mixing capitals and digits: "H5N1" → "hát năm en nờ một", "5G" → "năm giê"."""
    pieces = re.findall(r"[A-ZĐ]+|\d+", m.group(0))
    spoken = [
        read_code_number(p) if p.isdigit() else (len(p) > 1 and _lookup(p, _IN_TEXT)) or spell(p)
        for p in pieces
    ]
    return _padded(m, " ".join(spoken))


@rule(r"(?<![\w.,])[-−](\d+(?:[.,]\d+)*)")
def negative_numbers(m: re.Match[str]) -> str:
    """Read a minus sign stuck to a number at the start of a word: "-5" → "âm năm"."""
    return "âm " + read_written_number(m.group(1))


@rule(r"\d+(?:[.,]\d+)*")
def numbers(m: re.Match[str]) -> str:
    """Read every remaining number: "1.500.000" → "một triệu năm trăm nghìn", "3,5" → "ba phẩy năm"."""
    return _padded(m, read_written_number(m.group(0)))


_ABBR_KEYS = [k for table in _IN_TEXT for k in table if len(k) > 1]


@rule(rf"(?<![\w])(?:{_alternation(_ABBR_KEYS)}|[{UPPER}]{{2,}})(?![\w])")
def abbreviations(m: re.Match[str]) -> str:
    """Expand known abbreviations ("UBND"), keep upper-case Vietnamese words, spell other acronyms."""
    token = m.group(0)
    if _is_caps_syllable(token) and _in_caps_heading(m):
        return token
    spoken = _lookup(token, _IN_TEXT)
    if spoken is not None:
        return spoken
    if not token.isupper() or (is_vietnamese_syllable(token) and has_vietnamese_letters(token)):
        return token
    return spell(token)


@rule(_alternation(SYMBOLS))
def symbols(m: re.Match[str]) -> str:
    """Read symbols anywhere: "%" → "phần trăm", "&" → "và", "°C" → "độ xê"."""
    return f" {SYMBOLS[m.group(0)]} "


@rule(r"[ \t]*/[ \t]*(?=([^\W\d_]*))")
def slashes(m: re.Match[str]) -> str:
    """Read other "/" as "trên" before a unit of time or count ("lượt/ngày"), else "hoặc" ("Nam/Nữ")."""
    following = m.group(1).lower()
    return " trên " if following in PER_WORDS else " " if following == "hoặc" else " hoặc "


@rule(r"(?<=[^\W\d_])[.@](?=[^\W\d_])")
def dots_inside_words(m: re.Match[str]) -> str:
    """Read dots inside web and e-mail addresses: "loa.gov.vn" → "loa chấm gov chấm vn"."""
    return " chấm " if m.group(0) == "." else " a còng "


@rule(r"[ \t]+[-–—]+[ \t]*|[ \t]*[-–—]+[ \t]+")
def spaced_dashes(m: re.Match[str]) -> str:
    """Turn a free-standing dash into a pause: "kinh tế - xã hội" → "kinh tế, xã hội"."""
    return ", "


@rule(r"[-–—]+")
def joining_hyphens(m: re.Match[str]) -> str:
    """Turn a hyphen inside a word into a space: "Bà Rịa-Vũng Tàu"."""
    return " "


@rule(r"…|\.{2,}")
def ellipses(m: re.Match[str]) -> str:
    """Turn an ellipsis into a full stop."""
    return "."


@rule(r"[“”„\"«»()\[\]{}]")
def quotes_and_brackets(m: re.Match[str]) -> str:
    """Turn quotes and brackets into pauses."""
    return ", "


@rule(r"[*#_|\\^`'’‘•]")
def stray_marks(m: re.Match[str]) -> str:
    """Drop marks that are not read (asterisks, apostrophes, bullets…)."""
    return " "


@rule(r"\s+(?=[.,;:!?])")
def space_before_punctuation(m: re.Match[str]) -> str:
    """Remove spaces before punctuation."""
    return ""


@rule(r"[.,;:!?](?:\s*[.,;:!?])+")
def repeated_punctuation(m: re.Match[str]) -> str:
    """Keep only the strongest of several pause marks in a row (". ," → ".")."""
    marks = [ch for ch in m.group(0) if not ch.isspace()]
    for strongest in (".", "?", "!", ";", ":"):
        if strongest in marks:
            return strongest
    return ","


@rule(r"^\s*[.,;:!?]+")
def leading_punctuation(m: re.Match[str]) -> str:
    """Remove pause marks at the very start of the text."""
    return ""


@rule(r"(?<=[.,;:!?])(?=[^\s.,;:!?])")
def space_after_punctuation(m: re.Match[str]) -> str:
    """Put one space after each pause mark."""
    return " "


@rule(r"[\s,]*,[\s,]*$")
def trailing_comma(m: re.Match[str]) -> str:
    """Drop a comma left at the very end of the text (from a closing quote or bracket)."""
    return ""


@rule(r"\s+")
def collapse_whitespace(m: re.Match[str]) -> str:
    """Collapse all whitespace, newlines included, into single spaces."""
    return " "


RULES: list[Rule] = [
    end_of_document_mark,
    line_breaks_end_sentences,
    list_markers,
    punctuated_abbreviations,
    title_abbreviations,
    phone_numbers,
    hotline_numbers,
    code_digits,
    space_grouped_numbers,
    emergency_numbers,
    party_document_numbers,
    document_numbers,
    dotted_or_dashed_dates,
    dashed_month_year,
    number_ranges,
    full_dates,
    quarter_of_year,
    month_year,
    fractions,
    day_month,
    ratios,
    clock_times_h,
    clock_times_colon,
    month_names,
    ordinals,
    roman_numerals,
    units_after_numbers,
    per_unit,
    degrees_celsius,
    letter_digit_codes,
    negative_numbers,
    numbers,
    abbreviations,
    symbols,
    slashes,
    dots_inside_words,
    spaced_dashes,
    joining_hyphens,
    ellipses,
    quotes_and_brackets,
    stray_marks,
    space_before_punctuation,
    repeated_punctuation,
    leading_punctuation,
    space_after_punctuation,
    trailing_comma,
    collapse_whitespace,
]


# --- entry points ----------------------------------------------------------------------------------


def _prepare(text: str) -> str:
    """Unicode NFC, Unix newlines, plain spaces, no zero-width characters."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[\u200b\u200c\u200d\ufeff]", "", text)
    return re.sub(r"[\t\u00a0\u2007\u2009\u202f]", " ", text)


def _apply_lexicon(text: str, lexicon: Mapping[str, str]) -> str:
    """Replace lexicon keys matched as whole words, case-sensitively, longest key first."""
    table = {unicodedata.normalize("NFC", k): v for k, v in lexicon.items() if k}
    if not table:
        return text
    pattern = re.compile(rf"(?<![\w])(?:{_alternation(table)})(?![\w])")
    return pattern.sub(lambda m: table[m.group(0)], text)


def trace(text: str, lexicon: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """Run `normalize` step by step; return (rule name, text after it) for every rule that changed it."""
    steps: list[tuple[str, str]] = []
    current = _prepare(text)
    if lexicon:
        current = _apply_lexicon(current, lexicon)
        steps.append(("lexicon", current))
    for r in RULES:
        after = r.apply(current)
        if after != current:
            steps.append((r.name, after))
        current = after
    return steps


def normalize(text: str, lexicon: Mapping[str, str] | None = None) -> str:
    """Turn written Vietnamese into its spoken form for a TTS engine (see the module docstring)."""
    text = _prepare(text)
    if lexicon:
        text = _apply_lexicon(text, lexicon)
    for r in RULES:
        text = r.apply(text)
    return text.strip()
