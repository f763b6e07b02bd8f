"""WHIP ingest and WHEP playback sessions: a room participant or a hidden viewer driven over HTTP.

A WHIP publisher joins its room through rooms.services exactly as a WebSocket
participant does (same admission, presence events and caps) and publishes one
``camera`` stream through rooms.media; a WHEP viewer plays one stream of a room
without joining it (it is not shown in the room: the relay knows it under a
negative pseudo participant id of its own).

Each session owns a channel of the channel layer, read by a task in the process
that created it: the relay's answer comes back there, and so do the events that
end the session (its stream ended because its media stopped, a kick, the room
closing, a DELETE that reached another daphne process).  The HTTP resource of a
session (rooms.whip) names it by a signed reference, so PATCH and DELETE work in
any process.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import secrets
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core import signing

from rooms import limits, media, services
from rooms import protocol as p
from rooms.delivery import RoomHub, hub
from rooms.dispatch import deliver_outcome, sweep_now_and_then
from rooms.exceptions import ErrorCode, RoomError
from rooms.models import Participant
from rooms.permissions import grants_for_role, require_grant
from rooms.tokens import ensure_not_revoked, verify_token

logger = logging.getLogger(__name__)

db = database_sync_to_async

SALT = "rooms.whip.session"
#: The channel-layer message that ends a session from another process (a DELETE that landed there).
END_MESSAGE = "whip.end"
#: How long a POST waits for the relay's answer.
ANSWER_TIMEOUT = 15.0
#: The kind of the stream a WHIP publisher publishes.
WHIP_KIND = p.StreamKind.CAMERA
ROOM_CLOSED_REASON = "the room closed"

Kind = Literal["whip", "whep"]


@dataclass(frozen=True)
class Caller:
    """Who asks, from the Authorization header (a join token) or, for a guest, the ``login`` parameter."""

    login: str | None
    role: str | None = None
    grants: frozenset[str] | None = None
    token_subject: str | None = None
    room: str | None = None

    def check_room(self, room: str) -> None:
        """A token bound to one room opens sessions in that room only (forbidden)."""
        if self.room is not None and self.room != room:
            raise RoomError(ErrorCode.FORBIDDEN, f"the join token is for room '{self.room}', not '{room}'")

    def require(self, grant: str, role: str | None = None) -> None:
        """Refuse with ``forbidden`` unless the token's grants (else the role's) hold ``grant``."""
        role = role or self.role
        if self.grants is None and role is None:
            return  # a guest: the role the room gives it decides (publisher or moderator, both may)
        require_grant(self.grants if self.grants is not None else grants_for_role(role or ""), grant)


def authenticate(authorization: str | None, login: str | None) -> Caller:
    """The caller of a request: a Bearer join token (not revoked), or a guest if ROOMS_GUEST_MODE allows.

    A guest names its login with ``login`` (only WHIP needs one); with a token the login is the token's
    subject, and a different ``login`` is refused.  Synchronous: reads the revocation list.
    """
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RoomError(ErrorCode.INVALID_TOKEN, "the Authorization header must be 'Bearer <join token>'")
        claims = verify_token(token.strip())
        ensure_not_revoked(claims)
        if login and p.clean_name(login, what="login", max_length=p.MAX_LOGIN_LENGTH) != claims.login:
            raise RoomError(ErrorCode.FORBIDDEN, f"the join token is for login '{claims.login}', not '{login}'")
        return Caller(claims.login, claims.role, claims.grants, claims.login, claims.room)
    if not settings.ROOMS_GUEST_MODE:
        raise RoomError(ErrorCode.INVALID_TOKEN, "guest access is disabled: send 'Authorization: Bearer <join token>'")
    if login is None:
        return Caller(None)
    return Caller(p.clean_name(login, what="login", max_length=p.MAX_LOGIN_LENGTH, code=ErrorCode.INVALID_USERNAME))


@dataclass(frozen=True)
class SessionRef:
    """What the signed session id of a resource names; everything PATCH and DELETE need, in any process."""

    kind: Kind
    room_id: int
    channel: str
    participant_id: int
    """The WHIP participant, or the WHEP viewer's negative pseudo id."""
    pc_id: str
    stream_id: str
    ufrag: str = ""
    """The offer's ICE username fragment (a PATCH with another one asks for an ICE restart)."""

    def sign(self) -> str:
        """The session id used in the resource URL."""
        return signing.dumps(asdict(self), salt=SALT, compress=True)

    @classmethod
    def unsign(cls, value: str) -> SessionRef | None:
        """The reference of a session id, or None when it is not one of ours."""
        try:
            data = signing.loads(value, salt=SALT)
            return cls(**data)
        except (signing.BadSignature, TypeError, ValueError):
            return None

    @property
    def etag(self) -> str:
        """The entity tag of the session's ICE state (fixed: the relay does no ICE restart)."""
        return '"' + hashlib.sha256(self.sign().encode()).hexdigest()[:20] + '"'

    @property
    def media_session(self) -> media.MediaSession:
        """The media identity of the session: its room, participant and reply channel."""
        return media.MediaSession(self.room_id, self.participant_id, self.channel)


@dataclass
class Session:
    """A live WHIP or WHEP session in this process: its channel reader and its clean-up."""

    kind: Kind
    room_id: int = 0
    participant_id: int = 0
    channel: str = ""
    group: str = ""
    stream_id: str = ""
    pc_id: str = ""
    slot: limits.ConnectionSlot | None = None
    ended: bool = False
    answered: bool = False
    end_reason: str = ""
    held: list[dict[str, Any]] | None = None
    """Room events that arrived while the join was committing: handled once it returns."""
    holding_group: str = ""
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _reader: asyncio.Task[None] | None = None
    _hub: RoomHub | None = None

    @property
    def channel_name(self) -> str:
        """Its channel, as the room hub knows members (rooms.delivery.Member)."""
        return self.channel

    async def open(self) -> None:
        """Get a channel and start reading it."""
        self.channel = await get_channel_layer().new_channel()
        self._hub = hub()
        self._reader = asyncio.ensure_future(self._read())

    async def room_event(self, message: dict[str, Any]) -> None:
        """A room event handed over by this process's room hub, like a WebSocket consumer's (held while the
        session's join commits)."""
        if self.held is not None:
            self.held.append(message)
            return
        await self._handle(message)

    def hold_room_events(self, group: str) -> None:
        """services.join's ``on_locked``, on the database thread under the room's lock: register for the room's
        events before the join commits (so none committed after it is missed), holding them until it returns."""
        if self.held is None:
            self.held = []
        if self.holding_group in ("", group) and self._hub is not None and self._hub.add_if_subscribed(group, self):
            self.holding_group = group
            return
        async_to_sync(self._start_holding)(group)

    async def _start_holding(self, group: str) -> None:
        if self.holding_group and self.holding_group != group:  # a retried join found another room
            await hub().discard(self.holding_group, self)
        if self.held is None:
            self.held = []
        self.holding_group = group
        await hub().add(group, self)

    async def handle_held(self) -> None:
        """The join returned: handle the events held meanwhile, in order (more may arrive meanwhile)."""
        held = self.held or []
        while held and not self.ended:
            await self._handle(held.pop(0))
        self.held = None

    async def _read(self) -> None:
        layer = get_channel_layer()
        while not self.ended:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("a %s session could not read its channel; retrying", self.kind, exc_info=True)
                await asyncio.sleep(0.5)
                continue
            try:
                await self._handle(message)
            except Exception:
                logger.exception("a %s session failed to handle %s", self.kind, message.get("type"))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == END_MESSAGE:
            await self.end("deleted")
            return
        if message.get("exclude") and message["exclude"] == self.channel:
            return
        # Media replies carry the event; room deliveries its JSON text, encoded once (rooms.delivery).
        event = message.get("event") or (json.loads(message["text"]) if "text" in message else {})
        rid = event.get("rid")
        if isinstance(rid, str) and rid in self._pending:
            future = self._pending.pop(rid)
            if not future.done():
                future.set_result(event)
            return
        etype = event.get("type")
        stream = event.get("stream") or {}
        if etype == p.EventType.STREAM_STATUS and stream.get("id") == self.stream_id:
            if event.get("status") in (p.StreamStatus.FAILED, p.StreamStatus.UNPUBLISHED):
                await self.end(f"the stream ended: {event.get('reason') or event.get('status')}")
        elif etype == p.EventType.PLAY_STATUS and event.get("play") == self.pc_id:
            if event.get("status") != p.PlayStatus.PLAYING:
                await self.end(f"the playback ended: {event.get('reason') or event.get('status')}")
        elif etype == p.EventType.KICKED:
            await self.end("kicked", leave=False)
        elif etype == p.EventType.ROOM_CLOSED and (event.get("room") or {}).get("id") == self.room_id:
            await self.end(ROOM_CLOSED_REASON, leave=False)

    async def request(self, rid: str, send: Any) -> dict[str, Any]:
        """Send a media command with request id ``rid`` (``send()``) and wait for the event that answers it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            await send()
            return await asyncio.wait_for(future, ANSWER_TIMEOUT)
        except TimeoutError:
            raise RoomError(ErrorCode.MEDIA_UNAVAILABLE, "the media relay did not answer in time") from None
        finally:
            self._pending.pop(rid, None)

    async def end(self, reason: str, *, leave: bool = True) -> None:
        """End the session once: the participant leaves (WHIP), every peer connection closes, the slot is freed."""
        if self.ended:
            return
        self.ended = True
        self.end_reason = reason
        _sessions.pop(self.channel, None)
        logger.info("%s session %s ends: %s", self.kind, self.pc_id or self.channel, reason)
        try:
            if self.kind == "whip" and self.participant_id and leave:
                outcome = await db(services.leave)(self.participant_id)
                await asyncio.shield(deliver_outcome(outcome))
            if self.room_id and self.participant_id:
                await media.participant_gone(self.room_id, self.participant_id)
            if self.group or self.holding_group:
                await hub().discard(self.group or self.holding_group, self)
        except Exception:
            logger.exception("cleaning up a %s session failed", self.kind)
        finally:
            if self.slot is not None:
                await self.slot.release()
            if self._reader is not None and self._reader is not asyncio.current_task():
                self._reader.cancel()

    def ref(self, ufrag: str) -> SessionRef:
        """The reference its resource URL carries."""
        return SessionRef(self.kind, self.room_id, self.channel, self.participant_id, self.pc_id, self.stream_id, ufrag)


_sessions: dict[str, Session] = {}
"""This process's live sessions by channel."""


def local_session(ref: SessionRef) -> Session | None:
    """The live session of ``ref`` if this process runs it."""
    session = _sessions.get(ref.channel)
    return session if session is not None and not session.ended else None


@dataclass(frozen=True)
class Started:
    """A session that answered: its reference and the relay's SDP answer."""

    ref: SessionRef
    sdp: str


def _ice_ufrag(sdp: str) -> str:
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.split(":", 1)[1].strip()
    return ""


def _answer_or_raise(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("type") == p.EventType.ERROR:
        raise RoomError(ErrorCode(event.get("code", ErrorCode.MEDIA_FAILED)), str(event.get("message", "")))
    return event


async def _slot(scope: dict[str, Any] | None) -> limits.ConnectionSlot:
    slot = await limits.acquire_connection(scope or {})
    if slot is None:
        raise RoomError(ErrorCode.RATE_LIMITED, limits.TOO_MANY_CONNECTIONS)
    return slot


async def start_whip(room: str, caller: Caller, sdp: str, scope: dict[str, Any] | None) -> Started:
    """Join ``room`` as the caller and publish its offer as a camera stream; refusals raise RoomError."""
    room = p.clean_name(room, what="room", max_length=p.MAX_NAME_LENGTH)
    caller.check_room(room)
    caller.require(p.Grant.CAN_PUBLISH)
    if caller.login is None:
        raise RoomError(ErrorCode.INVALID_TOKEN, "a guest publisher names itself: add ?login=<name> to the URL")
    p.validate_sdp(sdp)
    session = Session("whip")
    session.slot = await _slot(scope)
    try:
        await session.open()
        await sweep_now_and_then()
        outcome = await db(services.join)(
            caller.login, room, session.channel, role=caller.role, token_subject=caller.token_subject,
            grants=caller.grants, on_locked=session.hold_room_events,
        )
        session.participant_id, session.room_id, session.group = (
            outcome.participant_id, outcome.room_id, outcome.group,
        )
        _sessions[session.channel] = session
        if outcome.superseded_channel:  # resumed a participant whose own connection died unseen
            await media.participant_gone(outcome.room_id, outcome.participant_id)
            await get_channel_layer().send(outcome.superseded_channel, {"type": "room.superseded"})
        if session.holding_group != outcome.group:  # pragma: no cover - the join registered under the room's lock
            await hub().add(outcome.group, session)
        await deliver_outcome(outcome)
        await session.handle_held()
        if session.ended:  # the room closed (or the publisher was kicked) right after the join
            code = ErrorCode.ROOM_FINISHED if session.end_reason == ROOM_CLOSED_REASON else ErrorCode.FORBIDDEN
            raise RoomError(code, session.end_reason)
        caller.require(p.Grant.CAN_PUBLISH, outcome.state["self"]["role"])
        rid = uuid.uuid4().hex
        event = _answer_or_raise(
            await session.request(
                rid, lambda: media.publish(session.ref("").media_session, WHIP_KIND, sdp, False, rid)
            )
        )
        session.pc_id = session.stream_id = str(event["pc"])
        session.answered = True
        return Started(session.ref(_ice_ufrag(sdp)), str(event["sdp"]))
    except BaseException:
        await session.end("refused")
        raise


async def start_whep(room: str, target: str, caller: Caller, sdp: str, scope: dict[str, Any] | None) -> Started:
    """Play one stream of ``room`` (by id or its publisher's login) to a viewer that does not join it."""
    room = p.clean_name(room, what="room", max_length=p.MAX_NAME_LENGTH)
    caller.check_room(room)
    caller.require(p.Grant.CAN_PLAY)
    p.validate_sdp(sdp)
    stream = await db(services.stream_to_watch)(room, target)
    session = Session("whep", room_id=stream.participant.room_id, stream_id=stream.public_id)
    session.participant_id = -(secrets.randbelow(2**31 - 1) + 1)  # never a real participant's id
    session.slot = await _slot(scope)
    try:
        await session.open()
        _sessions[session.channel] = session
        rid = uuid.uuid4().hex
        event = _answer_or_raise(
            await session.request(
                rid, lambda: media.play(session.ref("").media_session, stream.public_id, sdp, p.Quality.AUTO, rid)
            )
        )
        session.pc_id = str(event["play"])
        session.answered = True
        return Started(session.ref(_ice_ufrag(sdp)), str(event["sdp"]))
    except BaseException:
        await session.end("refused")
        raise


def _whip_alive(ref: SessionRef) -> bool:
    return Participant.objects.filter(
        pk=ref.participant_id, channel_name=ref.channel, state=p.ParticipantState.CONNECTED
    ).exists()


async def alive(ref: SessionRef) -> bool:
    """True while the session lives (in this process, or for WHIP per the database in any process)."""
    if local_session(ref) is not None:
        return True
    if ref.kind == "whip":
        return bool(await db(_whip_alive)(ref))
    return False


async def trickle(ref: SessionRef, candidates: list[tuple[str | None, str | None, int | None]]) -> None:
    """Hand trickled candidates ((candidate, mid, m-line index); None: end of candidates) to the relay.

    When this process runs the session each one waits for the relay's ack, so a refused candidate is an
    error here; elsewhere they are sent without waiting.
    """
    session = local_session(ref)
    for candidate, mid, index in candidates:
        if session is None:
            await media.ice(ref.media_session, ref.pc_id, candidate, mid, index, None)
            continue
        rid = uuid.uuid4().hex
        send = functools.partial(media.ice, ref.media_session, ref.pc_id, candidate, mid, index, rid)
        _answer_or_raise(await session.request(rid, send))


async def stop(ref: SessionRef) -> None:
    """End a session (DELETE): here if this process runs it, else by a message to its channel."""
    session = local_session(ref)
    if session is not None:
        await session.end("deleted")
        return
    await get_channel_layer().send(ref.channel, {"type": END_MESSAGE})
    if ref.kind == "whip":  # its process may be gone: leave through the service layer anyway (idempotent)
        outcome = await db(services.leave)(ref.participant_id)
        await deliver_outcome(outcome)
        await media.participant_gone(ref.room_id, ref.participant_id)
