"""WHIP ingest and WHEP playback through a real daphne process, with aiortc peers over plain HTTP.

The WHIP and WHEP clients here are aiortc peer connections whose offers and
answers travel by urllib (in a thread): no SDK.  A roomapi client in the room
sees the WHIP publisher join and publish and decodes its frames; a WHEP client
decodes the frames of a roomapi publisher.  Every refusal status is exercised.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from rooms.tokens import mint_token
from tests.media_sources import CounterVideoTrack, ToneAudioTrack, body_color, read_counter
from tests.servers import ROOT, DaphneServer
from tests.test_media import frames, relay_stats, wait_stats

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0
SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
RED = (220, 40, 40)


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process with the relay in-process (guest mode on, the default)."""
    with DaphneServer({"MEDIA_CONNECT_TIMEOUT": "4", "ROOM_IDLE_TIMEOUT": "2"}) as srv:
        yield srv


@dataclass
class Reply:
    """An HTTP answer: status, headers (lower-case names), body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        """The JSON body of a refusal."""
        return dict(json.loads(self.body))


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One HTTP request with urllib; 4xx/5xx are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


async def ahttp(method: str, url: str, body: bytes | str | None = None, **headers: str) -> Reply:
    """:func:`http` in a thread (the event loop keeps running the peers)."""
    data = body.encode() if isinstance(body, str) else body
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    return await asyncio.to_thread(http, method, url, data, named)


def by(login: str) -> Any:
    """A wait_for predicate: the event is about participant ``login``."""
    return lambda event: event.participant is not None and event.participant.login == login


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of a join token."""
    return {"Authorization": f"Bearer {token}"}


@dataclass
class WhipClient:
    """An aiortc peer connection publishing (WHIP) or playing (WHEP) through an HTTP endpoint."""

    pc: RTCPeerConnection
    reply: Reply | None = None
    source: CounterVideoTrack | None = None
    tracks: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """The session resource's path."""
        assert self.reply is not None
        return self.reply.headers["location"]

    async def close(self) -> None:
        """Close the peer connection (no DELETE)."""
        await self.pc.close()


def whip_peer(color: tuple[int, int, int] = RED) -> WhipClient:
    """A send-only peer with counter-frame VP8 video and Opus audio."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    source = CounterVideoTrack(color)
    video = pc.addTransceiver(source, direction="sendonly")
    video.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType in ("video/VP8", "video/rtx")]
    )
    audio = pc.addTransceiver(ToneAudioTrack(), direction="sendonly")
    audio.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"])
    return WhipClient(pc, source=source)


def whep_peer() -> WhipClient:
    """A receive-only peer for video and audio."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = WhipClient(pc)
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")

    @pc.on("track")
    def on_track(track: Any) -> None:
        client.tracks[track.kind] = track

    return client


async def negotiate(client: WhipClient, url: str, **headers: str) -> Reply:
    """POST the peer's offer; on 201 apply the answer."""
    await client.pc.setLocalDescription(await client.pc.createOffer())
    client.reply = await ahttp("POST", url, client.pc.localDescription.sdp, Content_Type=SDP, **headers)
    if client.reply.status == 201:
        answer = client.reply.body.decode()
        await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return client.reply


async def test_whip_publisher_joins_publishes_is_played_and_leaves_on_delete(server: DaphneServer) -> None:
    """A WHIP client with a join token appears as a participant with a camera stream that roomapi decodes."""
    bob = await roomapi.connect(server.ws_url, "bob")
    room = await bob.join("whip-live")
    publisher = whip_peer()
    token = mint_token("whip-live", "encoder")
    reply = await negotiate(publisher, f"{server.http_url}/whip/whip-live", **bearer(token))
    assert reply.status == 201, reply.body
    assert reply.headers["content-type"].startswith(SDP)
    assert reply.headers["location"].startswith("/whip/whip-live/")
    assert reply.headers["etag"].startswith('"')
    assert reply.headers["access-control-allow-origin"] == "*"
    joined = await room.wait_for(ROOM_EVENT.JOINED, by("encoder"), timeout=WAIT)
    assert joined.participant is not None and joined.participant.login == "encoder"
    published = await room.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    assert published.stream is not None and published.stream.kind == "camera"
    assert published.stream.video_codec == "VP8" and published.stream.audio_codec == "opus"
    play = await published.stream.play()
    await play.wait_for(STREAM_STATUS.PLAYING, timeout=WAIT)
    received = await frames(play.video, 30)
    numbers = [read_counter(frame) for frame in received]
    assert numbers == sorted(numbers) and numbers[-1] > 0
    assert all(abs(a - b) < 50 for a, b in zip(body_color(received[-1]), RED, strict=True))
    assert len(await frames(play.audio, 5)) == 5

    # The moderator (bob opened the room) mutes its video like any other stream: no more frames reach the player.
    await bob._request("moderate", action="mute", stream=published.stream.id, video=True)
    await room.wait_for(ROOM_EVENT.STREAM_UPDATED, timeout=WAIT)
    await asyncio.sleep(0.5)  # frames already in flight drain
    with pytest.raises(TimeoutError):
        await frames(play.video, 60, timeout=2)
    await bob._request("moderate", action="mute", stream=published.stream.id, video=False)
    assert len(await frames(play.video, 5)) == 5

    deleted = await ahttp("DELETE", server.http_url + publisher.location)
    assert deleted.status == 200
    left = await room.wait_for(ROOM_EVENT.LEFT, by("encoder"), timeout=WAIT)
    assert left.participant is not None and left.participant.login == "encoder"
    await play.wait_for(STREAM_STATUS.UNPUBLISHED, timeout=WAIT)
    again = await ahttp("DELETE", server.http_url + publisher.location)
    assert again.status == 404 and again.json()["code"] == "session_not_found"
    await publisher.close()
    await bob.disconnect()
    await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0, WAIT)


async def test_whep_plays_a_roomapi_stream_with_trickle_and_delete(server: DaphneServer) -> None:
    """A WHEP client plays ann's stream by her login; PATCH trickles, DELETE stops; bad PATCHes are refused."""
    ann = await roomapi.connect(server.ws_url, "ann")
    room = await ann.join("whep-live")
    source = CounterVideoTrack((40, 200, 40))
    published = await room.publish(video=source, audio=ToneAudioTrack())
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    viewer = whep_peer()
    reply = await negotiate(viewer, f"{server.http_url}/whep/whep-live/ann")
    assert reply.status == 201, reply.body
    assert reply.headers["location"].startswith("/whep/whep-live/ann/")
    resource, etag = server.http_url + viewer.location, reply.headers["etag"]

    # Trickle: one of the offer's own candidates again, then the end of candidates.
    offer = viewer.pc.localDescription.sdp
    candidate = next(line for line in offer.splitlines() if line.startswith("a=candidate:"))
    fragment = (
        f"a=ice-ufrag:{_ufrag(offer)}\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{candidate}\r\n"
        "a=end-of-candidates\r\n"
    )
    patched = await ahttp("PATCH", resource, fragment, Content_Type=SDPFRAG, If_Match=etag)
    assert patched.status == 204, patched.body
    wrong_type = await ahttp("PATCH", resource, fragment, Content_Type="text/plain", If_Match=etag)
    assert wrong_type.status == 415
    restart = await ahttp("PATCH", resource, fragment, Content_Type=SDPFRAG, If_Match="*")
    assert restart.status == 422 and "restart" in restart.json()["message"]
    stale = await ahttp("PATCH", resource, fragment, Content_Type=SDPFRAG, If_Match='"other"')
    assert stale.status == 412
    garbage = await ahttp("PATCH", resource, "not sdp at all", Content_Type=SDPFRAG)
    assert garbage.status == 422
    bogus = await ahttp("PATCH", resource, "a=mid:0\r\na=candidate:bogus\r\n", Content_Type=SDPFRAG)
    assert bogus.status == 422 and bogus.json()["code"] in ("invalid_field", "candidate_refused"), bogus.body

    async def first_frames() -> list[Any]:
        while "video" not in viewer.tracks:
            await asyncio.sleep(0.05)
        return await frames(viewer.tracks["video"], 30)

    received = await asyncio.wait_for(first_frames(), WAIT)
    numbers = [read_counter(frame) for frame in received]
    assert numbers == sorted(numbers) and source.count - numbers[-1] < 45
    assert body_color(received[-1])[1] > 150  # ann's green
    stats = await asyncio.to_thread(relay_stats, server)
    assert stats["playbacks"] == 1
    assert room.get_participants() == []  # the viewer is not shown in the room

    deleted = await ahttp("DELETE", resource)
    assert deleted.status == 200
    await wait_stats(server, lambda s: s["playbacks"] == 0, WAIT)
    assert (await ahttp("DELETE", resource)).status == 404
    assert (await ahttp("PATCH", resource, fragment, Content_Type=SDPFRAG)).status == 404
    await viewer.close()
    await ann.disconnect()


def _ufrag(sdp: str) -> str:
    return next(line.split(":", 1)[1] for line in sdp.splitlines() if line.startswith("a=ice-ufrag:"))


async def test_a_recorded_room_records_the_whip_stream(transactional_db: Any, tmp_path: Any) -> None:
    """In a recorded room the WHIP publisher's stream is recorded like any other: a DONE VP8 + Opus file."""
    from asgiref.sync import sync_to_async

    from rooms.recording_models import Recording

    with DaphneServer({"RECORDINGS_DIR": str(tmp_path)}) as server:
        bob = await roomapi.connect(server.ws_url, "bob")
        room = await bob.join("whip-recorded", record=True)
        publisher = whip_peer()
        assert (await negotiate(publisher, f"{server.http_url}/whip/whip-recorded?login=encoder")).status == 201
        published = await room.wait_for(ROOM_EVENT.PUBLISHED, by("encoder"), timeout=WAIT)
        assert published.stream is not None
        await asyncio.sleep(2)
        assert (await ahttp("DELETE", server.http_url + publisher.location)).status == 200
        await publisher.close()

        stream_id = published.stream.id

        def finished() -> list[Recording]:
            return list(Recording.objects.filter(stream__public_id=stream_id, status=Recording.Status.DONE))

        deadline = time.monotonic() + WAIT
        while not (done := await sync_to_async(finished)()) and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        assert done and done[0].participant_login == "encoder"
        assert (done[0].video_codec, done[0].audio_codec) == ("vp8", "opus") and (done[0].size or 0) > 0
        await bob.disconnect()


async def test_refusals_have_their_status_and_say_why(server: DaphneServer) -> None:
    """401, 403, 404, 405, 409, 415 and 422, each with a JSON body naming the reason; nothing breaks."""
    bob = await roomapi.connect(server.ws_url, "bob")
    room = await bob.join("refusals")
    whip, offer = f"{server.http_url}/whip/refusals", await _offer()
    token = mint_token("refusals", "encoder")

    async def post(url: str, body: str = offer, content_type: str = SDP, **headers: str) -> Reply:
        return await ahttp("POST", url, body, Content_Type=content_type, **headers)

    cases: list[tuple[Reply, int, str]] = [
        (await post(whip, Authorization="Basic Zm9vOmJhcg=="), 401, "invalid_token"),
        (await post(whip, **bearer("not-a-token")), 401, "invalid_token"),
        (await post(whip), 401, "invalid_token"),  # a guest without ?login=
        (await post(whip, **bearer(mint_token("elsewhere", "encoder"))), 403, "forbidden"),
        (await post(whip, **bearer(mint_token("refusals", "watcher", role="viewer"))), 403, "forbidden"),
        (await post(whip + "?login=somebody", **bearer(token)), 403, "forbidden"),
        (await post(f"{server.http_url}/whep/refusals/bob", **bearer(mint_token("refusals", "x", grants=["can_chat"]))),
         403, "forbidden"),
        (await post(f"{server.http_url}/whep/nowhere/bob"), 404, "room_not_found"),
        (await post(f"{server.http_url}/whep/refusals/nobody"), 404, "stream_not_found"),
        (await post(whip + "?login=bob"), 409, "login_taken"),
        (await post(whip, content_type="text/plain", **bearer(token)), 415, "unsupported_media_type"),
        (await post(whip, "hello", **bearer(token)), 422, "invalid_sdp"),
        (await post(whip, "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", **bearer(token)), 422, "invalid_sdp"),
        (await post(whip + "?login=%07bell"), 422, "invalid_username"),
        (await ahttp("GET", whip), 405, "method_not_allowed"),
        (await ahttp("DELETE", whip + "/forged-session-id"), 404, "session_not_found"),
    ]
    for reply, status, code in cases:
        assert (reply.status, reply.json()["code"]) == (status, code), reply.body
        assert reply.json()["message"]
    assert cases[0][0].headers["www-authenticate"].startswith("Bearer")
    assert cases[10][0].headers["accept-post"] == SDP
    await room.send_message("the room survives")
    await room.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)
    assert room.get_participants() == []
    await bob.disconnect()
    stats = await asyncio.to_thread(relay_stats, server)
    assert stats["publications"] == 0 and stats["peer_connections"] == 0


async def _offer() -> str:
    client = whip_peer()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    sdp = str(client.pc.localDescription.sdp)
    await client.close()
    return sdp


@pytest.fixture
def strict_server(transactional_db: Any) -> Iterator[DaphneServer]:
    """No guests, no in-process media worker (and none running), STUN and TURN configured, one connection per IP."""
    env = {
        "ROOMS_GUEST_MODE": "false", "MEDIA_MODE": "workers", "ICE_STUN_URLS": "stun:198.18.0.1:3478",
        "TURN_URLS": "turn:198.18.0.1:3478?transport=udp", "TURN_SECRET": "whip-test-secret",
        "WS_MAX_CONNECTIONS_PER_IP": "1", "WS_MAX_CONNECTIONS_EXEMPT": "",
    }
    with DaphneServer(env) as srv:
        yield srv


async def test_preflight_links_guest_mode_caps_and_no_media_worker(strict_server: DaphneServer) -> None:
    """OPTIONS carries the ICE servers as Link headers; no guests (401); the per-IP cap (429); no worker (503)."""
    whip = f"{strict_server.http_url}/whip/strict"
    preflight = await ahttp("OPTIONS", whip)
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-methods"] == "POST, PATCH, DELETE, OPTIONS"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["link"] == '<stun:198.18.0.1:3478>; rel="ice-server"'  # no TURN for strangers
    token = mint_token("strict", "encoder")
    links = (await ahttp("OPTIONS", whip, **bearer(token))).headers["link"]
    assert links.startswith('<stun:198.18.0.1:3478>; rel="ice-server", ')
    assert '<turn:198.18.0.1:3478?transport=udp>; rel="ice-server"; username="' in links
    assert 'credential-type="password"' in links
    offer = await _offer()
    guest = await ahttp("POST", whip + "?login=guest", offer, Content_Type=SDP)
    assert guest.status == 401 and "guest" in guest.json()["message"]
    holder = await roomapi.connect(strict_server.ws_url, token=mint_token("strict", "holder"))
    capped = await ahttp("POST", whip, offer, Content_Type=SDP, **bearer(token))
    assert capped.status == 429 and capped.json()["code"] == "rate_limited", capped.body
    await holder.disconnect()

    async def unavailable() -> Reply:
        while True:  # the closed WebSocket's place is given back asynchronously
            reply = await ahttp("POST", whip, offer, Content_Type=SDP, **bearer(token))
            if reply.status != 429:
                return reply
            await asyncio.sleep(0.2)

    reply = await asyncio.wait_for(unavailable(), WAIT)
    assert reply.status == 503 and reply.json()["code"] == "media_unavailable", reply.body
    assert reply.headers["retry-after"]


async def test_relay_caps_answer_429(transactional_db: Any) -> None:
    """A relay cap (pending peer connections of a room) refuses a WHIP offer with 429; the session is undone."""
    with DaphneServer({"MEDIA_MAX_PENDING_PER_ROOM": "1", "MEDIA_CONNECT_TIMEOUT": "10"}) as server:
        first = whip_peer()  # its answer is never applied: it stays connecting
        await first.pc.setLocalDescription(await first.pc.createOffer())
        first.reply = await ahttp(
            "POST", f"{server.http_url}/whip/capped?login=one", first.pc.localDescription.sdp, Content_Type=SDP
        )
        assert first.reply.status == 201, first.reply.body
        second = whip_peer()
        await second.pc.setLocalDescription(await second.pc.createOffer())
        refused = await ahttp(
            "POST", f"{server.http_url}/whip/capped?login=two", second.pc.localDescription.sdp, Content_Type=SDP
        )
        assert refused.status == 429 and refused.json()["code"] == "too_many_pending", refused.body
        await ahttp("DELETE", server.http_url + first.location)
        for client in (first, second):
            await client.close()
        await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0, WAIT)


async def test_sessions_end_when_their_peer_closes_without_delete(server: DaphneServer) -> None:
    """A WHIP publisher and a WHEP viewer that close their peer connection (no DELETE) are cleaned up."""
    bob = await roomapi.connect(server.ws_url, "bob")
    room = await bob.join("closing")
    publisher = whip_peer()
    assert (await negotiate(publisher, f"{server.http_url}/whip/closing?login=encoder")).status == 201
    published = await room.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    assert published.stream is not None
    viewer = whep_peer()  # by stream id this time
    assert (await negotiate(viewer, f"{server.http_url}/whep/closing/{published.stream.id}")).status == 201
    await wait_stats(server, lambda s: s["playbacks"] == 1, WAIT)
    await viewer.close()
    await wait_stats(server, lambda s: s["playbacks"] == 0, WAIT)
    assert (await ahttp("DELETE", server.http_url + viewer.location)).status == 404
    watcher = whep_peer()  # stays: its session ends with the stream it plays
    assert (await negotiate(watcher, f"{server.http_url}/whep/closing/encoder")).status == 201
    await wait_stats(server, lambda s: s["playbacks"] == 1, WAIT)
    await publisher.close()
    await room.wait_for(ROOM_EVENT.LEFT, by("encoder"), timeout=WAIT)
    await wait_stats(server, lambda s: s["peer_connections"] <= 1 and s["publications"] == 0, WAIT)
    assert (await ahttp("DELETE", server.http_url + publisher.location)).status == 404
    assert (await ahttp("DELETE", server.http_url + watcher.location)).status == 404
    await watcher.close()

    # A publisher whose peer connection never comes up fails after MEDIA_CONNECT_TIMEOUT and leaves.
    silent = whip_peer()
    await silent.pc.setLocalDescription(await silent.pc.createOffer())
    silent.reply = await ahttp("POST", f"{server.http_url}/whip/closing?login=silent", silent.pc.localDescription.sdp,
                               Content_Type=SDP)
    assert silent.reply.status == 201
    await room.wait_for(ROOM_EVENT.JOINED, by("silent"), timeout=WAIT)
    await room.wait_for(ROOM_EVENT.LEFT, by("silent"), timeout=WAIT)
    assert (await ahttp("DELETE", server.http_url + silent.location)).status == 404
    await silent.close()
    await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0, WAIT)

    # A moderator's kick ends the session like a DELETE.
    kicked = whip_peer()
    assert (await negotiate(kicked, f"{server.http_url}/whip/closing?login=kicked")).status == 201
    await room.wait_for(ROOM_EVENT.PUBLISHED, by("kicked"), timeout=WAIT)
    await bob._request("moderate", action="kick", login="kicked")
    await room.wait_for(ROOM_EVENT.LEFT, by("kicked"), timeout=WAIT)
    await wait_stats(server, lambda s: s["publications"] == 0, WAIT)
    assert (await ahttp("DELETE", server.http_url + kicked.location)).status == 404
    await kicked.close()
    await bob.disconnect()


async def test_a_killed_whip_client_is_cleaned_up(server: DaphneServer) -> None:
    """A WHIP client process killed outright (no DELETE, no DTLS close): ICE consent expires, it leaves."""
    bob = await roomapi.connect(server.ws_url, "bob")
    room = await bob.join("vanish")
    baseline = await asyncio.to_thread(relay_stats, server)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.test_whip", f"{server.http_url}/whip/vanish?login=ghost"],
        cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "DJANGO_SETTINGS_MODULE": "conference.settings"},
    )
    try:
        await room.wait_for(ROOM_EVENT.PUBLISHED, by("ghost"), timeout=WAIT)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    # aioice checks consent every ~5 s and gives up after 6 misses: ~30 s.
    left = await room.wait_for(ROOM_EVENT.LEFT, by("ghost"), timeout=60)
    assert left.participant is not None and left.participant.login == "ghost"
    stats = await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0, WAIT)
    assert stats["udp_sockets"] <= baseline["udp_sockets"]
    await bob.disconnect()


async def _publish_forever(url: str) -> None:
    """The killed client of test_a_killed_whip_client_is_cleaned_up: publish, then wait to be killed."""
    client = whip_peer()
    reply = await negotiate(client, url)
    print(reply.status, flush=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        await asyncio.sleep(1)


if __name__ == "__main__":
    import django

    django.setup()
    asyncio.run(_publish_forever(sys.argv[1]))


async def test_a_whip_publisher_gets_the_room_events_committed_right_after_its_join(transactional_db: Any) -> None:
    """A room event committed just after a WHIP publisher's join (here: the room closed from inside the join's
    commit hooks, before the session is back on the event loop) reaches its session, as it does a WebSocket
    joiner's (rooms.catchup): the session ends and the POST is refused, instead of publishing into a closed room.
    In-process (this test's event loop runs the session and the relay)."""
    from asgiref.sync import async_to_sync

    from rooms import services, signals, whip_sessions
    from rooms.delivery import deliver
    from rooms.exceptions import ErrorCode, RoomError
    from rooms.models import Participant

    def close_the_room_now(participant: Participant, **kwargs: Any) -> None:
        if participant.login == "cam":  # the join committed; start_whip has not seen its result yet
            outcome = services.finalize_room(participant.room_id, "closed by a moderator")
            async_to_sync(deliver)(outcome.deliveries)

    client = whip_peer()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    signals.participant_joined.connect(close_the_room_now, dispatch_uid="test-close-the-room-now")
    try:
        with pytest.raises(RoomError) as refused:
            started = await asyncio.wait_for(
                whip_sessions.start_whip("closing", whip_sessions.Caller("cam"), client.pc.localDescription.sdp, {}),
                WAIT,
            )
            await whip_sessions.stop(started.ref)
    finally:
        signals.participant_joined.disconnect(dispatch_uid="test-close-the-room-now")
        await client.close()
    assert refused.value.code == ErrorCode.ROOM_FINISHED, refused.value
    assert not whip_sessions._sessions
