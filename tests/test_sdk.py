"""The Python SDK (roomapi) against a real daphne process (tests/servers.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import roomapi
from roomapi import ROOM_EVENT, SESSION_STATUS, STREAM_STATUS, RoomApiError
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 15.0
MIB = 1024 * 1024  # MESSAGE_MAX_BYTES by default


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process on the test database with a short idle timeout (other settings at their defaults)."""
    with DaphneServer({"ROOM_IDLE_TIMEOUT": "1"}) as srv:
        yield srv


def test_constants_are_their_names() -> None:
    """SESSION_STATUS, ROOM_EVENT and STREAM_STATUS values are their names."""
    for holder in (SESSION_STATUS, ROOM_EVENT, STREAM_STATUS):
        for key, value in vars(holder).items():
            if not key.startswith("_"):
                assert value == key
    assert ROOM_EVENT.JOINED == "JOINED" and STREAM_STATUS.PLAYING == "PLAYING"


def test_endpoint_from_base_url() -> None:
    """The SDK takes the server base URL and appends /ws/."""
    from roomapi.client import ws_endpoint

    assert ws_endpoint("ws://127.0.0.1:8000") == "ws://127.0.0.1:8000/ws/"
    assert ws_endpoint("ws://127.0.0.1:8000/") == "ws://127.0.0.1:8000/ws/"
    assert ws_endpoint("https://example.org") == "wss://example.org/ws/"


async def test_connect_join_state_and_joined(server: DaphneServer) -> None:
    """connect -> ESTABLISHED; join -> STATE with the others; the others get JOINED with a Participant."""
    alice = await roomapi.connect(server.ws_url, "alice")
    assert alice.status == SESSION_STATUS.ESTABLISHED and alice.username == "alice"
    room_a = await alice.join("sdk-room")
    assert room_a.name == "sdk-room" and room_a.get_participants() == []
    assert (await room_a.wait_for(ROOM_EVENT.STATE, timeout=WAIT)).name == ROOM_EVENT.STATE
    joined: list[str] = []
    room_a.on(ROOM_EVENT.JOINED, lambda event: joined.append(event.participant.name)).on(
        ROOM_EVENT.LEFT, lambda event: None
    )

    bob = await roomapi.connect(server.ws_url, "bob")
    room_b = await bob.join("sdk-room")
    others = room_b.get_participants()
    assert [(p.name, p.login, p.state) for p in others] == [("alice", "alice", "connected")]
    assert others[0].get_streams() == []

    event = await room_a.wait_for(
        ROOM_EVENT.JOINED, lambda e: e.participant is not None and e.participant.login == "bob", timeout=WAIT
    )
    assert event.participant is not None and event.participant.state == "connected"
    assert joined == ["bob"]
    assert [p.login for p in room_a.get_participants()] == ["bob"]

    await room_b.leave()
    left = await room_a.wait_for(ROOM_EVENT.LEFT, timeout=WAIT)
    assert left.participant is not None and left.participant.login == "bob"
    assert room_a.get_participants() == []
    await bob.disconnect()
    await alice.disconnect()
    assert alice.status == SESSION_STATUS.DISCONNECTED


async def test_async_callbacks_and_messages(server: DaphneServer) -> None:
    """Messages to all, to one participant and to a list arrive as MESSAGE; async callbacks run."""
    alice = await roomapi.connect(server.ws_url, "alice")
    bob = await roomapi.connect(server.ws_url, "bob")
    carol = await roomapi.connect(server.ws_url, "carol")
    room_a = await alice.join("chat")
    room_b = await bob.join("chat")
    room_c = await carol.join("chat")
    got: asyncio.Queue[roomapi.Message] = asyncio.Queue()

    async def on_message(event: roomapi.RoomEvent) -> None:
        assert event.message is not None
        await got.put(event.message)

    room_b.on(ROOM_EVENT.MESSAGE, on_message)

    sent = await room_a.send_message("Привет, 世界 👋 שלום")
    assert sent.text == "Привет, 世界 👋 שלום" and sent.to is None and sent.sender == "alice"
    received = await asyncio.wait_for(got.get(), WAIT)
    assert received == sent

    bob_seen_by_alice = room_a.get_participant("bob")
    assert bob_seen_by_alice is not None
    private = await bob_seen_by_alice.send_message("just for you")
    assert private.to == ("bob",) and private.private
    assert (await asyncio.wait_for(got.get(), WAIT)).text == "just for you"

    to_list = await room_c.send_message("to both", to=["alice", "bob"])
    assert to_list.to == ("alice", "bob")
    assert (await room_a.wait_for(ROOM_EVENT.MESSAGE, lambda e: e.message is not None and e.message.text == "to both",
                                  timeout=WAIT)).message == to_list

    # carol never sees the private one, neither live nor in history
    await room_c.send_message("sync")
    await room_c.wait_for(
        ROOM_EVENT.MESSAGE, lambda e: e.message is not None and e.message.text == "sync", timeout=WAIT
    )
    assert "just for you" not in [m.text for m in room_c.history]
    for conn in (alice, bob, carol):
        await conn.disconnect()


async def test_refusals_raise_room_api_error(server: DaphneServer) -> None:
    """Login taken, room full and an oversize message raise RoomApiError with the protocol code."""
    alice = await roomapi.connect(server.ws_url, "alice")
    room = await alice.join("small", max_participants=2)
    assert room.info["max_participants"] == 2

    again = await roomapi.connect(server.ws_url, "alice")
    with pytest.raises(RoomApiError) as taken:
        await again.join("small")
    assert taken.value.code == "login_taken"

    bob = await roomapi.connect(server.ws_url, "bob")
    await bob.join("small")
    carol = await roomapi.connect(server.ws_url, "carol")
    with pytest.raises(RoomApiError) as full:
        await carol.join("small")
    assert full.value.code == "room_full" and "full" in full.value.message

    with pytest.raises(RoomApiError) as big:
        await room.send_message("x" * (MIB + 1))
    assert big.value.code == "message_too_large"
    # the connection stays usable
    await alice.ping()
    assert (await room.send_message("still here")).text == "still here"
    for conn in (alice, again, bob, carol):
        await conn.disconnect()


async def test_data_url_of_one_mib_is_delivered(server: DaphneServer) -> None:
    """A data: URL image of exactly MESSAGE_MAX_BYTES crosses the real server intact."""
    alice = await roomapi.connect(server.ws_url, "alice")
    bob = await roomapi.connect(server.ws_url, "bob")
    room_a = await alice.join("pictures")
    room_b = await bob.join("pictures")
    prefix = "data:image/png;base64,"
    text = prefix + "iVBO" * ((MIB - len(prefix)) // 4) + "=" * ((MIB - len(prefix)) % 4)
    assert len(text.encode()) == MIB
    sent = await room_a.send_message(text, to="bob")
    got = await room_b.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)
    assert got.message is not None and got.message.text == text and got.message == sent
    await alice.disconnect()
    await bob.disconnect()


async def test_bad_username_fails_the_session(server: DaphneServer) -> None:
    """A blank username: the session FAILS with invalid_username."""
    with pytest.raises(RoomApiError) as failed:
        await roomapi.connect(server.ws_url, "   ")
    assert failed.value.code == "invalid_username"


async def test_drop_then_resume_then_expire(server: DaphneServer) -> None:
    """A dropped participant shows as disconnected, may resume (with its resume secret), and leaves after
    ROOM_IDLE_TIMEOUT."""
    alice = await roomapi.connect(server.ws_url, "alice")
    room_a = await alice.join("resume")
    bob = await roomapi.connect(server.ws_url, "bob")
    secret = (await bob.join("resume")).resume_secret
    await bob.disconnect()
    dropped = await room_a.wait_for(ROOM_EVENT.PARTICIPANT_UPDATED, lambda e: e.participant is not None, timeout=WAIT)
    assert dropped.participant is not None and dropped.data["participant"]["state"] == "disconnected"

    bob = await roomapi.connect(server.ws_url, "bob", resume_secret=secret)
    room_b = await bob.join("resume")
    assert room_b.resumed
    back = await room_a.wait_for(ROOM_EVENT.PARTICIPANT_UPDATED, lambda e: e.participant is not None, timeout=WAIT)
    assert back.participant is not None and back.data["participant"]["state"] == "connected"

    await bob.disconnect()
    left = await room_a.wait_for(ROOM_EVENT.LEFT, timeout=WAIT)
    assert left.participant is not None and left.participant.login == "bob"
    await alice.disconnect()


async def test_leave_then_join_at_once(server: DaphneServer) -> None:
    """leave followed at once by join with the same login works, on the same and on a new connection."""
    alice = await roomapi.connect(server.ws_url, "alice")
    bob = await roomapi.connect(server.ws_url, "bob")
    await bob.join("again")
    room = await alice.join("again")
    await room.leave()
    assert room.closed and alice.room is None
    room = await alice.join("again")
    assert room.name == "again" and not room.resumed
    await room.leave()
    await alice.disconnect()
    alice = await roomapi.connect(server.ws_url, "alice")
    assert (await alice.join("again")).name == "again"
    await alice.disconnect()
    await bob.disconnect()


async def test_listeners_and_request_hook(server: DaphneServer) -> None:
    """The internal hooks the media layer uses: _request returns the reply, _add_listener sees events."""
    alice = await roomapi.connect(server.ws_url, "alice")
    seen: list[dict[str, Any]] = []
    alice._add_listener("joined", seen.append)
    reply = await alice._request("ping")
    assert reply["type"] == "pong"
    with pytest.raises(RoomApiError) as refused:
        await alice._request("send_message", text="before join")
    assert refused.value.code == "not_joined"
    await alice.join("hooks")
    bob = await roomapi.connect(server.ws_url, "bob")
    await bob.join("hooks")
    room = alice.room
    assert room is not None
    await room.wait_for(ROOM_EVENT.JOINED, timeout=WAIT)
    assert seen and seen[0]["participant"]["login"] == "bob"
    await bob.disconnect()
    await alice.disconnect()


async def test_moderator_finalize_closes_the_room(server: DaphneServer) -> None:
    """A room the moderator finalizes emits CLOSED (room_closed) to the others."""
    alice = await roomapi.connect(server.ws_url, "alice")
    room_a = await alice.join("end")
    bob = await roomapi.connect(server.ws_url, "bob")
    room_b = await bob.join("end")
    await room_a.moderate("finalize")
    closed = await room_b.wait_for(ROOM_EVENT.CLOSED, timeout=WAIT)
    assert closed.code == "room_closed" and room_b.closed
    await alice.disconnect()
    await bob.disconnect()


async def test_moderate_lock_limit_kick_and_refusal(server: DaphneServer) -> None:
    """room.moderate: lock and a new limit reach the others (ROOM_UPDATED), a kick reaches its target (KICKED);
    a participant without can_moderate is refused with forbidden and stays in the room."""
    alice = await roomapi.connect(server.ws_url, "alice")
    room_a = await alice.join("mod")
    bob = await roomapi.connect(server.ws_url, "bob")
    room_b = await bob.join("mod")
    await room_a.moderate("lock")
    await room_b.wait_for(ROOM_EVENT.ROOM_UPDATED, lambda e: e.data["room"]["locked"] is True, timeout=WAIT)
    await room_a.moderate("set_max_participants", max_participants=7)
    await room_b.wait_for(ROOM_EVENT.ROOM_UPDATED, lambda e: e.data["room"]["max_participants"] == 7, timeout=WAIT)
    with pytest.raises(RoomApiError) as refused:
        await room_b.moderate("unlock")
    assert refused.value.code == "forbidden" and not room_b.closed
    await room_a.moderate("kick", login="bob")
    await room_b.wait_for(ROOM_EVENT.KICKED, timeout=WAIT)
    assert room_b.closed
    await alice.disconnect()
    await bob.disconnect()
