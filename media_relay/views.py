"""Relay statistics over HTTP (loopback or staff only)."""

from django.http import HttpRequest, JsonResponse

from media_relay.stats import snapshot

LOOPBACK = ("127.0.0.1", "::1")


async def media_stats(request: HttpRequest) -> JsonResponse:
    """Counters of this process's relay: forwarded packets, open peers, codecs created (always 0)."""
    user = getattr(request, "user", None)
    is_staff = bool(user is not None and await _is_staff(request))
    if request.META.get("REMOTE_ADDR") not in LOOPBACK and not is_staff:
        return JsonResponse({"detail": "forbidden"}, status=403)
    return JsonResponse(snapshot())


async def _is_staff(request: HttpRequest) -> bool:
    user = await request.auser()
    return bool(user.is_authenticated and user.is_staff)
