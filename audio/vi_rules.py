"""The rule machinery of `audio.normalize`: a `Rule` is a named regex with a replacement function.

Replacements made at the start of a sentence keep the capital of what they replace
("UBND huyện…" → "Ủy ban nhân dân huyện…").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Replacement = Callable[[re.Match[str]], str]

_SENTENCE_END = ".!?"


@dataclass(frozen=True)
class Rule:
    """One normalisation step: every match of `pattern` is replaced by `replace(match)`."""

    name: str
    pattern: re.Pattern[str]
    replace: Replacement
    doc: str

    def apply(self, text: str) -> str:
        """Apply the rule to the whole text."""
        return self.pattern.sub(self._substitute, text)

    def _substitute(self, match: re.Match[str]) -> str:
        spoken = self.replace(match)
        original = match.group(0)
        if spoken != original and _capitalised(original) and _starts_sentence(match.string, match.start()):
            spoken = _capitalise(spoken)
        return spoken


def rule(pattern: str, flags: int = 0) -> Callable[[Replacement], Rule]:
    """Decorator turning `f(match) -> str` into a named `Rule` (its docstring is the description)."""

    def wrap(func: Replacement) -> Rule:
        return Rule(func.__name__, re.compile(pattern, flags), func, (func.__doc__ or "").strip())

    return wrap


def _starts_sentence(text: str, pos: int) -> bool:
    """True at the start of the text or after ".", "!" or "?" (and spaces)."""
    i = pos - 1
    while i >= 0 and text[i].isspace():
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def _capitalised(original: str) -> bool:
    first = next((ch for ch in original if ch.isalnum()), "")
    return first.isupper()


def _capitalise(spoken: str) -> str:
    for i, ch in enumerate(spoken):
        if ch.isalpha():
            return spoken[:i] + ch.upper() + spoken[i + 1 :] if ch.islower() else spoken
        if not ch.isspace():
            return spoken
    return spoken
