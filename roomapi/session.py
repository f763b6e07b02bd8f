"""What rooms, participants and streams need of their connection: the interface roomapi.client implements.

Rooms and media depend on these protocols, never on :class:`roomapi.client.Connection`
itself, so the SDK's modules import one way: constants, errors -> session ->
media -> objects -> resume -> room -> client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

Listener = Callable[[dict[str, Any]], Any]


class Closable(Protocol):
    """A published or played stream whose peer connection the session closes on disconnect."""

    async def _close(self) -> None: ...


class Session(Protocol):
    """An established connection as rooms and streams use it."""

    timeout: float
    username: str | None
    status: str
    ice_servers: list[Any]
    """aiortc RTCIceServers for every peer connection: the server's (``established``) or the application's."""
    ice_transport_policy: str
    """``"all"``, or ``"relay"`` for TURN relay candidates only."""
    limits: dict[str, int]
    """The size limits the server announced in ``established`` (``max_message_bytes``, ``max_frame_bytes``)."""
    _media: set[Closable]
    """Streams with an open peer connection (closed on disconnect)."""

    async def _request(self, type: str, **fields: Any) -> dict[str, Any]:
        """Send a command; its reply, or RoomApiError if refused."""
        ...

    def _add_listener(self, type: str, callback: Listener) -> None:
        """Call ``callback(event)`` for every server frame of ``type``."""
        ...

    def _remove_listener(self, type: str, callback: Listener) -> None:
        """Undo ``_add_listener``."""
        ...

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run a user callback (sync or async) without blocking the reader."""
        ...

    def _forget_room(self, room: object) -> None:
        """The room ``room`` closed for this connection."""
        ...

    async def disconnect(self) -> None:
        """Close the connection."""
        ...


class InRoom(Protocol):
    """A room as media sees it: the way to its connection."""

    connection: Session
