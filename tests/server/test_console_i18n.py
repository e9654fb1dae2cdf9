"""Every piece of text the console shows can be switched to English.

Templates write Vietnamese and wrap it in ``_()``; scripts take their text from the labels the page
hands them. These checks read the sources, so a new page with unwrapped text fails here before a user
sees half a page in the wrong language.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.console.i18n import LOCALES_DIR, catalog, speaking, translate

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((ROOT / "server" / "templates").glob("*.html"))
SCRIPTS = sorted((ROOT / "server" / "static").glob("*.js"))

_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_STRING = re.compile(r"""(?P<q>["'])(?P<body>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.S)
_TRANSLATED = re.compile(r"""_\(\s*(?P<q>["'])(?P<body>(?:\\.|(?!(?P=q)).)*)(?P=q)""", re.S)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def vietnamese(text: str) -> bool:
    """Letters beyond ASCII: every Vietnamese sentence has some (ă, đ, ơ, tone marks)."""
    return any(ch.isalpha() and ord(ch) > 127 for ch in text)


def untranslated_in_template(source: str) -> list[str]:
    """Visible text outside Jinja tags, and Vietnamese string literals inside tags not given to ``_()``."""
    source = _JINJA_COMMENT.sub("", source)
    found = []
    for tag in _JINJA_TAG.findall(source):
        wrapped = {m.start("q") for m in _TRANSLATED.finditer(tag)}
        for literal in _STRING.finditer(tag):
            if vietnamese(literal.group("body")) and literal.start() not in wrapped:
                found.append(literal.group(0))
    for line in _JINJA_TAG.sub(" ", source).splitlines():
        if vietnamese(line):
            found.append(line.strip())
    return found


def translated_strings(source: str) -> set[str]:
    return {m.group("body") for m in _TRANSLATED.finditer(_JINJA_COMMENT.sub("", source))}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_template_text_is_wrapped_for_translation(template: Path) -> None:
    assert untranslated_in_template(template.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_wrapped_string_has_english(template: Path) -> None:
    english = catalog("en")
    missing = sorted(s for s in translated_strings(template.read_text(encoding="utf-8")) if s not in english)
    assert missing == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_take_their_text_from_the_page(script: Path) -> None:
    lines = [line.strip() for line in script.read_text(encoding="utf-8").splitlines() if vietnamese(line)]
    assert lines == []


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_imports_are_rendered_per_request(template: Path) -> None:
    """Jinja caches a template imported without context for the whole process, in the language of the
    first request that imported it; ``with context`` imports it afresh for every page."""
    imports = re.findall(r"\{%-?\s*(?:import|from)\s[^%]*%\}", template.read_text(encoding="utf-8"))
    assert [i for i in imports if "with context" not in i] == []


def test_translations_keep_their_placeholders() -> None:
    for source, english in catalog("en").items():
        assert sorted(_PLACEHOLDER.findall(source)) == sorted(_PLACEHOLDER.findall(english)), source
        assert not vietnamese(english), f"{source!r} → {english!r} is not English"


def test_catalog_files_exist() -> None:
    assert list((LOCALES_DIR / "en").glob("*.json"))


def test_translate_follows_the_request_language() -> None:
    some_source = next(iter(catalog("en")))
    assert translate(some_source) == some_source
    with speaking("en"):
        assert translate(some_source) == catalog("en")[some_source]
    with speaking("xx"):  # unknown codes fall back to Vietnamese
        assert translate(some_source) == some_source


def test_the_checker_finds_unwrapped_text() -> None:
    """The scanner itself: plain text, a bare literal in a tag, and a wrapped literal."""
    sample = '<p>Xin chào</p>{{ "Trực tuyến" }}{{ _("Đã duyệt") }}{# Ghi chú #}'
    assert untranslated_in_template(sample) == ['"Trực tuyến"', "<p>Xin chào</p>"]
    assert translated_strings(sample) == {"Đã duyệt"}
