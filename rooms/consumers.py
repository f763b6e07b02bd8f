"""The Room API WebSocket consumer: decode, validate, call the service, encode.

Room rules live in rooms.services; media work goes through rooms.media (the
relay's replies come back as ``media.reply`` messages).  Identity (login, participant, room) comes from this
connection's own state, never from a payload.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from autobahn.websocket.protocol import WebSocketProtocol
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from media_relay import logcontext
from rooms import limits, media, metrics, roster, services, speakers, wire
from rooms import protocol as p
from rooms.auth import SessionIdentity, authenticate_hello
from rooms.catchup import Catchup
from rooms.delivery import RoomHub, deliver, event_message, hub, serve_batched
from rooms.dispatch import deliver_outcome, schedule_expiry, sweep_now_and_then
from rooms.exceptions import ErrorCode, RoomError
from rooms.media_events import MediaReply
from rooms.permissions import require_grant
from rooms.turn import ice_servers

logger = logging.getLogger(__name__)

db = database_sync_to_async

_ROOM_CHANGING = frozenset({p.EventType.ROOM_CLOSED, p.EventType.KICKED})
"""Room events after which a connection forgets its room."""


class RoomConsumer(AsyncWebsocketConsumer):
    """One client connection: a session that may be in one room at a time."""

    identity: SessionIdentity | None = None
    participant_id: int | None = None
    room_id: int | None = None
    room_name: str | None = None
    group: str | None = None
    grants: frozenset[str] = frozenset()
    connection_slot: limits.ConnectionSlot | None = None
    held: list[dict[str, Any]] | None = None
    """Room events that arrived while this connection's join was committing: sent after its state (rooms.catchup)."""
    holding_group: str | None = None
    _hub: RoomHub | None = None
    connection: WebSocketProtocol | None = None
    """daphne's connection under this consumer, written to directly with room events' shared frames (rooms.wire)."""

    async def connect(self) -> None:
        self.limits = limits.ConnectionLimits()
        serve_batched()
        self.connection_slot = await limits.acquire_connection(self.scope)
        await self.accept()
        self.connection = wire.connection_of(self.base_send)
        if self.connection is not None:
            wire.spread_pings(self.connection)
        self._hub = hub()
        self._counted = True
        metrics.websocket_opened()
        if self.connection_slot is None:  # this address holds WS_MAX_CONNECTIONS_PER_IP already
            # An error frame first: daphne does not pass a close reason on to the client.
            await self.send_event(p.error_event(ErrorCode.RATE_LIMITED, limits.TOO_MANY_CONNECTIONS))
            await self.close(code=limits.CLOSE_TOO_MANY_CONNECTIONS, reason=limits.TOO_MANY_CONNECTIONS)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """channels' dispatch without its ``close_old_connections`` hop to the database thread before every
        message: a hello or a join frame would wait there behind the joins in progress.  Every database call of
        this consumer goes through ``database_sync_to_async``, which closes old connections itself."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- inbound frames ---------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        rid: str | int | None = None
        kind: Any = None
        try:
            payload = p.decode_frame(text_data, bytes_data, settings.WS_MAX_FRAME_BYTES)
            rid, kind = p.request_id(payload), payload.get("type")
            logcontext.bind(request_id=rid)  # this connection's task: its log records carry the command's rid
            self.limits.check_bytes(len(text_data or ""))
            self.limits.check(kind)
            command = p.parse_command(payload)
            await self._dispatch(command)
        except p.ProtocolError as exc:
            if kind == p.CommandType.HELLO and self.identity is None:
                # A refused hello (bad username, version, token) fails the session.
                failed = {"status": p.SessionStatus.FAILED, "code": exc.code, "message": exc.message}
                await self.send_event(p.Event(p.EventType.FAILED, failed).to_dict(rid))
                await self.close(code=4001)
                return
            await self.send_event(p.error_event(exc.code, exc.message, rid))
        except Exception:
            logger.exception("command failed")
            await self.send_event(
                p.error_event(ErrorCode.INTERNAL_ERROR, "the server failed to handle this command", rid)
            )

    async def _dispatch(self, command: p.Command) -> None:
        if isinstance(command, p.Hello):
            await self._handle_hello(command)
            return
        if isinstance(command, p.Ping):
            await self.reply(command, p.EventType.PONG)
            return
        if self.identity is None:
            raise RoomError(ErrorCode.NOT_ESTABLISHED, "send hello first")
        handler = self._handlers().get(type(command))
        if handler is None:  # pragma: no cover - every command has a handler
            raise RoomError(ErrorCode.UNKNOWN_TYPE, "unsupported command")
        await handler(command)

    def _handlers(self) -> dict[type[p.Command], Callable[[Any], Awaitable[None]]]:
        return {
            p.Join: self._handle_join,
            p.Leave: self._handle_leave,
            p.SendMessage: self._handle_send_message,
            p.Publish: self._handle_publish,
            p.Unpublish: self._handle_unpublish,
            p.Play: self._handle_play,
            p.SetQuality: self._handle_set_quality,
            p.Stop: self._handle_stop,
            p.Ice: self._handle_ice,
            p.Mute: self._handle_mute,
            p.Moderate: self._handle_moderate,
            p.History: self._handle_history,
        }

    # --- session --------------------------------------------------------------------

    async def _handle_hello(self, command: p.Hello) -> None:
        if self.identity is not None:
            raise RoomError(ErrorCode.ALREADY_ESTABLISHED, "the session is already established")
        try:
            # Not on the database thread that joins queue on: a hello waits for no one's join.
            self.identity = await database_sync_to_async(authenticate_hello, thread_sensitive=False)(
                command, self.scope.get("user")
            )
        except p.ProtocolError as exc:
            await self.send_event(
                p.Event(
                    p.EventType.FAILED, {"status": p.SessionStatus.FAILED, "code": exc.code, "message": exc.message}
                ).to_dict(command.rid)
            )
            await self.close(code=4001)
            return
        session = uuid.uuid4().hex
        logcontext.bind(participant=self.identity.login)
        await self.reply(
            command,
            p.EventType.ESTABLISHED,
            status=p.SessionStatus.ESTABLISHED,
            version=p.PROTOCOL_VERSION,
            username=self.identity.login,
            session=session,
            ice_servers=ice_servers(session),
            limits=limits.announced(),
        )

    def _require_room(self) -> int:
        if self.participant_id is None:
            raise RoomError(ErrorCode.NOT_JOINED, "join a room first")
        return self.participant_id

    # --- rooms -----------------------------------------------------------------------

    async def _handle_join(self, command: p.Join) -> None:
        started = time.perf_counter()
        assert self.identity is not None
        if self.participant_id is not None:
            raise RoomError(ErrorCode.ALREADY_JOINED, f"already in room '{self.room_name}'; leave it first")
        self.identity.check_room(command.room)
        await sweep_now_and_then()
        try:
            outcome = await db(services.join)(
                self.identity.login,
                command.room,
                self.channel_name,
                record=command.record,
                max_participants=command.max_participants,
                role=self.identity.role,
                user_id=self.identity.user_id,
                resume_secret=self.identity.resume_secret,
                token_subject=self.identity.token_subject,
                grants=self.identity.grants,
                on_locked=self._hold_room_events,
            )
        except BaseException:
            await self._stop_holding()
            raise
        self.participant_id, self.room_id, self.group = outcome.participant_id, outcome.room_id, outcome.group
        if outcome.superseded_channel:  # taken over from a connection that died unseen: its media goes first
            await media.participant_gone(outcome.room_id, outcome.participant_id)
            await self.channel_layer.send(outcome.superseded_channel, {"type": "room.superseded"})
        self.room_name = command.room
        logcontext.bind(room=command.room, room_id=outcome.room_id, participant_id=outcome.participant_id)
        logger.info("%s joined room %s", self.identity.login, command.room)
        self.grants = self.identity.grants_for(outcome.state["self"]["role"])
        outcome.state["self"]["grants"] = sorted(self.grants)
        if self.holding_group != outcome.group:  # pragma: no cover - the join registered under the room's lock
            await self._stop_holding()
            await hub().add(outcome.group, self)
        # Read after registering for the room's events (the list is kept before it is delivered): a later change
        # comes as an event, held until the state is sent.  A room without live streams has no speaker to read.
        live = speakers.live_streams(outcome.state)
        outcome.state["active_speakers"] = await speakers.current(outcome.room_id, live) if live else []
        state = p.Event(p.EventType.STATE, {k: v for k, v in outcome.state.items() if k != "type"}).to_dict(command.rid)
        await self.send_text(roster.encode_state(state, outcome.listed))
        await self._send_held(outcome.state)
        metrics.observe_join(time.perf_counter() - started)
        await deliver_outcome(outcome)

    def _hold_room_events(self, group: str) -> None:
        """services.join's ``on_locked``, on the database thread under the room's lock: register for the room's
        events now, holding them until the state is sent.  In a room this process serves already that is one
        dictionary entry; else it waits for the event loop and the channel layer (the room's first here)."""
        if self.held is None:
            self.held = []
        if self.holding_group in (None, group) and self._hub is not None and self._hub.add_if_subscribed(group, self):
            self.holding_group = group
            return
        async_to_sync(self._start_holding)(group)

    async def _start_holding(self, group: str) -> None:
        if self.holding_group is not None and self.holding_group != group:  # a retried join found another room
            await self._stop_holding()
        if self.held is None:
            self.held = []
        self.holding_group = group
        await hub().add(group, self)

    async def _stop_holding(self) -> None:
        """The join failed: leave the room's events it registered for."""
        if self.holding_group is not None:
            await hub().discard(self.holding_group, self)
        self.held = self.holding_group = None

    async def _send_held(self, state: dict[str, Any]) -> None:
        """After the state: the held events it does not already say, in order (more may arrive meanwhile)."""
        catchup: Catchup | None = None
        held = self.held or []
        while held:
            message = held.pop(0)
            if "text" in message:
                if catchup is None:  # built only when something was held
                    catchup = Catchup(state)
                if not catchup.fresh(message["text"]):
                    continue
            await self._room_event(message)
        self.held = self.holding_group = None

    async def _handle_leave(self, command: p.Leave) -> None:
        participant_id = self._require_room()
        outcome = await db(services.leave)(participant_id)
        await self._forget_room(participant_id)
        await asyncio.shield(deliver_outcome(outcome))
        await self.reply(command, p.EventType.ACK)

    async def _forget_room(self, participant_id: int) -> None:
        if self.group:
            await hub().discard(self.group, self)
        await media.participant_gone(self.room_id, participant_id)
        self.participant_id = self.room_id = self.group = self.room_name = None
        self.grants = frozenset()
        logcontext.bind(room=None, room_id=None, participant_id=None)

    async def _handle_send_message(self, command: p.SendMessage) -> None:
        participant_id = self._require_room()
        require_grant(self.grants, p.Grant.CAN_CHAT)
        message, outcome = await db(services.send_message)(participant_id, command.text, command.to)
        # Routed before it is acknowledged, and shielded: a stored message always reaches the room,
        # even if this connection goes away meanwhile; an ack means the channel layer has it.
        await asyncio.shield(deliver(outcome.deliveries))
        await self.reply(command, p.EventType.ACK, message=message)

    async def _handle_history(self, command: p.History) -> None:
        participant_id = self._require_room()
        page = await db(services.history_page)(participant_id, command.before, command.limit)
        await self.reply(command, p.EventType.HISTORY, **page)

    # --- media -------------------------------------------------------------------------

    def _media_session(self) -> media.MediaSession:
        participant_id = self._require_room()
        assert self.room_id is not None
        return media.MediaSession(self.room_id, participant_id, self.channel_name)

    async def _handle_publish(self, command: p.Publish) -> None:
        session = self._media_session()
        require_grant(self.grants, p.Grant.CAN_PUBLISH)
        if command.record:
            require_grant(self.grants, p.Grant.CAN_RECORD)
        p.validate_sdp(command.sdp)
        await media.publish(session, command.kind, command.sdp, command.record, command.rid)

    async def _handle_unpublish(self, command: p.Unpublish) -> None:
        participant_id = self._require_room()
        await db(services.own_stream)(participant_id, command.stream)
        outcome = await db(services.stream_ended)(command.stream)
        await self.reply(command, p.EventType.ACK)
        await deliver_outcome(outcome)

    async def _handle_play(self, command: p.Play) -> None:
        session = self._media_session()
        require_grant(self.grants, p.Grant.CAN_PLAY)
        stream = await db(services.playable_stream)(session.participant_id, command.stream)
        p.validate_sdp(command.sdp)
        await media.play(session, stream.public_id, command.sdp, command.quality, command.rid)

    async def _handle_set_quality(self, command: p.SetQuality) -> None:
        await media.set_quality(self._media_session(), command.play, command.quality, command.rid)

    async def _handle_stop(self, command: p.Stop) -> None:
        await media.stop(self._media_session(), command.play, command.rid)

    async def _handle_ice(self, command: p.Ice) -> None:
        await media.ice(
            self._media_session(), command.pc, command.candidate, command.sdp_mid, command.sdp_mline_index, command.rid
        )

    async def _handle_mute(self, command: p.Mute) -> None:
        participant_id = self._require_room()
        await db(services.own_stream)(participant_id, command.stream)
        outcome = await db(services.set_mute)(command.stream, command.audio, command.video, participant_id)
        await deliver_outcome(outcome)
        await self.reply(command, p.EventType.ACK)

    async def _handle_moderate(self, command: p.Moderate) -> None:
        from rooms import moderation

        participant_id = self._require_room()
        require_grant(self.grants, p.Grant.CAN_MODERATE)
        assert self.room_id is not None
        await moderation.apply(self.room_id, command, by_participant_id=participant_id)
        await self.reply(command, p.EventType.ACK)

    # --- channel-layer events ------------------------------------------------------------

    def room_event_now(self, message: dict[str, Any]) -> bool:
        """The room hub's synchronous path (rooms.delivery): the event written as its shared frame, or held, now;
        False, doing nothing, when it needs :meth:`room_event` (no frame, no connection, or it changes this
        connection's room)."""
        if self.held is not None:
            if message.get("exclude") != self.channel_name:
                self.held.append(message)
            return True
        frame = message.get("frame")
        if frame is None or self.connection is None or message.get("kind") in _ROOM_CHANGING:
            return False
        if message.get("exclude") == self.channel_name:
            return True
        return wire.write(self.connection, frame)

    async def room_event(self, message: dict[str, Any]) -> None:
        """A room event from the service layer (rooms.delivery): sent as the JSON text it was encoded to once, as
        the frame built once for this process (rooms.wire); held while this connection's join commits."""
        if message.get("exclude") and message["exclude"] == self.channel_name:
            return
        if self.held is not None:
            self.held.append(message)
            return
        await self._room_event(message)

    async def _room_event(self, message: dict[str, Any]) -> None:
        if "text" not in message:  # from a process that still sends the event itself
            message = event_message(message["event"], message.get("exclude"))
        frame = message.get("frame")
        if frame is None or self.connection is None or not wire.write(self.connection, frame):
            await self.send(text_data=message["text"])
        kind = message.get("kind")
        if kind == p.EventType.ROOM_CLOSED and message.get("room_id") == self.room_id:
            if self.group:
                await hub().discard(self.group, self)
            self.participant_id = self.room_id = self.group = self.room_name = None
        elif kind == p.EventType.KICKED and self.participant_id is not None:
            await self._forget_room(self.participant_id)

    async def room_superseded(self, message: dict[str, Any]) -> None:
        """Another connection resumed this one's participant with its secret: forget the room, touch nothing."""
        if self.group:
            await hub().discard(self.group, self)
        self.participant_id = self.room_id = self.group = self.room_name = None
        self.grants = frozenset()
        logcontext.bind(room=None, room_id=None, participant_id=None)

    async def media_reply(self, message: MediaReply) -> None:
        """A reply of the media relay to one of this connection's commands."""
        await self.send_event(message["event"])

    # --- lifecycle ------------------------------------------------------------------------

    async def disconnect(self, code: int) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            metrics.websocket_closed()
        if self.connection_slot is not None:
            await self.connection_slot.release()
        participant_id = self.participant_id
        if participant_id is None:
            return
        try:
            if self.group:  # first: this closed connection gets nothing more
                await hub().discard(self.group, self)
            outcome = await db(services.drop)(participant_id, self.channel_name)
            if outcome.disconnected_at is not None:  # else another connection has the participant now
                await media.participant_gone(self.room_id, participant_id)
            await deliver_outcome(outcome)
            if outcome.disconnected_at is not None:
                schedule_expiry(participant_id, outcome.disconnected_at)
        except Exception:
            logger.exception("cleanup after disconnect failed")
        finally:
            self.participant_id = None

    # --- helpers ------------------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        """Encode and send one event (errors, and failed sessions, are counted by code for /metrics): written to
        daphne's connection as a room event is (rooms.wire), else through ASGI."""
        if event.get("type") in (p.EventType.ERROR, p.EventType.FAILED) and event.get("code"):
            metrics.count_error(str(event["code"]))
        await self.send_text(p.encode(event))

    async def send_text(self, text: str) -> None:
        """Send an encoded event: written to daphne's connection as a room event is (rooms.wire), else through
        ASGI."""
        if self.connection is None or not wire.write(self.connection, wire.prepare(text)):
            await self.send(text_data=text)

    async def reply(self, command: p.Command, kind: str, **fields: Any) -> None:
        """Answer a command, echoing its request id."""
        await self.send_event(p.Event(kind, fields).to_dict(command.rid))
