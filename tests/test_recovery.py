"""Loss recovery without sockets: the SDK's bounded jitter-buffer wait (roomapi/recovery.py)."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from roomapi.recovery import RecoveringJitterBuffer


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def packet(sequence: int, timestamp: int, marker: bool = False) -> RtpPacket:
    item = RtpPacket(payload_type=96, sequence_number=sequence, timestamp=timestamp, marker=int(marker))
    item._data = bytes([sequence & 0xFF])  # type: ignore[attr-defined]
    return item


def frame_packets(first: int, timestamp: int, count: int = 3) -> list[RtpPacket]:
    return [packet(first + i, timestamp, marker=i == count - 1) for i in range(count)]


def feed(buffer: RecoveringJitterBuffer, packets: list[RtpPacket]) -> list[tuple[bool, int | None]]:
    results = []
    for item in packets:
        pli, frame = buffer.add(item)
        results.append((pli, frame.timestamp if frame is not None else None))
    return results


def test_a_repaired_packet_in_time_completes_its_frame_without_a_keyframe_request() -> None:
    """The missing packet arrives (retransmitted) before the limit: every frame is decoded, no PLI."""
    clock = Clock()
    buffer = RecoveringJitterBuffer(give_up=0.3, clock=clock)
    first, second, third = frame_packets(0, 1000), frame_packets(3, 2000), frame_packets(6, 3000)
    feed(buffer, first)
    feed(buffer, [second[0], second[2]])  # second[1] lost
    clock.now += 0.1
    results = feed(buffer, third[:1])
    clock.now += 0.1
    results += feed(buffer, [second[1]])  # the retransmission
    assert not any(pli for pli, _ in results)
    assert (False, 2000) in results
    assert buffer.frames_dropped == 0


def test_an_unrecoverable_frame_is_dropped_after_the_limit_with_one_keyframe_request() -> None:
    """The missing packet never comes: after ``give_up`` the broken frame goes, the next one decodes, PLI once."""
    clock = Clock()
    buffer = RecoveringJitterBuffer(give_up=0.3, clock=clock)
    frames = [frame_packets(3 * i, 1000 * (i + 1)) for i in range(6)]
    feed(buffer, frames[0])
    results = feed(buffer, [frames[1][0], frames[1][2]])  # frames[1][1] lost for good
    clock.now += 0.1
    results += feed(buffer, frames[2])
    clock.now += 0.25  # 0.35 s since the frame blocked
    results += feed(buffer, frames[3])
    results += feed(buffer, frames[4] + frames[5])
    assert sum(1 for pli, _ in results if pli) == 1
    decoded = [ts for _, ts in results if ts is not None]
    assert 2000 not in decoded
    assert decoded == [1000, 3000, 4000, 5000], decoded
    assert buffer.frames_dropped == 1


def test_high_jitter_waits_longer_before_giving_up() -> None:
    """The wait grows with the stream's arrival jitter (a late packet is not a lost one)."""
    clock = Clock()
    buffer = RecoveringJitterBuffer(give_up=0.3, jitter=lambda: 0.2, clock=clock)
    assert buffer.wait_limit() == 0.8
    frames = [frame_packets(3 * i, 1000 * (i + 1)) for i in range(4)]
    feed(buffer, frames[0])
    feed(buffer, [frames[1][0], frames[1][2]])
    clock.now += 0.5
    results = feed(buffer, frames[2])
    clock.now += 0.1
    results += feed(buffer, frames[3])
    assert not any(pli for pli, _ in results) and buffer.frames_dropped == 0


# --- the relay's NACK retries to publishers (media_relay/recovery.py) -------------------------------------------


async def test_relay_asks_again_for_a_missing_packet_until_it_arrives() -> None:
    """A lost publisher packet is NACKed again every interval (not only at the next gap), and no more once repaired."""
    import asyncio

    from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket

    from media_relay.forwarding import Ingest
    from media_relay.recovery import retry_nacks
    from tests.test_forwarding import FRAME_STARTS, PUBLISHER_RTX_SSRC, VP8, VP8_RTX, CapturedReceiverLink, publish, rtp

    key, inter = FRAME_STARTS["VP8"]
    link = CapturedReceiverLink("video", [VP8, VP8_RTX], rtx=True)
    source = Ingest("video", link, lambda _ingest: None, 1.0)

    def nacks() -> list[list[int]]:
        return [p.lost for p in link.rtcp if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK]

    await publish(source, [rtp(96, 1, 0, key, marker=1), rtp(96, 3, 6000, inter, marker=1)])
    assert nacks() == [[2]]
    retries = asyncio.ensure_future(retry_nacks(source, interval=0.02))
    try:
        for _ in range(100):
            if len(nacks()) >= 3:
                break
            await asyncio.sleep(0.01)
        assert nacks()[:3] == [[2], [2], [2]]
        repair = RtpPacket(payload_type=97, marker=1, sequence_number=9, timestamp=3000, ssrc=PUBLISHER_RTX_SSRC,
                           payload=(2).to_bytes(2, "big") + inter)
        await publish(source, [repair])
        settled = len(nacks())
        await asyncio.sleep(0.1)
        assert len(nacks()) <= settled + 1  # at most one retry was already on its way
    finally:
        retries.cancel()
        source.close()


def test_audio_conceals_a_lost_packet_at_once() -> None:
    """A lost audio packet is repeated over at once: no frame around it is lost, unlike aiortc's buffer."""
    from aiortc.jitterbuffer import JitterBuffer

    from roomapi.recovery import AudioJitterBuffer

    def play(buffer: JitterBuffer) -> list[int]:
        out = []
        for sequence in range(60):
            if sequence in (10, 30, 31):  # lost
                continue
            _, frame = buffer.add(packet(sequence, sequence * 960))
            if frame is not None:
                out.append(frame.timestamp // 960)
        return out

    ours, aiortcs = play(AudioJitterBuffer()), play(JitterBuffer(capacity=16, prefetch=4))
    assert ours == list(range(len(ours))) and len(ours) >= 60 - 8  # concealed in place; the prefetch at the end
    assert len(aiortcs) < len(ours) - 10  # aiortc drops the frames queued before each hole


def test_a_player_without_a_keyframe_asks_again_until_one_decodes() -> None:
    """VP8 frames that are all deltas (the keyframe's start was lost): a PLI every second, none once a key arrives."""
    clock = Clock()
    buffer = RecoveringJitterBuffer(clock=clock, codec_name=lambda payload_type: "VP8")

    def vp8(sequence: int, timestamp: int, key: bool) -> RtpPacket:
        item = packet(sequence, timestamp, marker=True)
        item._data = bytes([0x00 if key else 0x01, 0x00])  # type: ignore[attr-defined]  # the frame tag's P bit
        return item

    plis = []
    for number in range(90):  # 3 s of delta frames at 30 fps
        pli, _ = buffer.add(vp8(number, number * 3000, key=False))
        plis.append(pli)
        clock.now += 1 / 30
    assert sum(plis) == 2 and buffer.awaiting_keyframe  # after 1 s and 2 s, not at every frame
    for number in range(90, 100):
        pli, _ = buffer.add(vp8(number, number * 3000, key=number == 90))
        clock.now += 1 / 30
    assert not buffer.awaiting_keyframe
    later = []
    for number in range(100, 160):
        pli, _ = buffer.add(vp8(number, number * 3000, key=False))
        later.append(pli)
        clock.now += 1 / 30
    assert not any(later)
