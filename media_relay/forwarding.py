"""The forward path: encoded RTP from a publisher to every player, never decoded.

:class:`Ingest` replaces aiortc's per-packet receive handler of a publisher's
track.  It keeps what a receiver owes its sender (REMB, receiver reports, NACK,
RTX unwrapping) and skips the jitter buffer and the decoder entirely.  Each
player has a :class:`DownTrack` that rewrites the header (payload type, SSRC,
sequence, timestamp) with a few bytes of struct packing, keeps a history for
NACKs, and hands the packet to SRTP and the socket without a coroutine hop.
What they need of aiortc's receivers, senders and transports comes through the
links of :mod:`media_relay.aiortc_compat`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import clock
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unwrap_rtx,
)

from media_relay.aiortc_compat import Binding, ReceiverLink, SenderLink
from media_relay.rtp import RTP_HEADER, keyframe_start, packet_sequence, wrap_rtx
from media_relay.stats import STATS

logger = logging.getLogger(__name__)

HISTORY_SIZE = 1024  # a power of two
HISTORY_MASK = HISTORY_SIZE - 1


class PacketSink(Protocol):
    """Anything fed with a publication's RTP after RTX unwrapping (e.g. a recorder)."""

    def write(self, kind: str, codec: RTCRtpCodecParameters, packet: RtpPacket) -> None: ...

    # Optional: ``close()`` is called (synchronously, maybe twice) when the publication closes.


class DownTrack:
    """One player's copy of one publisher track."""

    def __init__(
        self,
        kind: str,
        link: SenderLink,
        payload_types: dict[int, int],
        rtx_payload_type: int | None,
        on_first_packet: Callable[[], None],
        request_keyframe: Callable[[], None],
    ) -> None:
        self.kind = kind
        self.link = link
        self.ssrc = link.ssrc
        self.rtx_ssrc = link.rtx_ssrc
        self.payload_types = payload_types
        self.rtx_payload_type = rtx_payload_type
        self.on_first_packet: Callable[[], None] | None = on_first_packet
        self.request_keyframe = request_keyframe
        self.waiting_keyframe = kind == "video"
        self.resync = True
        self.sequence_offset = 0
        self.timestamp_offset: int | None = None
        self.last_sequence = random.randint(0, 0xFFFF)
        self.rtx_sequence = random.randint(0, 0xFFFF)
        self.history: list[bytes | None] = [None] * HISTORY_SIZE
        self._route: tuple[Any, Any, Any, Any] | None = None
        self._nominated: dict[int, Any] = {}
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_timestamp = 0
        self._original_rtcp = link.intercept_rtcp(self.handle_rtcp)

    def pause(self) -> None:
        """Stop forwarding (muted); resume continues the sequence without a gap."""
        self.resync = True
        if self.kind == "video":
            self.waiting_keyframe = True

    def forward(
        self, payload_type: int, marker: int, sequence: int, timestamp: int, payload: bytes, key: bool, ntp: int
    ) -> None:
        """Rewrite and send one packet of the publisher (``ntp``: its arrival time, for sender reports)."""
        if self.waiting_keyframe:
            if not key:
                return
            self.waiting_keyframe = False
        out_type = self.payload_types.get(payload_type)
        if out_type is None:
            return
        if self.resync:
            self.sequence_offset = (self.last_sequence + 1 - sequence) & 0xFFFF
            if self.timestamp_offset is None:
                self.timestamp_offset = (random.getrandbits(32) - timestamp) & 0xFFFFFFFF
            self.resync = False
        out_sequence = (sequence + self.sequence_offset) & 0xFFFF
        out_timestamp = (timestamp + self.timestamp_offset) & 0xFFFFFFFF  # type: ignore[operator]
        data = RTP_HEADER.pack(0x80, (marker << 7) | out_type, out_sequence, out_timestamp, self.ssrc) + payload
        if ((out_sequence - self.last_sequence) & 0xFFFF) < 0x8000:
            self.last_sequence = out_sequence
        self.history[out_sequence & HISTORY_MASK] = data
        if not self._send(data):
            return
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self.last_timestamp = out_timestamp
        if ntp:
            # aiortc's sender reports (RTCP SR) announce these; keep them true to what was sent.
            self.link.set_report(ntp, out_timestamp, self.packets_sent, self.octets_sent)
        if self.on_first_packet is not None:
            callback, self.on_first_packet = self.on_first_packet, None
            callback()

    def _send(self, data: bytes) -> bool:
        """SRTP-protect and write one packet straight to the selected ICE pair's socket."""
        route = self._route
        if route is None or route[0] is not self._nominated.get(1):
            route = self._bind()
            if route is None:
                return False
        try:
            route[1](route[2](data), route[3])
        except (BlockingIOError, InterruptedError):
            return False  # the socket buffer is full: drop, as a congested link would
        except OSError:
            self._route = None
            return False
        STATS.packets_forwarded += 1
        STATS.bytes_forwarded += len(data)
        return True

    def _bind(self) -> tuple[Any, Any, Any, Any] | None:
        # Resolved once per selected candidate pair instead of per packet (see SenderLink.bind).
        binding: Binding | None = self.link.bind()
        if binding is None:
            return None
        self._nominated, self._route = binding
        return self._route

    def retransmit(self, sequence: int) -> None:
        """Answer a NACK from the history, as RTX when negotiated."""
        data = self.history[sequence & HISTORY_MASK]
        if data is None or packet_sequence(data) != sequence:
            return
        if self.rtx_payload_type is not None:
            data = wrap_rtx(data, self.rtx_payload_type, self.rtx_sequence, self.rtx_ssrc)
            self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
        self._send(data)

    async def handle_rtcp(self, packet: AnyRtcpPacket) -> None:
        """The player's feedback: NACKs answered here, keyframe requests go upstream."""
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            for sequence in packet.lost:
                self.retransmit(sequence)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.request_keyframe()
        else:
            await self._original_rtcp(packet)


class Ingest:
    """A publisher's track: receives its RTP and fans it out to players and sinks."""

    def __init__(
        self,
        kind: str,
        link: ReceiverLink,
        on_first_packet: Callable[[Ingest], None],
        pli_interval: float,
    ) -> None:
        self.kind = kind
        self.link = link
        self.downtracks: list[DownTrack] = []
        self.sinks: list[PacketSink] = []
        self.enabled = True
        self.media_ssrc: int | None = None
        self.codec: RTCRtpCodecParameters | None = None
        self.packets_received = 0
        self.on_first_packet: Callable[[Ingest], None] | None = on_first_packet
        self.pli_interval = pli_interval
        self._last_pli = 0.0
        self._pli_pending: asyncio.TimerHandle | None = None
        # aiortc's receiver state that feedback needs, read once (the hot path skips the link).
        self._codecs: dict[int, RTCRtpCodecParameters] = link.codecs
        self._remote_streams: dict[int, StreamStatistics] = link.remote_streams
        self._rtx_ssrc: dict[int, int] = link.rtx_ssrc
        self._active_ssrc: dict[int, Any] = link.active_ssrc
        self._nack_generator = link.nack_generator
        link.take_over(self.handle_rtp)

    async def handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Every RTP packet of the publisher, instead of aiortc's jitter buffer: feedback, then forward."""
        # aiortc's per-packet bandwidth estimator costs ~50 us a packet; like Janus, the relay
        # instead caps the publisher with a periodic REMB (send_bitrate_cap), and keeps the cheap
        # statistics (receiver reports) and NACKs below.
        if not self.packets_received & 63:
            self._active_ssrc[packet.ssrc] = clock.current_datetime()
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stats = self._remote_streams.get(packet.ssrc)
        if stats is None:
            stats = self._remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            original_ssrc = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]
        if self._nack_generator is not None and self._nack_generator.add(packet):
            await self.link.send_nack(packet.ssrc, sorted(self._nack_generator.missing))
        if not packet.payload:
            return
        self.packets_received += 1
        if self.media_ssrc is None or self.media_ssrc != packet.ssrc:
            self.media_ssrc = packet.ssrc
        if self.codec is None or self.codec.payloadType != codec.payloadType:
            self.codec = codec
        if self.on_first_packet is not None:
            callback, self.on_first_packet = self.on_first_packet, None
            # aiortc started a decoder thread for this receiver; nothing will ever feed it.
            self.link.stop_decoder()
            callback(self)
        for sink in self.sinks:
            try:
                sink.write(self.kind, codec, packet)
            except Exception:
                logger.exception("media sink failed; removing it")
                self.sinks.remove(sink)
        if not self.enabled or not self.downtracks:
            return
        key = self.kind == "video" and keyframe_start(codec.name, packet.payload)
        payload, payload_type, marker = packet.payload, packet.payload_type, packet.marker
        sequence, timestamp = packet.sequence_number, packet.timestamp
        # Sender reports map RTP time to wall time at frame ends: one clock read for all players.
        ntp = clock.current_ntp_time() if marker or self.kind == "audio" else 0
        for downtrack in self.downtracks:
            downtrack.forward(payload_type, marker, sequence, timestamp, payload, key, ntp)

    async def send_bitrate_cap(self, bitrate: int) -> None:
        """Tell the publisher the most it may send (REMB), as an SFU with a fixed room bitrate does."""
        if self.kind != "video" or self.media_ssrc is None:
            return
        await self.link.send_remb(bitrate, [self.media_ssrc])

    def packet_loss(self) -> tuple[int, int]:
        """(lost, expected) RTP packets of the publisher's media SSRCs so far (RTX SSRCs left out)."""
        lost = expected = 0
        rtx = set(self._rtx_ssrc)
        for ssrc, stats in list(self._remote_streams.items()):
            if ssrc in rtx or stats.max_seq is None or stats.base_seq is None:
                continue
            expected += max(stats.packets_expected, 0)
            lost += max(stats.packets_lost, 0)
        return lost, expected

    def set_enabled(self, enabled: bool) -> None:
        """Mute (False) or unmute (True): muted media is not forwarded."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if not enabled:
            for downtrack in self.downtracks:
                downtrack.pause()
        else:
            self.request_keyframe(immediate=True)

    def add(self, downtrack: DownTrack) -> None:
        """Start forwarding to a player; ask the publisher for a keyframe for it."""
        self.downtracks.append(downtrack)
        self.request_keyframe(immediate=True)

    def remove(self, downtrack: DownTrack) -> None:
        """Stop forwarding to a player."""
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)

    def request_keyframe(self, immediate: bool = False) -> None:
        """Send a PLI to the publisher's media SSRC, at most once per interval."""
        if self.kind != "video" or self.media_ssrc is None:
            return
        if self._pli_pending is not None:
            return
        wait = self._last_pli + self.pli_interval - time.monotonic()
        if wait <= 0 or (immediate and wait <= 0):
            self._send_pli()
            return
        loop = asyncio.get_running_loop()
        self._pli_pending = loop.call_later(wait, self._send_pli)

    def _send_pli(self) -> None:
        self._pli_pending = None
        if self.media_ssrc is None:
            return
        self._last_pli = time.monotonic()
        task = asyncio.ensure_future(self.link.send_pli(self.media_ssrc))
        task.add_done_callback(_log_failure)

    def close(self) -> None:
        """Forget players; close and forget sinks; cancel a pending keyframe request."""
        if self._pli_pending is not None:
            self._pli_pending.cancel()
            self._pli_pending = None
        self.downtracks.clear()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close()  # e.g. a recorder finalizes its file
                except Exception:
                    logger.exception("closing a media sink failed")
        self.sinks.clear()


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("keyframe request failed: %s", task.exception())
