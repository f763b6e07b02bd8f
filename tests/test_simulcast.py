"""Simulcast without sockets: SDP answers, SSRC-to-layer mapping, layer switching and the VP8 rewrite.

The real Ingest and DownTrack classes are fed hand-built packets of a three-layer publisher (as in
tests/test_forwarding.py); what a player would receive is parsed back and checked for one continuous stream.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpRtpfbPacket, RtpPacket

from media_relay import forwarding
from media_relay.forwarding import DownTrack, Ingest
from media_relay.recovery import retry_nacks
from media_relay.simulcast import (
    MAX_LAYERS,
    RID_URI,
    answer_layers,
    layer_for,
    offered_extensions,
    offered_layers,
    quality_of,
    vp8_descriptor,
)
from tests.test_forwarding import (
    H264,
    VP8,
    VP8_RTX,
    CapturedReceiverLink,
    CapturedSenderLink,
    assert_contiguous,
    settle,
)

RIDS = ["q", "h", "f"]
SSRCS = [0x1000, 0x2000, 0x3000]
RTX_SSRCS = [0x1001, 0x2001, 0x3001]
TIMESTAMP_BASES = [0x10000000, 0x70000000, 0xFFFFF000]  # each layer has its own clock; one wraps soon
PICTURE_BASES = [5, 20000, 0x7FFD]  # each layer has its own picture ids; one wraps soon
TL0_BASES = [0, 100, 0xFE]

OFFER = """v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
m=audio 9 UDP/TLS/RTP/SAVPF 111
a=mid:0
a=rid:x send
a=simulcast:send x;y
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
m=video 9 UDP/TLS/RTP/SAVPF 96 97
a=mid:1
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=sendonly
a=rid:q send
a=rid:h send
a=rid:f send
a=rid:z send
a=simulcast:send q;~h;f,z;z;w
"""


# --- SDP ------------------------------------------------------------------------------------------------------


def test_simulcast_offer_read_and_answered() -> None:
    """Video rids come out lowest first (paused marks dropped, undeclared rids and extra streams refused), and
    the answer gets the receive side in that section only; audio "simulcast" is ignored."""
    layers = offered_layers(OFFER)
    assert layers == {"1": ["q", "h", "f"]}
    assert len(layers["1"]) <= MAX_LAYERS
    assert offered_extensions(OFFER, "1")[RID_URI] == 10
    answer = OFFER.replace("a=sendonly", "a=recvonly").replace("\n", "\r\n")
    answered = answer_layers(answer, layers)
    video = answered.split("m=video")[1]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;f\r\n" in video
    assert "recv" not in answered.split("m=video")[0].replace("a=recvonly", "")
    assert answer_layers(answer, {}) == answer


def test_a_simulcast_answer_sets_the_browsers_start_bitrate() -> None:
    """The answered simulcast video's codecs (RTX aside) carry x-google-start-bitrate; other sections do not."""
    answer = (
        "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n"
        "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\n"
        "a=fmtp:102 packetization-mode=1\r\n"
    )
    lines = answer_layers(answer, {"1": ["q", "h"]}, start_kbps=1000).split("\r\n")
    assert "a=fmtp:102 packetization-mode=1;x-google-start-bitrate=1000" in lines
    assert "a=fmtp:96 x-google-start-bitrate=1000" in lines
    assert "a=fmtp:97 apt=96" in lines and "a=fmtp:111 minptime=10" in lines
    assert lines[-3:] == ["a=rid:h recv", "a=simulcast:recv q;h", ""]
    assert "x-google" not in answer_layers(answer, {"1": ["q", "h"]})


def test_no_simulcast_without_the_rid_extension_or_with_one_layer() -> None:
    """Without rtp-stream-id the layers could not be told apart; one rid is no simulcast."""
    assert offered_layers(OFFER.replace("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\n", "")) == {}
    assert offered_layers(OFFER.replace("a=simulcast:send q;~h;f,z;z;w", "a=simulcast:send q")) == {}


def test_quality_names() -> None:
    """Three layers are low/medium/high; "auto" and "high" allow the top; one layer is "high"."""
    assert [quality_of(i, 3) for i in range(3)] == ["low", "medium", "high"]
    assert [quality_of(i, 2) for i in range(2)] == ["low", "high"]
    assert quality_of(0, 1) == "high"
    assert [layer_for(q, 3) for q in ("low", "medium", "high", "auto")] == [0, 1, 2, 2]
    assert layer_for("medium", 2) == 0 and layer_for("high", 2) == 1


# --- a three-layer publisher ----------------------------------------------------------------------------------


def vp8_payload(picture_id: int, tl0: int, key: bool, start: bool = True) -> bytes:
    """A VP8 payload with a 15-bit picture id, TL0PICIDX and TID byte; a keyframe or inter frame start."""
    descriptor = bytes([0x90 if start else 0x80, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0, 0x00])
    body = b"\x00\x9d\x01\x2a" if key else b"\x01\x00\x00"
    return descriptor + (body if start else b"\x55\x55")


def h264_payload(key: bool) -> bytes:
    return bytes([0x65, 0x88, 0x84]) if key else bytes([0x41, 0x9A, 0x00])


class Publisher:
    """Three layers of one camera, frame by frame: each layer's own SSRC, sequence, clock and picture ids."""

    def __init__(self, codec_name: str = "VP8") -> None:
        self.codec_name = codec_name
        self.frame = 0
        self.sequences = [100, 30000, 0xFFF0]  # the third wraps soon

    def packets(self, layer: int, key: bool, rid: bool = False, per_frame: int = 2) -> list[RtpPacket]:
        """One frame of a layer (``per_frame`` packets); ``rid``: carry the rtp-stream-id extension."""
        result = []
        for part in range(per_frame):
            if self.codec_name == "VP8":
                payload = vp8_payload(
                    (PICTURE_BASES[layer] + self.frame) & 0x7FFF,
                    (TL0_BASES[layer] + self.frame) & 0xFF,
                    key,
                    start=part == 0,
                )
                payload_type = 96
            else:
                payload = h264_payload(key) if part == 0 else bytes([0x41, 0x00])
                payload_type = 102
            packet = RtpPacket(
                payload_type=payload_type,
                marker=int(part == per_frame - 1),
                sequence_number=self.sequences[layer] & 0xFFFF,
                timestamp=(TIMESTAMP_BASES[layer] + self.frame * 3000) & 0xFFFFFFFF,
                ssrc=SSRCS[layer],
                payload=payload,
            )
            if rid:
                packet.extensions.rtp_stream_id = RIDS[layer]
            self.sequences[layer] += 1
            result.append(packet)
        return result

    def frame_of_all(self, keys: tuple[bool, bool, bool] = (False, False, False), rid: bool = False) -> list[RtpPacket]:
        """The next frame on all three layers (as a browser sends them, interleaved by layer)."""
        packets = [p for layer in range(3) for p in self.packets(layer, keys[layer], rid)]
        self.frame += 1
        return packets


async def feed(ingest: Ingest, packets: list[RtpPacket]) -> None:
    for packet in packets:
        await ingest.handle_rtp(packet, 0)


async def simulcast_ingest(codec_name: str = "VP8") -> tuple[Ingest, CapturedReceiverLink, Publisher]:
    """An Ingest of a three-layer publisher whose SSRCs were learnt from a first keyframe on every layer."""
    codec = VP8 if codec_name == "VP8" else H264
    link = CapturedReceiverLink("video", [codec, VP8_RTX] if codec_name == "VP8" else [codec])
    ingest = Ingest("video", link, lambda _ingest: None, 0.0, rids=RIDS)
    publisher = Publisher(codec_name)
    await feed(ingest, publisher.frame_of_all((True, True, True), rid=True))
    return ingest, link, publisher


def player(ingest: Ingest, target: int) -> tuple[DownTrack, CapturedSenderLink, list[int]]:
    """A player's DownTrack on ``ingest`` aiming at ``target``, and the layers it reports switching to."""
    link = CapturedSenderLink("video")
    pt = 96 if ingest.codec is None or ingest.codec.name == "VP8" else 102
    track = DownTrack("video", link, {pt: pt}, None, lambda: None, ingest.request_keyframe)
    switches: list[int] = []
    track.on_layer = switches.append
    track.target = target
    ingest.add(track)
    return track, link, switches


def picture_ids(packets: list[RtpPacket]) -> list[int]:
    return [((p.payload[2] & 0x7F) << 8) | p.payload[3] for p in packets]


def assert_one_stream(packets: list[RtpPacket], ssrc: int) -> None:
    """One SSRC, sequence +1 each packet, timestamps never going back, picture ids and TL0PICIDX +1 per frame."""
    assert {p.ssrc for p in packets} == {ssrc}
    assert_contiguous(packets)
    for before, after in itertools.pairwise(packets):
        step = (after.timestamp - before.timestamp) & 0xFFFFFFFF
        assert step < 0x80000000, (before, after)
        if after.payload[0] & 0x10 and after.payload_type == 96:  # a new VP8 frame
            assert step > 0
            pid_before, pid_after = picture_ids([before, after])
            assert (pid_after - pid_before) & 0x7FFF == 1, (pid_before, pid_after)
            assert (after.payload[4] - before.payload[4]) & 0xFF == 1


# --- layer mapping --------------------------------------------------------------------------------------------


async def test_ssrcs_are_mapped_by_rid_and_strangers_keep_no_state() -> None:
    """Each SSRC is learnt from its rid; an SSRC without a declared rid is dropped without any state."""
    ingest, link, publisher = await simulcast_ingest()
    assert ingest.layer_map is not None
    assert {layer.rid: layer.ssrc for layer in ingest.layer_map.layers} == dict(zip(RIDS, SSRCS, strict=True))
    for ssrc in range(0x9000, 0x9000 + 200):
        stranger = publisher.packets(0, True)[0]
        stranger.ssrc = ssrc
        await ingest.handle_rtp(stranger, 0)
        unknown = publisher.packets(1, True)[0]
        unknown.ssrc = ssrc + 1000
        unknown.extensions.rtp_stream_id = "nope"
        await ingest.handle_rtp(unknown, 0)
    assert set(link.remote_streams) == set(SSRCS)
    assert len(ingest.layer_map.media) == 3 and not ingest.layer_map.rtx
    restarted = publisher.packets(2, True, rid=True)[0]
    restarted.ssrc = 0x3333
    await ingest.handle_rtp(restarted, 0)
    assert ingest.layer_map.layers[2].ssrc == 0x3333
    assert set(link.remote_streams) == {SSRCS[0], SSRCS[1], 0x3333}


async def test_layer_rtx_is_mapped_by_repaired_rid_and_unwrapped() -> None:
    """A layer's RTX SSRC is learnt from repaired-rtp-stream-id; its repairs reach the players of that layer."""
    ingest, _upstream, publisher = await simulcast_ingest()
    _track, link, _ = player(ingest, 1)
    await feed(ingest, publisher.frame_of_all((False, True, False)))
    lost = publisher.packets(1, False)  # the middle layer's next frame: its first packet is lost
    await feed(ingest, lost[1:])
    repair = RtpPacket(
        payload_type=97,
        marker=lost[0].marker,
        sequence_number=7,
        timestamp=lost[0].timestamp,
        ssrc=RTX_SSRCS[1],
        payload=lost[0].sequence_number.to_bytes(2, "big") + lost[0].payload,
    )
    repair.extensions.repaired_rtp_stream_id = "h"
    await ingest.handle_rtp(repair, 0)
    assert ingest.layer_map is not None and ingest.layer_map.rtx == {RTX_SSRCS[1]: ingest.layer_map.layers[1]}
    received = link.packets()
    assert received[-1].payload == lost[0].payload
    assert ingest.packet_loss()[1] > 0


# --- switching ------------------------------------------------------------------------------------------------


async def test_switch_up_waits_for_a_keyframe_of_the_target_and_asks_for_one() -> None:
    """A player on the low layer asked for the top one: a PLI goes to the top layer's SSRC, the low layer keeps
    flowing until the top layer's keyframe, then only the top layer -- as one continuous stream."""
    ingest, upstream, publisher = await simulcast_ingest()
    track, link, switches = player(ingest, 0)
    await feed(ingest, publisher.frame_of_all((True, False, False)))
    for _ in range(3):
        await feed(ingest, publisher.frame_of_all())
    assert switches == [0]
    await settle()
    upstream.rtcp.clear()
    track.set_target(2)
    await settle()
    assert [p.media_ssrc for p in upstream.plis()] == [SSRCS[2]]
    await feed(ingest, publisher.frame_of_all((False, True, False)))  # a keyframe, of the wrong layer
    assert track.layer == 0
    await feed(ingest, publisher.frame_of_all((False, False, True)))
    assert track.layer == 2 and switches == [0, 2]
    for _ in range(3):
        await feed(ingest, publisher.frame_of_all())
    received = link.packets()
    assert len(received) == 2 * 10  # the switching frame twice: low (before the top keyframe), then top
    assert_one_stream(received, link.ssrc)
    top = vp8_descriptor(received[-1].payload)
    assert top[0] == 2  # same descriptor layout as sent


async def test_switch_down_only_at_a_keyframe_of_the_lower_layer() -> None:
    """Down from the top layer to the middle one at the middle layer's keyframe, with no gap; then back up."""
    ingest, _, publisher = await simulcast_ingest()
    track, link, switches = player(ingest, 2)
    await feed(ingest, publisher.frame_of_all((False, False, True)))
    track.set_target(1)
    await feed(ingest, publisher.frame_of_all())
    await feed(ingest, publisher.frame_of_all((True, False, False)))
    assert track.layer == 2
    await feed(ingest, publisher.frame_of_all((False, True, False)))
    assert track.layer == 1
    track.set_target(2)
    for _ in range(300):  # long enough for the top layer's picture id, TL0PICIDX, sequence and clock to wrap
        await feed(ingest, publisher.frame_of_all())
    await feed(ingest, publisher.frame_of_all((False, False, True)))
    await feed(ingest, publisher.frame_of_all())
    assert switches == [2, 1, 2]
    received = link.packets()
    assert len(received) == 2 * 307  # switching up, that frame comes from both layers (down: from the new one)
    assert_one_stream(received, link.ssrc)


async def test_late_packets_of_the_new_layer_are_dropped() -> None:
    """A packet of the new layer older than its keyframe (reordered) is not forwarded: its number is taken."""
    ingest, _, publisher = await simulcast_ingest()
    track, link, _ = player(ingest, 0)
    await feed(ingest, publisher.frame_of_all((True, False, False)))
    track.set_target(1)
    early = publisher.packets(1, False)
    key = publisher.packets(1, True)
    await feed(ingest, key + early)
    received = link.packets()
    assert [p.payload[5:] for p in received[-2:]] == [k.payload[5:] for k in key]  # picture ids rewritten
    assert_one_stream(received, link.ssrc)


async def test_a_keyframe_whose_first_packet_comes_last_still_switches_whole() -> None:
    """The target layer's keyframe with its first packet lost and repaired after the rest (and after the next
    frame): the switch happens at the repaired packet, and what came before it of the new layer follows it, in
    order, so the player gets the whole keyframe."""
    ingest, _, publisher = await simulcast_ingest()
    track, link, switches = player(ingest, 0)
    await feed(ingest, publisher.frame_of_all((True, False, False)))
    track.set_target(1)
    key = publisher.packets(1, True, per_frame=3)
    publisher.frame += 1
    after = publisher.packets(1, False)
    await feed(ingest, key[1:] + after)
    assert track.layer == 0
    await feed(ingest, key[:1])
    assert track.layer == 1 and switches == [0, 1]
    received = link.packets()
    assert [p.payload[6:] for p in received[-5:]] == [p.payload[6:] for p in key + after]
    assert_one_stream(received, link.ssrc)


async def test_a_pending_switch_asks_again_for_a_keyframe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keyframe request (or the keyframe) may be lost: while the target layer's packets come without one, the
    DownTrack asks again, every KEYFRAME_RETRY seconds."""
    monkeypatch.setattr(forwarding, "KEYFRAME_RETRY", 0.0)
    ingest, upstream, publisher = await simulcast_ingest()
    track, _, _ = player(ingest, 0)
    await feed(ingest, publisher.frame_of_all((True, False, False)))
    await settle()
    upstream.rtcp.clear()
    track.set_target(2)
    for _ in range(3):
        await feed(ingest, publisher.frame_of_all())
        await settle()
    assert [p.media_ssrc for p in upstream.plis()] == [SSRCS[2]] * 7  # the first request, then one per packet
    await feed(ingest, publisher.frame_of_all((False, False, True)))
    await settle()
    upstream.rtcp.clear()
    await feed(ingest, publisher.frame_of_all())
    await settle()
    assert track.layer == 2 and not upstream.plis()


async def test_layer_bitrates_count_media_only() -> None:
    """A layer's measured rate leaves its RTX out: the publisher's own bandwidth probes travel as RTX."""
    ingest, _, publisher = await simulcast_ingest()
    assert ingest.layer_map is not None
    ingest.measure(0.0)
    media = 0
    for _ in range(10):
        packets = publisher.frame_of_all()
        media += sum(len(p.payload) for p in packets if p.ssrc == SSRCS[0])
        await feed(ingest, packets)
        for index, packet in enumerate(packets[:2]):  # padding: old packets of the low layer, again, as RTX
            repair = RtpPacket(payload_type=97, sequence_number=index, timestamp=packet.timestamp,
                               ssrc=RTX_SSRCS[0], payload=packet.sequence_number.to_bytes(2, "big") + packet.payload)
            repair.extensions.repaired_rtp_stream_id = "q"
            await ingest.handle_rtp(repair, 0)
    ingest.measure(1.0)
    assert ingest.layer_bitrates()[0] == media * 8


async def test_the_relay_asks_each_layer_again_for_what_it_misses() -> None:
    """A layer's lost packet is NACKed again every interval, on that layer's SSRC (the publisher's leg is repaired
    per layer, as for a single stream)."""
    ingest, upstream, publisher = await simulcast_ingest()
    await feed(ingest, publisher.frame_of_all())
    frame = publisher.frame_of_all()
    await feed(ingest, [p for p in frame if p.ssrc != SSRCS[1] or p.marker])  # the middle layer's first lost
    lost = next(p.sequence_number for p in frame if p.ssrc == SSRCS[1] and not p.marker)

    def nacks() -> list[tuple[int, list[int]]]:
        return [(p.media_ssrc, p.lost) for p in upstream.rtcp if isinstance(p, RtcpRtpfbPacket)]

    retries = asyncio.ensure_future(retry_nacks(ingest, interval=0.02))
    try:
        for _ in range(100):
            if len(nacks()) >= 3:
                break
            await asyncio.sleep(0.01)
        assert nacks()[:3] == [(SSRCS[1], [lost])] * 3
    finally:
        retries.cancel()


async def test_h264_layers_switch_with_continuous_sequence_and_timestamps() -> None:
    """H.264 has no picture id: sequence and timestamps are what is kept continuous."""
    ingest, _upstream, publisher = await simulcast_ingest("H264")
    track, link, switches = player(ingest, 0)
    await feed(ingest, publisher.frame_of_all((True, False, False)))
    track.set_target(2)
    await feed(ingest, publisher.frame_of_all())
    await feed(ingest, publisher.frame_of_all((False, False, True)))
    await feed(ingest, publisher.frame_of_all())
    assert switches == [0, 2]
    received = link.packets()
    assert len(received) == 2 * 5  # the switching frame from both layers
    assert_one_stream(received, link.ssrc)
    assert received[6].payload == h264_payload(True)


async def test_a_player_pli_asks_its_own_layer() -> None:
    """A player's PLI is passed to the publisher for the SSRC of the layer that player gets."""
    ingest, upstream, publisher = await simulcast_ingest()
    track, _, _ = player(ingest, 1)
    await feed(ingest, publisher.frame_of_all((False, True, False)))
    await settle()
    upstream.rtcp.clear()
    await track.handle_rtcp(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=track.ssrc))
    await settle()
    assert [p.media_ssrc for p in upstream.plis()] == [SSRCS[1]]


async def test_only_the_top_layer_is_recorded() -> None:
    """Sinks (a recorder) get one layer, the top one, untouched."""
    ingest, _, publisher = await simulcast_ingest()
    written: list[RtpPacket] = []

    class Sink:
        def write(self, kind: str, codec: object, packet: RtpPacket) -> None:
            written.append(packet)

    ingest.sinks.append(Sink())
    await feed(ingest, publisher.frame_of_all())
    assert {p.ssrc for p in written} == {SSRCS[2]} and len(written) == 2


# --- dynacast -------------------------------------------------------------------------------------------------


class Player:
    """What a Publication asks of its playbacks for dynacast: the wanted quality of their video."""

    def __init__(self, quality: str) -> None:
        self.chooser_quality = {"video": quality}


async def test_dynacast_wants_the_layers_up_to_the_highest_wanted_quality() -> None:
    """Nobody playing: only the lowest layer; then up to the best any player wants (or the top when recorded)."""
    from media_relay.peers import Publication

    async def nothing(*_args: object) -> None:
        return None

    wanted: list[set[str]] = []
    publication = Publication("s", 1, 1, nothing, nothing, on_layers_wanted=wanted.append)
    try:
        publication.rids = list(RIDS)
        publication.ingests["video"] = Ingest("video", CapturedReceiverLink("video", [VP8]), lambda _i: None, 1.0, RIDS)
        publication.update_layers_wanted()
        low, high = Player("low"), Player("auto")
        publication.playbacks.add(low)  # type: ignore[arg-type]
        publication.update_layers_wanted()
        publication.update_layers_wanted()  # no change, no call
        publication.playbacks.add(high)  # type: ignore[arg-type]
        publication.update_layers_wanted()
        publication.playbacks.discard(high)  # type: ignore[arg-type]
        publication.update_layers_wanted()
        publication.ingests["video"].sinks.append(object())  # type: ignore[arg-type]
        publication.update_layers_wanted()
        assert wanted == [{"q"}, {"q", "h", "f"}, {"q"}, {"q", "h", "f"}]
    finally:
        await publication.close()
