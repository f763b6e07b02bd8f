"""The pages' strings table: every language has every key, every key the pages use exists, and the
language follows ?lang= and Accept-Language."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from rooms.page_strings import STRINGS_DIR, choose_language, languages, table
from tests.servers import ROOT

TEMPLATES = ROOT / "templates"
SCRIPTS = ROOT / "rooms" / "static" / "rooms"


def _keys_used() -> set[str]:
    used: set[str] = set()
    for path in TEMPLATES.rglob("*.html"):
        used |= set(re.findall(r"\{\{\s*s\.(\w+)", path.read_text(encoding="utf-8")))
    for path in SCRIPTS.rglob("*.js"):
        used |= set(re.findall(r"\bt\(\s*\"(\w+)\"", path.read_text(encoding="utf-8")))
    return used


def test_every_language_has_exactly_the_english_keys() -> None:
    """A translation is one file with the same keys as en.json, and the same {placeholders}."""
    english = json.loads((STRINGS_DIR / "en.json").read_text(encoding="utf-8"))
    assert len(languages()) >= 2
    for language in languages()[1:]:
        other = json.loads((STRINGS_DIR / f"{language}.json").read_text(encoding="utf-8"))
        assert set(other) == set(english), language
        for key, text in english.items():
            assert set(re.findall(r"\{\w+\}", other[key])) == set(re.findall(r"\{\w+\}", text)), (language, key)


def test_every_key_the_pages_use_is_in_the_table() -> None:
    """Templates ({{ s.key }}) and scripts (t("key")) only use keys of the table."""
    used = _keys_used()
    assert len(used) > 100
    assert used - set(table("en")) == set()


@pytest.mark.parametrize(
    ("query", "accept", "expected"),
    [("", "", "en"), ("de", "", "de"), ("", "de-DE,de;q=0.9,en;q=0.5", "de"), ("en", "de-DE", "en"),
     ("xx", "fr-FR,fr", "en"), ("", "fr-FR, de;q=0.3", "de")],
)
def test_language_choice(rf: object, query: str, accept: str, expected: str) -> None:
    """?lang= wins when it names a table, then the first Accept-Language that does, then English."""
    request = rf.get("/conference/", {"lang": query} if query else {}, HTTP_ACCEPT_LANGUAGE=accept)  # type: ignore[attr-defined]
    assert choose_language(request) == expected


@pytest.mark.django_db
def test_pages_render_in_german() -> None:
    """?lang=de renders the page and its embedded strings table in German."""
    response = Client().get("/conference/?lang=de")
    body = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="de">' in body and "Konferenz" in body and "Beitreten" in body
    assert '"join": "Beitreten"' in body
