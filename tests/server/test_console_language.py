"""Pages render in the language of the request, also through imported templates."""

from __future__ import annotations

from server.console.i18n import speaking
from server.console.routes import templates


def test_imported_labels_follow_each_requests_language() -> None:
    page = templates.env.from_string('{% import "_labels.html" as L with context %}{{ L.audio_labels.ready }}')
    with speaking("en"):
        assert page.render() == "Audio ready"
    assert page.render() == "Âm thanh sẵn sàng"  # imported afresh, not a module cached in English
    with speaking("en"):
        assert page.render() == "Audio ready"


def test_the_login_page_offers_the_language_switch() -> None:
    login = templates.env.get_template("login.html")
    with speaking("en"):
        html = login.render(lang="en", languages=("vi", "en"), here="/login", user=None, next="/console",
                            error="", username="", timezone="Asia/Ho_Chi_Minh", page="login", csrf_token="")
    assert 'id="lang-vi"' in html and 'href="/console/lang/vi?next=/login"' in html
    assert "<h1>Log in</h1>" in html
