"""Large rooms (issue 13): batched presence and the audience role, through both SDKs against a real daphne.

A server with ROOM_PRESENCE_BATCH_THRESHOLD=3 batches the presence of any room of three or more into ``presence``
events; the SDKs must still emit one JOINED / LEFT per participant (never one about themselves, never twice).
Viewers (join tokens with the role ``viewer``) are counted, never announced: ``state.room.viewers``, ``presence``
with ``viewers``, ``room.viewers`` in both SDKs, ``viewers_now`` in the REST API.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

import roomapi
from roomapi import ROOM_EVENT
from rooms.models import APIKey
from rooms.tokens import mint_token
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.servers import DaphneServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

WAIT = 20.0


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process that batches presence from three participants on, over 0.3 s windows."""
    with DaphneServer({"ROOM_PRESENCE_BATCH_THRESHOLD": "3", "ROOM_PRESENCE_BATCH_WINDOW": "0.3"}) as srv:
        yield srv


def logins(room: roomapi.Room, name: str) -> list[str]:
    """The logins of the participants the room emitted ``name`` for, in order."""
    return [e.participant.login for e in room.events if e.name == name and e.participant is not None]


async def until(check: Any, what: str, timeout: float = WAIT) -> None:
    """Wait (bounded) until ``check()`` is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_batched_presence_emits_one_event_per_participant(server: DaphneServer) -> None:
    """From the third participant on, joins and leaves arrive batched; each SDK room still emits exactly one JOINED
    and one LEFT per other participant, none about itself, and its roster is right."""
    raw: list[dict[str, Any]] = []
    alice = await roomapi.connect(server.ws_url, "alice")
    alice._listeners.setdefault("presence", []).append(raw.append)  # the raw protocol events, to see the batches
    room_a = await alice.join("big")
    others = [await roomapi.connect(server.ws_url, name) for name in ("bob", "carol", "dave", "erin")]
    rooms = list(await asyncio.gather(*(c.join("big") for c in others)))  # together: several per window
    await until(lambda: len(logins(room_a, ROOM_EVENT.JOINED)) >= 4, "alice's JOINED")
    assert raw and any(len(e["changes"]) for e in raw), "no batched presence reached alice"
    assert sorted(logins(room_a, ROOM_EVENT.JOINED)) == ["bob", "carol", "dave", "erin"]
    everyone = {"alice", "bob", "carol", "dave", "erin"}
    for connection, room in zip(others, rooms, strict=True):
        me = connection.username
        await until(lambda r=room, m=me: {p.login for p in r.get_participants()} == everyone - {m}, f"{me}'s roster")
        assert me not in logins(room, ROOM_EVENT.JOINED)
        joined = logins(room, ROOM_EVENT.JOINED)
        assert len(joined) == len(set(joined)), f"{me} got JOINED twice: {joined}"
    for room in rooms[2:]:
        await room.leave()
    await until(lambda: sorted(logins(room_a, ROOM_EVENT.LEFT)) == ["dave", "erin"], "alice's LEFT")
    assert {p.login for p in room_a.get_participants()} == {"bob", "carol"}
    assert any(e.name == ROOM_EVENT.PRESENCE for e in room_a.events)
    await asyncio.sleep(0.5)  # one more window: nothing is emitted twice
    assert sorted(logins(room_a, ROOM_EVENT.LEFT)) == ["dave", "erin"]
    assert sorted(logins(room_a, ROOM_EVENT.JOINED)) == ["bob", "carol", "dave", "erin"]
    for connection in [alice, *others]:
        await connection.disconnect()


def rest_room(name: str) -> dict[str, Any]:
    """GET /api/rooms/<name> with a fresh API key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {APIKey.create_key('tests')[1]}")
    response = client.get(f"/api/rooms/{name}")
    assert response.status_code == 200, response.data
    return dict(response.data)


async def test_viewers_are_counted_not_announced(transactional_db: Any) -> None:
    """Viewers get no JOINED/LEFT of their own in anyone's room and are listed in no state; everyone sees the
    audience count (state, PRESENCE, room.viewers; REST viewers_now); viewers see the publishers."""
    with DaphneServer() as server:  # a small room: unbatched, the audience alone changes
        alice = await roomapi.connect(server.ws_url, "alice")
        room_a = await alice.join("webinar")
        assert room_a.viewers == 0
        counts: list[int | None] = []
        room_a.on(ROOM_EVENT.PRESENCE, lambda e: counts.append(e.viewers))
        token = await database_sync_to_async(mint_token)("webinar", "vera", role="viewer")
        vera = await roomapi.connect(server.ws_url, token=token)
        room_v = await vera.join("webinar")
        assert room_v.viewers == 1 and [p.login for p in room_v.get_participants()] == ["alice"]
        await room_a.wait_for(ROOM_EVENT.PRESENCE, lambda e: e.viewers == 1, timeout=WAIT)
        assert room_a.viewers == 1 and room_a.get_participants() == []
        bob = await roomapi.connect(server.ws_url, "bob")
        room_b = await bob.join("webinar")
        assert room_b.viewers == 1 and [p.login for p in room_b.get_participants()] == ["alice"]
        await room_v.wait_for(ROOM_EVENT.JOINED, lambda e: e.participant is not None and e.participant.login == "bob",
                              timeout=WAIT)
        await room_a.wait_for(ROOM_EVENT.JOINED, timeout=WAIT)
        data = await database_sync_to_async(rest_room)("webinar")
        assert data["viewers_now"] == 1 and data["participants_now"] == 3
        await room_v.leave()
        await room_a.wait_for(ROOM_EVENT.PRESENCE, lambda e: e.viewers == 0, timeout=WAIT)
        await room_b.wait_for(ROOM_EVENT.PRESENCE, lambda e: e.viewers == 0, timeout=WAIT)
        assert room_a.viewers == room_b.viewers == 0 and counts == [1, 0]
        assert logins(room_a, ROOM_EVENT.JOINED) == ["bob"] and logins(room_a, ROOM_EVENT.LEFT) == []
        assert logins(room_b, ROOM_EVENT.JOINED) == []
        for connection in (alice, vera, bob):
            await connection.disconnect()


# --- the Web SDK in Chromium -------------------------------------------------------------------------------------

SCRIPT = """async () => {
  const {connect, SESSION_STATUS, ROOM_EVENT} = await import("/static/rooms/roomapi.js");
  window.log = {joined: [], left: [], presence: [], roster: []};
  window.start = (url, options, name) => new Promise((resolve, reject) => {
    connect({urlServer: url, ...options}).on(SESSION_STATUS.ESTABLISHED, (session) => {
      const room = session.join({name});
      window.room = room;
      room.on(ROOM_EVENT.JOINED, (p) => window.log.joined.push(p.name()));
      room.on(ROOM_EVENT.LEFT, (p) => window.log.left.push(p.name()));
      room.on(ROOM_EVENT.PRESENCE, (viewers) => window.log.presence.push(viewers));
      room.on(ROOM_EVENT.STATE, () => resolve(room.viewers()));
      room.on(ROOM_EVENT.FAILED, (r, info) => reject(new Error(JSON.stringify(info))));
    });
  });
  window.snapshot = () => ({...window.log, viewers: window.room.viewers(),
                           roster: window.room.getParticipants().map((p) => p.name()).sort()});
}"""


@pytest.fixture
async def page(server: DaphneServer) -> AsyncIterator[Any]:
    """A Chromium tab on the server's origin with the Web SDK loaded."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI ({CHROMIUM}); run scripts/system-deps.sh")
        pytest.skip(f"needs Chromium at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = await (await browser.new_context()).new_page()
            await tab.goto(f"{server.http_url}/healthz")
            await tab.evaluate(SCRIPT)
            yield tab
        finally:
            await browser.close()


async def test_web_sdk_batched_presence_and_audience(server: DaphneServer, page: Any) -> None:
    """In Chromium: batched joins and leaves give one JOINED / LEFT per participant and the right roster; a
    viewer is counted (PRESENCE, room.viewers()) and never listed."""
    token = await database_sync_to_async(mint_token)("big-web", "vic", role="viewer")
    alice = await roomapi.connect(server.ws_url, "alice")
    room_a = await alice.join("big-web")
    viewers = await asyncio.wait_for(
        page.evaluate("([url, name]) => window.start(url, {username: 'web'}, name)", [server.ws_url, "big-web"]),
        WAIT)
    assert viewers == 0
    others = [await roomapi.connect(server.ws_url, name) for name in ("bob", "carol", "dave")]
    rooms = list(await asyncio.gather(*(c.join("big-web") for c in others)))
    vic = await roomapi.connect(server.ws_url, token=token)
    await vic.join("big-web")

    async def snapshot() -> dict[str, Any]:
        return dict(await page.evaluate("() => window.snapshot()"))

    async def settled(check: Any, what: str) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            snap = await snapshot()
            if check(snap):
                return snap
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {snap}")
            await asyncio.sleep(0.1)

    snap = await settled(lambda s: len(s["joined"]) >= 3 and s["viewers"] == 1, "the page's JOINED and count")
    assert sorted(snap["joined"]) == ["bob", "carol", "dave"] and snap["roster"] == ["alice", "bob", "carol", "dave"]
    assert 1 in snap["presence"]
    await rooms[1].leave()
    await rooms[2].leave()
    await vic.disconnect()  # a dropped viewer still counts until it expires
    snap = await settled(lambda s: sorted(s["left"]) == ["carol", "dave"], "the page's LEFT")
    assert snap["roster"] == ["alice", "bob"] and snap["viewers"] == 1
    await asyncio.sleep(0.6)
    snap = await snapshot()
    assert sorted(snap["joined"]) == ["bob", "carol", "dave"] and sorted(snap["left"]) == ["carol", "dave"]
    assert "vic" not in snap["joined"] + snap["roster"]
    assert room_a.viewers == 1 and "vic" not in [p.login for p in room_a.get_participants()]
    for connection in [alice, *others]:
        await connection.disconnect()


# --- one frame per event (rooms.wire) ------------------------------------------------------------------------------


def test_room_events_are_framed_once_and_written_to_daphnes_connection() -> None:
    """Under daphne, a consumer finds its autobahn connection behind channels' session wrapper, and a room event's
    prepared frame is written to it as a complete text frame; a connection that is not open is left to the ASGI
    send."""
    import functools

    from autobahn.twisted.websocket import WebSocketServerFactory
    from channels.sessions import InstanceSessionWrapper
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet.testing import StringTransport

    from rooms import wire

    async def handle_reply(protocol: Any, message: dict[str, Any]) -> None:  # daphne's Server.handle_reply
        raise AssertionError("not called")

    connection: Any = WebSocketProtocol()
    connection.factory = WebSocketServerFactory()
    connection.makeConnection(StringTransport())  # autobahn's connection state, before the opening handshake
    wrapped = InstanceSessionWrapper({"cookies": {}}, functools.partial(handle_reply, connection))

    text = '{"type":"joined","participant":{"login":"zoë"}}' + " " * 200  # over 125 bytes: a 16-bit length
    connection.state = WebSocketProtocol.STATE_CLOSING
    assert not wire.write(connection, wire.prepare(text))
    connection.state, connection._perMessageCompress = WebSocketProtocol.STATE_OPEN, None  # opened, uncompressed
    assert wire.write(connection, wire.prepare(text))
    payload = text.encode("utf-8")
    assert connection.transport.value() == b"\x81\x7e" + len(payload).to_bytes(2, "big") + payload
    assert wire.connection_of(lambda message: None) is None
    assert wire.connection_of(wrapped.send) is connection  # last: mypy narrows ``connection`` by it
