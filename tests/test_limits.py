"""Hostile input: rate limits, per-IP connection cap, Origin, sizes, SDP checks, identity from the connection."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from aiortc import RTCPeerConnection
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from conference.asgi import application
from rooms import limits
from rooms import protocol as p
from rooms.models import Message, Participant, Stream
from tests.conftest import require_redis
from tests.roomclient import WAIT, RoomClient, add_live_stream
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)


async def recvonly_offer() -> str:
    """A real receive-only offer (audio + video) from aiortc."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def quiet(client: RoomClient) -> None:
    """The client received nothing but the reply to a ping: no event reached it."""
    rid = "quiet-check"
    await client.send({"type": "ping", "rid": rid})
    frame = await client.receive()
    assert frame == {"type": "pong", "rid": rid}, frame
    assert client.comm.output_queue.qsize() == 0
    assert not [e for e in client.seen if e.get("rid") != rid], client.seen


def other_address() -> str:
    """A client address no other test uses (counts in Redis outlive a test)."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def communicator(address: str | None = None, origin: bytes | None = b"http://localhost") -> WebsocketCommunicator:
    """A communicator whose scope carries ``address`` as the client IP and ``origin`` as its Origin."""
    headers = [(b"host", b"localhost")] + ([(b"origin", origin)] if origin is not None else [])
    comm = WebsocketCommunicator(application, "/ws/", headers=headers)
    if address is not None:
        comm.scope["client"] = (address, 50000)
    return comm


# --- token buckets ------------------------------------------------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    """A bucket gives ``burst`` at once, then one token per 1/rate seconds; rate 0 never refuses."""
    bucket = limits.TokenBucket(rate=2.0, burst=3.0, updated=100.0)
    assert [bucket.take(now=100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(now=100.4) is False
    assert bucket.take(now=100.5) is True
    assert [bucket.take(now=200.0) for _ in range(4)] == [True, True, True, False]
    free = limits.TokenBucket(rate=0.0, burst=0.0)
    assert all(free.take() for _ in range(10_000))


async def test_commands_over_budget_are_refused_and_the_connection_stays_up(settings: Any) -> None:
    """Over WS_RATE_COMMANDS_*: error rate_limited echoing the rid, with clear text; later commands pass again."""
    settings.WS_RATE_COMMANDS_PER_SECOND = 20.0
    settings.WS_RATE_COMMANDS_BURST = 3.0
    c = await RoomClient.connect()
    replies = [await c.request({"type": "ping"}) for _ in range(3)]
    assert [r["type"] for r in replies] == ["pong"] * 3
    refused = await c.request({"type": "ping"})
    assert refused["type"] == "error" and refused["code"] == "rate_limited", refused
    assert "too many commands" in refused["message"] and "20" in refused["message"]
    for _ in range(100):  # the bucket refills: bounded polling, no timing assertion
        if (await c.request({"type": "ping"}))["type"] == "pong":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the connection never accepted a command again")
    await c.close()


async def test_messages_over_budget_are_refused_and_not_delivered(settings: Any) -> None:
    """Over WS_RATE_MESSAGES_*: rate_limited; the refused message is neither stored nor delivered; pings still pass."""
    settings.WS_RATE_MESSAGES_PER_SECOND = 0.001
    settings.WS_RATE_MESSAGES_BURST = 2.0
    alice = await RoomClient.open("alice")
    bob = await RoomClient.open("bob")
    await alice.join("r")
    await bob.join("r")
    await alice.until("joined")
    for n in range(2):
        assert (await alice.request({"type": "send_message", "text": f"m{n}"}))["type"] == "ack"
    refused = await alice.request({"type": "send_message", "text": "flood"})
    assert refused["type"] == "error" and refused["code"] == "rate_limited" and "messages" in refused["message"]
    assert (await alice.request({"type": "ping"}))["type"] == "pong"
    assert [(await bob.until("message"))["message"]["text"] for _ in range(2)] == ["m0", "m1"]
    await quiet(bob)
    assert await database_sync_to_async(Message.objects.count)() == 2
    await alice.close()
    await bob.close()


def test_default_limits_never_bother_a_real_user() -> None:
    """The shipped defaults leave room for ICE bursts and lively chat, and cap connections per IP."""
    assert django_settings.WS_RATE_COMMANDS_BURST >= 100 and django_settings.WS_RATE_COMMANDS_PER_SECOND >= 20
    assert django_settings.WS_RATE_MESSAGES_BURST >= 20 and django_settings.WS_RATE_MESSAGES_PER_SECOND >= 5
    assert django_settings.WS_MAX_CONNECTIONS_PER_IP >= 20


# --- connections per IP --------------------------------------------------------------------------


async def test_connections_per_ip_are_capped(settings: Any) -> None:
    """The (cap+1)th connection of an address is closed with 4429 and a reason; a freed slot is reusable."""
    settings.WS_MAX_CONNECTIONS_PER_IP = 2
    address = other_address()
    first, second, third = communicator(address), communicator(address), communicator(address)
    assert (await first.connect(timeout=WAIT))[0] and (await second.connect(timeout=WAIT))[0]
    await third.connect(timeout=WAIT)
    error = await third.receive_json_from(timeout=WAIT)
    assert error["type"] == "error" and error["code"] == "rate_limited" and "too many connections" in error["message"]
    closed = await third.receive_output(timeout=WAIT)
    assert closed["type"] == "websocket.close" and closed["code"] == 4429, closed
    assert "too many connections" in closed["reason"]
    elsewhere = communicator(other_address())  # another address is not affected
    assert (await elsewhere.connect(timeout=WAIT))[0]
    await first.disconnect()
    fourth = communicator(address)
    assert (await fourth.connect(timeout=WAIT))[0]
    await fourth.send_json_to({"type": "ping", "rid": 1})
    assert await fourth.receive_json_from(timeout=WAIT) == {"type": "pong", "rid": 1}
    for comm in (second, fourth, elsewhere):
        await comm.disconnect()


async def test_exempt_and_unknown_addresses_are_not_capped(settings: Any) -> None:
    """Loopback (WS_MAX_CONNECTIONS_EXEMPT) and connections without a client address are not counted."""
    settings.WS_MAX_CONNECTIONS_PER_IP = 1
    comms = [communicator("127.0.0.1"), communicator("127.0.0.1"), communicator(None), communicator(None)]
    for comm in comms:
        assert (await comm.connect(timeout=WAIT))[0]
        await comm.send_json_to({"type": "ping", "rid": 1})
        assert (await comm.receive_json_from(timeout=WAIT))["type"] == "pong"
    for comm in comms:
        await comm.disconnect()


@pytest.fixture
def capped_cluster(transactional_db: Any) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    """Two daphne processes sharing Redis, loopback not exempt, two connections per IP."""
    require_redis()
    import redis

    redis.Redis.from_url(django_settings.REDIS_URL).delete(limits.REDIS_KEY_PREFIX + "127.0.0.1")
    env = {"WS_MAX_CONNECTIONS_PER_IP": "2", "WS_MAX_CONNECTIONS_EXEMPT": "", "REDIS_URL": django_settings.REDIS_URL}
    with DaphneServer(env) as first, DaphneServer(env) as second:
        yield first, second


async def _ws(server: DaphneServer) -> Any:
    return await websockets.connect(f"{server.ws_url}/ws/", origin=f"http://127.0.0.1:{server.port}")  # type: ignore[arg-type]


async def test_connection_cap_is_shared_by_processes(capped_cluster: tuple[DaphneServer, DaphneServer]) -> None:
    """With Redis, connections on two daphne processes count together: the third is closed with 4429."""
    import redis

    first, second = capped_cluster
    a = await _ws(first)
    b = await _ws(second)
    for ws in (a, b):
        await ws.send(json.dumps({"type": "ping", "rid": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "pong"
    c = await _ws(first)
    error = json.loads(await asyncio.wait_for(c.recv(), WAIT))
    assert error["type"] == "error" and error["code"] == "rate_limited" and "too many connections" in error["message"]
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(c.recv(), WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429  # daphne drops the reason text
    await a.close()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    key = limits.REDIS_KEY_PREFIX + "127.0.0.1"
    for _ in range(200):  # the server's disconnect gives the slot back (bounded polling)
        if limits.redis_connection_count("127.0.0.1") <= 1:
            break
        await asyncio.sleep(0.05)
    d = await _ws(first)
    await d.send(json.dumps({"type": "ping", "rid": 2}))
    assert json.loads(await asyncio.wait_for(d.recv(), WAIT))["type"] == "pong"
    for ws in (b, d):
        await ws.close()
    for _ in range(200):
        if not client.exists(key):
            break
        await asyncio.sleep(0.05)
    assert not client.exists(key)


# --- Origin and sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (b"http://localhost", True),
        (b"http://127.0.0.1:8000", True),
        (b"http://evil.example", False),
        (b"null", False),
        (None, False),
    ],
)
async def test_origin_is_checked_against_allowed_hosts(origin: bytes | None, accepted: bool) -> None:
    """Only an Origin naming an ALLOWED_HOSTS host is let in; a foreign, null or missing Origin is refused."""
    comm = communicator(origin=origin)
    connected, _ = await comm.connect(timeout=WAIT)
    assert connected is accepted
    await comm.disconnect()


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """One real daphne process."""
    with DaphneServer() as running:
        yield running


async def test_origin_and_sizes_through_daphne(server: DaphneServer) -> None:
    """Real daphne: foreign or missing Origin -> HTTP 403; a 1 MiB message passes; bigger frames are bounded."""
    for origin in ("http://evil.example", None):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(f"{server.ws_url}/ws/", origin=origin)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
    ws = await websockets.connect(f"{server.ws_url}/ws/", origin=f"http://127.0.0.1:{server.port}", max_size=None)

    async def request(payload: dict[str, Any]) -> dict[str, Any]:
        await ws.send(json.dumps(payload))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            if frame.get("rid") == payload.get("rid") and frame["type"] != "message":
                return frame

    assert (await request({"type": "hello", "version": 1, "username": "alice", "rid": 1}))["type"] == "established"
    assert (await request({"type": "join", "room": "big", "rid": 2}))["type"] == "state"
    text = "Q" * django_settings.MESSAGE_MAX_BYTES
    assert (await request({"type": "send_message", "text": text, "rid": 3}))["type"] == "ack"
    # An undecoded frame has no rid to echo: its error comes without one.
    over = await request({"type": "send_message", "text": "Q" * (django_settings.WS_MAX_FRAME_BYTES + 1)})
    assert over["type"] == "error" and over["code"] == "frame_too_large", over
    with pytest.raises(websockets.ConnectionClosed) as closed:  # beyond daphne's own cap: it drops the connection
        await ws.send("Q" * (3 * 1024 * 1024))
        for _ in range(10):  # a late "message" event may still be queued
            await asyncio.wait_for(ws.recv(), WAIT)
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    again = await websockets.connect(f"{server.ws_url}/ws/", origin=f"http://127.0.0.1:{server.port}")
    await again.send(json.dumps({"type": "ping", "rid": 1}))
    assert json.loads(await asyncio.wait_for(again.recv(), WAIT)) == {"type": "pong", "rid": 1}
    await again.close()


# --- SDP ---------------------------------------------------------------------------------------------


async def test_real_offers_pass_validation() -> None:
    """aiortc's offers are valid SDP for the relay."""
    assert p.validate_sdp(await recvonly_offer())


@pytest.mark.parametrize(
    ("sdp", "why"),
    [
        ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n", "no m= line"),
        ("v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nthis is not sdp\r\n", "x=value"),
        ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=x\x01y\r\n", "x=value"),
        ("v=0\r\nm=hologram\r\n", "m= line"),
        ("v=0\r\n" + "m=audio 9 RTP/AVP 0\r\n" * 40, "m= sections"),
        ("v=0\r\nm=audio 9 RTP/AVP 0\r\n" + "a=x\r\n" * 3000, "lines"),
    ],
)
def test_malformed_sdp_is_refused(sdp: str, why: str) -> None:
    """SDP without media, with garbage lines, control characters or too many lines/sections: invalid_sdp."""
    with pytest.raises(p.ProtocolError) as refused:
        p.validate_sdp(sdp)
    assert refused.value.code == "invalid_sdp" and why in refused.value.message


async def test_bad_sdp_over_the_socket_creates_nothing() -> None:
    """publish/play with SDP that is not an offer: invalid_sdp, no stream row, NUL refused at parse time."""
    alice = await RoomClient.open("alice")
    await alice.join("sdp")
    no_media = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    for sdp in (no_media, no_media + "\x00", "v=0" + "x" * (p.MAX_SDP_BYTES + 1)):
        reply = await alice.request({"type": "publish", "kind": "camera", "sdp": sdp})
        assert reply["type"] == "error" and reply["code"] == "invalid_sdp", reply
    assert await database_sync_to_async(Stream.objects.count)() == 0
    stream = await add_live_stream("sdp", "alice")
    reply = await alice.request({"type": "play", "stream": stream, "sdp": no_media})
    assert reply["type"] == "error" and reply["code"] == "invalid_sdp", reply
    await alice.close()


# --- identity and rooms -------------------------------------------------------------------------------


@database_sync_to_async
def room_state() -> list[tuple[Any, ...]]:
    """Everything an impostor could change."""
    return [
        *Participant.objects.values_list("login", "state", "room__name").order_by("pk"),
        *Stream.objects.values_list("public_id", "status", "audio_muted", "video_muted").order_by("pk"),
        *Message.objects.values_list("sender_login", "room__name", "text").order_by("pk"),
    ]


async def test_a_client_cannot_act_as_another_or_in_another_room() -> None:
    """Mallory (room B) names alice, her id, room A and her stream: only clear errors; room A sees nothing."""
    alice = await RoomClient.open("alice")
    bob = await RoomClient.open("bob")
    mallory = await RoomClient.open("mallory")
    state_a = await alice.join("A")
    await bob.join("A")
    await alice.until("joined")
    await mallory.join("B")
    stream = await add_live_stream("A", "alice")
    alice_pid = state_a["self"].get("id")
    offer = await recvonly_offer()
    before = await room_state()

    spoofed = await mallory.request(
        {"type": "send_message", "text": "hi", "from": "alice", "login": "alice", "participant": alice_pid,
         "room": "A", "sender": "alice"}
    )
    assert spoofed["type"] == "ack" and spoofed["message"]["from"] == "mallory"
    attempts: list[tuple[dict[str, Any], set[str]]] = [
        ({"type": "send_message", "text": "psst", "to": ["alice"]}, {"unknown_recipient"}),
        ({"type": "play", "stream": stream, "sdp": offer, "participant": alice_pid}, {"stream_not_found"}),
        ({"type": "mute", "stream": stream, "audio": True, "video": True, "login": "alice"}, {"stream_not_found"}),
        ({"type": "unpublish", "stream": stream, "from": "alice"}, {"stream_not_found"}),
        ({"type": "ice", "pc": stream, "candidate": None, "participant": alice_pid}, {"play_not_found"}),
        ({"type": "stop", "play": stream, "room": "A"}, {"play_not_found"}),
        ({"type": "moderate", "action": "kick", "login": "alice", "room": "A"}, {"participant_not_found"}),
        ({"type": "moderate", "action": "mute", "stream": stream, "video": True}, {"stream_not_found"}),
        ({"type": "moderate", "action": "unpublish", "stream": stream}, {"stream_not_found"}),
        ({"type": "join", "room": "A", "login": "alice"}, {"already_joined"}),
    ]
    for payload, codes in attempts:
        reply = await mallory.request(payload)
        assert reply["type"] == "error" and reply["code"] in codes, (payload, reply)
        assert reply["message"]
    # bob is in room A but still cannot touch alice's stream or speak as her.
    for payload, codes in attempts[2:6]:
        reply = await bob.request(payload)
        assert reply["type"] == "error" and reply["code"] in codes, (payload, reply)
    assert (await bob.request({"type": "moderate", "action": "kick", "login": "alice"}))["code"] == "forbidden"

    after = await room_state()
    assert after == [*before, ("mallory", "B", "hi")]
    await quiet(alice)
    await quiet(bob)
    for client in (alice, bob, mallory):
        await client.close()


async def test_a_second_hello_cannot_change_identity() -> None:
    """hello again as someone else: already_established; the session keeps its login."""
    c = await RoomClient.open("alice")
    reply = await c.request({"type": "hello", "version": 1, "username": "root"})
    assert reply["type"] == "error" and reply["code"] == "already_established"
    state = await c.join("who")
    assert state["self"]["login"] == "alice"
    await c.close()

