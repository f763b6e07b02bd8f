"""Cascading: one published stream played from several media workers.

The worker that holds a publication (its *origin*) sends one copy of each
forwarded packet to every other worker that has players of it, over UDP
(MEDIA_CASCADE_HOST, one socket per worker, announced in the registry).  On the
origin a :class:`RelayTrack` sits among the Ingest's downtracks and packs what
:meth:`DownTrack.forward` is given; on the playing worker a
:class:`RemoteIngest` unpacks it and calls ``forward`` on its own DownTracks, so
the rewrite path (sequence, timestamp, picture id, extensions, NACK history) is
the very one of a local Ingest.  A player's keyframe request travels back to the
origin as a small control datagram; mute pauses the playing worker's DownTracks
the same way.

Wire format (network order): a data datagram is ``b"D"`` + :data:`DATA_HEADER`
(feed id, payload type, marker, sequence, timestamp, keyframe start, layer,
extension, VP8 picture id / TL0PICIDX fields) + the RTP payload.  A control
datagram is ``b"C"`` + JSON: ``{"op": "pli", "stream", "kind", "layer"}``
(player side -> origin) or ``{"op": "pause", "feed"}`` (origin -> player side).
Feed ids are chosen by the playing worker (random 32-bit) and name one track of
one remote publication there; each side accepts datagrams only from the address
it expects them from.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import clock
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media_relay import contract as c
from media_relay.forwarding import NO_EXTENSION, DownTrack, Ingest, Vp8Fields

logger = logging.getLogger(__name__)

DATA = 0x44  # "D"
CONTROL = 0x43  # "C"
DATA_HEADER = struct.Struct("!IBBHIBBiBBHBB")
"""Feed, payload type, marker, sequence, timestamp, key, layer, extension, VP8 pid at, bits, pid, tl0 at, tl0."""
SOCKET_BUFFER = 4 * 1024 * 1024
Address = tuple[str, int]


def describe_tracks(ingests: dict[str, Ingest], rids: list[str]) -> list[c.TrackInfo]:
    """What a playing worker needs of a publication's tracks to answer its players."""
    tracks: list[c.TrackInfo] = []
    for kind, ingest in ingests.items():
        codec = ingest.codec
        if codec is None:
            continue
        tracks.append(
            c.TrackInfo(
                kind=kind,
                mime_type=codec.mimeType,
                clock_rate=codec.clockRate,
                channels=codec.channels or 0,
                payload_type=codec.payloadType or 0,
                parameters={str(k): v for k, v in codec.parameters.items()},
                rids=list(rids) if kind == "video" else [],
            )
        )
    return tracks


class RelayTrack:
    """On the origin: one track's copy to one remote worker (sits in the Ingest's downtracks)."""

    def __init__(self, kind: str, feed: int, endpoint: CascadeEndpoint, address: Address) -> None:
        self.kind = kind
        self.feed = feed
        self.endpoint = endpoint
        self.address = address
        self.target = 0
        self.packets_sent = 0

    def forward(
        self,
        payload_type: int,
        marker: int,
        sequence: int,
        timestamp: int,
        payload: bytes,
        key: bool,
        ntp: int,
        layer: int = 0,
        extension: int = NO_EXTENSION,
        vp8: Vp8Fields | None = None,
    ) -> None:
        """Pack one packet for the remote worker (its ``ntp`` is taken again there, on arrival)."""
        pid_at, pid_bits, picture_id, tl0_at, tl0 = vp8 if vp8 is not None else (0, 0, 0, 0, 0)
        header = DATA_HEADER.pack(
            self.feed, payload_type, marker, sequence, timestamp, key, layer,
            extension if self.kind == "audio" else NO_EXTENSION, pid_at, pid_bits, picture_id, tl0_at, tl0,
        )
        self.endpoint.send(b"D" + header + payload, self.address)
        self.packets_sent += 1

    def pause(self) -> None:
        """The stream was muted: the remote DownTracks resync when it resumes."""
        self.endpoint.send_control({"op": "pause", "feed": self.feed}, self.address)


class Relay:
    """On the origin: a publication's copy to one remote worker (one RelayTrack per track)."""

    def __init__(
        self, stream_id: str, worker_id: str, channel: str, address: Address, tracks: dict[str, RelayTrack]
    ) -> None:
        self.stream_id = stream_id
        self.worker_id = worker_id
        self.channel = channel
        self.address = address
        self.tracks = tracks


class RemoteIngest:
    """On a playing worker: a remote publication's track, fed by the origin; feeds DownTracks like an Ingest."""

    def __init__(
        self,
        info: c.TrackInfo,
        feed: int,
        origin: Address,
        request: Callable[[str, int], None],
    ) -> None:
        self.kind = info["kind"]
        self.feed = feed
        self.origin = origin
        self.codec: RTCRtpCodecParameters | None = RTCRtpCodecParameters(
            mimeType=info["mime_type"],
            clockRate=info["clock_rate"],
            channels=info["channels"] or None,
            payloadType=info["payload_type"],
            parameters=dict(info["parameters"]),
        )
        self.rids = list(info["rids"])
        self.downtracks: list[DownTrack] = []
        self.sinks: list[Any] = []
        self.enabled = True
        self.packets_received = 0
        self.paused = False
        self._request = request
        count = self.layer_count
        self._octets = [0] * count
        self._bitrates = [0.0] * count
        self._measured = time.monotonic()

    @property
    def layer_count(self) -> int:
        """How many simulcast layers the track has (1 without simulcast)."""
        return len(self.rids) if self.kind == "video" and len(self.rids) > 1 else 1

    def layer_bitrates(self) -> list[float]:
        """Each layer's bits per second measured on arrival, lowest first."""
        return list(self._bitrates) if self.layer_count > 1 else [0.0]

    def measure(self, now: float) -> None:
        """Update the layers' bitrates (about once a second)."""
        elapsed = now - self._measured
        if elapsed <= 0:
            return
        self._bitrates = [octets * 8 / elapsed for octets in self._octets]
        self._octets = [0] * len(self._octets)
        self._measured = now

    def deliver(self, fields: tuple[Any, ...], payload: bytes) -> None:
        """One packet from the origin: forward it to every local player (the same call as a local Ingest)."""
        _, payload_type, marker, sequence, timestamp, key, layer, extension, pid_at, pid_bits, pid, tl0_at, tl0 = (
            fields
        )
        self.packets_received += 1
        if layer < len(self._octets):
            self._octets[layer] += len(payload)
        if self.paused:
            self.paused = False
            for target in {downtrack.target for downtrack in self.downtracks} or {0}:
                self.request_keyframe(target)
        if not self.downtracks:
            return
        vp8: Vp8Fields | None = (pid_at, pid_bits, pid, tl0_at, tl0) if pid_at else None
        if self.kind == "video":
            extension = int(time.time() * 262144) & 0xFFFFFF  # abs-send-time, as the origin's Ingest writes it
        ntp = clock.current_ntp_time() if marker or self.kind == "audio" else 0
        for downtrack in self.downtracks:
            downtrack.forward(payload_type, marker, sequence, timestamp, payload, bool(key), ntp, layer, extension, vp8)

    def pause(self) -> None:
        """The origin muted the stream: players resync (and wait for a keyframe) when packets come again."""
        self.paused = True
        for downtrack in self.downtracks:
            downtrack.pause()

    def add(self, downtrack: DownTrack) -> None:
        """Start forwarding to a local player; a keyframe of its layer is asked of the origin."""
        self.downtracks.append(downtrack)
        self.request_keyframe(downtrack.target, immediate=True)

    def remove(self, downtrack: DownTrack) -> None:
        """Stop forwarding to a local player."""
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)

    def request_keyframe(self, layer: int = 0, immediate: bool = False) -> None:
        """Ask the origin for a keyframe (its Ingest spaces PLIs to the publisher by MEDIA_PLI_INTERVAL)."""
        if self.kind == "video":
            self._request(self.kind, layer)

    def close(self) -> None:
        """Forget the local players."""
        self.downtracks.clear()


class RemotePublication:
    """On a playing worker: a publication held by another worker, with the local players of it.

    It offers :class:`~media_relay.peers.Playback` what a local Publication does (``ingests``,
    ``playbacks``, ``update_layers_wanted``); the origin is told to start and stop sending.
    """

    def __init__(self, stream_id: str, placement: int, origin: c.OriginInfo, endpoint: CascadeEndpoint) -> None:
        self.stream_id = stream_id
        self.room_id = placement
        self.origin = origin
        self.origin_address: Address = (origin["host"], origin["port"])
        self.endpoint = endpoint
        self.playbacks: set[Any] = set()
        self.closed = False
        self.rids: list[str] = []
        self.ingests: dict[str, RemoteIngest] = {}
        for track in origin["tracks"]:
            feed = endpoint.new_feed()
            ingest = RemoteIngest(track, feed, self.origin_address, self._request_keyframe)
            self.ingests[track["kind"]] = ingest
            endpoint.feeds[feed] = ingest
            if track["kind"] == "video":
                self.rids = list(track["rids"])
        self._measuring = asyncio.ensure_future(self._measure())

    @property
    def feeds(self) -> dict[str, int]:
        """The feed id of each track (kind), for the origin's relay_to."""
        return {kind: ingest.feed for kind, ingest in self.ingests.items()}

    def _request_keyframe(self, kind: str, layer: int) -> None:
        self.endpoint.send_control(
            {"op": "pli", "stream": self.stream_id, "kind": kind, "layer": layer}, self.origin_address
        )

    def update_layers_wanted(self) -> None:
        """Dynacast is the origin's: it keeps every layer a relay may need."""

    async def _measure(self) -> None:
        while not self.closed:
            await asyncio.sleep(1.0)
            for ingest in self.ingests.values():
                ingest.measure(time.monotonic())
            for playback in list(self.playbacks):
                playback.rechoose()

    def close(self) -> None:
        """Stop taking packets (the caller ends the playbacks and tells the origin)."""
        if self.closed:
            return
        self.closed = True
        self._measuring.cancel()
        for ingest in self.ingests.values():
            self.endpoint.feeds.pop(ingest.feed, None)
            ingest.close()


class CascadeEndpoint(asyncio.DatagramProtocol):
    """A worker's cascading UDP socket: relay copies out, remote packets and control messages in."""

    def __init__(self, on_control: Callable[[dict[str, Any], Address], None]) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.feeds: dict[int, RemoteIngest] = {}
        self.on_control = on_control
        self.host = ""
        self.port = 0
        self.received = 0
        self.sent = 0

    @classmethod
    async def open(
        cls, host: str, port: int, on_control: Callable[[dict[str, Any], Address], None]
    ) -> CascadeEndpoint:
        """Bind the socket (port 0: any free port) and start reading it."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            except OSError:
                pass
        sock.bind((host, port))
        sock.setblocking(False)
        endpoint = cls(on_control)
        endpoint.host, endpoint.port = sock.getsockname()[:2]
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: endpoint, sock=sock)
        return endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def new_feed(self) -> int:
        """A feed id not in use on this worker."""
        while True:
            feed = random.getrandbits(32)
            if feed not in self.feeds:
                return feed

    def send(self, data: bytes, address: Address) -> None:
        """Send one datagram (dropped if the socket is closed)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.sendto(data, address)
        self.sent += 1

    def send_control(self, message: dict[str, Any], address: Address) -> None:
        """Send a control message."""
        self.send(b"C" + json.dumps(message, separators=(",", ":")).encode(), address)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data:
            return
        kind = data[0]
        if kind == DATA and len(data) >= 1 + DATA_HEADER.size:
            fields = DATA_HEADER.unpack_from(data, 1)
            ingest = self.feeds.get(fields[0])
            if ingest is None or (addr[0], addr[1]) != ingest.origin:
                return
            self.received += 1
            try:
                ingest.deliver(fields, data[1 + DATA_HEADER.size :])
            except Exception:
                logger.exception("forwarding a cascaded packet failed")
        elif kind == CONTROL:
            try:
                message = json.loads(data[1:])
            except ValueError:
                return
            if not isinstance(message, dict):
                return
            if message.get("op") == "pause":
                ingest = self.feeds.get(message.get("feed"))  # type: ignore[arg-type]
                if ingest is not None and (addr[0], addr[1]) == ingest.origin:
                    ingest.pause()
                return
            try:
                self.on_control(message, (addr[0], addr[1]))
            except Exception:
                logger.exception("cascade control message failed")

    def error_received(self, exc: Exception) -> None:
        logger.debug("cascade socket error: %s", exc)

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()
