"""One WebSocket frame per room event, written as it is to every local connection that gets it.

A room event reaches each member of a room in this process (rooms.delivery.RoomHub).  Sent through the ASGI
``send`` of each consumer, every copy went through channels' session wrapper, daphne's reply handling and
autobahn's framing on its own.  Here the frame is built once per event (autobahn's ``PreparedMessage``, meant
for broadcast) and each connection's autobahn protocol writes it (``sendPreparedMessage``; a connection with
per-message compression still compresses its own copy).

On a plain TCP (or Unix) socket with nothing waiting to go out, the frame goes straight to the socket
(:func:`write`): Twisted's ``write`` would buffer it, register the socket for writing with the event loop
(``epoll_ctl``), send it from a callback on the loop's next turn and unregister it (``epoll_ctl`` again), which
cost several times the ``send`` itself per copy.  Whatever the socket does not take, and every frame while
anything is buffered (so a connection's frames keep their order), goes through Twisted as before; TLS
transports always do.

The autobahn protocol of a consumer is found once, from its ASGI ``send`` (daphne's ``partial(handle_reply,
protocol)`` under channels' wrappers).  Under any other server, or if that shape changes, :func:`connection_of`
finds none and the consumer sends through ASGI as before.
"""

from __future__ import annotations

import functools
import random
from typing import Any

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import tcp

WRAPPER_DEPTH = 8
"""ASGI send wrappers looked through (channels' session wrapper, middlewares) before giving up."""

DIRECT = True
"""Write frames straight to idle plain sockets (False: always through Twisted; the tests compare the two)."""


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
    if not (DIRECT and connection._perMessageCompress is None and _write_direct(connection, frame.payloadHybi)):
        connection.sendPreparedMessage(frame)
    return True


def _write_direct(connection: WebSocketProtocol, data: bytes) -> bool:
    """Send ``data`` on the connection's socket now if nothing is waiting before it (what the socket does not
    take is left to Twisted); False, doing nothing, when the frame must go through Twisted."""
    transport: Any = getattr(connection, "transport", None)
    if (
        connection.send_queue  # autobahn's own queue (chopped or synchronous sends)
        or not isinstance(transport, tcp.Connection)
        or transport.TLS
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnecting
        or transport._writeDisconnected
        or transport._tempDataLen
        or transport.dataBuffer
    ):
        return False
    try:
        sent = transport.socket.send(data)
    except OSError:  # full (EAGAIN), or broken: Twisted's write finds out which and acts on it
        sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)
    connection.trafficStats.outgoingOctetsWireLevel += len(data)
    return True


def spread_pings(connection: WebSocketProtocol) -> None:
    """Move a new connection's keep-alive ping to a random point of daphne's ping interval.

    daphne pings a connection that has sent nothing for ``ping_interval`` seconds, checking every connection
    every 2 s.  Connections opened together (a room's audience, everyone reconnecting after a restart) that stay
    quiet were all pinged in the same check, and stayed in step: 800 pings and their pongs at once stalled a
    1,000-client room's joins for 170-270 ms every 20 s.  Spread, each check pings a tenth of them; each
    connection is still pinged once per interval."""
    interval = getattr(getattr(connection, "server", None), "ping_interval", None)
    last = getattr(connection, "last_ping", None)
    if isinstance(interval, int | float) and interval > 0 and isinstance(last, float):
        connection.last_ping = last - random.uniform(0, interval)  # type: ignore[attr-defined]
