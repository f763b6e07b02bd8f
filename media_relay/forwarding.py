"""The forward path: encoded RTP from a publisher to every player, never decoded.

:class:`Ingest` replaces aiortc's per-packet receive handler of a publisher's
track.  It keeps what a receiver owes its sender (REMB, receiver reports, NACK,
RTX unwrapping) and skips the jitter buffer and the decoder entirely.  Each
player has a :class:`DownTrack` that rewrites the header (payload type, SSRC,
sequence, timestamp, and the one header extension the player needs: audio level
or abs-send-time) with a few bytes of struct packing, keeps a history for NACKs,
and hands the packet to SRTP and the socket without a coroutine hop.

A simulcast publisher's video has several layers (:mod:`media_relay.simulcast`):
the Ingest maps each SSRC to its layer and keeps NACKs and keyframe requests per
layer; each DownTrack forwards one layer, switches only at a keyframe of its
target layer, and keeps sequence, timestamp and the VP8 picture id / TL0PICIDX
continuous across a switch, so the player sees one stream.
What they need of aiortc's receivers, senders and transports comes through the
links of :mod:`media_relay.aiortc_compat`.

With the native half built (:mod:`media_relay.fastpath`), a DownTrack sends through C (SRTP protect with the
player's own libsrtp session, then ``sendto``), and once it is in steady state (past its first packet, no resync,
no keyframe awaited; not for simulcast) the Ingest hands its state to a C track: one C call per incoming packet
then rewrites, protects and sends every such player's copy, keeping the headers for NACKs (the payloads stay in
the Ingest's ring).  Anything else (a mute, a target change, a failed send, another ICE pair) takes the state back
to Python.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiortc import clock
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
    unwrap_rtx,
)

from media_relay import fastpath
from media_relay.aiortc_compat import Binding, BoundedNackGenerator, ReceiverLink, SenderLink
from media_relay.rtp import (
    RTP_EXTENDED_BYTE,
    RTP_HEADER,
    RTP_HEADER_EXTENDED,
    abs_send_time_element,
    audio_level_element,
    keyframe_start,
    packet_sequence,
    wrap_rtx,
)
from media_relay.simulcast import Layer, LayerMap, read_picture_id, rewrite_vp8, vp8_descriptor
from media_relay.stats import STATS

logger = logging.getLogger(__name__)

HISTORY_SIZE = 1024  # a power of two
HISTORY_MASK = HISTORY_SIZE - 1
EXTENSION_WORD = struct.Struct("!I")
PROBE_TICK = 0.02
"""Padding of a bandwidth probe is sent in bursts this many seconds apart."""
PROBE_DEPTH = 64
"""...copying the most recent packets, up to this many back."""
PROBE_REMB_DROP = 0.9
"""A REMB below this share of the previous one during a probe fails it."""
PROBE_DRAIN = 0.6
"""After the padding, NACKs or loss reported this long still fail the probe (the queue it built drains, and the
player's next receiver report comes)."""
PROBE_LOSS = 0.02
"""A receiver report with more loss than this during a probe fails it (a NACK may itself be lost)."""
HELD_PACKETS = 128
"""While waiting for a keyframe, the target layer's latest packets are kept, up to this many."""
KEYFRAME_RETRY = 1.0
"""While waiting for a keyframe of the target layer, it is asked for again this often (a request or the keyframe
itself may be lost)."""
RESEND_MIN_GAP = 0.05
RESEND_DEFAULT_RTT = 0.1
"""A packet is resent at most once per round trip (this long while the round trip is unknown), and never twice
within RESEND_MIN_GAP."""
SWITCH_GUARD = 1024
"""For this many input sequence numbers after a (re)start, older packets of the stream are dropped."""
NO_EXTENSION = -1
FAST_SYNC = 0.1
"""Players forwarded from C have their counters and sender report figures read back this often (seconds), and
leave the C fan-out then after a failed send or when another ICE pair was selected."""
VIDEO_CLOCK_RATE = 90000
FRAME_TICKS = 3000
"""The timestamp step assumed across a layer switch when the time since the last frame is unknown (30 fps)."""

_path_logged = False
"""Whether the forward path in use (native or pure Python, and why) was logged, at the first player's bind."""

Vp8Fields = tuple[int, int, int, int, int]
"""A VP8 packet's (picture id offset, its bits, picture id, TL0PICIDX offset, TL0PICIDX); offsets 0: absent."""


class PacketSink(Protocol):
    """Anything fed with a publication's RTP after RTX unwrapping (e.g. a recorder)."""

    def write(self, kind: str, codec: RTCRtpCodecParameters, packet: RtpPacket) -> None: ...

    # Optional: ``close()`` is called (synchronously, maybe twice) when the publication closes.


class Downstream(Protocol):
    """What an Ingest fans out to: a player's DownTrack, or a cascading relay to another worker."""

    kind: str
    target: int

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
    ) -> None: ...

    def pause(self) -> None: ...


class DownTrack:
    """One player's copy of one publisher track (of one of its layers, for a simulcast video)."""

    def __init__(
        self,
        kind: str,
        link: SenderLink,
        payload_types: dict[int, int],
        rtx_payload_type: int | None,
        on_first_packet: Callable[[], None],
        request_keyframe: Callable[[int], None],
        extension_id: int = 0,
    ) -> None:
        self.kind = kind
        self.link = link
        self.ssrc = link.ssrc
        self.rtx_ssrc = link.rtx_ssrc
        self.payload_types = payload_types
        self.rtx_payload_type = rtx_payload_type
        self.on_first_packet: Callable[[], None] | None = on_first_packet
        self.request_keyframe = request_keyframe
        self.extension_id = extension_id
        """The player's id of the one extension written: audio level (audio) or abs-send-time (video); 0: none."""
        self.layer = -1 if kind == "video" else 0
        """The layer being forwarded (-1: none yet)."""
        self.target = 0
        """The layer wanted: forwarding switches to it at its next keyframe."""
        self.on_layer: Callable[[int], None] | None = None
        """Called (synchronously) when forwarding switches to another layer."""
        self.on_feedback: Callable[[float | None, float | None], None] | None = None
        """Called with (fraction lost, None) for each receiver report of this track, (None, bitrate) for a REMB."""
        self.waiting_keyframe = False
        self.resync = True
        self.guard: int | None = None
        self.sequence_offset = 0
        self.timestamp_offset: int | None = None
        self.last_sequence = random.randint(0, 0xFFFF)
        self.rtx_sequence = random.randint(0, 0xFFFF)
        self.history: list[bytes | None] = [None] * HISTORY_SIZE
        self._route: tuple[Any, Any, Any, Any] | None = None
        self._nominated: dict[int, Any] = {}
        self._native: Any = None
        """The route of the native fast path (media_relay.fastpath), when it takes this one."""
        self._fast_track: Any = None
        """Its C track (media_relay.fastpath.new_track): the steady state of :meth:`forward` in C."""
        self.fast = False
        """The C track owns the forwarding state: the Ingest fans out to it from C (see :meth:`enter_fast`)."""
        self._fast_owner: Ingest | None = None
        self._payloads: list[tuple[int, bytes] | None] = []
        """While fast: the Ingest's ring of the publisher's payloads (the C history keeps the headers only)."""
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_timestamp = 0
        self.last_ntp = 0
        self.picture_id_offset = 0
        self.tl0_offset = 0
        self.last_picture_id = -1
        self.last_tl0 = -1
        self._probe: asyncio.Future[None] | None = None
        self._probe_failed = False
        self._last_remb = 0
        self._held: deque[tuple[int, int, int, int, bytes, int, int, int, Vp8Fields | None]] = deque(
            maxlen=HELD_PACKETS
        )
        """While waiting for a keyframe: the target layer's latest packets (see :meth:`_hold`)."""
        self._keyframe_asked = time.monotonic()
        self._resent: dict[int, float] = {}
        """When each recently retransmitted sequence number was last resent."""
        self._original_rtcp = link.intercept_rtcp(self.handle_rtcp)

    def pause(self) -> None:
        """Stop forwarding (muted); resume continues the sequence without a gap."""
        if self.fast:
            self.leave_fast()
        self.resync = True
        if self.kind == "video":
            self.waiting_keyframe = True

    def set_target(self, layer: int) -> None:
        """Forward ``layer`` from its next keyframe on (one is requested); the current layer until then."""
        if layer == self.target:
            return
        if self.fast:
            self.leave_fast()
        self.target = layer
        self._held.clear()
        if layer != self.layer:
            self._keyframe_asked = time.monotonic()
            self.request_keyframe(layer)

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
        """Rewrite and send one packet of the publisher.

        ``ntp``: its arrival time at frame ends (for sender reports), else 0; ``layer``: its simulcast layer;
        ``extension``: the audio level byte (audio) or abs-send-time (video) to write, if the player takes it;
        ``vp8``: its VP8 descriptor fields when picture ids may need rewriting (simulcast VP8).
        """
        if layer != self.layer or self.waiting_keyframe:
            if layer != self.target:
                return
            if not key:
                self._hold(payload_type, marker, sequence, timestamp, payload, ntp, layer, extension, vp8)
                return
            if layer != self.layer:
                self._switch(layer, timestamp, vp8)
            self.waiting_keyframe = False
            held = sorted(
                (after, packet)
                for packet in self._held
                if 0 < (after := (packet[2] - sequence) & 0xFFFF) < 0x8000 and packet[6] == layer
            )
            self._held.clear()
            self.forward(payload_type, marker, sequence, timestamp, payload, False, ntp, layer, extension, vp8)
            for _, packet in held:  # what came before the keyframe's first packet (lost, then repaired) yet follows it
                self.forward(*packet[:5], False, *packet[5:])
            return
        out_type = self.payload_types.get(payload_type)
        if out_type is None:
            return
        if self.resync:
            self.sequence_offset = (self.last_sequence + 1 - sequence) & 0xFFFF
            if self.timestamp_offset is None:
                self.timestamp_offset = (random.getrandbits(32) - timestamp) & 0xFFFFFFFF
            self.resync = False
            self.guard = sequence
        elif self.guard is not None:
            since = (sequence - self.guard) & 0xFFFF
            if since >= 0x8000:
                return  # older than the (re)start: its number belongs to what was sent before
            if since > SWITCH_GUARD:
                self.guard = None
        out_sequence = (sequence + self.sequence_offset) & 0xFFFF
        out_timestamp = (timestamp + self.timestamp_offset) & 0xFFFFFFFF  # type: ignore[operator]
        advanced = ((out_sequence - self.last_sequence) & 0xFFFF) < 0x8000
        if vp8 is not None and vp8[0]:
            payload = self._rewrite_vp8(payload, vp8, advanced)
        if extension >= 0 and self.extension_id:
            word = (
                audio_level_element(self.extension_id, extension)
                if self.kind == "audio"
                else abs_send_time_element(self.extension_id, extension)
            )
            data = (
                RTP_HEADER_EXTENDED.pack(
                    RTP_EXTENDED_BYTE, (marker << 7) | out_type, out_sequence, out_timestamp, self.ssrc, 0xBEDE, 1, word
                )
                + payload
            )
        else:
            data = RTP_HEADER.pack(0x80, (marker << 7) | out_type, out_sequence, out_timestamp, self.ssrc) + payload
        if advanced:
            self.last_sequence = out_sequence
        self.history[out_sequence & HISTORY_MASK] = data
        if not self._send(data):
            return
        self.packets_sent += 1
        self.octets_sent += len(payload)
        self.last_timestamp = out_timestamp
        if ntp:
            # aiortc's sender reports (RTCP SR) announce these; keep them true to what was sent.
            self.last_ntp = ntp
            self.link.set_report(ntp, out_timestamp, self.packets_sent, self.octets_sent)
        if self.on_first_packet is not None:
            callback, self.on_first_packet = self.on_first_packet, None
            callback()

    def _hold(
        self,
        payload_type: int,
        marker: int,
        sequence: int,
        timestamp: int,
        payload: bytes,
        ntp: int,
        layer: int,
        extension: int,
        vp8: Vp8Fields | None,
    ) -> None:
        """While waiting for a keyframe of the target layer: keep its latest packets (the keyframe's first packet,
        lost and retransmitted, may come after the rest of it), and ask again for a keyframe when none came for a
        while."""
        self._held.append((payload_type, marker, sequence, timestamp, payload, ntp, layer, extension, vp8))
        now = time.monotonic()
        if now - self._keyframe_asked >= KEYFRAME_RETRY:
            self._keyframe_asked = now
            self.request_keyframe(layer)

    def _switch(self, layer: int, timestamp: int, vp8: Vp8Fields | None) -> None:
        """Start forwarding another layer at its keyframe: new offsets, so numbering continues by one."""
        switching = self.layer >= 0 or self.packets_sent > 0
        self.layer = layer
        self.waiting_keyframe = False
        self.resync = True
        if switching and self.timestamp_offset is not None:
            # Layers have their own RTP clocks: continue from the last timestamp sent, by the time elapsed.
            elapsed = FRAME_TICKS
            if self.last_ntp:
                seconds = (clock.current_ntp_time() - self.last_ntp) / (1 << 32)
                elapsed = int(seconds * VIDEO_CLOCK_RATE) if 0 < seconds < 10 else FRAME_TICKS
            self.timestamp_offset = (self.last_timestamp + max(elapsed, 1) - timestamp) & 0xFFFFFFFF
        if vp8 is not None and self.last_picture_id >= 0:
            pid_at, pid_bits, picture_id, tl0_at, tl0 = vp8
            if pid_at:
                mask = 0x7FFF if pid_bits == 15 else 0x7F
                self.picture_id_offset = (self.last_picture_id + 1 - picture_id) & mask
            if tl0_at and self.last_tl0 >= 0:
                self.tl0_offset = (self.last_tl0 + 1 - tl0) & 0xFF
        if self.on_layer is not None:
            try:
                self.on_layer(layer)
            except Exception:
                logger.exception("layer switch callback failed")

    def _rewrite_vp8(self, payload: bytes, vp8: Vp8Fields, advanced: bool) -> bytes:
        pid_at, pid_bits, picture_id, tl0_at, tl0 = vp8
        out_picture_id = (picture_id + self.picture_id_offset) & (0x7FFF if pid_bits == 15 else 0x7F)
        out_tl0 = (tl0 + self.tl0_offset) & 0xFF if tl0_at else tl0
        if advanced:
            self.last_picture_id = out_picture_id
            if tl0_at:
                self.last_tl0 = out_tl0
        if out_picture_id == picture_id and out_tl0 == tl0:
            return payload
        return rewrite_vp8(payload, pid_at, pid_bits, out_picture_id, tl0_at, out_tl0)

    def _send(self, data: bytes) -> bool:
        """SRTP-protect and write one packet straight to the selected ICE pair's socket."""
        route = self._route
        if route is None or route[0] is not self._nominated.get(1):
            route = self._bind()
            if route is None:
                return False
        native = self._native
        if native is not None:
            sent = fastpath.send(native, data)
            if sent < 0:
                if sent not in fastpath.DROPPED:  # a closed socket or an SRTP failure: bind again next time
                    self._route = None
                return False
        else:
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
        if self.fast:
            self.leave_fast()
        self._nominated, self._route = binding
        _, sendto, protect, address = self._route
        self._native = fastpath.route(sendto, protect, address)
        global _path_logged
        if not _path_logged:
            _path_logged = True
            logger.info("forward path: native half %s", fastpath.status())
        self._fast_track = fastpath.new_track(self._native) if self._native is not None else None
        return self._route

    def _stored(self, sequence: int) -> bytes | None:
        """The packet sent as ``sequence``, if still kept (sent from Python, or from C: its header and the
        publisher's payload)."""
        data = self.history[sequence & HISTORY_MASK]
        if data is not None and packet_sequence(data) == sequence:
            return data
        if self._fast_track is None or not self._payloads:
            return None
        kept = fastpath.stored(self._fast_track, sequence)
        if kept is None:
            return None
        header, in_sequence = kept
        entry = self._payloads[in_sequence & HISTORY_MASK]
        if entry is None or entry[0] != in_sequence:
            return None
        return header + entry[1]

    # --- the steady state in C (media_relay.fastpath) ----------------------------------------------------------

    @property
    def fast_track(self) -> Any:
        """The C track (None without a native route)."""
        return self._fast_track

    def fast_ready(self) -> bool:
        """Whether the C track can take over: a native route to the current pair, past the first packet, forwarding
        its target layer with nothing pending (no resync, no keyframe awaited)."""
        route = self._route
        return (
            self._fast_track is not None
            and not self.fast
            and route is not None
            and route[0] is self._nominated.get(1)
            and self.on_first_packet is None
            and not self.resync
            and not self.waiting_keyframe
            and self.layer == self.target
            and self.timestamp_offset is not None
        )

    def enter_fast(self, owner: Ingest, payloads: list[tuple[int, bytes] | None]) -> None:
        """Hand the forwarding state to the C track; ``owner`` fans out to it from now on."""
        track = self._fast_track[0]
        for index in range(128):
            track.payload_types[index] = self.payload_types.get(index, 255)
        track.ssrc = self.ssrc
        track.sequence_offset = self.sequence_offset
        track.timestamp_offset = self.timestamp_offset
        track.last_sequence = self.last_sequence
        track.last_timestamp = self.last_timestamp
        track.extension_id = self.extension_id
        track.audio = self.kind == "audio"
        track.guard = -1 if self.guard is None else self.guard
        track.failed = 0
        track.packets_sent = self.packets_sent
        track.octets_sent = self.octets_sent
        track.report_ntp = 0
        self._payloads = payloads
        self._fast_owner = owner
        self.fast = True

    def sync_fast(self) -> bool:
        """Read back what the C track sent (counters, the sender report's figures); False when it must leave
        fast (a failed send, another selected pair)."""
        track = self._fast_track[0]
        self.packets_sent = track.packets_sent
        self.octets_sent = track.octets_sent
        self.last_sequence = track.last_sequence
        self.last_timestamp = track.last_timestamp
        ntp = track.report_ntp
        if ntp and ntp != self.last_ntp:
            self.last_ntp = ntp
            self.link.set_report(ntp, track.report_timestamp, track.report_packets, track.report_octets)
        return not track.failed and self._route is not None and self._route[0] is self._nominated.get(1)

    def leave_fast(self) -> None:
        """Take the forwarding state back from the C track (Python forwards again)."""
        if not self.fast:
            return
        self.sync_fast()
        guard = self._fast_track[0].guard
        self.guard = None if guard < 0 else guard
        if self._fast_track[0].failed:
            self._route = None  # bind again on the next send
        self.fast = False
        if self._fast_owner is not None:
            self._fast_owner.regroup()
            self._fast_owner = None

    def _restamp(self, data: bytes) -> bytes:
        """A stored video packet with its abs-send-time set to now, as a sender stamps a retransmission: a stale
        send time would look like a queue building up to the player's delay-based estimator (REMB)."""
        if self.kind != "video" or not self.extension_id or data[0] != RTP_EXTENDED_BYTE:
            return data
        word = abs_send_time_element(self.extension_id, int(time.time() * 262144))
        return data[:16] + EXTENSION_WORD.pack(word) + data[20:]

    def retransmit(self, sequence: int) -> None:
        """Answer a NACK from the history, as RTX when negotiated; a packet resent less than a round trip ago is
        not sent again (a player NACKs again before the first resend could arrive when a queue delays it, and
        answering each NACK would multiply the load on a link that is already full)."""
        data = self._stored(sequence)
        if data is None:
            return
        now = time.monotonic()
        resent = self._resent.get(sequence)
        if resent is not None and now - resent < max(self.link.rtt or RESEND_DEFAULT_RTT, RESEND_MIN_GAP):
            return
        if len(self._resent) >= HISTORY_SIZE:
            self._resent.clear()
        self._resent[sequence] = now
        if self.rtx_payload_type is not None:
            data = wrap_rtx(self._restamp(data), self.rtx_payload_type, self.rtx_sequence, self.rtx_ssrc)
            self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
        self._send(data)

    def probe(self, bitrate: float, seconds: float, done: Callable[[bool], None]) -> bool:
        """Send ``bitrate`` bit/s of padding for ``seconds``: RTX copies of recent packets, which the player drops.

        ``done(True)`` follows when no NACK, no report of loss and no falling REMB came back during the probe (and
        a short drain after it), ``done(False)`` as soon as one did (the padding stops at once, so the queue it
        filled drains and the retransmissions get through).  False (and no call) when this track cannot probe: no
        RTX, nothing sent
        yet, or a probe already running.
        """
        if self.rtx_payload_type is None or self._probe is not None or self.packets_sent == 0:
            return False
        self._probe_failed = False
        self._probe = asyncio.ensure_future(self._pad(bitrate, seconds, done))
        self._probe.add_done_callback(_log_failure)
        return True

    @property
    def probing(self) -> bool:
        """A padding probe is running."""
        return self._probe is not None

    async def _pad(self, bitrate: float, seconds: float, done: Callable[[bool], None]) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        last = loop.time() - PROBE_TICK
        back = 0
        try:
            while loop.time() < end and not self._probe_failed:
                now = loop.time()
                budget = bitrate / 8 * min(now - last, 5 * PROBE_TICK)  # a late loop still pads at the rate
                last = now
                sent = 0.0
                misses = 0
                while sent < budget and misses < PROBE_DEPTH:
                    last = self._fast_track[0].last_sequence if self.fast else self.last_sequence
                    sequence = (last - back) & 0xFFFF
                    back = (back + 1) % PROBE_DEPTH
                    data = self._stored(sequence)
                    if data is None:
                        misses += 1
                        continue
                    assert self.rtx_payload_type is not None
                    self._send(wrap_rtx(self._restamp(data), self.rtx_payload_type, self.rtx_sequence, self.rtx_ssrc))
                    self.rtx_sequence = (self.rtx_sequence + 1) & 0xFFFF
                    sent += len(data)
                await asyncio.sleep(PROBE_TICK)
            if not self._probe_failed:
                await asyncio.sleep(PROBE_DRAIN)
            outcome = not self._probe_failed
        finally:
            self._probe = None
        done(outcome)

    async def handle_rtcp(self, packet: AnyRtcpPacket) -> None:
        """The player's feedback: NACKs answered here, keyframe requests go upstream, reports feed the estimate."""
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            STATS.nacks_received += 1
            if self._probe is not None:
                self._probe_failed = True  # the probe overflowed the player's link: stop it
            for sequence in packet.lost:
                self.retransmit(sequence)
            return
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            STATS.plis_received += 1
            self.request_keyframe(self.layer if self.layer >= 0 else self.target)
            return
        feedback = self.on_feedback
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    lost = report.fraction_lost / 256
                    if self._probe is not None and lost > PROBE_LOSS:
                        self._probe_failed = True  # the probe overflowed the player's link
                    if feedback is not None:
                        feedback(lost, None)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                bitrate, ssrcs = 0, []
            if self.ssrc in ssrcs:
                if self._probe is not None and bitrate < self._last_remb * PROBE_REMB_DROP:
                    self._probe_failed = True  # the player's delay-based estimate fell: a queue is building
                self._last_remb = bitrate
                if feedback is not None:
                    feedback(None, float(bitrate))
        await self._original_rtcp(packet)


class Ingest:
    """A publisher's track: receives its RTP and fans it out to players and sinks."""

    def __init__(
        self,
        kind: str,
        link: ReceiverLink,
        on_first_packet: Callable[[Ingest], None],
        pli_interval: float,
        rids: list[str] | None = None,
    ) -> None:
        self.kind = kind
        self.link = link
        self.downtracks: list[Downstream] = []
        self._fast: list[DownTrack] = []
        """The players whose copies the C fan-out makes (media_relay.fastpath; never with simulcast)."""
        self._fast_array: Any = None
        self._slow: list[Downstream] = []
        """The others, forwarded from Python."""
        self._payloads: list[tuple[int, bytes] | None] = [None] * HISTORY_SIZE
        """The publisher's latest payloads by sequence, for the fast players' NACKs."""
        self._fast_synced = 0.0
        self.sinks: list[PacketSink] = []
        self.enabled = True
        self.media_ssrc: int | None = None
        self.codec: RTCRtpCodecParameters | None = None
        self.packets_received = 0
        self.bytes_received = 0
        """RTP payload bytes received (RTX unwrapped, padding left out)."""
        self.on_first_packet: Callable[[Ingest], None] | None = on_first_packet
        self.on_audio_level: Callable[[int], None] | None = None
        """Called with each audio packet's level (-dBov, 0..127) when the publisher sends the extension."""
        self.pli_interval = pli_interval
        self.layer_map: LayerMap | None = LayerMap(rids) if kind == "video" and rids and len(rids) > 1 else None
        """The simulcast layers (None: one stream)."""
        count = len(self.layer_map.layers) if self.layer_map is not None else 1
        self._layer_nacks = [BoundedNackGenerator() for _ in range(count)] if self.layer_map is not None else []
        self._last_pli = [0.0] * count
        self._pli_pending: list[asyncio.TimerHandle | None] = [None] * count
        # aiortc's receiver state that feedback needs, read once (the hot path skips the link).
        self._codecs: dict[int, RTCRtpCodecParameters] = link.codecs
        self._remote_streams: dict[int, StreamStatistics] = link.remote_streams
        self._rtx_ssrc: dict[int, int] = link.rtx_ssrc
        self._active_ssrc: dict[int, Any] = link.active_ssrc
        self._nack_generator = link.nack_generator
        link.take_over(self.handle_rtp)

    @property
    def layer_count(self) -> int:
        """How many layers the track has (1 without simulcast)."""
        return len(self.layer_map.layers) if self.layer_map is not None else 1

    def layer_bitrates(self) -> list[float]:
        """Each layer's measured bits per second, lowest first (one entry without simulcast)."""
        if self.layer_map is None:
            return [0.0]
        return [layer.bitrate for layer in self.layer_map.layers]

    def measure(self, now: float) -> None:
        """Update the layers' bitrates (called about once a second)."""
        if self.layer_map is not None:
            self.layer_map.measure(now)

    async def handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """Every RTP packet of the publisher, instead of aiortc's jitter buffer: feedback, then forward."""
        # aiortc's per-packet bandwidth estimator costs ~50 us a packet; like Janus, the relay
        # instead caps the publisher with a periodic REMB (send_bitrate_cap), and keeps the cheap
        # statistics (receiver reports) and NACKs below.
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        layer: Layer | None = None
        index = 0
        if self.layer_map is not None:
            layer = self._layer_of(packet)
            if layer is None:
                return  # an SSRC of no declared layer: no state is kept for it
            index = layer.index
        if not self.packets_received & 63:
            self._active_ssrc[packet.ssrc] = clock.current_datetime()
        stats = self._remote_streams.get(packet.ssrc)
        if stats is None:
            stats = self._remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        repair = is_rtx(codec)
        if repair:
            original_ssrc = layer.ssrc if layer is not None else self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)
            codec = self._codecs[apt]
        nacks = self._layer_nacks[index] if layer is not None else self._nack_generator
        if nacks is not None and nacks.add(packet):
            STATS.nacks_sent += 1
            await self.link.send_nack(packet.ssrc, sorted(nacks.missing))
        if not packet.payload:
            return
        self.packets_received += 1
        self.bytes_received += len(packet.payload)
        STATS.packets_received += 1
        STATS.bytes_received += len(packet.payload)
        if layer is not None:
            if not repair:
                # A layer's rate is its media: the publisher's RTX also carries its own bandwidth probes (old
                # packets sent again as padding), which would make a layer look several times its size.
                layer.octets += len(packet.payload)
            top = index == len(self.layer_map.layers) - 1  # type: ignore[union-attr]
        else:
            top = True
            if self.media_ssrc != packet.ssrc:
                self.media_ssrc = packet.ssrc
        if self.codec is None or self.codec.payloadType != codec.payloadType:
            self.codec = codec
        if self.on_first_packet is not None:
            callback, self.on_first_packet = self.on_first_packet, None
            # aiortc started a decoder thread for this receiver; nothing will ever feed it.
            self.link.stop_decoder()
            callback(self)
        if top:
            for sink in self.sinks:  # a simulcast track is recorded from its top layer
                try:
                    sink.write(self.kind, codec, packet)
                except Exception:
                    logger.exception("media sink failed; removing it")
                    self.sinks.remove(sink)
        extension = NO_EXTENSION
        if self.kind == "audio":
            level = packet.extensions.audio_level
            if level is not None:
                extension = (0x80 if level[0] else 0) | (level[1] & 0x7F)
                if self.on_audio_level is not None and self.enabled:
                    self.on_audio_level(level[1])
        if not self.enabled or not self.downtracks:
            return
        payload, payload_type, marker = packet.payload, packet.payload_type, packet.marker
        sequence, timestamp = packet.sequence_number, packet.timestamp
        key = False
        vp8: Vp8Fields | None = None
        if self.kind == "video":
            key = keyframe_start(codec.name, payload)
            extension = int(time.time() * 262144) & 0xFFFFFF  # abs-send-time: 6.18 fixed-point seconds
            if layer is not None and codec.name == "VP8":
                pid_at, pid_bits, tl0_at, _ = vp8_descriptor(payload)
                if pid_at:
                    vp8 = (pid_at, pid_bits, read_picture_id(payload, pid_at, pid_bits), tl0_at, payload[tl0_at])
        # Sender reports map RTP time to wall time at frame ends: one clock read for all players.
        ntp = clock.current_ntp_time() if marker or self.kind == "audio" else 0
        if self.layer_map is not None:
            for downtrack in self.downtracks:
                downtrack.forward(payload_type, marker, sequence, timestamp, payload, key, ntp, index, extension, vp8)
            return
        fast, slow = self._fast, self._slow  # a player leaving C below got this packet from C already
        if fast:
            self._payloads[sequence & HISTORY_MASK] = (sequence, payload)
            sent, octets = fastpath.fanout(
                self._fast_array, len(fast), payload_type, marker, sequence, timestamp, extension, ntp, payload
            )
            STATS.packets_forwarded += sent
            STATS.bytes_forwarded += octets
            now = time.monotonic()
            if now - self._fast_synced >= FAST_SYNC:
                self._fast_synced = now
                for downtrack in [downtrack for downtrack in fast if not downtrack.sync_fast()]:
                    downtrack.leave_fast()
        joined = False
        for downtrack in slow:
            downtrack.forward(payload_type, marker, sequence, timestamp, payload, key, ntp, index, extension, vp8)
            if isinstance(downtrack, DownTrack) and downtrack.fast_ready():
                downtrack.enter_fast(self, self._payloads)
                joined = True
        if joined:
            self.regroup()

    def regroup(self) -> None:
        """Sort the players into those the C fan-out serves and the others (after one joins or leaves it)."""
        fast = [downtrack for downtrack in self.downtracks if isinstance(downtrack, DownTrack) and downtrack.fast]
        self._fast = fast
        ids = {id(downtrack) for downtrack in fast}
        self._slow = [downtrack for downtrack in self.downtracks if id(downtrack) not in ids]
        self._fast_array = fastpath.track_array([downtrack.fast_track for downtrack in fast]) if fast else None

    def _layer_of(self, packet: RtpPacket) -> Layer | None:
        """The layer of a simulcast packet or of its RTX (learnt from its rid extensions the first time)."""
        layers = self.layer_map
        assert layers is not None
        layer = layers.media.get(packet.ssrc) or layers.rtx.get(packet.ssrc)
        if layer is not None:
            return layer
        extensions = packet.extensions
        before = {layer.index: (layer.ssrc, layer.rtx_ssrc) for layer in layers.layers}
        learnt = layers.learn(packet.ssrc, extensions.rtp_stream_id, extensions.repaired_rtp_stream_id)
        if learnt is None:
            return None
        layer, repair = learnt
        old_ssrc, old_rtx = before[layer.index]
        replaced = old_rtx if repair else old_ssrc
        if replaced is not None:
            # The publisher restarted this layer: forget the old SSRC's statistics.
            self._remote_streams.pop(replaced, None)
            self._active_ssrc.pop(replaced, None)
            if not repair:
                self._layer_nacks[layer.index] = BoundedNackGenerator()
        logger.debug("simulcast layer %s (%d) on SSRC %d%s", layer.rid, layer.index, packet.ssrc, " (RTX)" * repair)
        return layer

    async def send_bitrate_cap(self, bitrate: int) -> None:
        """Tell the publisher the most it may send (REMB), as an SFU with a fixed room bitrate does."""
        if self.kind != "video":
            return
        if self.layer_map is not None:
            ssrcs = [layer.ssrc for layer in self.layer_map.layers if layer.ssrc is not None]
        else:
            ssrcs = [self.media_ssrc] if self.media_ssrc is not None else []
        if ssrcs:
            await self.link.send_remb(bitrate, ssrcs)

    def nack_state(self) -> list[tuple[int, NackGenerator]]:
        """(media SSRC, its NACK generator) per stream the relay repairs: each layer of a simulcast video, else the
        one video stream; none for audio (aiortc keeps no NACK state for it)."""
        if self.layer_map is not None:
            layers = self.layer_map.layers
            return [(layer.ssrc, self._layer_nacks[layer.index]) for layer in layers if layer.ssrc is not None]
        if self._nack_generator is None or self.media_ssrc is None:
            return []
        return [(self.media_ssrc, self._nack_generator)]

    def packet_loss(self) -> tuple[int, int]:
        """(lost, expected) RTP packets of the publisher's media SSRCs so far (RTX SSRCs left out)."""
        lost = expected = 0
        rtx = set(self._rtx_ssrc)
        if self.layer_map is not None:
            rtx.update(self.layer_map.rtx)
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
            for layer in {downtrack.target for downtrack in self.downtracks} or {0}:
                self.request_keyframe(layer, immediate=True)

    def add(self, downtrack: Downstream) -> None:
        """Start forwarding to a player (or a relay); ask the publisher for a keyframe of its layer."""
        self.downtracks.append(downtrack)
        self.regroup()
        self.request_keyframe(downtrack.target, immediate=True)

    def remove(self, downtrack: Downstream) -> None:
        """Stop forwarding to a player (or a relay)."""
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)
            if isinstance(downtrack, DownTrack):
                downtrack.leave_fast()
            self.regroup()

    def _ssrc_of(self, layer: int) -> int | None:
        if self.layer_map is None:
            return self.media_ssrc
        if 0 <= layer < len(self.layer_map.layers):
            return self.layer_map.layers[layer].ssrc
        return None

    def request_keyframe(self, layer: int = 0, immediate: bool = False) -> None:
        """Send a PLI for a layer's SSRC (the only one without simulcast), at most once per interval per layer."""
        if self.kind != "video" or self._ssrc_of(layer) is None:
            return
        if self.layer_map is None:
            layer = 0
        if self._pli_pending[layer] is not None:
            return
        wait = self._last_pli[layer] + self.pli_interval - time.monotonic()
        if wait <= 0:
            self._send_pli(layer)
            return
        loop = asyncio.get_running_loop()
        self._pli_pending[layer] = loop.call_later(wait, self._send_pli, layer)

    def _send_pli(self, layer: int) -> None:
        self._pli_pending[layer] = None
        ssrc = self._ssrc_of(layer)
        if ssrc is None:
            return
        self._last_pli[layer] = time.monotonic()
        STATS.plis_sent += 1
        task = asyncio.ensure_future(self.link.send_pli(ssrc))
        task.add_done_callback(_log_failure)

    def close(self) -> None:
        """Forget players; close and forget sinks; cancel pending keyframe requests."""
        for index, pending in enumerate(self._pli_pending):
            if pending is not None:
                pending.cancel()
                self._pli_pending[index] = None
        for downtrack in self._fast:
            downtrack.leave_fast()
        self.downtracks.clear()
        self.regroup()
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
