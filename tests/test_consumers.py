"""The WebSocket consumer through channels' WebsocketCommunicator: bad input, order, identity, presence."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from conference.asgi import application
from rooms.models import Participant, Room

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10.0
HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


class Client:
    """A communicator plus helpers: send JSON, receive JSON, request/reply by rid."""

    def __init__(self) -> None:
        self.comm = WebsocketCommunicator(application, "/ws/", headers=HEADERS)
        self.rid = 0
        self.events: list[dict[str, Any]] = []

    async def open(self, username: str | None = None) -> Client:
        """Connect, and say hello as ``username`` if given."""
        connected, _ = await self.comm.connect(timeout=WAIT)
        assert connected
        if username is not None:
            reply = await self.request({"type": "hello", "version": 1, "username": username})
            assert reply["type"] == "established", reply
        return self

    async def send(self, data: dict[str, Any]) -> None:
        """Send one JSON text frame."""
        await self.comm.send_to(text_data=json.dumps(data, ensure_ascii=False))

    async def receive(self) -> dict[str, Any]:
        """The next frame, as JSON (bounded wait)."""
        return json.loads(await self.comm.receive_from(timeout=WAIT))

    async def request(self, data: dict[str, Any]) -> dict[str, Any]:
        """Send with a fresh rid; return the reply that echoes it, keeping other events in ``events``."""
        self.rid += 1
        await self.send({**data, "rid": self.rid})
        return await self.reply(self.rid)

    async def reply(self, rid: Any) -> dict[str, Any]:
        """Wait for the frame that carries ``rid``."""
        while True:
            frame = await self.receive()
            if frame.get("rid") == rid:
                return frame
            self.events.append(frame)

    async def event(self, kind: str) -> dict[str, Any]:
        """The first frame of ``kind`` not yet taken (earlier or next ones)."""
        for index, frame in enumerate(self.events):
            if frame["type"] == kind:
                return self.events.pop(index)
        while True:
            frame = await self.receive()
            if frame["type"] == kind:
                return frame
            self.events.append(frame)

    async def assert_usable(self) -> None:
        """The connection is open and answers a ping."""
        assert (await self.request({"type": "ping"}))["type"] == "pong"

    async def close(self) -> None:
        """Disconnect (no leave)."""
        await self.comm.disconnect()


async def client(username: str | None = None) -> Client:
    """An open client, established as ``username`` if given."""
    return await Client().open(username)


async def expect_error(c: Client, code: str, *, frame: Any = None, raw: str | bytes | None = None) -> dict[str, Any]:
    """Send a bad frame; an error with ``code`` comes back and the connection stays usable."""
    if raw is not None:
        if isinstance(raw, bytes):
            await c.comm.send_to(bytes_data=raw)
        else:
            await c.comm.send_to(text_data=raw)
        reply = await c.receive()
    else:
        reply = await c.request(frame)
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert isinstance(reply["message"], str) and reply["message"]
    await c.assert_usable()
    return reply


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["not json", "{", " ", "[1, 2]", '"text"', "null", "{'single': 'quotes'}"])
async def test_not_json_or_not_an_object(raw: str) -> None:
    """Text that is not a JSON object: bad_json; the connection stays open."""
    c = await client("alice")
    await expect_error(c, "bad_json", raw=raw)
    await c.close()


async def test_binary_frame() -> None:
    """A binary frame: bad_frame."""
    c = await client("alice")
    await expect_error(c, "bad_frame", raw=b'{"type": "ping"}')
    await c.close()


async def test_unknown_type_echoes_rid() -> None:
    """An unknown command type: unknown_type, with the request id echoed."""
    c = await client("alice")
    reply = await expect_error(c, "unknown_type", frame={"type": "teleport"})
    assert reply["rid"] == c.rid - 1
    await c.close()


@pytest.mark.parametrize(
    "frame",
    [{"no_type": 1}, {"type": "join"}, {"type": "join", "room": None}, {"type": "send_message"},
     {"type": "mute", "stream": "x"}, {"type": "publish", "kind": "camera"}, {"type": "play", "sdp": SDP},
     {"type": "ice"}, {"type": "stop"}, {"type": "unpublish"}, {"type": "moderate"}],
)
async def test_missing_field(frame: dict[str, Any]) -> None:
    """A required field missing: missing_field."""
    c = await client("alice")
    await c.request({"type": "join", "room": "r"})
    await expect_error(c, "missing_field", frame=frame)
    await c.close()


@pytest.mark.parametrize(
    "frame",
    [{"type": 5}, {"type": "join", "room": 5}, {"type": "join", "room": "r", "record": "yes"},
     {"type": "join", "room": "r", "max_participants": "3"}, {"type": "join", "room": "r", "max_participants": 0},
     {"type": "join", "room": ""}, {"type": "send_message", "text": 42},
     {"type": "send_message", "text": "x", "to": "bob"},
     {"type": "send_message", "text": "x", "to": []}, {"type": "publish", "kind": "hologram", "sdp": SDP},
     {"type": "ice", "pc": "p", "candidate": "x"}, {"type": "moderate", "action": "explode"},
     {"type": "ping", "rid": True}, {"type": "ping", "rid": "x" * 65}],
)
async def test_wrong_field_type(frame: dict[str, Any]) -> None:
    """A field of the wrong type or out of range: invalid_field."""
    c = await client("alice")
    rid = frame.pop("rid", None)
    if rid is not None:
        await c.send({**frame, "rid": rid})
        reply = await c.receive()
        assert reply["type"] == "error" and reply["code"] == "invalid_field" and "rid" not in reply
        await c.assert_usable()
    else:
        await expect_error(c, "invalid_field", frame=frame)
    await c.close()


async def test_bad_sdp() -> None:
    """An SDP that is not one: invalid_sdp."""
    c = await client("alice")
    await c.request({"type": "join", "room": "r"})
    await expect_error(c, "invalid_sdp", frame={"type": "publish", "kind": "camera", "sdp": "hello"})
    await c.close()


async def test_oversize_frame() -> None:
    """A frame over WS_MAX_FRAME_BYTES: frame_too_large; the connection stays up."""
    from django.conf import settings

    c = await client("alice")
    await c.request({"type": "join", "room": "r"})
    big = json.dumps({"type": "send_message", "text": "x" * (settings.WS_MAX_FRAME_BYTES + 1)})
    await expect_error(c, "frame_too_large", raw=big)
    await c.close()


async def test_out_of_order_commands() -> None:
    """join before hello, publish/send_message before join, hello or join twice: each a stable code."""
    c = await client()
    await expect_error(c, "not_established", frame={"type": "join", "room": "r"})
    await expect_error(c, "not_established", frame={"type": "send_message", "text": "hi"})
    established = await c.request({"type": "hello", "version": 1, "username": "alice"})
    assert established["type"] == "established" and established["status"] == "ESTABLISHED"
    await expect_error(c, "already_established", frame={"type": "hello", "version": 1, "username": "bob"})
    await expect_error(c, "not_joined", frame={"type": "publish", "kind": "camera", "sdp": SDP})
    await expect_error(c, "not_joined", frame={"type": "send_message", "text": "hi"})
    await expect_error(c, "not_joined", frame={"type": "play", "stream": "s", "sdp": SDP})
    await expect_error(c, "not_joined", frame={"type": "leave"})
    await expect_error(c, "not_joined", frame={"type": "mute", "stream": "s", "audio": True})
    await expect_error(c, "not_joined", frame={"type": "moderate", "action": "lock"})
    assert (await c.request({"type": "join", "room": "r"}))["type"] == "state"
    await expect_error(c, "already_joined", frame={"type": "join", "room": "other"})
    await expect_error(c, "stream_not_found", frame={"type": "mute", "stream": "nope", "video": True})
    await expect_error(c, "stream_not_found", frame={"type": "unpublish", "stream": "nope"})
    await expect_error(c, "stream_not_found", frame={"type": "play", "stream": "nope", "sdp": SDP})
    await c.close()


async def test_failed_hello_closes_with_4001() -> None:
    """A bad username: FAILED with a reason, then close code 4001."""
    c = await client()
    reply = await c.request({"type": "hello", "version": 1, "username": "  "})
    assert reply == {**reply, "type": "failed", "status": "FAILED", "code": "invalid_username"}
    closed = await c.comm.receive_output(timeout=WAIT)
    assert closed == {"type": "websocket.close", "code": 4001}


async def test_unsupported_version_fails() -> None:
    """Another protocol version: FAILED unsupported_version, then close 4001."""
    c = await client()
    await c.send({"type": "hello", "version": 99, "username": "alice", "rid": "h"})
    reply = await c.receive()
    assert reply["type"] == "failed" and reply["code"] == "unsupported_version" and reply["rid"] == "h"
    assert await c.comm.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": 4001}


async def test_bad_token_fails() -> None:
    """A token that does not verify: FAILED invalid_token, then close 4001."""
    c = await client()
    reply = await c.request({"type": "hello", "version": 1, "token": "not.a.token"})
    assert reply["type"] == "failed" and reply["code"] == "invalid_token"
    assert await c.comm.receive_output(timeout=WAIT) == {"type": "websocket.close", "code": 4001}


# --- rooms over the socket ------------------------------------------------------------


async def test_identity_comes_from_the_connection() -> None:
    """A payload naming another sender is ignored: the message is from the connection's login."""
    alice = await client("alice")
    bob = await client("bob")
    await alice.request({"type": "join", "room": "r"})
    await bob.request({"type": "join", "room": "r"})
    ack = await alice.request({"type": "send_message", "text": "hi", "from": "mallory", "login": "mallory"})
    assert ack["type"] == "ack" and ack["message"]["from"] == "alice"
    assert (await bob.event("message"))["message"]["from"] == "alice"
    await alice.close()
    await bob.close()


async def test_join_message_leave_events() -> None:
    """joined, message (Unicode unchanged) and left reach the other participant; rid kinds are echoed."""
    alice = await client("alice")
    bob = await client("bob")
    await alice.request({"type": "join", "room": "r"})
    state = await bob.request({"type": "join", "room": "r"})
    assert [x["login"] for x in state["participants"]] == ["alice"]
    assert (await alice.event("joined"))["participant"]["login"] == "bob"
    text = "Привет 你好 👋 שלום"
    await bob.send({"type": "send_message", "text": text, "to": ["alice"], "rid": "string-rid"})
    ack = await bob.reply("string-rid")
    assert ack["type"] == "ack"
    got = await alice.event("message")
    assert got["message"]["text"] == text and got["message"]["to"] == ["alice"]
    assert (await bob.request({"type": "leave"}))["type"] == "ack"
    assert (await alice.event("left"))["participant"]["login"] == "bob"
    await bob.assert_usable()
    await alice.close()
    await bob.close()


async def test_big_data_url_and_too_large_message() -> None:
    """A data: URL of 1 MiB is delivered; one byte more is refused and the connection stays up."""
    from django.conf import settings

    alice = await client("alice")
    bob = await client("bob")
    await alice.request({"type": "join", "room": "r"})
    await bob.request({"type": "join", "room": "r"})
    prefix = "data:image/png;base64,"
    text = prefix + "Q" * (settings.MESSAGE_MAX_BYTES - len(prefix))
    assert (await alice.request({"type": "send_message", "text": text}))["type"] == "ack"
    assert (await bob.event("message"))["message"]["text"] == text
    await expect_error(alice, "message_too_large", frame={"type": "send_message", "text": text + "Q"})
    await alice.close()
    await bob.close()


async def test_drop_resume_and_expiry(settings: Any) -> None:
    """A drop -> participant_updated disconnected; resume (with the secret) -> connected; a later drop
    expires -> left, room ends."""
    settings.ROOM_IDLE_TIMEOUT = 0.5
    alice = await client("alice")
    bob = await client("bob")
    state = await alice.request({"type": "join", "room": "r"})
    secret = (await bob.request({"type": "join", "room": "r"}))["self"]["resume_secret"]
    await bob.close()
    update = await alice.event("participant_updated")
    assert update["participant"] == {**update["participant"], "login": "bob", "state": "disconnected"}

    bob = await Client().open()
    assert (await bob.request({"type": "hello", "version": 1, "username": "bob", "resume_secret": secret}))[
        "type"
    ] == "established"
    resumed = await bob.request({"type": "join", "room": "r"})
    assert resumed["type"] == "state" and resumed["resumed"] is True
    update = await alice.event("participant_updated")
    assert update["participant"]["state"] == "connected"

    await bob.close()
    await alice.event("participant_updated")
    left = await alice.event("left")  # the expiry timer (ROOM_IDLE_TIMEOUT) fired
    assert left["participant"]["login"] == "bob"
    await alice.close()  # alice drops too; her timer ends the room
    room_id = state["room"]["id"]

    async def finalized() -> bool:
        room = await database_sync_to_async(Room.objects.get)(pk=room_id)
        return room.finalized_at is not None

    import asyncio

    for _ in range(100):
        if await finalized():
            break
        await asyncio.sleep(0.05)
    assert await finalized()
    states = await database_sync_to_async(lambda: set(Participant.objects.values_list("state", flat=True)))()
    assert states == {"left"}


async def test_a_sweep_before_a_join_tells_the_rooms_it_changed(settings: Any) -> None:
    """A participant whose expiry timer was lost with its process (dropped in the database, no timer here) is
    expired by the sweep before some later join, in any room, and the participants of its room get LEFT."""
    from rooms import services
    from rooms.dispatch import deliver_outcome

    settings.ROOM_IDLE_TIMEOUT = 0.3
    alice = await client("alice")
    await alice.request({"type": "join", "room": "busy"})
    ghost = await database_sync_to_async(services.join)("ghost", "busy", "gone.process!chan")
    await deliver_outcome(ghost)
    await alice.event("joined")
    await deliver_outcome(await database_sync_to_async(services.drop)(ghost.participant_id, "gone.process!chan"))
    await alice.event("participant_updated")
    await asyncio.sleep(0.5)
    services.reset_sweep_throttle()
    carol = await client("carol")
    assert (await carol.request({"type": "join", "room": "elsewhere"}))["type"] == "state"
    left = await alice.event("left")
    assert left["participant"]["login"] == "ghost"
    for c in (alice, carol):
        await c.close()


async def test_a_joiner_gets_the_events_of_joins_that_commit_right_after_its_own() -> None:
    """A join committed just after another one (here: from inside the first one's commit hooks, before its
    connection is back on the event loop) reaches the first joiner too: as its state, or as an event after it."""
    from asgiref.sync import async_to_sync

    from rooms import services, signals
    from rooms.delivery import deliver

    def carol_joins_now(participant: Participant, **kwargs: Any) -> None:
        if participant.login == "alice":  # alice's join committed; her connection has not seen its result yet
            outcome = services.join("carol", "r", "carol.elsewhere!chan")
            async_to_sync(deliver)(outcome.deliveries)

    bob = await client("bob")
    await bob.request({"type": "join", "room": "r"})
    alice = await client("alice")
    signals.participant_joined.connect(carol_joins_now, dispatch_uid="test-carol-joins-now")
    try:
        state = await alice.request({"type": "join", "room": "r"})
    finally:
        signals.participant_joined.disconnect(dispatch_uid="test-carol-joins-now")
    assert state["type"] == "state", state
    known = {x["login"] for x in state["participants"]}
    if "carol" not in known:
        joined = await alice.event("joined")
        assert joined["participant"]["login"] == "carol"
    # bob hears of both (carol's join is delivered from inside alice's, before alice's own event)
    assert {(await bob.event("joined"))["participant"]["login"] for _ in range(2)} == {"alice", "carol"}
    await alice.close()
    await bob.close()


def test_held_events_the_state_already_says_are_dropped() -> None:
    """Of the events held during a join, those its state shows already go (a joined of someone listed, a left of
    someone never listed, a message in the history); the others are sent, in order, and counted as known."""
    from rooms.catchup import Catchup

    def person(login: str, state: str = "connected") -> dict[str, Any]:
        return {"login": login, "state": state, "role": "publisher", "joined_at": "2025-01-01T10:00:00.000000Z",
                "streams": []}

    def event(kind: str, **fields: Any) -> str:
        return json.dumps({"type": kind, **fields})

    catchup = Catchup({"participants": [person("bob")], "history": [{"id": 7}]})
    assert not catchup.fresh(event("joined", participant=person("bob")))
    assert catchup.fresh(event("participant_updated", participant=person("bob", "disconnected")))
    assert not catchup.fresh(event("left", participant=person("dave", "left")))
    assert catchup.fresh(event("joined", participant=person("carol")))
    assert catchup.fresh(event("left", participant=person("carol", "left")))
    assert not catchup.fresh(event("left", participant=person("carol", "left")))
    assert not catchup.fresh(event("message", message={"id": 7}))
    assert catchup.fresh(event("message", message={"id": 8}))
    assert catchup.fresh(event("presence", changes=[], viewers=3))
