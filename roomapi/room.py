"""A joined room: its participants, its message history and its event callbacks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from roomapi.constants import ALL_ROOM_EVENTS, ERROR_CODE, ROOM_EVENT, STREAM_STATUS
from roomapi.errors import RoomApiError
from roomapi.media import PublishedStream, publish
from roomapi.objects import Message, Participant, RoomEvent, Stream
from roomapi.resume import Sources
from roomapi.session import Session

logger = logging.getLogger(__name__)

RoomCallback = Callable[[RoomEvent], Any]
EventPredicate = Callable[[RoomEvent], bool]


class Room:
    """A room this connection is in; built from the server's ``state`` reply to ``join``.

    Its participants (the others), their streams and the message history are
    kept current by the room's events.  Callbacks given to :meth:`on` receive
    a :class:`RoomEvent`; they may be plain functions or coroutines.
    """

    def __init__(self, connection: Session, state: dict[str, Any]) -> None:
        self.connection = connection
        self.info: dict[str, Any] = dict(state.get("room") or {})
        self.name: str = str(self.info.get("name", ""))
        self.id: int | None = self.info.get("id")
        self.me: Participant = Participant.from_dict(state["self"], self)
        self.grants: list[str] = list(state["self"].get("grants", []))
        self.resumed: bool = bool(state.get("resumed"))
        self.resume_secret: str | None = state["self"].get("resume_secret")
        """This participant's secret for resuming after a drop (``connect(..., resume_secret=...)``)."""
        self.viewers: int = int(self.info.get("viewers") or 0)
        """The room's audience: how many viewers are present (they are counted, never listed)."""
        self._participants: dict[str, Participant] = {}
        for raw in state.get("participants") or []:
            participant = Participant.from_dict(raw, self)
            self._participants[participant.login] = participant
        self.history: list[Message] = [Message.from_dict(m) for m in state.get("history") or []]
        """Messages this participant may see: the joining history, then every message received."""
        self.history_more: bool = bool(state.get("history_more"))
        """True when older messages than ``history``'s first exist on the server (see :meth:`load_history`)."""
        self.events: list[RoomEvent] = []
        """Every event this room emitted, oldest first (see :meth:`wait_for`)."""
        self.closed = False
        """True once the room ended for this connection (left, kicked or finalized)."""
        self.active_speakers: list[str] = [str(stream_id) for stream_id in state.get("active_speakers") or []]
        """The ids of the streams speaking now, loudest first (the join's ``state``, then ACTIVE_SPEAKERS)."""
        self._callbacks: dict[str, list[RoomCallback]] = {}
        self._consumed: set[int] = set()
        self._waiters: list[tuple[str, EventPredicate | None, asyncio.Future[RoomEvent]]] = []
        self._emit(RoomEvent(ROOM_EVENT.STATE, "state", state))

    def __repr__(self) -> str:
        return f"<Room {self.name!r} as {self.me.login!r}, {len(self._participants)} others>"

    # --- public API -------------------------------------------------------------

    def get_participants(self) -> list[Participant]:
        """The other participants present (connected or briefly disconnected)."""
        return list(self._participants.values())

    def get_participant(self, login: str) -> Participant | None:
        """Another participant by login, if present."""
        return self._participants.get(login)

    def on(self, event: str, callback: RoomCallback) -> Room:
        """Call ``callback(room_event)`` on each ROOM_EVENT ``event``; returns the room (chainable)."""
        if event not in ALL_ROOM_EVENTS:
            raise ValueError(f"unknown room event {event!r}")
        self._callbacks.setdefault(event, []).append(callback)
        return self

    async def publish(
        self,
        video: Any = None,
        audio: Any = None,
        kind: str = "camera",
        record: bool = False,
        **options: Any,
    ) -> PublishedStream:
        """Publish aiortc tracks (camera or screen); options: video_codec, audio_codec, ice_servers.

        After a resume (ROOM_EVENT.RECONNECTED) the SDK publishes the same tracks again on the same object;
        so a peer connection that closes no longer ends them: stop them when you are done.
        """
        sources = Sources(video, audio)
        relayed_video, relayed_audio = sources.tracks()
        stream = await publish(self, video=relayed_video, audio=relayed_audio, kind=kind, record=record, **options)
        stream.recipe = {"sources": sources, "kind": kind, "record": record, **options}
        return stream

    async def send_message(self, text: str, to: Iterable[str] | str | None = None) -> Message:
        """Send ``text`` to everyone, or privately to one login or a list of logins.

        A text over the server's announced ``max_message_bytes`` raises RoomApiError(``message_too_large``)
        without being sent.
        """
        limit = self.connection.limits.get("max_message_bytes")
        if limit is not None and len(text.encode("utf-8", "surrogatepass")) > limit:
            raise RoomApiError(ERROR_CODE.MESSAGE_TOO_LARGE, f"the message is larger than {limit} bytes")
        fields: dict[str, Any] = {"text": text}
        if to is not None:
            fields["to"] = [to] if isinstance(to, str) else list(to)
        reply = await self.connection._request("send_message", **fields)
        return Message.from_dict(reply.get("message") or {})

    async def load_history(self, limit: int | None = None) -> list[Message]:
        """Fetch the page of messages just older than ``history``'s first (``limit`` at most; the server's
        default when None), put them at the front of ``history`` and return them (oldest first)."""
        fields: dict[str, Any] = {}
        oldest = next((m.id for m in self.history if m.id is not None), None)
        if oldest is not None:
            fields["before"] = oldest
        if limit is not None:
            fields["limit"] = limit
        reply = await self.connection._request("history", **fields)
        page = [Message.from_dict(m) for m in reply.get("messages") or []]
        self.history[:0] = page
        self.history_more = bool(reply.get("more"))
        return page

    async def moderate(self, action: str, **fields: Any) -> None:
        """A moderator action (needs the ``can_moderate`` grant): ``lock``, ``unlock``, ``set_max_participants``
        (``max_participants=``), ``mute`` (``stream=``, ``audio=``, ``video=``), ``unpublish`` (``stream=``),
        ``kick`` (``login=``) or ``finalize``; raises RoomApiError (``forbidden``, ``stream_not_found``, ...)
        when refused. The Web SDK's ``room.moderate(action, fields)``."""
        await self.connection._request("moderate", **fields, action=action)

    async def leave(self) -> None:
        """Leave the room; the others get LEFT, and the last one out finalizes it."""
        if self.closed:
            return
        await self.connection._request("leave")
        self._close()

    async def wait_for(
        self, event: str, predicate: EventPredicate | None = None, timeout: float = 10.0
    ) -> RoomEvent:
        """The first not yet awaited ``event`` matching ``predicate``, waiting at most ``timeout`` seconds.

        Events already emitted count, so nothing is missed between a command
        and the wait; each event is returned by at most one call.
        """
        if event not in ALL_ROOM_EVENTS:
            raise ValueError(f"unknown room event {event!r}")
        for index, past in enumerate(self.events):
            if index not in self._consumed and past.name == event and (predicate is None or predicate(past)):
                self._consumed.add(index)
                return past
        future: asyncio.Future[RoomEvent] = asyncio.get_running_loop().create_future()
        waiter = (event, predicate, future)
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    # --- resuming (called by the connection, docs/protocol.md "Reconnection in the SDKs") -----

    def _reconnecting(self) -> None:
        """The connection dropped; the SDK is resuming this room."""
        self._emit(RoomEvent(ROOM_EVENT.RECONNECTING, "", {}))

    def _resume(self, state: dict[str, Any]) -> None:
        """Take the ``state`` of a resumed join: the same objects, brought up to date; missed messages emitted."""
        self.info = dict(state.get("room") or {})
        self.id = self.info.get("id", self.id)
        self.me.update({k: v for k, v in state["self"].items() if k != "streams"})
        self.grants = list(state["self"].get("grants", []))
        self.resumed = bool(state.get("resumed"))
        self.resume_secret = state["self"].get("resume_secret")
        self.viewers = int(self.info.get("viewers") or 0)
        present: dict[str, Participant] = {}
        for raw in state.get("participants") or []:
            participant = self._participants.get(str(raw["login"]))
            if participant is None:
                participant = Participant.from_dict(raw, self)
            else:
                participant.update(raw)
            present[participant.login] = participant
        self._participants = present
        self.active_speakers = [str(stream_id) for stream_id in state.get("active_speakers") or []]
        known = {message.id for message in self.history}
        for raw in state.get("history") or []:
            message = Message.from_dict(raw)
            if message.id not in known:
                self.history.append(message)
                self._emit(RoomEvent(ROOM_EVENT.MESSAGE, "message", {"type": "message", "message": raw},
                                     message=message))

    def _reconnected(self, state: dict[str, Any]) -> None:
        """The room is resumed (its media is re-established next)."""
        self._emit(RoomEvent(ROOM_EVENT.RECONNECTED, "state", state))

    def _live_stream(self, stream_id: str) -> Stream | None:
        """Another participant's PUBLISHING stream of that id, if any."""
        for participant in self._participants.values():
            stream = participant.streams.get(stream_id)
            if stream is not None and stream.status == STREAM_STATUS.PUBLISHING:
                stream.room = self
                return stream
        return None

    # --- event handling (called by the connection) -------------------------------------

    def _close(self) -> None:
        self.closed = True
        self.connection._forget_room(self)

    def _emit(self, room_event: RoomEvent) -> None:
        index = len(self.events)
        self.events.append(room_event)
        for waiter in list(self._waiters):
            name, predicate, future = waiter
            if future.done() or name != room_event.name:
                continue
            try:
                matched = predicate is None or predicate(room_event)
            except Exception:
                logger.exception("wait_for predicate failed")
                continue
            if matched:
                self._waiters.remove(waiter)
                self._consumed.add(index)
                future.set_result(room_event)
                break
        for callback in list(self._callbacks.get(room_event.name, [])):
            self.connection._call(callback, room_event)

    def _participant(self, data: dict[str, Any]) -> Participant:
        login = str(data["login"])
        if login == self.me.login:
            self.me.update(data)
            return self.me
        participant = self._participants.get(login)
        if participant is None:
            participant = Participant.from_dict(data, self)
            self._participants[login] = participant
        else:
            participant.update(data)
        return participant

    def _stream_of(self, participant: Participant, data: dict[str, Any]) -> Stream:
        stream = participant.streams.get(str(data["id"]))
        if stream is None:
            stream = Stream.from_dict(data)
        else:
            stream.update(data)
        stream.room = self
        return stream

    def _handle(self, event: dict[str, Any]) -> None:
        """Apply one protocol event to the room's objects and emit the matching ROOM_EVENT."""
        kind = event.get("type")
        if kind == "joined":
            participant = self._participant(event["participant"])
            self._emit(RoomEvent(ROOM_EVENT.JOINED, kind, event, participant=participant))
        elif kind == "left":
            data = event["participant"]
            login = str(data["login"])
            if login == self.me.login:
                self.me.update(data)
                return
            known = self._participants.pop(login, None)
            participant = known if known is not None else Participant.from_dict(data, self)
            participant.update(data)
            participant.streams.clear()
            self._emit(RoomEvent(ROOM_EVENT.LEFT, kind, event, participant=participant))
        elif kind == "participant_updated":
            participant = self._participant(event["participant"])
            self._emit(RoomEvent(ROOM_EVENT.PARTICIPANT_UPDATED, kind, event, participant=participant))
        elif kind == "presence":
            self._handle_presence(event)
        elif kind == "message":
            message = Message.from_dict(event.get("message") or {})
            self.history.append(message)
            self._emit(RoomEvent(ROOM_EVENT.MESSAGE, kind, event, message=message))
        elif kind in ("published", "unpublished", "stream_updated"):
            self._handle_stream_event(kind, event)
        elif kind == "stream_status":
            self._handle_stream_status(event)
        elif kind == "active_speakers":
            self.active_speakers = [str(stream_id) for stream_id in event.get("streams") or []]
            self._emit(RoomEvent(ROOM_EVENT.ACTIVE_SPEAKERS, kind, event, speakers=tuple(self.active_speakers)))
        elif kind == "room_updated":
            self.info.update(event.get("room") or {})
            self._emit(RoomEvent(ROOM_EVENT.ROOM_UPDATED, kind, event))
        elif kind == "room_closed":
            self._close()
            reason = str(event.get("reason", ""))
            self._emit(RoomEvent(ROOM_EVENT.CLOSED, kind, event, code="room_closed", info=reason))
        elif kind == "kicked":
            self._close()
            reason = str(event.get("reason", ""))
            self._emit(RoomEvent(ROOM_EVENT.KICKED, kind, event, participant=self.me, code="kicked", info=reason))

    def _handle_presence(self, event: dict[str, Any]) -> None:
        """A batched ``presence`` event: each change applied as if it came alone (one JOINED, LEFT or
        PARTICIPANT_UPDATED per change that changes something; none about this participant), then PRESENCE."""
        for change in event.get("changes") or []:
            kind, data = change.get("event"), change.get("participant") or {}
            login = str(data.get("login", ""))
            if not login or login == self.me.login:
                continue
            if kind == "joined" and login in self._participants:
                self._participants[login].update(data)  # listed already (a state that came after the join)
                continue
            if kind == "left" and login not in self._participants:
                continue  # never listed: it left before this participant's state
            self._handle({"type": kind, "participant": data})
        if event.get("viewers") is not None:
            self.viewers = int(event["viewers"])
        self._emit(RoomEvent(ROOM_EVENT.PRESENCE, "presence", event, viewers=self.viewers))

    def _handle_stream_event(self, kind: str, event: dict[str, Any]) -> None:
        participant = self._participant({k: v for k, v in event["participant"].items() if k != "streams"})
        stream = self._stream_of(participant, event["stream"])
        if kind == "published":
            participant.streams[stream.id] = stream
            self._emit(RoomEvent(ROOM_EVENT.PUBLISHED, kind, event, participant=participant, stream=stream))
        elif kind == "unpublished":
            participant.streams.pop(stream.id, None)
            self._emit(RoomEvent(ROOM_EVENT.UNPUBLISHED, kind, event, participant=participant, stream=stream))
        else:
            if stream.status == STREAM_STATUS.PUBLISHING:
                participant.streams[stream.id] = stream
            self._emit(RoomEvent(ROOM_EVENT.STREAM_UPDATED, kind, event, participant=participant, stream=stream))

    def _handle_stream_status(self, event: dict[str, Any]) -> None:
        data = event.get("stream") or {}
        if "id" not in data:
            return
        stream = self._stream_of(self.me, data)
        status = str(event.get("status", stream.status))
        stream.status = status
        if status == STREAM_STATUS.PUBLISHING:
            self.me.streams[stream.id] = stream
        else:
            self.me.streams.pop(stream.id, None)
        if status == STREAM_STATUS.FAILED:
            reason = str(event.get("reason", ""))
            self._emit(
                RoomEvent(ROOM_EVENT.FAILED, "stream_status", event, participant=self.me, stream=stream,
                          code="stream_failed", info=reason)
            )
