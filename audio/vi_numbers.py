"""Reading numbers aloud in Vietnamese: cardinals, digit strings, ordinals, months, Roman numerals.

Conventions (northern standard, as read on commune loudspeakers):

* 21 → "hai mươi mốt", 15 → "mười lăm", 25 → "hai mươi lăm", 24 → "hai mươi tư", 14 → "mười bốn";
* 105 → "một trăm linh năm", 1005 → "một nghìn không trăm linh năm" ("không trăm" inside big numbers);
* groups: nghìn, triệu, tỷ; above a tỷ the word repeats: 10^12 → "một nghìn tỷ", 10^18 → "một tỷ tỷ";
* decimals use "phẩy": 3,5 → "ba phẩy năm"; one or two decimal digits without a leading zero are read
  as a number (3,25 → "ba phẩy hai mươi lăm"), otherwise digit by digit (3,05 → "ba phẩy không năm");
* negatives: "âm".
"""

from __future__ import annotations

import re

DIGITS: tuple[str, ...] = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")

_BILLION = 10**9
_ROMAN_RE = re.compile(r"M{0,3}(CM|CD|D?C{0,3})(XC|XL|L?X{0,3})(IX|IV|V?I{0,3})")
_ROMAN_VALUES: dict[str, int] = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_GROUPED_RE = re.compile(r"\d{1,3}(?:\.\d{3})+")
_PLAIN_RE = re.compile(r"\d+")


def read_digits(digits: str) -> str:
    """Read a string digit by digit: "0912" → "không chín một hai" (non-digits are ignored)."""
    return " ".join(DIGITS[int(ch)] for ch in digits if ch.isdigit())


def _read_triple(n: int, full: bool) -> list[str]:
    """Read 0..999; `full` forces the hundreds ("không trăm") for groups inside a bigger number."""
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words: list[str] = []
    if full or hundreds:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append("linh")
            words.append(DIGITS[units])
    elif tens == 1:
        words.append("mười")
        if units:
            words.append("lăm" if units == 5 else DIGITS[units])
    else:
        words += [DIGITS[tens], "mươi"]
        if units:
            words.append({1: "mốt", 4: "tư", 5: "lăm"}.get(units, DIGITS[units]))
    return words


def _read_below_billion(n: int, full: bool) -> list[str]:
    """Read 0..999 999 999 as triệu / nghìn / units groups, skipping empty groups."""
    words: list[str] = []
    for group, name in (((n // 10**6) % 1000, "triệu"), ((n // 1000) % 1000, "nghìn"), (n % 1000, "")):
        if group == 0:
            continue
        words += _read_triple(group, full=full or bool(words))
        if name:
            words.append(name)
    return words


def _read_int(n: int, full: bool = False) -> list[str]:
    """Read a non-negative integer of any size (tỷ repeats: "một nghìn tỷ", "một tỷ tỷ")."""
    if n < _BILLION:
        return _read_below_billion(n, full)
    high, low = divmod(n, _BILLION)
    words = [*_read_int(high, full), "tỷ"]
    if low:
        words += _read_below_billion(low, True)
    return words


def read_integer(n: int) -> str:
    """Read an integer: 0 → "không", 21 → "hai mươi mốt", -5 → "âm năm"."""
    if n < 0:
        return "âm " + read_integer(-n)
    if n == 0:
        return DIGITS[0]
    return " ".join(_read_int(n))


def read_fraction_digits(digits: str) -> str:
    """Read the part after the decimal comma: "5" → "năm", "25" → "hai mươi lăm", "05" → "không năm"."""
    if len(digits) <= 2 and not digits.startswith("0"):
        return read_integer(int(digits))
    return read_digits(digits)


def read_number(value: int | str) -> str:
    """Read a number given as an int or as written Vietnamese ("1.500.000", "3,5", "-12", "−0,5").

    Thousands are separated by "." and decimals by ","; leading zeros of a string are ignored here
    (use `read_digits` for codes and phone numbers). Raises ValueError on anything else.
    """
    if isinstance(value, int):
        return read_integer(value)
    text = value.strip().replace(" ", "")
    sign = ""
    if text[:1] in ("-", "−"):
        sign, text = "âm ", text[1:]
    whole, _, fraction = text.partition(",")
    if _GROUPED_RE.fullmatch(whole):
        whole = whole.replace(".", "")
    if not _PLAIN_RE.fullmatch(whole) or (fraction and not _PLAIN_RE.fullmatch(fraction)):
        raise ValueError(f"not a number: {value!r}")
    spoken = read_integer(int(whole))
    if fraction:
        spoken += " phẩy " + read_fraction_digits(fraction)
    return sign + spoken


def read_ordinal(n: int) -> str:
    """Read the number after "thứ": 1 → "nhất", 4 → "tư", otherwise the cardinal (2 → "hai")."""
    return {1: "nhất", 4: "tư"}.get(n, read_integer(n))


def read_month(n: int) -> str:
    """Read a month number: 4 → "tư", otherwise the cardinal (1 → "một", 12 → "mười hai")."""
    return "tư" if n == 4 else read_integer(n)


def roman_to_int(numeral: str) -> int | None:
    """Value of a well-formed upper-case Roman numeral ("XIII" → 13), else None."""
    if not numeral or not _ROMAN_RE.fullmatch(numeral):
        return None
    total = 0
    for current, following in zip(numeral, [*numeral[1:], ""], strict=True):
        value = _ROMAN_VALUES[current]
        total += -value if following and _ROMAN_VALUES[following] > value else value
    return total


def read_code_number(digits: str) -> str:
    """Read a number in a code: digit by digit with a leading zero ("07" → "không bảy"), else a cardinal."""
    return read_digits(digits) if len(digits) > 1 and digits.startswith("0") else read_integer(int(digits))


def read_written_number(token: str) -> str:
    """Read a run of digits, dots and commas as written in Vietnamese text.

    "1.500.000" (thousands) and "3,5" (decimal) as numbers; "1.2" (section numbers) with "chấm";
    "03" (a count written with a zero, as official letters do) as "ba"; "0912" (a code: leading zero
    and four digits or more) and runs of more than 15 digits digit by digit; "1,500,000" as thousands.
    """
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+,\d+", token):
        return read_number(token)
    if re.fullmatch(r"\d{1,3}(?:,\d{3}){2,}", token):
        return read_number(token.replace(",", "."))
    if re.fullmatch(r"\d+(?:\.\d+)+", token):
        return " chấm ".join(read_code_number(part) for part in token.split("."))
    if re.fullmatch(r"\d+", token):
        return (
            read_digits(token)
            if len(token) > 15 or (len(token) > 3 and token[0] == "0")
            else read_integer(int(token))
        )
    return ", ".join(read_written_number(part) for part in re.split(r"[.,]", token) if part)
