"""HTML pages (the index and the three conference pages), /healthz, /metrics and /media/stats."""

import asyncio
import logging
from dataclasses import asdict

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from media_relay.stats import relay_figures
from rooms.page_strings import choose_language, table

logger = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1")
HEALTH_TIMEOUT = 3.0


def _render(request: HttpRequest, template: str, title_key: str) -> HttpResponse:
    """Render a page in the reader's language: ``s`` is the strings table, also embedded for the scripts."""
    language = choose_language(request)
    strings = table(language)
    return render(request, template, {"s": strings, "lang": language, "title": strings[title_key]})


def index(request: HttpRequest) -> HttpResponse:
    """Links to the three pages."""
    return _render(request, "rooms/index.html", "home_title")


def page(template: str, title_key: str):  # type: ignore[no-untyped-def]
    """A view rendering one of the conference pages; ``title_key`` names its title in the strings table."""

    def view(request: HttpRequest) -> HttpResponse:
        return _render(request, template, title_key)

    return view


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_channel_layer() -> None:
    """A ping to a process-specific channel of this process comes back.

    channels-redis reads all of a process's specific channels through one Redis list per prefix, and one reader at
    a time: the room hub (rooms.delivery) and the consumers read "specific." for good, so the probe's channel must
    have that prefix too, or its ping waits in a list no one reads (503 for as long as a room is open)."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "healthz.ping"})
    if (await layer.receive(channel)).get("type") != "healthz.ping":
        raise RuntimeError("the channel layer returned another message")


async def healthz(request: HttpRequest) -> JsonResponse:
    """Readiness probe: the database answers and, with REDIS_URL, the channel layer delivers; 200 or 503 (JSON)."""
    checks: dict[str, str] = {}
    probes = {"database": lambda: database_sync_to_async(_check_database)()}
    if settings.REDIS_URL:
        probes["channel_layer"] = _check_channel_layer
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), HEALTH_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:
            logger.warning("health check %s failed: %r", name, exc)
            checks[name] = "timeout" if isinstance(exc, TimeoutError) else f"error: {type(exc).__name__}"
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JsonResponse(body, status=200 if healthy else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (rooms.metrics): loopback or staff only unless METRICS_PUBLIC."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from rooms.metrics import REGISTRY

    user = getattr(request, "user", None)
    allowed = (
        settings.METRICS_PUBLIC
        or request.META.get("REMOTE_ADDR") in LOOPBACK
        or bool(user is not None and user.is_authenticated and user.is_staff)
    )
    if not allowed:
        return JsonResponse({"detail": "forbidden"}, status=403)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


async def media_stats(request: HttpRequest) -> JsonResponse:
    """This process's relay figures (forwarded packets, open peers, codecs created: always 0); loopback or staff."""
    user = getattr(request, "user", None)
    is_staff = bool(user is not None and await _is_staff(request))
    if request.META.get("REMOTE_ADDR") not in LOOPBACK and not is_staff:
        return JsonResponse({"detail": "forbidden"}, status=403)
    return JsonResponse(asdict(relay_figures()))


async def _is_staff(request: HttpRequest) -> bool:
    user = await request.auser()
    return bool(user.is_authenticated and user.is_staff)
