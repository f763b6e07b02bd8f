"""One WebSocket frame per room event, written as it is to every local connection that gets it.

A room event reaches each member of a room in this process (rooms.delivery.RoomHub).  Sent through the ASGI
``send`` of each consumer, every copy went through channels' session wrapper, daphne's reply handling and
autobahn's framing on its own.  Here the frame is built once per event (autobahn's ``PreparedMessage``, meant
for broadcast) and each connection's autobahn protocol writes it (``sendPreparedMessage``; a connection with
per-message compression still compresses its own copy).

The autobahn protocol of a consumer is found once, from its ASGI ``send`` (daphne's ``partial(handle_reply,
protocol)`` under channels' wrappers).  Under any other server, or if that shape changes, :func:`connection_of`
finds none and the consumer sends through ASGI as before.
"""

from __future__ import annotations

import functools
from typing import Any

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol

WRAPPER_DEPTH = 8
"""ASGI send wrappers looked through (channels' session wrapper, middlewares) before giving up."""


def prepare(text: str) -> PreparedMessage:
    """The text frame of one event, built once for all its recipients."""
    return PreparedMessage(text.encode("utf-8"), False, False, False)


def connection_of(send: Any) -> WebSocketProtocol | None:
    """The autobahn protocol (daphne's WebSocket connection) behind an ASGI ``send``, or None."""
    for _ in range(WRAPPER_DEPTH):
        if isinstance(send, functools.partial):
            found = next((a for a in send.args if isinstance(a, WebSocketProtocol)), None)
            if found is not None:
                return found
            send = send.func
            continue
        owner = getattr(send, "__self__", None)
        inner = getattr(owner, "real_send", None)  # channels.sessions.InstanceSessionWrapper
        if inner is None:
            return None
        send = inner
    return None


def write(connection: WebSocketProtocol, frame: PreparedMessage) -> bool:
    """Write a prepared frame on an open connection; False when it is not open (the caller sends it the ASGI
    way, which knows what to do with a closing connection)."""
    if connection.state != WebSocketProtocol.STATE_OPEN:
        return False
    connection.sendPreparedMessage(frame)
    return True
