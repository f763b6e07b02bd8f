"""The pages' UI strings: one JSON table per language in rooms/strings/, chosen by ?lang= or Accept-Language.

English (``en.json``) is complete and the fallback of every other table, so a translation is one file
with the same keys. Templates read the table as ``s``; page scripts read the same table from the page.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

from django.http import HttpRequest

logger = logging.getLogger(__name__)

STRINGS_DIR = Path(__file__).resolve().parent / "strings"
DEFAULT_LANGUAGE = "en"


@cache
def languages() -> tuple[str, ...]:
    """The languages that have a table, English first."""
    found = sorted(path.stem for path in STRINGS_DIR.glob("*.json"))
    return (DEFAULT_LANGUAGE, *(lang for lang in found if lang != DEFAULT_LANGUAGE))


@cache
def table(language: str) -> dict[str, str]:
    """The strings of ``language``, each missing one taken from English."""
    english = json.loads((STRINGS_DIR / f"{DEFAULT_LANGUAGE}.json").read_text(encoding="utf-8"))
    if language == DEFAULT_LANGUAGE or language not in languages():
        return dict(english)
    translated = json.loads((STRINGS_DIR / f"{language}.json").read_text(encoding="utf-8"))
    return {**english, **translated}


def _primary(tag: str) -> str:
    return tag.strip().split(";")[0].split("-")[0].split("_")[0].lower()


def choose_language(request: HttpRequest) -> str:
    """``?lang=`` if it names a table, else the first Accept-Language that does, else English."""
    wanted = [request.GET.get("lang", "")]
    wanted += request.META.get("HTTP_ACCEPT_LANGUAGE", "").split(",")
    for tag in wanted:
        if tag and _primary(tag) in languages():
            return _primary(tag)
    return DEFAULT_LANGUAGE
