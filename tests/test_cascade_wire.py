"""Cascading's wire between two workers' sockets (real UDP on loopback): relayed packets, keyframe requests, mute."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from media_relay import contract as c
from media_relay.cascade import CascadeEndpoint, RelayTrack, RemotePublication

VP8 = c.TrackInfo(
    kind="video", mime_type="video/VP8", clock_rate=90000, channels=0, payload_type=96, parameters={}, rids=[]
)
OPUS = c.TrackInfo(
    kind="audio", mime_type="audio/opus", clock_rate=48000, channels=2, payload_type=111, parameters={}, rids=[]
)


class Collector:
    """Stands in for a player's DownTrack: records what ``forward`` is given."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.target = 0
        self.calls: list[tuple[Any, ...]] = []
        self.paused = 0

    def forward(self, *args: Any) -> None:
        self.calls.append(args)

    def pause(self) -> None:
        self.paused += 1


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll (bounded) until ``predicate()`` holds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_a_relayed_packet_reaches_the_remote_players_as_the_origin_forwarded_it() -> None:
    """What the origin's Ingest hands a RelayTrack is what the remote DownTracks get; PLIs and mute flow back."""
    controls: list[tuple[dict[str, Any], Any]] = []
    origin = await CascadeEndpoint.open("127.0.0.1", 0, lambda message, address: controls.append((message, address)))
    player_side = await CascadeEndpoint.open("127.0.0.1", 0, lambda message, address: None)
    info = c.OriginInfo(worker_id="o", channel="none", host=origin.host, port=origin.port, tracks=[VP8, OPUS])
    remote = RemotePublication("stream-1", 7, info, player_side)
    try:
        video, audio = Collector("video"), Collector("audio")
        remote.ingests["video"].add(video)  # type: ignore[arg-type]
        remote.ingests["audio"].add(audio)  # type: ignore[arg-type]
        # Adding a video player asks the origin for a keyframe.
        await wait_until(lambda: controls)
        message, address = controls[0]
        assert message == {"op": "pli", "stream": "stream-1", "kind": "video", "layer": 0}
        assert address == (player_side.host, player_side.port)
        assert remote.ingests["video"].codec is not None and remote.ingests["video"].codec.payloadType == 96

        to_player = (player_side.host, player_side.port)
        relay_video = RelayTrack("video", remote.feeds["video"], origin, to_player)
        relay_audio = RelayTrack("audio", remote.feeds["audio"], origin, to_player)
        relay_video.forward(96, 1, 65535, 0xFFFFFFF0, b"\x90\x80\x12key", True, 123, 0, 0x123456, (2, 7, 0x12, 0, 0))
        relay_audio.forward(111, 0, 7, 960, b"opus", False, 456, 0, 0x85)
        await wait_until(lambda: video.calls and audio.calls)
        payload_type, marker, sequence, timestamp, payload, key, ntp, layer, extension, vp8 = video.calls[0]
        assert (payload_type, marker, sequence, timestamp, payload, key, layer, vp8) == (
            96, 1, 65535, 0xFFFFFFF0, b"\x90\x80\x12key", True, 0, (2, 7, 0x12, 0, 0)
        )
        assert ntp > 0 and extension >= 0  # taken again on arrival (sender reports, abs-send-time)
        assert audio.calls[0][:6] == (111, 0, 7, 960, b"opus", False) and audio.calls[0][8] == 0x85
        assert audio.calls[0][9] is None

        # A datagram for the feed from any other address is ignored.
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", 0))
        forged = bytearray(b"D")
        forged += (remote.feeds["video"]).to_bytes(4, "big") + bytes(21) + b"forged"
        stranger.sendto(bytes(forged), to_player)
        stranger.close()
        relay_video.forward(96, 0, 1, 3000, b"\x10\x80\x13next", False, 0)
        await wait_until(lambda: len(video.calls) >= 2)
        await asyncio.sleep(0.1)
        assert [call[4] for call in video.calls] == [b"\x90\x80\x12key", b"\x10\x80\x13next"]

        # Mute at the origin pauses the remote players; the next packet asks for a keyframe again.
        relay_video.pause()
        await wait_until(lambda: video.paused == 1)
        controls.clear()
        relay_video.forward(96, 1, 2, 6000, b"\x10\x80\x14more", False, 0)
        await wait_until(lambda: controls)
        assert controls[0][0]["op"] == "pli"
    finally:
        remote.close()
        origin.close()
        player_side.close()
    assert not player_side.feeds
