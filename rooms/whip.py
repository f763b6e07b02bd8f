"""The WHIP (RFC 9725) and WHEP HTTP endpoints: parse the request, call rooms.whip_sessions, map refusals.

``POST /whip/{room}`` publishes an SDP offer as the caller's camera stream in the
room; ``POST /whep/{room}/{stream-or-login}`` plays one stream.  Both answer
``201 Created`` with the SDP answer, the session's ``Location`` and ``ETag``, and
``Link`` headers carrying the ICE servers (rooms.turn).  ``PATCH`` on the session
trickles candidates (``application/trickle-ice-sdpfrag``), ``DELETE`` ends it,
``OPTIONS`` answers CORS pre-flights.  Refusals are status codes with a JSON body
``{"code", "message"}`` (STATUS below); docs/whip-whep.md describes it all.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote

from channels.db import database_sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from rooms import protocol as p
from rooms import whip_sessions as sessions
from rooms.exceptions import ErrorCode
from rooms.turn import IceServerDict, ice_servers

logger = logging.getLogger(__name__)

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"

#: The HTTP status of each refusal (anything else: 400).
STATUS: dict[str, int] = {
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.TOKEN_REVOKED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ROOM_LOCKED: 403,
    ErrorCode.ROOM_FULL: 403,
    ErrorCode.ROOM_NOT_FOUND: 404,
    ErrorCode.ROOM_FINISHED: 404,
    ErrorCode.STREAM_NOT_FOUND: 404,
    ErrorCode.STREAM_NOT_PUBLISHING: 404,
    ErrorCode.PLAY_NOT_FOUND: 404,
    ErrorCode.LOGIN_TAKEN: 409,
    ErrorCode.ALREADY_PUBLISHING: 409,
    ErrorCode.INVALID_SDP: 422,
    ErrorCode.INVALID_FIELD: 422,
    ErrorCode.INVALID_USERNAME: 422,
    ErrorCode.CANDIDATE_REFUSED: 422,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_MANY_PUBLICATIONS: 429,
    ErrorCode.TOO_MANY_PLAYS: 429,
    ErrorCode.TOO_MANY_PENDING: 429,
    ErrorCode.TOO_MANY_CANDIDATES: 429,
    ErrorCode.MEDIA_UNAVAILABLE: 503,
    ErrorCode.MEDIA_FAILED: 503,
}

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, Accept-Post",
    "Access-Control-Max-Age": "600",
}


def _with_cors(response: HttpResponse) -> HttpResponse:
    for name, value in CORS.items():
        response[name] = value
    return response


def refusal(status: int, code: str, message: str, **headers: str) -> HttpResponse:
    """A refusal: the status, and a JSON body that says why."""
    response = JsonResponse({"code": code, "message": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return _with_cors(response)


def _error_response(exc: p.ProtocolError) -> HttpResponse:
    status = STATUS.get(exc.code, 400)
    headers = {"WWW_Authenticate": 'Bearer realm="rooms"'} if status == 401 else {}
    if status == 503:
        headers["Retry_After"] = "5"
    return refusal(status, exc.code, exc.message, **headers)


def link_header(servers: list[IceServerDict]) -> str:
    """The ICE servers as ``Link`` values (RFC 9725 section 4.6)."""
    links = []
    for server in servers:
        for url in server.get("urls", []):
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += f'; username="{server["username"]}"; credential="{server.get("credential", "")}"'
                link += '; credential-type="password"'
            links.append(link)
    return ", ".join(links)


def _ice_links(response: HttpResponse, *, turn: bool = True) -> HttpResponse:
    servers = ice_servers(f"whip-{uuid.uuid4().hex[:12]}")
    if not turn:
        servers = [server for server in servers if "username" not in server]
    links = link_header(servers)
    if links:
        response["Link"] = links
    return response


def _may_relay(request: HttpRequest) -> bool:
    """Whether a pre-flight may carry TURN credentials: in guest mode (a guest gets them over the WebSocket
    too), else only with a valid join token (a browser's CORS pre-flight carries none: it gets them in 201)."""
    if settings.ROOMS_GUEST_MODE:
        return True
    try:
        _authorize(request)
    except p.ProtocolError:
        return False
    return True


async def _preflight(request: HttpRequest, accept_post: bool) -> HttpResponse:
    turn = await database_sync_to_async(_may_relay)(request)
    response = _ice_links(_with_cors(HttpResponse(status=204)), turn=turn)
    if accept_post:
        response["Accept-Post"] = SDP
    response["Accept-Patch"] = SDPFRAG
    return response


def _offer(request: HttpRequest) -> str:
    if request.content_type != SDP:
        raise _Refused(415, "unsupported_media_type", f"the offer must be sent as {SDP}", Accept_Post=SDP)
    if len(request.body) > p.MAX_SDP_BYTES:
        raise p.ProtocolError(ErrorCode.INVALID_SDP, f"the offer is larger than {p.MAX_SDP_BYTES} bytes")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise p.ProtocolError(ErrorCode.INVALID_SDP, "the offer is not UTF-8 text") from None
    if not text.startswith("v=0"):
        raise p.ProtocolError(ErrorCode.INVALID_SDP, "the offer is not an SDP document (it must start with v=0)")
    return text


class _Refused(Exception):
    """A refusal that has no protocol error code (415, 412...)."""

    def __init__(self, status: int, code: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.response = refusal(status, code, message, **headers)


def _created(request: HttpRequest, location: str, started: sessions.Started) -> HttpResponse:
    response = HttpResponse(started.sdp, status=201, content_type=SDP)
    response["Location"] = location
    response["ETag"] = started.ref.etag
    response["Accept-Patch"] = SDPFRAG
    return _ice_links(_with_cors(response))


async def _guarded(handler: Any) -> HttpResponse:
    """Run a handler; refusals become their status, anything unexpected a 503 (never a 500)."""
    try:
        return await handler()
    except _Refused as exc:
        return exc.response
    except p.ProtocolError as exc:
        return _error_response(exc)
    except Exception:
        logger.exception("a WHIP/WHEP request failed")
        return refusal(503, ErrorCode.MEDIA_FAILED, "the server could not handle this request; try again")


def _authorize(request: HttpRequest) -> sessions.Caller:
    return sessions.authenticate(request.headers.get("Authorization"), request.GET.get("login"))


@csrf_exempt
async def whip_endpoint(request: HttpRequest, room: str) -> HttpResponse:
    """WHIP: POST an offer to publish into ``room``; OPTIONS for the pre-flight."""
    if request.method == "OPTIONS":
        return await _guarded(lambda: _preflight(request, accept_post=True))
    if request.method != "POST":
        return refusal(405, "method_not_allowed", "use POST (or OPTIONS) on a WHIP endpoint", Allow="POST, OPTIONS")

    async def handle() -> HttpResponse:
        caller = await database_sync_to_async(_authorize)(request)
        offer = _offer(request)
        started = await sessions.start_whip(room, caller, offer, getattr(request, "scope", None))
        location = f"/whip/{quote(room, safe='')}/{started.ref.sign()}"
        return _created(request, location, started)

    return await _guarded(handle)


@csrf_exempt
async def whep_endpoint(request: HttpRequest, room: str, target: str) -> HttpResponse:
    """WHEP: POST an offer to play stream (or participant) ``target`` of ``room``; OPTIONS for the pre-flight."""
    if request.method == "OPTIONS":
        return await _guarded(lambda: _preflight(request, accept_post=True))
    if request.method != "POST":
        return refusal(405, "method_not_allowed", "use POST (or OPTIONS) on a WHEP endpoint", Allow="POST, OPTIONS")

    async def handle() -> HttpResponse:
        caller = await database_sync_to_async(_authorize)(request)
        offer = _offer(request)
        started = await sessions.start_whep(room, target, caller, offer, getattr(request, "scope", None))
        location = f"/whep/{quote(room, safe='')}/{quote(target, safe='')}/{started.ref.sign()}"
        return _created(request, location, started)

    return await _guarded(handle)


def parse_sdpfrag(text: str) -> tuple[str, list[tuple[str | None, str | None, int | None]]]:
    """The ICE ufrag and the candidates of a trickle-ice-sdpfrag ((line, mid, m-line index); None: the end)."""
    ufrag = ""
    found: list[tuple[str | None, str | None, int | None]] = []
    index, mid = -1, None
    pending: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise p.ProtocolError(ErrorCode.INVALID_SDP, f"not an SDP line: {line[:60]!r}")
        if line.startswith("m="):
            found.extend((c, mid, max(index, 0)) for c in pending)
            pending, index, mid = [], index + 1, None
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=mid:"):
            mid = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            pending.append(line[2:])
        elif line == "a=end-of-candidates":
            pending.append("")
    found.extend((c, mid, max(index, 0)) for c in pending)
    if len(found) > 100:
        raise p.ProtocolError(ErrorCode.TOO_MANY_CANDIDATES, "at most 100 candidates per PATCH")
    return ufrag, [(c or None, m, i) for c, m, i in found]


@csrf_exempt
async def session_resource(request: HttpRequest, room: str, session: str, target: str = "") -> HttpResponse:
    """A WHIP or WHEP session: PATCH trickles candidates, DELETE ends it, OPTIONS for the pre-flight."""
    if request.method == "OPTIONS":
        return await _guarded(lambda: _preflight(request, accept_post=False))
    if request.method not in ("PATCH", "DELETE"):
        return refusal(405, "method_not_allowed", "use PATCH or DELETE on a session", Allow="PATCH, DELETE, OPTIONS")

    async def handle() -> HttpResponse:
        ref = sessions.SessionRef.unsign(session)
        if ref is None or not await sessions.alive(ref):
            return refusal(404, "session_not_found", "no such WHIP/WHEP session (it ended or never existed)")
        if request.method == "DELETE":
            await sessions.stop(ref)
            return _with_cors(HttpResponse(status=200))
        return await _patch(request, ref)

    return await _guarded(handle)


async def _patch(request: HttpRequest, ref: sessions.SessionRef) -> HttpResponse:
    if request.content_type != SDPFRAG:
        raise _Refused(415, "unsupported_media_type", f"a PATCH carries {SDPFRAG}", Accept_Patch=SDPFRAG)
    if_match = request.headers.get("If-Match")
    if if_match == "*":
        raise _Refused(422, "ice_restart_unsupported", "ICE restarts are not supported: DELETE and POST again")
    if if_match is not None and if_match != ref.etag:
        raise _Refused(412, "etag_mismatch", "If-Match does not name this session's current ETag")
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise p.ProtocolError(ErrorCode.INVALID_SDP, "the fragment is not UTF-8 text") from None
    ufrag, candidates = parse_sdpfrag(text)
    if ufrag and ref.ufrag and ufrag != ref.ufrag:
        raise _Refused(422, "ice_restart_unsupported", "a new ICE ufrag asks for an ICE restart, which is unsupported")
    await sessions.trickle(ref, candidates)
    response = _with_cors(HttpResponse(status=204))
    response["ETag"] = ref.etag
    return response


def player(request: HttpRequest) -> HttpResponse:
    """The WHEP player page: one <video>; ``?room=&stream=&token=`` say what to play."""
    return render(request, "rooms/whep-player.html")
