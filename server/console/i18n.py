"""The console's languages: Vietnamese first (the source text of every template), English switchable.

Templates write their visible text in Vietnamese and wrap it in ``_()``: ``{{ _("Bảng điều khiển") }}``.
English is a catalog that maps each Vietnamese source string to its English text; catalogs live in
``server/console/locales/en/*.json`` (one file per part of the console, merged at start-up, so that
people working on different pages do not edit the same file). A string with no English entry shows in
Vietnamese; ``tests/server/test_console_i18n.py`` fails when a template has text outside ``_()`` or a
``_()`` string with no English entry.

The language of a request is read once, before rendering, from the ``loa_lang`` cookie (set by
``/console/lang/{code}``) and kept in a context variable that ``_()`` reads. Templates import others
``with context``: Jinja caches a template imported without context for the whole process, labels and
all, in the language of whichever request imported it first. Dates stay ``dd/mm/yyyy`` and times 24 h
in both languages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES: tuple[str, ...] = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANG_COOKIE = "loa_lang"
LOCALES_DIR = Path(__file__).resolve().parent / "locales"

_current: ContextVar[str] = ContextVar("console_language", default=DEFAULT_LANGUAGE)


def language_of(cookie_value: str | None) -> str:
    """A known language code from a cookie or query value; anything else is the default."""
    return cookie_value if cookie_value in LANGUAGES else DEFAULT_LANGUAGE


@cache
def catalog(language: str) -> Mapping[str, str]:
    """Every ``source → translation`` pair for a language, merged from its JSON files."""
    merged: dict[str, str] = {}
    folder = LOCALES_DIR / language
    if language == DEFAULT_LANGUAGE or not folder.is_dir():
        return merged
    for path in sorted(folder.glob("*.json")):
        entries = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entries, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
            raise ValueError(f"{path}: a catalog is one JSON object of string to string")
        for source, text in entries.items():
            if source in merged and merged[source] != text:
                raise ValueError(f"{path}: {source!r} already translated differently in another catalog")
            merged[source] = text
    return merged


def translate(text: str, language: str | None = None, **values: Any) -> str:
    """The text in the current (or given) language; ``%(name)s`` placeholders filled from ``values``."""
    language = language or _current.get()
    translated = catalog(language).get(text, text) if language != DEFAULT_LANGUAGE else text
    return translated % values if values else translated


def current_language() -> str:
    return _current.get()


@contextmanager
def speaking(language: str) -> Iterator[None]:
    """Render everything inside in ``language``."""
    token = _current.set(language_of(language))
    try:
        yield
    finally:
        _current.reset(token)
