"""Spelling acronyms with Vietnamese letter names, and telling a real Vietnamese syllable
("HUYỆN", "BAN") from an acronym ("VPTH", "UBND")."""

from __future__ import annotations

import re
import unicodedata

from audio.vi_dictionary import LETTER_NAMES
from audio.vi_numbers import DIGITS

# Upper-case letters of Vietnamese beyond A-Z: Đ and the vowels with a shape or tone mark.
UPPER_LETTERS: str = "Đ" + "".join(
    sorted(
        {
            unicodedata.normalize("NFC", base + tone)
            for base in "AĂÂEÊIOÔƠUƯY"
            for tone in ("", *"\u0300\u0301\u0303\u0309\u0323")
        }
        - set("AEIOUY")
    )
)

# Tone marks (huyền, sắc, ngã, hỏi, nặng) as combining characters; vowel shapes (â, ă, ơ, ...) are kept.
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")

# onset + vowel cluster + coda; tones removed first. Loose on purpose: it only has to reject acronyms.
_SYLLABLE_RE = re.compile(
    r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|qu|th|tr|[bcdđghklmnprstvx])?"
    r"[aăâeêioôơuưy]{1,3}"
    r"(?:ch|ng|nh|[cmnpt])?"
)


def strip_tones(word: str) -> str:
    """Remove the five tone marks but keep vowel shapes: "Huyện" → "Huyên"."""
    decomposed = unicodedata.normalize("NFD", word)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if ch not in _TONE_MARKS))


def is_vietnamese_syllable(word: str) -> bool:
    """True if `word` (any case) has the shape of one Vietnamese syllable: "ỦY", "Nhân", "ban"."""
    return bool(_SYLLABLE_RE.fullmatch(strip_tones(word.lower())))


def has_vietnamese_letters(word: str) -> bool:
    """True if `word` contains a letter outside ASCII (a diacritic or "đ")."""
    return any(not ch.isascii() for ch in word)


def spell(token: str) -> str:
    """Spell letters and digits one by one: "VX" → "vê ích xì", "B2" → "bê hai"."""
    names: list[str] = []
    for ch in token:
        if ch.isdigit():
            names.append(DIGITS[int(ch)])
        elif ch.isalpha():
            upper = ch.upper()
            names.append(LETTER_NAMES.get(upper) or LETTER_NAMES.get(strip_tones(upper), ch.lower()))
    return " ".join(names)
