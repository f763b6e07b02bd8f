"""rooms.wire's direct write: a room event's frame goes straight to an idle plain socket, through Twisted
otherwise, and a connection's bytes keep their order either way (a real socket pair, a real Twisted TCP
transport, daphne's autobahn protocol)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp
from twisted.internet.selectreactor import SelectReactor

from rooms import wire


@pytest.fixture
def pair() -> Iterator[tuple[Any, socket.socket]]:
    """daphne's WebSocket protocol, open, on a Twisted TCP transport over one end of a socket pair (a reactor
    that is never run: the test drives the transport's writes itself), and the other end, non-blocking."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    reactor = SelectReactor()
    connection: Any = WebSocketProtocol()
    connection.factory = WebSocketServerFactory()
    transport = tcp.Server(ours, connection, ("127.0.0.1", 1), None, 1, reactor)  # type: ignore[arg-type]
    connection.makeConnection(transport)
    connection.state, connection._perMessageCompress = WebSocketProtocol.STATE_OPEN, None  # opened, uncompressed
    try:
        yield connection, theirs
    finally:
        transport.stopReading()
        transport.stopWriting()
        ours.close()
        theirs.close()


def drain(peer: socket.socket) -> bytes:
    """Everything the peer can read now."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_an_idle_plain_connection_gets_the_frame_at_once(pair: tuple[Any, socket.socket]) -> None:
    connection, peer = pair
    frame = wire.prepare('{"type":"joined"}')
    assert wire.write(connection, frame)
    assert drain(peer) == frame.payloadHybi  # on the socket already: no turn of the event loop
    assert not connection.transport.dataBuffer and not connection.transport._tempDataLen
    assert connection.transport not in connection.transport.reactor.getWriters()


def test_frames_keep_their_order_when_the_socket_is_full(pair: tuple[Any, socket.socket]) -> None:
    """Frames the socket cannot take wait in Twisted's buffer, and so do all later ones (direct or not), until
    it has written them."""
    connection, peer = pair
    frames = [wire.prepare(f'{{"n":{i},"pad":"{"x" * 3000}"}}') for i in range(400)]  # ~1.2 MB: fills the socket
    for i, frame in enumerate(frames):
        assert wire.write(connection, frame)
        if i == 200:
            connection.sendMessage(b'{"type":"ack"}')  # a reply through autobahn and Twisted, between two events
    transport = connection.transport
    assert transport._tempDataLen or transport.dataBuffer  # the socket is full: the rest waits in Twisted
    assert transport in transport.reactor.getWriters()
    expected = b"".join(f.payloadHybi for f in frames[:201]) + wire.prepare('{"type":"ack"}').payloadHybi
    expected += b"".join(f.payloadHybi for f in frames[201:])
    received = b""
    for _ in range(10_000):  # the reactor's part, by hand: write when the peer has read
        received += drain(peer)
        if transport.dataBuffer or transport._tempDataLen:
            assert transport.doWrite() is None
        elif len(received) == len(expected):
            break
    assert received == expected
    assert wire.write(connection, frames[0])  # idle again: direct
    assert drain(peer) == frames[0].payloadHybi


def test_tls_connections_go_through_autobahn_and_twisted(pair: tuple[Any, socket.socket]) -> None:
    """Under daphne's SSL endpoint the connection's transport is Twisted's TLS protocol over the TCP one: the
    frame is encrypted there, never put on the socket as it is."""
    from twisted.internet import ssl
    from twisted.protocols.tls import TLSMemoryBIOFactory

    connection, peer = pair
    tcp_transport = connection.transport
    options = ssl.KeyPair.generate().selfSignedCert(1, CN="localhost").options()
    factory = TLSMemoryBIOFactory(options, False, WebSocketServerFactory())  # type: ignore[arg-type]
    tls = factory.protocol(factory, connection)
    tls.makeConnection(tcp_transport)  # connection.transport is the TLS protocol now
    assert connection.transport is tls
    connection.state = WebSocketProtocol.STATE_OPEN
    frame = wire.prepare('{"type":"left","participant":{"login":"plain text"}}')
    assert wire.write(connection, frame)
    tcp_transport.doWrite()
    assert b"plain text" not in drain(peer)


def test_without_direct_writes_frames_wait_for_the_event_loop(pair: tuple[Any, socket.socket]) -> None:
    connection, peer = pair
    frame = wire.prepare('{"type":"left"}')
    wire.DIRECT = False
    try:
        assert wire.write(connection, frame)
        assert drain(peer) == b""  # buffered for the event loop, as Twisted does
        connection.transport.doWrite()
        assert drain(peer) == frame.payloadHybi
    finally:
        wire.DIRECT = True


def test_connections_opened_together_are_pinged_spread_over_the_interval() -> None:
    """daphne pings a quiet connection ``ping_interval`` s after its last frame, checking all every 2 s: 200
    connections opened at once fall due across the interval's checks (not all in one), each within one
    interval."""
    import math
    import time

    from daphne.server import Server

    server = Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"], ping_interval=20)  # not run
    opened = time.time()
    due_checks: list[int] = []
    for _ in range(200):
        connection: Any = WebSocketProtocol()
        connection.server, connection.last_ping = server, opened
        wire.spread_pings(connection)
        assert opened - 20 <= connection.last_ping <= opened
        # The first 2 s check at which daphne's rule (now - last_ping > ping_interval) pings it.
        due_checks.append(math.floor((connection.last_ping + 20 - opened) / 2) + 1)
    counts = {check: due_checks.count(check) for check in set(due_checks)}
    assert set(counts) <= set(range(11)) and len(counts) >= 8, counts
    assert max(counts.values()) <= 50, counts
