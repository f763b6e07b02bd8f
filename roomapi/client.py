"""The connection to a Room API server: handshake, request ids, replies and events.

``conn = await roomapi.connect("ws://127.0.0.1:8000", "alice")`` opens one
WebSocket at ``<url>/ws/``, says hello and returns an ESTABLISHED
:class:`Connection`.  Every command gets a fresh request id and waits for its
one reply; events are routed to the joined :class:`~roomapi.room.Room` and to
internal listeners (``_add_listener``) that the media layer uses.
:class:`Connection` implements :class:`roomapi.session.Session`, the interface
rooms and streams use.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Origin

from roomapi.constants import ERROR_CODE, PROTOCOL_VERSION, SESSION_STATUS
from roomapi.errors import RoomApiError
from roomapi.media import RELAY, close_all, ice_servers_from_wire
from roomapi.resume import restore_media, suspend_media
from roomapi.room import Room
from roomapi.session import Closable, Listener

logger = logging.getLogger(__name__)

__all__ = ["PROTOCOL_VERSION", "Connection", "connect"]

DEFAULT_TIMEOUT = 15.0
MAX_FRAME_BYTES = 8 * 1024 * 1024
RECONNECT_ATTEMPTS = 8
"""Tries to resume after an unexpected drop (0: never)."""
RECONNECT_DELAY = 0.5
"""Seconds before the first try; doubled before each next one, up to RECONNECT_MAX_DELAY (with jitter)."""
RECONNECT_MAX_DELAY = 5.0
FINAL_HELLO_CODES = frozenset({
    ERROR_CODE.INVALID_TOKEN, ERROR_CODE.INVALID_USERNAME, ERROR_CODE.UNSUPPORTED_VERSION, ERROR_CODE.BAD_URL,
})
"""A resume refused with one of these will not succeed later: give up at once."""

StatusCallback = Callable[["Connection"], Any]


def ws_endpoint(url: str) -> str:
    """The WebSocket address of a server base URL (``ws://host:port`` -> ``ws://host:port/ws/``)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the server URL must start with ws://, wss://, http:// or https:// (got {url!r})")
    path = parts.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    return urlunsplit((scheme, parts.netloc, path + "/", parts.query, ""))


def origin_of(url: str) -> str:
    """The HTTP origin the server's origin check expects for ``url``."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme in ("wss", "https") else "http"
    return f"{scheme}://{parts.netloc}"


class Connection:
    """An established session: at most one joined room at a time."""

    def __init__(self, ws: ClientConnection, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._ws = ws
        self.timeout = timeout
        self.status: str = SESSION_STATUS.NEW
        """A SESSION_STATUS value."""
        self.username: str | None = None
        self.session: str | None = None
        self.version: int | None = None
        self.close_code: int | None = None
        self.ice_servers: list[Any] = []
        """aiortc RTCIceServers of every peer connection: the server's (``established``) unless connect() got some."""
        self.ice_transport_policy: str = "all"
        """``"all"``, or ``"relay"``: peer connections use TURN relay candidates only."""
        self.limits: dict[str, int] = {}
        """The size limits the server announced in ``established`` (checked before sending)."""
        self._rids = itertools.count(1)
        self._pending: dict[str | int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._status_callbacks: dict[str, list[StatusCallback]] = {}
        self._room: Room | None = None
        self._media: set[Closable] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._url = ""
        self._hello: dict[str, Any] = {}
        self.reconnect_attempts = RECONNECT_ATTEMPTS
        self.reconnect_delay = RECONNECT_DELAY
        self._closing = False
        self._resuming = False
        self._reconnector: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] = asyncio.get_running_loop().create_task(self._read())

    def __repr__(self) -> str:
        return f"<Connection {self.username!r} {self.status}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    # --- public API -------------------------------------------------------------------

    @property
    def room(self) -> Room | None:
        """The room this connection is in, if any."""
        return self._room

    def on(self, status: str, callback: StatusCallback) -> Connection:
        """Call ``callback(connection)`` when the session reaches a SESSION_STATUS; chainable."""
        self._status_callbacks.setdefault(status, []).append(callback)
        return self

    async def join(self, name: str, record: bool = False, max_participants: int | None = None) -> Room:
        """Join room ``name`` (created if it does not exist); raises RoomApiError if refused."""
        fields: dict[str, Any] = {"room": name}
        if record:
            fields["record"] = True
        if max_participants is not None:
            fields["max_participants"] = max_participants
        await self._request("join", **fields)
        room = self._room
        if room is None:  # pragma: no cover - the reader sets it before the reply resolves
            raise RoomApiError(ERROR_CODE.INTERNAL_ERROR, "no state after join")
        return room

    async def ping(self) -> None:
        """Round-trip a ping."""
        await self._request("ping")

    @property
    def resume_secret(self) -> str | None:
        """The secret that resumes this participant after a drop (``connect(..., resume_secret=...)``)."""
        return self._room.resume_secret if self._room is not None else None

    async def disconnect(self) -> None:
        """Close the WebSocket without leaving: the server keeps the login for ROOM_IDLE_TIMEOUT."""
        self._closing = True
        if self._reconnector is not None and self._reconnector is not asyncio.current_task():
            self._reconnector.cancel()
        await close_all(self)
        try:
            await asyncio.wait_for(self._ws.close(), self.timeout)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), self.timeout)
        except (TimeoutError, asyncio.CancelledError):
            self._reader.cancel()
        self._set_closed()

    # --- internal API: roomapi.session.Session, used by rooms and streams ---------------------

    async def _request(self, type: str, **fields: Any) -> dict[str, Any]:
        """Send command ``type`` with a fresh request id; its reply, or RoomApiError if refused."""
        if self.status == SESSION_STATUS.DISCONNECTED:
            raise RoomApiError(ERROR_CODE.DISCONNECTED, "the connection is closed")
        if self.status == SESSION_STATUS.RECONNECTING and not self._resuming:
            raise RoomApiError(ERROR_CODE.DISCONNECTED, "the connection dropped; the SDK is reconnecting")
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        frame = json.dumps({"type": type, "rid": rid, **fields}, ensure_ascii=False)
        self._check_frame_size(type, frame)
        try:
            await self._ws.send(frame)
            reply = await asyncio.wait_for(future, self.timeout)
        except ConnectionClosed:
            raise RoomApiError(ERROR_CODE.DISCONNECTED, "the connection closed") from None
        except TimeoutError:
            raise RoomApiError(ERROR_CODE.TIMEOUT, f"no reply to {type} within {self.timeout} s") from None
        finally:
            self._pending.pop(rid, None)
        if reply.get("type") == "error":
            raise RoomApiError(str(reply.get("code", "error")), str(reply.get("message", "")))
        return reply

    def _check_frame_size(self, type: str, frame: str) -> None:
        """Refuse locally a frame over the announced ``max_frame_bytes`` (the server could drop the connection):
        ``message_too_large`` for a message, ``frame_too_large`` otherwise."""
        limit = self.limits.get("max_frame_bytes")
        if limit is None or len(frame) * 4 <= limit or len(frame.encode("utf-8", "surrogatepass")) <= limit:
            return
        code = ERROR_CODE.MESSAGE_TOO_LARGE if type == "send_message" else ERROR_CODE.FRAME_TOO_LARGE
        raise RoomApiError(code, f"the {type} command is larger than the server's {limit} bytes")

    def _add_listener(self, type: str, callback: Listener) -> None:
        """Call ``callback(event)`` for every server frame of ``type`` (``"*"`` for all)."""
        self._listeners.setdefault(type, []).append(callback)

    def _remove_listener(self, type: str, callback: Listener) -> None:
        """Undo :meth:`_add_listener`."""
        callbacks = self._listeners.get(type, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def _forget_room(self, room: object) -> None:
        """``room`` closed for this connection (left, kicked or finalized)."""
        if self._room is room:
            self._room = None

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run a sync or async callback without blocking the reader; errors are logged."""
        try:
            result = callback(*args)
        except Exception:
            logger.exception("callback %r failed", callback)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("callback failed", exc_info=task.exception())

    # --- reading ------------------------------------------------------------------------

    async def _read(self) -> None:
        ws = self._ws
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    logger.warning("ignoring a binary frame from the server")
                    continue
                try:
                    event = json.loads(frame)
                except ValueError:
                    logger.warning("ignoring a frame that is not JSON")
                    continue
                if isinstance(event, dict):
                    self._on_event(event)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("reading from the server failed")
        finally:
            self.close_code = ws.close_code
            self._socket_closed(ws)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        if kind == "state" and self._resuming and self._room is not None:
            self._room._resume(event)
        elif kind == "state":
            if self._room is not None:
                self._room._close()
            self._room = Room(self, event)
        elif self._room is not None:
            try:
                self._room._handle(event)
            except Exception:
                logger.exception("handling %s failed", kind)
        for callback in self._listeners.get(kind, []) + self._listeners.get("*", []):
            self._call(callback, event)
        rid = event.get("rid")
        if rid is not None:
            future = self._pending.get(rid)
            if future is not None and not future.done():
                future.set_result(event)
        elif kind == "error":
            logger.warning("server error: %s %s", event.get("code"), event.get("message"))

    def _set_status(self, status: str, emit: bool = True) -> None:
        if self.status == status:
            return
        self.status = status
        if not emit:
            return
        for callback in self._status_callbacks.get(status, []):
            self._call(callback, self)

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RoomApiError(ERROR_CODE.DISCONNECTED, "the connection closed"))
        self._pending.clear()

    def _set_closed(self) -> None:
        self._fail_pending()
        if self._room is not None:
            self._room._close()
        if self.status != SESSION_STATUS.FAILED:
            self._set_status(SESSION_STATUS.DISCONNECTED)

    # --- reconnection (docs/protocol.md, "Reconnection in the SDKs") ---------------------------

    def _socket_closed(self, ws: ClientConnection) -> None:
        """A socket ended: resume the room if the drop was unexpected, else the session is over."""
        self._fail_pending()
        if ws is not self._ws or self.status == SESSION_STATUS.RECONNECTING:
            return  # an old socket, or a failed try of the reconnection loop (it goes on)
        room = self._room
        if (
            self._closing
            or self.reconnect_attempts <= 0
            or self.status != SESSION_STATUS.ESTABLISHED
            or room is None
            or room.closed
        ):
            self._set_closed()
            return
        self._set_status(SESSION_STATUS.RECONNECTING)
        room._reconnecting()
        self._reconnector = asyncio.get_running_loop().create_task(self._reconnect(room))

    async def _reconnect(self, room: Room) -> None:
        """Try (bounded, with backoff) to open a new socket and resume ``room``; then its media."""
        items = await suspend_media(room)
        delay = self.reconnect_delay
        for attempt in range(1, self.reconnect_attempts + 1):
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
            if self._closing:
                return
            try:
                state = await self._resume_once(room)
            except RoomApiError as exc:
                logger.info("resume try %d of %d failed: %s", attempt, self.reconnect_attempts, exc)
                await self._drop_socket()
                if exc.code in FINAL_HELLO_CODES:
                    break
                continue
            except Exception:
                logger.exception("resume try %d failed", attempt)
                await self._drop_socket()
                continue
            self._set_status(SESSION_STATUS.ESTABLISHED, emit=False)
            if self._ws.close_code is not None:  # dropped again meanwhile: start over
                self._socket_closed(self._ws)
                return
            await restore_media(room, items, room._live_stream)
            room._reconnected(state)
            return
        logger.warning("could not resume room %r; the session is closed", room.name)
        await close_all(self)
        self._set_closed()

    async def _resume_once(self, room: Room) -> dict[str, Any]:
        """One try: a new socket, hello with the resume secret, join the room again; the new state."""
        self._ws = await open_socket(self._url, self.timeout)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._resuming = True
        try:
            hello = {**self._hello, "resume_secret": room.resume_secret}
            reply = await self._request("hello", **{k: v for k, v in hello.items() if v is not None})
            if reply.get("type") != "established":
                raise RoomApiError(str(reply.get("code", "failed")), str(reply.get("message", "session failed")))
            self.username, self.session = reply.get("username"), reply.get("session")
            return await self._request("join", room=room.name)
        finally:
            self._resuming = False

    async def _drop_socket(self) -> None:
        """Close the socket of a failed try (its reader's end changes nothing while RECONNECTING)."""
        try:
            await asyncio.wait_for(self._ws.close(), self.timeout)
        except (TimeoutError, ConnectionClosed, OSError):
            pass


async def open_socket(url: str, timeout: float) -> ClientConnection:
    """Open the WebSocket of the server at base ``url``, or raise RoomApiError (bad_url, connection_error)."""
    try:
        endpoint = ws_endpoint(url)
    except ValueError as exc:
        raise RoomApiError(ERROR_CODE.BAD_URL, str(exc)) from None
    try:
        return await ws_connect(
            endpoint,
            origin=Origin(origin_of(url)),
            max_size=MAX_FRAME_BYTES,
            open_timeout=timeout,
            proxy=None,
            compression=None,
        )
    except InvalidURI as exc:
        raise RoomApiError(ERROR_CODE.BAD_URL, str(exc)) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise RoomApiError(ERROR_CODE.CONNECTION_ERROR, f"the WebSocket connection failed: {exc}") from exc


async def connect(
    url: str,
    username: str | None = None,
    *,
    token: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    ice_servers: list[Any] | None = None,
    ice_transport_policy: str = "all",
    resume_secret: str | None = None,
    reconnect_attempts: int = RECONNECT_ATTEMPTS,
    reconnect_delay: float = RECONNECT_DELAY,
) -> Connection:
    """Connect to the server at base ``url`` and open a session as ``username`` or with a join ``token``.

    Peer connections use the ICE servers the server hands out (STUN, TURN with fresh credentials) unless
    ``ice_servers`` (aiortc RTCIceServers) is given; ``ice_transport_policy="relay"`` uses TURN relay
    candidates only.

    ``resume_secret`` (a room's ``resume_secret``) lets the next join resume a participant that dropped.
    After an unexpected drop while in a room the connection resumes by itself (SESSION_STATUS.RECONNECTING,
    ROOM_EVENT.RECONNECTING / RECONNECTED): ``reconnect_attempts`` tries, the first after ``reconnect_delay``
    seconds, then twice as long each time; ``reconnect_attempts=0`` turns it off.

    Returns an ESTABLISHED connection; raises RoomApiError when the server
    refuses the session (FAILED: bad username, bad token, wrong version), or
    with ``bad_url`` / ``connection_error`` when the WebSocket cannot open.
    """
    if username is None and token is None:
        raise ValueError("give a username or a token")
    if ice_transport_policy not in ("all", RELAY):
        raise ValueError('ice_transport_policy must be "all" or "relay"')
    ws = await open_socket(url, timeout)
    conn = Connection(ws, timeout=timeout)
    conn._set_status(SESSION_STATUS.PENDING)
    hello: dict[str, Any] = {"version": PROTOCOL_VERSION}
    if username is not None:
        hello["username"] = username
    if token is not None:
        hello["token"] = token
    conn._url, conn._hello = url, dict(hello)
    conn.reconnect_attempts, conn.reconnect_delay = reconnect_attempts, reconnect_delay
    if resume_secret is not None:
        hello["resume_secret"] = resume_secret
    try:
        reply = await conn._request("hello", **hello)
    except RoomApiError:
        await conn.disconnect()
        raise
    if reply.get("type") != "established":
        conn.status = SESSION_STATUS.FAILED
        await conn.disconnect()
        raise RoomApiError(str(reply.get("code", "failed")), str(reply.get("message", "session failed")))
    conn.username = reply.get("username")
    conn.session = reply.get("session")
    conn.version = reply.get("version")
    conn.ice_servers = list(ice_servers) if ice_servers is not None else ice_servers_from_wire(reply.get("ice_servers"))
    conn.ice_transport_policy = ice_transport_policy
    conn.limits = {k: v for k, v in (reply.get("limits") or {}).items() if isinstance(v, int)}
    conn._set_status(SESSION_STATUS.ESTABLISHED)
    return conn
