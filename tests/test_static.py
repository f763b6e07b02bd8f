"""Static files and API docs work offline: pages reference only their own host, and what they reference is served.

The server runs as production does: ``collectstatic`` wrote hashed, gzip-compressed
files and servestatic serves them from STATIC_ROOT (STATIC_MANIFEST=true).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest
from django.test import AsyncClient

from tests.servers import DaphneServer

PAGES = ["/", "/conference/", "/video-chat/", "/screen-sharing/", "/api/docs/", "/api/redoc/", "/admin/login/"]
# What the browser loads by itself (links with rel=stylesheet/icon, scripts, images...); <a href> is only navigation.
LOADED = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src"), ("video", "src"),
          ("audio", "src"), ("embed", "src"), ("link", "href")}
HASHED = re.compile(r"\.[0-9a-f]{12}\.(js|css|png|svg|ico)$")
MODULE_IMPORT = re.compile(r"""(?m)^import\s[^;]*?from\s*["'](\.{1,2}/[^"']+)["']\s*;""")


class References(HTMLParser):
    """Every src/href/action in an HTML document (data: and fragment-only values excluded), and which ones load."""

    def __init__(self) -> None:
        super().__init__()
        self.all: list[str] = []
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name not in ("src", "href", "action", "spec-url", "srcset") or not value:
                continue
            if value.startswith(("data:", "#", "javascript:")):
                continue
            self.all.append(value)
            if (tag, name) in LOADED or name == "spec-url":
                self.loaded.append(value)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``url``: status, headers (lower-case names), body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


@pytest.fixture(scope="module")
def server(django_db_setup: Any, django_db_blocker: Any, collected_static: Path) -> Iterator[DaphneServer]:
    """A daphne process serving the collected static files, as in production."""
    with django_db_blocker.unblock(), DaphneServer(
        {"STATIC_ROOT": str(collected_static), "STATIC_MANIFEST": "true", "LOG_LEVEL": "WARNING"}
    ) as srv:
        yield srv


@pytest.mark.parametrize("page", PAGES)
def test_page_references_only_its_own_host(server: DaphneServer, page: str) -> None:
    """A page's src/href values are relative or name the server itself; no CDN, no web font."""
    status, _, body = fetch(server.http_url + page)
    assert status == 200, page
    refs = References()
    refs.feed(body.decode())
    assert refs.all, f"{page} references nothing: the parser missed its links"
    foreign = [ref for ref in refs.all if urlparse(urljoin(server.http_url + page, ref)).netloc
               != urlparse(server.http_url).netloc]
    assert foreign == [], f"{page} references other hosts"


@pytest.mark.parametrize("page", PAGES)
def test_page_assets_are_served_hashed_and_compressed(server: DaphneServer, page: str) -> None:
    """Every asset a page loads answers 200; static ones by hashed name, gzip-compressed, cached for good.

    Module scripts are followed through their ``import ... from "./x.js"`` lines (rewritten to hashed names).
    """
    page_url = server.http_url + page
    refs = References()
    refs.feed(fetch(page_url)[2].decode())
    queue = [urljoin(page_url, ref) for ref in refs.loaded]
    seen: set[str] = set()
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        status, headers, body = fetch(url, {"Accept-Encoding": "gzip"})
        assert status == 200, f"{url} (from {page}) answered {status}"
        path = urlparse(url).path
        if not path.startswith("/static/"):
            continue
        assert HASHED.search(path), f"{path} is not a hashed name"
        assert "immutable" in headers.get("cache-control", ""), f"{path}: {headers.get('cache-control')}"
        if path.endswith((".js", ".css")) and len(body) > 1024:
            assert headers.get("content-encoding") == "gzip", f"{path} is not served compressed"
        if path.endswith(".js"):
            plain = fetch(url)[2].decode()
            queue.extend(urljoin(url, target) for target in MODULE_IMPORT.findall(plain))
    assert seen, f"{page} loads nothing"


def test_sdk_is_served_under_its_plain_name(server: DaphneServer) -> None:
    """Applications import /static/rooms/roomapi.js (README): the unhashed name is served too, briefly cached."""
    status, headers, body = fetch(server.http_url + "/static/rooms/roomapi.js")
    assert status == 200 and b"export function connect" in body
    assert "immutable" not in headers.get("cache-control", "")


@pytest.mark.django_db
async def test_development_mode_serves_app_files() -> None:
    """Without collectstatic (STATIC_MANIFEST false, as in tests and development) the apps' files are served."""
    client = AsyncClient()
    response = await client.get("/static/rooms/roomapi.js")
    assert response.status_code == 200
    assert b"export function connect" in b"".join([chunk async for chunk in response.streaming_content])  # type: ignore[attr-defined]
    assert (await client.get("/static/rooms/no-such-file.js")).status_code == 404
