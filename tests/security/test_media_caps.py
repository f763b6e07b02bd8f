"""Finding 4 of issue 11: unlimited media work per connection, and ICE checks to any address.

A real daphne with the relay in-process; "ann" publishes real video through the
SDK, the hostile clients speak raw WebSocket.  Design under test: caps
MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT (default 2: camera + screen),
MEDIA_MAX_PLAYS_PER_PARTICIPANT, MEDIA_MAX_PENDING_PER_PARTICIPANT (peer
connections not yet connected), MEDIA_MAX_CANDIDATES_PER_OFFER; remote candidates
in loopback, link-local, multicast and unspecified ranges refused
(``candidate_refused``, checked before anything else so no state is created),
private ranges allowed by a setting; each refusal a clear error code, the
connection and the room unharmed.

No test here makes the relay send anything beyond this machine: the hostile
candidates of offers are on loopback or 0.0.0.0; link-local and multicast ones
are only trickled for a peer connection that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from asgiref.sync import sync_to_async

import roomapi
from roomapi import STREAM_STATUS, RoomApiError
from rooms.models import Stream
from tests.media_sources import CounterVideoTrack
from tests.security.hostile import RawClient, host_candidate, recvonly_offer, with_candidates
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0


@contextmanager
def serve(**env: str) -> Iterator[DaphneServer]:
    """A daphne process with the relay in-process, a short connect timeout and ``env``."""
    with DaphneServer({"MEDIA_CONNECT_TIMEOUT": "5", **env}) as server:
        yield server


@asynccontextmanager
async def ann_publishing(server: DaphneServer, room: str) -> AsyncIterator[tuple[Any, Any, str]]:
    """Ann in ``room`` publishing real video: (connection, room, stream id)."""
    ann = await roomapi.connect(server.ws_url, "ann")
    joined = await ann.join(room)
    stream = await joined.publish(video=CounterVideoTrack((200, 40, 40)))
    await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    try:
        yield ann, joined, stream.id
    finally:
        await ann.disconnect()


async def mallory_in(server: DaphneServer, room: str) -> RawClient:
    """A raw client joined to ``room``."""
    mallory = await RawClient.open(server.ws_url, "mallory")
    assert (await mallory.request({"type": "join", "room": room}))["type"] == "state"
    return mallory


def without_candidates(sdp: str) -> str:
    """``sdp`` without its own candidate lines."""
    return "".join(line + "\r\n" for line in sdp.split("\r\n") if line and not line.startswith("a=candidate:"))


async def test_publications_per_participant_are_capped(transactional_db: Any) -> None:
    """Finding 4: with MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT=1, ann's second publication (screen) is refused
    with too_many_publications; her camera goes on."""
    with serve(MEDIA_MAX_PUBLICATIONS_PER_PARTICIPANT="1") as server:
        async with ann_publishing(server, "pubcap") as (ann, room, _stream_id):
            with pytest.raises(RoomApiError) as refused:
                await room.publish(video=CounterVideoTrack((40, 40, 200)), kind="screen")
            assert refused.value.code == "too_many_publications", refused.value
            await ann.ping()


async def test_plays_per_participant_are_capped(transactional_db: Any) -> None:
    """Finding 4: with MEDIA_MAX_PLAYS_PER_PARTICIPANT=2, bob's third play of ann's stream is refused with
    too_many_plays; his two plays go on."""
    with serve(MEDIA_MAX_PLAYS_PER_PARTICIPANT="2") as server:
        async with ann_publishing(server, "playcap") as (_ann, _room, _stream_id):
            bob = await roomapi.connect(server.ws_url, "bob")
            room = await bob.join("playcap")
            participant = room.get_participant("ann")
            assert participant is not None
            stream = participant.get_streams()[0]
            plays = [await stream.play(), await stream.play()]
            with pytest.raises(RoomApiError) as refused:
                await stream.play()
            assert refused.value.code == "too_many_plays", refused.value
            for play in plays:
                await play.wait_for(STREAM_STATUS.PLAYING, timeout=WAIT)
            await bob.disconnect()


async def test_pending_peer_connections_are_capped(transactional_db: Any) -> None:
    """Finding 4: plays whose offers never connect hold relay ports; with MEDIA_MAX_PENDING_PER_PARTICIPANT=2
    the third is refused with too_many_pending, and the connection stays up."""
    with serve(MEDIA_MAX_PENDING_PER_PARTICIPANT="2", MEDIA_CONNECT_TIMEOUT="15") as server:
        async with ann_publishing(server, "pending") as (_ann, _room, stream_id):
            mallory = await mallory_in(server, "pending")
            offer = await recvonly_offer(audio=False)
            replies = [await mallory.request({"type": "play", "stream": stream_id, "sdp": offer}) for _ in range(3)]
            assert [r["type"] for r in replies[:2]] == ["answer", "answer"], replies
            assert replies[2]["type"] == "error" and replies[2]["code"] == "too_many_pending", replies[2]
            await mallory.alive()
            await mallory.close()


async def test_an_offer_with_too_many_candidates_is_refused(transactional_db: Any) -> None:
    """Finding 4: a play offer with 200 candidates (ports of this machine) is refused with too_many_candidates
    before the relay checks any of them; the connection and ann's stream are unharmed."""
    with serve() as server:
        async with ann_publishing(server, "scan") as (ann, _room, stream_id):
            mallory = await mallory_in(server, "scan")
            scan = [host_candidate("127.0.0.1", 20000 + n, n) for n in range(200)]
            offer = with_candidates(await recvonly_offer(audio=False), scan)
            refused = await mallory.request({"type": "play", "stream": stream_id, "sdp": offer})
            assert refused["type"] == "error" and refused["code"] == "too_many_candidates", refused
            await mallory.alive()
            await ann.ping()
            await mallory.close()


async def test_candidates_to_loopback_or_unspecified_addresses_are_refused(transactional_db: Any) -> None:
    """Finding 4: a play offer whose only candidate is this server's Redis (127.0.0.1:6379), or 0.0.0.0, is
    refused with candidate_refused; the connection stays up."""
    with serve() as server:
        async with ann_publishing(server, "reflect") as (_ann, _room, stream_id):
            mallory = await mallory_in(server, "reflect")
            bare = without_candidates(await recvonly_offer(audio=False))
            for address, port in (("127.0.0.1", 6379), ("0.0.0.0", 6379)):
                offer = with_candidates(bare, [host_candidate(address, port)])
                refused = await mallory.request({"type": "play", "stream": stream_id, "sdp": offer})
                assert refused["type"] == "error" and refused["code"] == "candidate_refused", refused
                assert address in refused["message"]
            await mallory.alive()
            await mallory.close()


async def test_trickled_candidates_to_link_local_or_multicast_are_refused(transactional_db: Any) -> None:
    """Finding 4: `ice` candidates to the cloud metadata address (169.254.169.254) or multicast are refused with
    candidate_refused before any peer connection is looked up."""
    with serve() as server:
        mallory = await mallory_in(server, "trickle")
        for address in ("169.254.169.254", "224.0.0.251", "ff02::1"):
            candidate = {"candidate": host_candidate(address, 80), "sdpMid": "0", "sdpMLineIndex": 0}
            refused = await mallory.request({"type": "ice", "pc": uuid.uuid4().hex, "candidate": candidate})
            assert refused["type"] == "error" and refused["code"] == "candidate_refused", refused
        await mallory.alive()
        await mallory.close()


def offered_addresses(sdp: str) -> set[tuple[str, str, str]]:
    """The distinct (transport, address, port) of an SDP's own candidates."""
    found = set()
    for line in sdp.split("\r\n"):
        if line.startswith("a=candidate:"):
            fields = line.split()
            found.add((fields[2].lower(), fields[4], fields[5]))
    return found


async def test_trickled_candidates_past_the_cap_are_refused(transactional_db: Any) -> None:
    """Finding 4: a peer connection takes at most MEDIA_MAX_CANDIDATES_PER_OFFER candidates, offer and trickled
    ones together; the next `ice` is refused with too_many_candidates and the connection stays up.  The trickled
    candidates are this machine's own address (the one the offer carries) on other ports."""
    cap = 6
    with serve(MEDIA_MAX_CANDIDATES_PER_OFFER=str(cap)) as server:
        async with ann_publishing(server, "tricklecap") as (_ann, _room, stream_id):
            mallory = await mallory_in(server, "tricklecap")
            offer = await recvonly_offer(audio=False)
            own = offered_addresses(offer)
            assert 0 < len(own) < cap, own
            answer = await mallory.request({"type": "play", "stream": stream_id, "sdp": offer})
            assert answer["type"] == "answer", answer
            host = next(iter(own))[1]
            for n in range(cap - len(own) + 1):
                candidate = {"candidate": host_candidate(host, 9 + n, 90 + n), "sdpMid": "0", "sdpMLineIndex": 0}
                reply = await mallory.request({"type": "ice", "pc": answer["pc"], "candidate": candidate})
                expected = "ack" if n < cap - len(own) else "error"
                assert reply["type"] == expected, (n, reply)
            assert reply["code"] == "too_many_candidates", reply
            await mallory.alive()
            await mallory.close()


async def test_pending_peer_connections_are_capped_per_room(transactional_db: Any) -> None:
    """Finding 4: with MEDIA_MAX_PENDING_PER_ROOM=2, two plays of mallory that never connect leave eve's first
    play refused with too_many_pending (the room's cap, not hers); eve's connection stays up."""
    with serve(MEDIA_MAX_PENDING_PER_ROOM="2", MEDIA_CONNECT_TIMEOUT="15") as server:
        async with ann_publishing(server, "roompending") as (_ann, _room, stream_id):
            mallory = await mallory_in(server, "roompending")
            offer = await recvonly_offer(audio=False)
            for _ in range(2):
                reply = await mallory.request({"type": "play", "stream": stream_id, "sdp": offer})
                assert reply["type"] == "answer", reply
            eve = await RawClient.open(server.ws_url, "eve")
            assert (await eve.request({"type": "join", "room": "roompending"}))["type"] == "state"
            refused = await eve.request({"type": "play", "stream": stream_id, "sdp": offer})
            assert refused["type"] == "error" and refused["code"] == "too_many_pending", refused
            await eve.alive()
            await eve.close()
            await mallory.close()


async def test_a_publish_offer_to_loopback_is_refused(transactional_db: Any) -> None:
    """Finding 4: a publish offer whose only candidate is this server's Redis is refused with candidate_refused;
    no stream row is created for it (nobody sees a FAILED stream); the participant can publish a good offer next."""
    with serve() as server:
        mallory = await mallory_in(server, "pubreflect")
        pc = RTCPeerConnection()
        pc.addTrack(CounterVideoTrack((10, 200, 10)))
        await pc.setLocalDescription(await pc.createOffer())
        good = pc.localDescription.sdp
        await pc.close()
        bad = with_candidates(without_candidates(good), [host_candidate("127.0.0.1", 6379)])
        refused = await mallory.request({"type": "publish", "kind": "camera", "sdp": bad})
        assert refused["type"] == "error" and refused["code"] == "candidate_refused", refused
        assert await sync_to_async(Stream.objects.filter(participant__login="mallory").count)() == 0
        assert (await mallory.request({"type": "publish", "kind": "camera", "sdp": good}))["type"] == "answer"
        await mallory.close()
