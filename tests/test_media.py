"""The media relay with real aiortc peers through a real daphne process.

Publishers send counter frames (tests/media_sources.py) so players can check
order, freshness and who they are watching.  The relay's own counters
(/media/stats) prove it created no decoder or encoder and leaked nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS, RoomApiError
from tests.media_sources import CounterVideoTrack, ToneAudioTrack, body_color, read_counter
from tests.servers import DaphneServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20.0
COLORS = {"ann": (220, 40, 40), "bob": (40, 200, 40), "cat": (40, 40, 220)}


@pytest.fixture
def server(transactional_db: Any) -> Iterator[DaphneServer]:
    """A daphne process with the relay in-process and a short connect timeout."""
    with DaphneServer({"MEDIA_CONNECT_TIMEOUT": "3", "ROOM_IDLE_TIMEOUT": "2"}) as srv:
        yield srv


def relay_stats(server: DaphneServer) -> dict[str, Any]:
    """The relay's counters in the server process."""
    with urllib.request.urlopen(f"{server.http_url}/media/stats", timeout=5) as response:
        return dict(json.loads(response.read()))


async def wait_stats(server: DaphneServer, predicate: Any, timeout: float = WAIT) -> dict[str, Any]:
    """Poll the relay's counters until ``predicate`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await asyncio.to_thread(relay_stats, server)
        if predicate(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"relay stats never matched: {stats}")
        await asyncio.sleep(0.2)


async def two_in_a_room(server: DaphneServer, name: str) -> tuple[Any, Any, Any, Any]:
    """Connections and rooms of "ann" and "bob", both joined to room ``name``."""
    ann = await roomapi.connect(server.ws_url, "ann")
    bob = await roomapi.connect(server.ws_url, "bob")
    return ann, bob, await ann.join(name), await bob.join(name)


async def frames(track: Any, count: int, timeout: float = WAIT) -> list[Any]:
    """``count`` decoded frames of a remote track (bounded)."""

    async def collect() -> list[Any]:
        return [await track.recv() for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


async def counter_frames(track: Any, source: CounterVideoTrack, count: int) -> tuple[list[Any], int]:
    """``count`` decoded frames of ``track`` and the source's counter when the last one arrived.

    The counter is read per track, not after every player is done: a player
    that finishes early must not look stale because another one started late.
    """
    received = await frames(track, count)
    return received, source.count


def assert_counter_frames(received: list[Any], source_count: int, color: tuple[int, int, int]) -> None:
    """Frames arrive in order, recent (``source_count``: the source when the last arrived), from the publisher."""
    numbers = [read_counter(frame) for frame in received]
    assert numbers == sorted(numbers), f"frames out of order: {numbers}"
    assert len(set(numbers)) >= len(numbers) - 2, "frames repeated"
    assert source_count - numbers[-1] < 45, f"stale frame {numbers[-1]} while the source was at {source_count}"
    observed = body_color(received[-1])
    assert all(abs(a - b) < 50 for a, b in zip(observed, color, strict=True)), (observed, color)


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_three_participants_publish_and_play_each_other(server: DaphneServer, codec: str) -> None:
    """Three clients publish video+audio and each decodes 60+ frames of the two others, with no transcoding."""
    connections, rooms, sources, streams = {}, {}, {}, {}
    for name in COLORS:
        connections[name] = await roomapi.connect(server.ws_url, name)
        rooms[name] = await connections[name].join(f"media-{codec}")
    for name, color in COLORS.items():
        sources[name] = CounterVideoTrack(color)
        streams[name] = await rooms[name].publish(video=sources[name], audio=ToneAudioTrack(), video_codec=codec)
    for stream in streams.values():
        await stream.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    playing: dict[tuple[str, str], Any] = {}
    for viewer in COLORS:
        for publisher in COLORS:
            if viewer == publisher:
                continue
            participant = rooms[viewer].get_participant(publisher)
            if participant is None or not participant.get_streams():
                await rooms[viewer].wait_for(
                    ROOM_EVENT.PUBLISHED, lambda e, p=publisher: e.participant.login == p, timeout=WAIT
                )
                participant = rooms[viewer].get_participant(publisher)
            assert participant is not None
            stream = participant.get_streams()[0]
            assert stream.video_codec == codec
            playing[(viewer, publisher)] = await stream.play()
    for play in playing.values():
        await play.wait_for(STREAM_STATUS.PLAYING, timeout=WAIT)
    results = await asyncio.gather(
        *(counter_frames(play.video, sources[publisher], 60) for (_viewer, publisher), play in playing.items())
    )
    for (_viewer, publisher), (received, source_count) in zip(playing, results, strict=True):
        assert_counter_frames(received, source_count, COLORS[publisher])
    audio = await asyncio.gather(*(frames(play.audio, 10) for play in playing.values()))
    assert all(len(chunk) == 10 for chunk in audio)
    stats = await asyncio.to_thread(relay_stats, server)
    assert stats["packets_forwarded"] > 6 * 60
    assert stats["decoders_created"] == 0 and stats["encoders_created"] == 0, stats
    for connection in connections.values():
        await connection.disconnect()
    await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0 and s["playbacks"] == 0)


async def test_new_player_gets_a_keyframe_at_once(server: DaphneServer) -> None:
    """A player joining long after the last keyframe gets a picture quickly (PLI forwarded upstream)."""
    ann, bob, room_a, room_b = await two_in_a_room(server, "kf")
    source = CounterVideoTrack(COLORS["ann"])
    published = await room_a.publish(video=source)
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    await asyncio.sleep(3)  # the encoder's first keyframe is long gone; it only sends deltas now
    play = await room_b.get_participant("ann").get_streams()[0].play()  # type: ignore[union-attr]
    started = time.monotonic()
    first = await frames(play.video, 1, timeout=5)
    assert read_counter(first[0]) >= 60
    assert time.monotonic() - started < 5
    await ann.disconnect()
    await bob.disconnect()


async def test_mute_video_stops_forwarding_and_unmute_resumes(server: DaphneServer) -> None:
    """Mute is stored, announced to everyone, and muted media is not forwarded."""
    ann, bob, room_a, room_b = await two_in_a_room(server, "mute")
    source = CounterVideoTrack(COLORS["ann"])
    published = await room_a.publish(video=source, audio=ToneAudioTrack())
    await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    play = await room_b.get_participant("ann").get_streams()[0].play()  # type: ignore[union-attr]
    await frames(play.video, 10)
    await published.mute_video()
    updated = await room_b.wait_for(ROOM_EVENT.STREAM_UPDATED, lambda e: e.stream is not None, timeout=WAIT)
    assert updated.stream is not None and updated.stream.video_muted and not updated.stream.audio_muted
    await asyncio.sleep(0.5)
    while True:  # drain what was in flight before the mute
        try:
            await asyncio.wait_for(play.video.recv(), 0.3)
        except TimeoutError:
            break
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(play.video.recv(), 1.5)
    assert len(await frames(play.audio, 5)) == 5  # audio still flows
    await published.unmute_video()
    resumed = await frames(play.video, 5, timeout=5)
    assert read_counter(resumed[-1]) > 0
    await ann.disconnect()
    await bob.disconnect()


async def test_stop_unpublish_and_publisher_drop(server: DaphneServer) -> None:
    """STOPPED on stop; UNPUBLISHED reaches players on unpublish and when the publisher drops."""
    ann, bob, room_a, room_b = await two_in_a_room(server, "stops")
    camera = await room_a.publish(video=CounterVideoTrack(), kind="camera")
    screen = await room_a.publish(video=CounterVideoTrack((250, 250, 0)), kind="screen")
    await camera.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    await screen.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    with pytest.raises(RoomApiError) as refused:
        await room_a.publish(video=CounterVideoTrack(), kind="screen")
    assert refused.value.code == "already_publishing"
    for _ in range(2):
        await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    by_kind = {s.kind: s for s in room_b.get_participant("ann").get_streams()}  # type: ignore[union-attr]
    assert set(by_kind) == {"camera", "screen"}
    play_camera = await by_kind["camera"].play()
    play_screen = await by_kind["screen"].play()
    await frames(play_camera.video, 5)
    screen_frames = await frames(play_screen.video, 5)
    assert body_color(screen_frames[-1])[2] < 100  # the yellow screen, not the camera

    await play_camera.stop()
    assert play_camera.status() == STREAM_STATUS.STOPPED
    await screen.stop()
    await play_screen.wait_for(STREAM_STATUS.UNPUBLISHED, timeout=WAIT)
    unpublished = await room_b.wait_for(ROOM_EVENT.UNPUBLISHED, timeout=WAIT)
    assert unpublished.stream is not None and unpublished.stream.kind == "screen"

    again = await by_kind["camera"].play()
    await frames(again.video, 3)
    await ann.disconnect()  # a drop, not a leave
    await again.wait_for(STREAM_STATUS.UNPUBLISHED, timeout=WAIT)
    with pytest.raises(MediaStreamError):
        await frames(again.video, 1000, timeout=WAIT)
    await bob.disconnect()
    await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0)


async def test_play_refused_unless_publishing(server: DaphneServer) -> None:
    """Playing a missing or ended stream is refused with a clear error; the connection survives."""
    ann, bob, room_a, room_b = await two_in_a_room(server, "missing")
    missing = roomapi.Stream(id="0" * 32, room=room_b)
    with pytest.raises(RoomApiError) as exc:
        await missing.play()
    assert exc.value.code == "stream_not_found"
    published = await room_a.publish(video=CounterVideoTrack())
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    event = await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    await published.stop()
    await room_b.wait_for(ROOM_EVENT.UNPUBLISHED, timeout=WAIT)
    assert event.stream is not None
    with pytest.raises(RoomApiError) as exc:
        await event.stream.play()
    assert exc.value.code == "stream_not_publishing"
    assert "PUBLISHING" in exc.value.message
    await room_b.send_message("still here")  # the connection and the room survive
    await ann.disconnect()
    await bob.disconnect()


async def test_g711_audio_is_forwarded_as_is(server: DaphneServer) -> None:
    """A PCMU publisher is played back in PCMU."""
    ann, bob, room_a, room_b = await two_in_a_room(server, "g711")
    published = await room_a.publish(audio=ToneAudioTrack(), audio_codec="PCMU")
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    event = await room_b.wait_for(ROOM_EVENT.PUBLISHED, timeout=WAIT)
    assert event.stream is not None and event.stream.audio_codec == "PCMU" and not event.stream.has_video
    play = await event.stream.play()
    received = await frames(play.audio, 20)
    assert received[-1].sample_rate == 8000
    stats = await asyncio.to_thread(relay_stats, server)
    assert stats["decoders_created"] == 0 and stats["encoders_created"] == 0
    await ann.disconnect()
    await bob.disconnect()


async def test_peer_that_never_connects_fails_and_leaks_nothing(server: DaphneServer) -> None:
    """A publisher whose ICE never completes gets FAILED with a reason; the room stays healthy."""
    baseline = await asyncio.to_thread(relay_stats, server)
    ann, bob, room_a, room_b = await two_in_a_room(server, "fails")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(CounterVideoTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    reply = await ann._request("publish", kind="camera", sdp=pc.localDescription.sdp)
    stream_id = reply["pc"]
    await pc.close()  # the answer is never applied: no ICE, no DTLS
    failed = await room_a.wait_for(ROOM_EVENT.FAILED, lambda e: e.stream is not None, timeout=WAIT)
    assert failed.stream is not None and failed.stream.id == stream_id
    assert "not established" in failed.info
    await room_b.send_message("room still works")
    await room_a.wait_for(ROOM_EVENT.MESSAGE, timeout=WAIT)
    await ann.disconnect()
    await bob.disconnect()
    stats = await wait_stats(server, lambda s: s["peer_connections"] == 0 and s["publications"] == 0)
    assert stats["udp_sockets"] <= baseline["udp_sockets"]


def test_ice_settings_are_applied(transactional_db: Any) -> None:
    """MEDIA_UDP_PORTS bounds the relay's ports and MEDIA_ADVERTISED_ADDRESS replaces host addresses."""

    async def scenario(server: DaphneServer) -> str:
        ann = await roomapi.connect(server.ws_url, "ann")
        room = await ann.join("ice")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(CounterVideoTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        reply = await ann._request("publish", kind="camera", sdp=pc.localDescription.sdp)
        await pc.close()
        await room.leave()
        await ann.disconnect()
        return str(reply["sdp"])

    env = {"MEDIA_UDP_PORTS": "41000-41049", "MEDIA_ADVERTISED_ADDRESS": "203.0.113.7"}
    with DaphneServer(env) as server:
        sdp = asyncio.run(scenario(server))
    candidates = [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert candidates
    for fields in candidates:
        assert fields[4] == "203.0.113.7"
        assert 41000 <= int(fields[5]) <= 41049
