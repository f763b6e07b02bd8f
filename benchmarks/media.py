"""Benchmark media: pre-encoded VP8, a publisher track that paces it, and lean counting players.

The publisher never encodes during a run: a few hundred synthetic frames are
encoded once with libvpx into ``av.Packet`` objects, and :class:`PacketTrack`
hands them to aiortc's RTCRtpSender at 30 fps (it packetizes an ``av.Packet``
without encoding).  Players never decode: :func:`install_counter` replaces each
receiver's ``_handle_rtp_packet`` with a function that counts packets and whole
frames and measures latency.  A frame is identified by the first bytes of its
VP8 data (after the RTP payload descriptor), which neither server rewrites, so
the publisher's send time of that frame is found whatever the server did to
the RTP headers.

Two latencies are taken per frame (wall clock, one machine):

- *added latency* (the relay's): from the publisher's socket sending the frame's last packet (the time right
  after its ``sendto``, :func:`time_publisher_sends`) to the kernel's receive timestamp of that packet on the
  player's socket (``SIOCGSTAMPNS``, read as the datagram is read), so neither the client's own queueing (one
  process reads, unprotects and parses every player's packets) nor the publisher's is counted;
- *client latency*: from the publisher handing the frame to its sender to the player's handler seeing the
  frame's first packet (after the client process read, SRTP-unprotected and parsed it), the figure reported
  before.
"""

from __future__ import annotations

import asyncio
import fcntl
import fractions
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from media_relay.aiortc_compat import replace_receive_handler

logger = logging.getLogger(__name__)

WIDTH, HEIGHT = 640, 480
FPS = 30
BITRATE = 1_700_000
GOP = 60
KEY_BYTES = 64
SIOCGSTAMPNS = 0x8907
"""linux/sockios.h: the kernel's receive time of the last datagram read from a socket (a timespec)."""
MAX_STAMPS = 1024
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


@dataclass
class EncodedClip:
    """A cycle of pre-encoded VP8 frames and the key that identifies each of them on the wire."""

    packets: list[av.Packet]
    keys: list[bytes]
    unique: set[bytes]
    """Keys that occur once in the cycle (only these are used for latency)."""

    @property
    def bitrate(self) -> float:
        """Average bits per second at FPS."""
        return sum(p.size for p in self.packets) * 8 * FPS / len(self.packets)

    @property
    def keyframes(self) -> int:
        """Keyframes in the cycle."""
        return sum(1 for p in self.packets if p.is_keyframe)


def encode_clip(frames: int = 300, seed: int = 1) -> EncodedClip:
    """Encode ``frames`` synthetic 640x480 frames with libvpx (~1.8 Mbit/s, a keyframe every 2 s).

    One GOP more is encoded first and dropped, so that the cycle starts with a
    keyframe of a warmed-up rate control (the very first keyframe is twice as big).
    """
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = BITRATE
    codec.gop_size = GOP
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(seed)
    packets: list[av.Packet] = []
    columns = np.arange(WIDTH, dtype=np.int64)[None, :]
    rows = np.arange(HEIGHT, dtype=np.int64)[:, None]
    for index in range(frames + GOP):
        image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        image[:, :, 0] = (columns + index * 4) % 256
        image[:, :, 1] = (rows + index * 2) % 256
        image[:, :, 2] = ((columns + rows + index * 3) // 4) % 256
        image[100:380, 100:540] = rng.integers(0, 256, (280, 440, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = index
        # Without this every synthetic frame is flagged as an I-frame and becomes a keyframe.
        frame.pict_type = av.video.frame.PictureType.NONE
        packets.extend(codec.encode(frame))
    packets.extend(codec.encode(None))
    packets = packets[GOP:]
    keys = [bytes(p)[:KEY_BYTES] for p in packets]
    counts: dict[bytes, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return EncodedClip(packets, keys, {k for k, n in counts.items() if n == 1})


@dataclass
class Probe:
    """State shared by the publisher and the players of one run (one process, one clock)."""

    sent: dict[bytes, float] = field(default_factory=dict)
    """Frame key -> time.time() when the publisher handed the frame to its sender, which packetizes,
    SRTP-protects and sends all its packets before the event loop runs anything else."""
    measuring: bool = False
    latencies: list[float] = field(default_factory=list)
    """Client latency: send to the player's handler seeing the frame's first packet (seconds)."""
    added_latencies: list[float] = field(default_factory=list)
    """Added latency: send to the kernel's receive time of the frame's last packet at the player (seconds)."""
    keyframes: set[bytes] = field(default_factory=set)
    """Keys of the keyframes sent."""
    last_sent: dict[bytes, float] = field(default_factory=dict)
    """Frame key -> time.time() right after the publisher's socket sent the frame's last packet."""
    frames_sent: int = 0


@dataclass
class PlayerCounter:
    """What one player received."""

    packets: int = 0
    frames: int = 0
    """Complete frames: a first packet (VP8 S bit, partition 0) through a marker packet, no gap."""
    frame_starts: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)
    """Sequence number -> kernel receive time of this player's marker packets (filled by :class:`ArrivalStamps`)."""
    play_id: str = ""
    """The server's id of this playback (ours), to tell which media worker serves it."""
    added: list[tuple[float, bool]] = field(default_factory=list)
    """This player's added latencies in the window (seconds, keyframe or not)."""
    _start_sequence: int = -1
    _in_frame: int = 0
    _sent: float | None = None
    _key: bytes = b""

    def on_packet(self, packet: RtpPacket, probe: Probe) -> None:
        """Count one RTP packet; time the frame it starts, if it starts one."""
        self.packets += 1
        payload = packet.payload
        if not payload:
            return
        first = payload[0]
        if first & 0x10 and not first & 0x07:
            self.frame_starts += 1
            self._start_sequence = packet.sequence_number
            self._in_frame = 0
            self._sent = None
            if probe.measuring:
                offset = vp8_descriptor_size(payload)
                self._key = payload[offset:offset + KEY_BYTES]
                self._sent = probe.sent.get(self._key)
                if self._sent is not None:
                    probe.latencies.append(time.time() - self._sent)
        if self._start_sequence >= 0:
            self._in_frame += 1
            if packet.marker:
                if ((packet.sequence_number - self._start_sequence) & 0xFFFF) == self._in_frame - 1:
                    self.frames += 1
                    arrived = self.arrivals.pop(packet.sequence_number, None)
                    sent = probe.last_sent.get(self._key) if self._sent is not None else None
                    if sent is not None and arrived is not None and probe.measuring:
                        probe.added_latencies.append(arrived - sent)
                        self.added.append((arrived - sent, self._key in probe.keyframes))
                self._start_sequence = -1


def vp8_descriptor_size(payload: bytes) -> int:
    """Length of the VP8 RTP payload descriptor (RFC 7741) at the start of ``payload``."""
    size = 1
    if payload[0] & 0x80:
        ext = payload[1]
        size = 2
        if ext & 0x80:
            size += 2 if payload[2] & 0x80 else 1
        if ext & 0x40:
            size += 1
        if ext & 0x30:
            size += 1
    return size


def rtp_payload_offset(data: bytes) -> int:
    """Where the payload of a plain RTP packet starts (after CSRCs and the header extension)."""
    offset = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        offset += 4 + 4 * int.from_bytes(data[offset + 2:offset + 4], "big")
    return offset


def time_publisher_sends(probe: Probe) -> Callable[[], None]:
    """Log, in ``probe.last_sent``, when each frame's last packet left the publisher's socket; returns the undo.

    Wraps aiortc's ``RTCDtlsTransport._send_rtp`` in this (benchmark) process, where only the publisher sends
    RTP (players send RTCP only): it sees the plain packet, and once the original returned, the SRTP packet has
    been handed to the socket (aioice's ``sendto`` does not wait).
    """
    original = RTCDtlsTransport._send_rtp
    current = [b""]

    async def send_rtp(self: RTCDtlsTransport, data: bytes) -> None:
        await original(self, data)
        if len(data) < 12 or 192 <= data[1] <= 223:  # RTCP (RFC 5761)
            return
        offset = rtp_payload_offset(data)
        payload = data[offset:]
        if payload and payload[0] & 0x10 and not payload[0] & 0x07:  # the first packet of a frame
            start = vp8_descriptor_size(payload)
            current[0] = payload[start:start + KEY_BYTES]
        if data[1] & 0x80 and current[0]:
            probe.last_sent[current[0]] = time.time()

    RTCDtlsTransport._send_rtp = send_rtp  # type: ignore[method-assign]

    def undo() -> None:
        RTCDtlsTransport._send_rtp = original  # type: ignore[method-assign]

    return undo


def keep_client_consent() -> None:
    """The benchmark's own peer connections (publisher and players, one process) never expire ICE consent.

    aioice checks consent every ~5 s with one STUN request answered within 0.5 s (no retransmission) and closes
    the connection after 6 misses in a row.  The client process serving 240 players turns its event loop less
    often than every 0.5 s, so its timers fire before it reads the answers: at K=240 its consent expired on
    most of its connections, the publisher's among them, which closed the publisher's peer connection and ended
    the stream ("the peer closed its connection").  A browser allows 30 s and retransmits; the benchmark's
    clients are not under test, the relay's own consent checks are unchanged.
    """
    aioice.ice.CONSENT_FAILURES = 1 << 30  # type: ignore[attr-defined]


def udp_receive_buffer_drops() -> int:
    """Datagrams the kernel dropped for a full socket receive buffer, machine-wide (/proc/net/snmp)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["RcvbufErrors"])


def kernel_stamp(fd: int) -> float:
    """The kernel's receive time (CLOCK_REALTIME, seconds) of the last datagram read from socket ``fd``.

    The first call on a socket turns its timestamping on (and fails: nothing stamped yet).
    """
    seconds, nanoseconds = struct.unpack("qq", fcntl.ioctl(fd, SIOCGSTAMPNS, bytes(16)))
    return float(seconds + nanoseconds / 1e9)


def is_rtp_marker(data: bytes) -> bool:
    """An RTP (not RTCP, RFC 5761) datagram with the marker bit set: the last packet of a video frame.

    The RTP header is not encrypted by SRTP, so this is known before the client unprotects the packet.
    """
    return len(data) >= 12 and data[0] & 0xC0 == 0x80 and data[1] & 0x80 != 0 and not 192 <= data[1] <= 223


class ArrivalStamps:
    """Records, as each datagram is read, the kernel receive time of a player's RTP marker packets.

    aioice's ``StunProtocol.datagram_received`` runs once per datagram right after the event loop read it
    (uvloop and asyncio alike), so the socket's last receive timestamp is that datagram's.  The ICE sockets only
    exist once the peer connection gathered, so the protocols are wrapped at the first datagram the connection
    hands on (a DTLS handshake packet, not timed).
    """

    def __init__(self, connection: Any, counter: PlayerCounter) -> None:
        self.connection = connection
        self.counter = counter
        self._original = connection.data_received
        connection.data_received = self._first_data

    def _first_data(self, data: bytes, component: int) -> None:
        self.connection.data_received = self._original
        for protocol in self.connection._protocols:
            self._wrap(protocol)
        self._original(data, component)

    def _wrap(self, protocol: Any) -> None:
        transport = getattr(protocol, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return
        fd = sock.fileno()
        try:
            kernel_stamp(fd)
        except OSError:
            pass  # ENOENT: timestamping is on from now
        original: Callable[[bytes, Any], None] = protocol.datagram_received
        arrivals = self.counter.arrivals

        def datagram_received(data: bytes, addr: Any) -> None:
            if is_rtp_marker(data):
                try:
                    stamp = kernel_stamp(fd)
                except OSError:
                    stamp = time.time()
                if len(arrivals) >= MAX_STAMPS:
                    arrivals.clear()
                arrivals[(data[2] << 8) | data[3]] = stamp
            original(data, addr)

        protocol.datagram_received = datagram_received


def install_counter(receiver: RTCRtpReceiver, counter: PlayerCounter, probe: Probe) -> None:
    """Replace the receiver's RTP handler: count, no jitter buffer, no decoding; time frames' arrival at the
    player's socket (call before the peer connection connects)."""

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        counter.on_packet(packet, probe)

    replace_receive_handler(receiver, handle_rtp)
    ArrivalStamps(receiver.transport.transport._connection, counter)


class PacketTrack(MediaStreamTrack):
    """A video track whose frames are the clip's ``av.Packet`` objects, paced at 30 fps."""

    kind = "video"

    def __init__(self, clip: EncodedClip, probe: Probe) -> None:
        super().__init__()
        self.clip = clip
        self.probe = probe
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        """The next pre-encoded frame, at its time; its send time is logged by key."""
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        due = self._start + self._index / FPS
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0:
            self._start = now - self._index / FPS  # fell far behind (stalled loop): do not burst
        position = self._index % len(self.clip.packets)
        packet = self.clip.packets[position]
        packet.pts = self._index * (VIDEO_TIME_BASE.denominator // FPS)
        packet.time_base = VIDEO_TIME_BASE
        key = self.clip.keys[position]
        if key in self.clip.unique:
            self.probe.sent[key] = time.time()
            if packet.is_keyframe:
                self.probe.keyframes.add(key)
        self.probe.frames_sent += 1
        self._index += 1
        return packet
