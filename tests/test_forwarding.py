"""The forward path without sockets: the real Ingest and DownTrack classes on hand-built RTP packets.

aiortc's receivers, senders and DTLS transports are real (created without ICE); only the two outlets are
captured: the player's socket route (``SenderLink.bind``) and the publisher's RTCP (``ReceiverLink.send_rtcp``).
The tests are coroutines: aiortc binds its senders and receivers to the running loop.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
import weakref
from collections.abc import Callable, Iterable

import pylibsrtp
import pytest
from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
)
from pylibsrtp import Policy, Session

from media_relay import fastpath, forwarding
from media_relay.aiortc_compat import Binding, ReceiverLink, SenderLink
from media_relay.forwarding import HISTORY_SIZE, DownTrack, Ingest

PUBLISHER_SSRC = 0x11223344
PUBLISHER_RTX_SSRC = 0x55667788
RTCP_SSRC = 0x0BADCAFE

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
VP8_RTX = RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=97, parameters={"apt": 96})
H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)

# First payloads of a frame: (keyframe, inter frame).  VP8: descriptor S=1, partition 0, then the P bit.
# H.264: an IDR slice (type 5) or an FU-A starting an IDR, against a non-IDR slice (type 1).
FRAME_STARTS = {
    "VP8": (bytes([0x10, 0x00, 0x9D, 0x01, 0x2A]), bytes([0x10, 0x01, 0x00, 0x00])),
    "H264": (bytes([0x7C, 0x85, 0x88, 0x84]), bytes([0x41, 0x9A, 0x00])),
}
CODECS = {"VP8": VP8, "H264": H264}


def dtls_transport() -> RTCDtlsTransport:
    """A real DTLS transport that never starts (no ICE, no sockets)."""
    return RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()])


class Wire:
    """A player's real wire on loopback: SRTP with a fresh key, a UDP socket each way; what arrives is unprotected.

    Loopback delivers a datagram before ``sendto`` returns, so what was sent can be read back at once.
    """

    def __init__(self) -> None:
        key = os.urandom(30)
        self.tx = Session(self._policy(key, Policy.SSRC_ANY_OUTBOUND))
        self.key = key
        self.rx = [Session(self._policy(key, Policy.SSRC_ANY_INBOUND))]
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (self.sender, self.receiver):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            weakref.finalize(self, sock.close)
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.address = self.receiver.getsockname()

    @staticmethod
    def _policy(key: bytes, ssrc_type: int) -> Policy:
        policy = Policy(key=key, ssrc_type=ssrc_type)
        policy.allow_repeat_tx = True  # as aiortc's transport: a packet may be resent as is
        policy.window_size = 1024
        return policy

    def receive(self) -> list[bytes]:
        """The plain RTP of what arrived since the last call (a resent packet too: a fresh session takes it)."""
        packets = []
        while True:
            try:
                data = self.receiver.recv(4096)
            except BlockingIOError:
                return packets
            for session in self.rx:
                try:
                    packets.append(session.unprotect(data))
                    break
                except pylibsrtp.Error:
                    continue
            else:
                self.rx.append(Session(self._policy(self.key, Policy.SSRC_ANY_INBOUND)))
                packets.append(self.rx[-1].unprotect(data))


class CapturedSenderLink(SenderLink):
    """A real sender's link whose route writes into ``sent``: with the native fast path on, over a real wire
    (SRTP, loopback UDP: the native half protects and sends), else straight into the list (no SRTP)."""

    def __init__(self, kind: str) -> None:
        transport = dtls_transport()
        super().__init__(RTCRtpSender(kind, transport), transport)
        self._sent: list[bytes] = []
        self.reports: list[tuple[int, int, int, int]] = []
        self.wire = Wire() if fastpath.enabled() else None

    @property
    def sent(self) -> list[bytes]:
        """The plain RTP the player received so far."""
        if self.wire is not None:
            self._sent.extend(self.wire.receive())
        return self._sent

    def bind(self) -> Binding | None:
        pair = object()
        if self.wire is not None:
            return {1: pair}, (pair, self.wire.sender.sendto, self.wire.tx.protect, self.wire.address)
        return {1: pair}, (pair, lambda data, addr: self._sent.append(data), lambda data: data, ("192.0.2.1", 9))

    def set_report(self, ntp: int, rtp_timestamp: int, packet_count: int, octet_count: int) -> None:
        self.reports.append((ntp, rtp_timestamp, packet_count, octet_count))
        super().set_report(ntp, rtp_timestamp, packet_count, octet_count)

    def packets(self) -> list[RtpPacket]:
        """What the player would have received."""
        return [RtpPacket.parse(data) for data in self.sent]


class CapturedReceiverLink(ReceiverLink):
    """A real receiver's link, negotiated with ``codecs``, whose RTCP to the publisher goes into ``rtcp``."""

    def __init__(self, kind: str, codecs: Iterable[RTCRtpCodecParameters], rtx: bool = False) -> None:
        super().__init__(RTCRtpReceiver(kind, dtls_transport()))
        for codec in codecs:
            assert codec.payloadType is not None
            self.codecs[codec.payloadType] = codec  # what aiortc's receive() does after negotiation
        if rtx:
            self.rtx_ssrc[PUBLISHER_RTX_SSRC] = PUBLISHER_SSRC
        self.rtcp: list[AnyRtcpPacket] = []

    @property
    def rtcp_ssrc(self) -> int | None:
        return RTCP_SSRC

    async def send_rtcp(self, packet: AnyRtcpPacket) -> None:
        self.rtcp.append(packet)

    def plis(self) -> list[RtcpPsfbPacket]:
        """The keyframe requests sent to the publisher."""
        return [p for p in self.rtcp if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_PLI]


def downtrack(
    kind: str,
    payload_types: dict[int, int],
    rtx_payload_type: int | None = None,
    on_keyframe: Callable[[int], None] | None = None,
) -> tuple[DownTrack, CapturedSenderLink]:
    """A player's DownTrack and the link that captures what it sends."""
    link = CapturedSenderLink(kind)
    track = DownTrack(kind, link, payload_types, rtx_payload_type, lambda: None, on_keyframe or (lambda _layer: None))
    return track, link


def ingest(
    kind: str, codecs: Iterable[RTCRtpCodecParameters], pli_interval: float = 1.0
) -> tuple[Ingest, CapturedReceiverLink]:
    """A publisher's Ingest fed by hand and the link that captures its RTCP."""
    link = CapturedReceiverLink(kind, codecs)
    return Ingest(kind, link, lambda _ingest: None, pli_interval), link


def rtp(payload_type: int, sequence: int, timestamp: int, payload: bytes, marker: int = 0) -> RtpPacket:
    """A publisher's packet."""
    return RtpPacket(
        payload_type=payload_type,
        marker=marker,
        sequence_number=sequence & 0xFFFF,
        timestamp=timestamp & 0xFFFFFFFF,
        ssrc=PUBLISHER_SSRC,
        payload=payload,
    )


async def publish(target: Ingest, packets: Iterable[RtpPacket]) -> None:
    """Hand packets to the Ingest as aiortc's DTLS transport would."""
    for packet in packets:
        await target.handle_rtp(packet, int(time.time() * 1000))


def assert_contiguous(packets: list[RtpPacket]) -> None:
    """Sequence numbers step by one, across the 16-bit wrap."""
    for before, after in itertools.pairwise(packets):
        assert (after.sequence_number - before.sequence_number) & 0xFFFF == 1, (before, after)


async def settle() -> None:
    """Let tasks scheduled by the code under test (PLIs) run."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- header rewriting -----------------------------------------------------------------------------------------


async def test_sequence_and_timestamp_rewritten_across_wrap_around() -> None:
    """Input and output both cross the 16-bit sequence and 32-bit timestamp wraps: steps are kept, mod 2^16/2^32."""
    track, link = downtrack("audio", {111: 109})
    track.last_sequence = 0xFFF8  # the player's numbering wraps after a few packets
    start_timestamp = 0xFFFFFF00 - 5 * 960
    track.timestamp_offset = (0xFFFFFD00 - start_timestamp) & 0xFFFFFFFF  # so does its clock
    first_sequence = 0xFFFB  # and so does the publisher's
    sent = [(first_sequence + i, start_timestamp + i * 960, bytes([i]) * 20) for i in range(16)]
    for sequence, timestamp, payload in sent:
        track.forward(111, 0, sequence & 0xFFFF, timestamp & 0xFFFFFFFF, payload, False, 0)
    received = link.packets()
    assert [p.payload for p in received] == [payload for _, _, payload in sent]
    assert {p.ssrc for p in received} == {link.ssrc}
    assert {p.payload_type for p in received} == {109}
    assert received[0].sequence_number == 0xFFF9
    assert_contiguous(received)
    assert any(p.sequence_number < 0x10 for p in received)  # the output wrapped
    for before, after in itertools.pairwise(received):
        assert (after.timestamp - before.timestamp) & 0xFFFFFFFF == 960
    assert received[0].timestamp > 0xF0000000 and received[-1].timestamp < 0x10000  # the output clock wrapped


async def test_marker_payload_type_and_sender_report() -> None:
    """The marker survives, unknown payload types are dropped, and sender reports carry what was sent."""
    track, link = downtrack("audio", {111: 109})
    track.forward(111, 1, 10, 1000, b"abc", False, 123456)
    track.forward(0, 0, 11, 1960, b"pcmu", False, 0)  # not negotiated with this player
    (packet,) = link.packets()
    assert packet.marker == 1 and packet.payload_type == 109
    assert link.reports == [(123456, packet.timestamp, 1, 3)]


async def test_reordered_packet_keeps_its_place() -> None:
    """A late packet is rewritten with the same offset and does not move the highest sequence back."""
    track, link = downtrack("audio", {111: 111})
    for sequence in (100, 102, 101, 103):
        track.forward(111, 0, sequence, sequence * 960, b"x", False, 0)
    numbers = [p.sequence_number for p in link.packets()]
    base = numbers[0]
    assert [(n - base) & 0xFFFF for n in numbers] == [0, 2, 1, 3]
    assert track.last_sequence == (base + 3) & 0xFFFF


# --- keyframe gating ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec_name", ["VP8", "H264"])
async def test_new_player_gets_nothing_before_a_keyframe(codec_name: str) -> None:
    """A player added mid-stream gets a PLI sent upstream and no packet until a keyframe starts."""
    codec = CODECS[codec_name]
    pt = codec.payloadType
    assert pt is not None
    key, inter = FRAME_STARTS[codec_name]
    source, upstream = ingest("video", [codec])
    await publish(source, [rtp(pt, 1, 0, key, marker=1), rtp(pt, 2, 3000, inter, marker=1)])
    track, link = downtrack("video", {pt: pt}, on_keyframe=source.request_keyframe)
    source.add(track)
    await settle()
    assert [p.media_ssrc for p in upstream.plis()] == [PUBLISHER_SSRC]
    await publish(source, [rtp(pt, 3, 6000, inter), rtp(pt, 4, 6000, b"\x00rest", marker=1)])
    assert link.sent == []
    frame = [rtp(pt, 5, 9000, key), rtp(pt, 6, 9000, b"\x00more", marker=1)]
    after = [rtp(pt, 7, 12000, inter, marker=1)]
    await publish(source, frame + after)
    received = link.packets()
    assert [p.payload for p in received] == [p.payload for p in frame + after]
    assert_contiguous(received)


async def test_audio_is_never_gated() -> None:
    """Audio has no keyframes: a new player gets the next packet, and no PLI is sent."""
    source, upstream = ingest("audio", [OPUS])
    await publish(source, [rtp(111, 1, 0, b"a")])
    track, link = downtrack("audio", {111: 111})
    source.add(track)
    await publish(source, [rtp(111, 2, 960, b"b")])
    await settle()
    assert [p.payload for p in link.packets()] == [b"b"]
    assert upstream.plis() == []


# --- mute and resume ------------------------------------------------------------------------------------------


async def test_mute_and_resume_leave_no_gap_for_the_player() -> None:
    """Publisher packets sent while muted are skipped; the player's sequence continues by one on resume."""
    key, inter = FRAME_STARTS["VP8"]
    source, upstream = ingest("video", [VP8], pli_interval=0.0)
    track, link = downtrack("video", {96: 96}, on_keyframe=source.request_keyframe)
    source.add(track)
    await publish(source, [rtp(96, 1, 0, key, marker=1), rtp(96, 2, 3000, inter, marker=1)])
    source.set_enabled(False)
    await publish(source, [rtp(96, s, s * 3000, inter, marker=1) for s in range(3, 50)])
    assert len(link.sent) == 2
    source.set_enabled(True)
    await settle()
    assert len(upstream.plis()) == 1  # resuming asks for a keyframe
    await publish(source, [rtp(96, 50, 150000, inter, marker=1)])  # not a keyframe: still held back
    assert len(link.sent) == 2
    await publish(source, [rtp(96, 51, 153000, key, marker=1), rtp(96, 52, 156000, inter, marker=1)])
    received = link.packets()
    assert len(received) == 4
    assert_contiguous(received)


async def test_audio_mute_and_resume_leave_no_gap() -> None:
    """Audio resumes at once, still without a sequence gap."""
    source, _ = ingest("audio", [OPUS])
    track, link = downtrack("audio", {111: 111})
    source.add(track)
    await publish(source, [rtp(111, s, s * 960, b"on") for s in range(1, 4)])
    source.set_enabled(False)
    await publish(source, [rtp(111, s, s * 960, b"muted") for s in range(4, 40)])
    source.set_enabled(True)
    await publish(source, [rtp(111, s, s * 960, b"on") for s in range(40, 43)])
    received = link.packets()
    assert [p.payload for p in received] == [b"on"] * 6
    assert_contiguous(received)


# --- NACK -----------------------------------------------------------------------------------------------------


def nack(track: DownTrack, lost: list[int]) -> RtcpRtpfbPacket:
    """A player's generic NACK for the DownTrack's SSRC."""
    return RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=0x01020304, media_ssrc=track.ssrc, lost=lost)


async def test_nack_answered_as_rtx_when_negotiated() -> None:
    """Each lost packet comes back as RTX: its own SSRC and payload type, the original sequence first."""
    key, _ = FRAME_STARTS["VP8"]
    track, link = downtrack("video", {96: 96}, rtx_payload_type=97)
    for sequence in range(10, 15):
        track.forward(96, 0, sequence, 3000, key + bytes([sequence]), True, 0)
    originals = link.packets()
    link.sent.clear()
    await track.handle_rtcp(nack(track, [originals[1].sequence_number, originals[3].sequence_number]))
    repairs = link.packets()
    assert [p.payload_type for p in repairs] == [97, 97]
    assert {p.ssrc for p in repairs} == {link.rtx_ssrc}
    assert (repairs[1].sequence_number - repairs[0].sequence_number) & 0xFFFF == 1
    for repair, original in zip(repairs, (originals[1], originals[3]), strict=True):
        assert int.from_bytes(repair.payload[:2], "big") == original.sequence_number
        assert repair.payload[2:] == original.payload
        assert repair.timestamp == original.timestamp


async def test_nack_answered_plain_without_rtx() -> None:
    """Without RTX the packet is sent again exactly as before."""
    track, link = downtrack("audio", {111: 111})
    for sequence in range(5):
        track.forward(111, 0, sequence, sequence * 960, bytes([sequence]), False, 0)
    wanted = link.sent[2]
    link.sent.clear()
    await track.handle_rtcp(nack(track, [RtpPacket.parse(wanted).sequence_number]))
    assert link.sent == [wanted]


async def test_a_packet_is_resent_at_most_once_per_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """A player behind a queue NACKs the same packet again before the first resend arrives: it is resent once per
    round trip only, not once per NACK."""
    track, link = downtrack("audio", {111: 111})
    for sequence in range(5):
        track.forward(111, 0, sequence, sequence * 960, bytes([sequence]), False, 0)
    wanted = RtpPacket.parse(link.sent[2]).sequence_number
    link.sent.clear()
    for _ in range(3):
        await track.handle_rtcp(nack(track, [wanted]))
    assert len(link.sent) == 1
    monkeypatch.setattr(forwarding, "RESEND_DEFAULT_RTT", 0.0)
    monkeypatch.setattr(forwarding, "RESEND_MIN_GAP", 0.0)
    await track.handle_rtcp(nack(track, [wanted]))
    assert len(link.sent) == 2


async def test_nack_for_unknown_sequence_is_ignored() -> None:
    """A sequence never sent, or already overwritten in the history, is not answered."""
    track, link = downtrack("video", {96: 96}, rtx_payload_type=97)
    key, _ = FRAME_STARTS["VP8"]
    for sequence in range(HISTORY_SIZE + 3):
        track.forward(96, 0, sequence, 0, key, True, 0)
    first = RtpPacket.parse(link.sent[0]).sequence_number
    newest = RtpPacket.parse(link.sent[-1]).sequence_number
    link.sent.clear()
    await track.handle_rtcp(nack(track, [first, (newest + 1) & 0xFFFF, (newest + 500) & 0xFFFF]))
    assert link.sent == []


# --- PLI rate limit -------------------------------------------------------------------------------------------


async def test_player_plis_are_rate_limited_upstream() -> None:
    """PLIs from three players within the interval: one PLI at once, one more (coalesced) after the interval."""
    key, _ = FRAME_STARTS["VP8"]
    interval = 2.0
    source, upstream = ingest("video", [VP8], pli_interval=interval)
    tracks = []
    for _ in range(3):
        track, _link = downtrack("video", {96: 96}, on_keyframe=source.request_keyframe)
        source.add(track)  # no PLI yet: the publisher's SSRC is not known before its first packet
        tracks.append(track)
    await publish(source, [rtp(96, 1, 0, key, marker=1)])
    assert upstream.plis() == []
    for track in tracks + tracks:
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=0x01020304, media_ssrc=track.ssrc)
        await track.handle_rtcp(pli)
    await settle()
    assert len(upstream.plis()) == 1
    deadline = time.monotonic() + interval + 10
    while len(upstream.plis()) < 2:
        assert time.monotonic() < deadline, "the coalesced PLI was never sent"
        await asyncio.sleep(0.05)
    await settle()
    assert [p.media_ssrc for p in upstream.plis()] == [PUBLISHER_SSRC, PUBLISHER_SSRC]
    source.close()


async def test_publisher_nack_and_rtx_unwrapping() -> None:
    """A gap in the publisher's video is NACKed upstream; its RTX repair reaches the player unwrapped."""
    key, inter = FRAME_STARTS["VP8"]
    link = CapturedReceiverLink("video", [VP8, VP8_RTX], rtx=True)
    source = Ingest("video", link, lambda _ingest: None, 1.0)
    track, player = downtrack("video", {96: 96})
    source.add(track)
    await publish(source, [rtp(96, 1, 0, key, marker=1), rtp(96, 3, 6000, inter, marker=1)])
    nacks = [p for p in link.rtcp if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK]
    assert [(p.media_ssrc, p.lost) for p in nacks] == [(PUBLISHER_SSRC, [2])]
    repair = RtpPacket(
        payload_type=97,
        marker=1,
        sequence_number=500,
        timestamp=3000,
        ssrc=PUBLISHER_RTX_SSRC,
        payload=(2).to_bytes(2, "big") + inter,
    )
    await publish(source, [repair])
    received = player.packets()
    assert [p.payload for p in received] == [key, inter, inter]
    numbers = [p.sequence_number for p in received]
    assert [(n - numbers[0]) & 0xFFFF for n in numbers] == [0, 2, 1]
    assert source.packet_loss() == (1, 3)  # counted on arrival; the RTX SSRC is left out


class CountingSet(set[int]):
    """A set that counts its ``add`` calls (the work a NACK generator does per packet)."""

    adds = 0

    def add(self, value: int) -> None:
        self.adds += 1
        super().add(value)


async def test_a_sequence_jump_costs_the_nack_generator_bounded_work() -> None:
    """A hostile publisher's sequence jump of 30,000 is a restart, not 30,000 missing packets: the relay's NACK
    state records at most the history it can ever repair and NACKs nothing it cannot."""
    key, inter = FRAME_STARTS["VP8"]
    link = CapturedReceiverLink("video", [VP8, VP8_RTX], rtx=True)
    source = Ingest("video", link, lambda _ingest: None, 1.0)
    generator = link.nack_generator
    generator.missing = CountingSet()
    await publish(source, [rtp(96, 1, 0, key, marker=1), rtp(96, 30_001, 3000, inter, marker=1)])
    assert generator.missing.adds <= HISTORY_SIZE
    assert generator.max_seq == 30_001
    await publish(source, [rtp(96, 30_003, 6000, inter, marker=1)])  # a real gap after the jump is still NACKed
    nacks = [p.lost for p in link.rtcp if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK]
    assert nacks[-1] == [30_002], nacks


# --- header extensions ----------------------------------------------------------------------------------------


async def test_audio_level_forwarded_under_the_players_id_and_read_at_the_relay() -> None:
    """The publisher's audio level (its id 1) reaches the player under the player's id (5); the relay reads it."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    source, _ = ingest("audio", [OPUS])
    levels: list[int] = []
    source.on_audio_level = levels.append
    link = CapturedSenderLink("audio")
    track = DownTrack("audio", link, {111: 111}, None, lambda: None, lambda _layer: None, extension_id=5)
    source.add(track)
    plain, _plain_link = downtrack("audio", {111: 111})  # a player that did not negotiate it
    source.add(plain)
    packet = rtp(111, 1, 960, b"opus")
    packet.extensions.audio_level = (True, 42)
    await publish(source, [packet])
    assert levels == [42]
    player_map = HeaderExtensionsMap()
    player_map.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=5, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level")]
        )
    )
    (received,) = [RtpPacket.parse(data, player_map) for data in link.sent]
    assert received.extensions.audio_level == (True, 42)
    assert received.payload == b"opus"
    assert _plain_link.packets()[0].extensions.audio_level is None
    assert len(_plain_link.sent[0]) == 12 + 4


async def test_rtx_of_an_extended_packet_keeps_the_extension_before_the_original_sequence() -> None:
    """RFC 4588 with a header extension: the OSN follows the extension, the payload follows the OSN."""
    key, _ = FRAME_STARTS["VP8"]
    link = CapturedSenderLink("video")
    track = DownTrack("video", link, {96: 96}, 97, lambda: None, lambda _layer: None, extension_id=3)
    track.forward(96, 1, 10, 3000, key, True, 0, 0, 0x123456)
    (sent,) = link.sent
    assert sent[0] & 0x10 and sent[12:20] == bytes([0xBE, 0xDE, 0, 1, 0x32, 0x12, 0x34, 0x56])  # abs-send-time
    original = RtpPacket.parse(sent)
    link.sent.clear()
    await track.handle_rtcp(nack(track, [original.sequence_number]))
    (raw,) = link.sent
    assert raw[12:17] == sent[12:17]  # the same extension, its abs-send-time stamped anew (a sender's retransmission)
    assert raw[17:20] != sent[17:20]
    repair = RtpPacket.parse(raw)
    assert repair.ssrc == link.rtx_ssrc and repair.payload_type == 97
    assert int.from_bytes(repair.payload[:2], "big") == original.sequence_number
    assert repair.payload[2:] == key
