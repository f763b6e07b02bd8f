"""Loss recovery for played video: aiortc's receiver, made to recover the way a browser's does.

aiortc (1.16) NACKs a lost packet once, when the gap is first seen, and only asks again when a newer
gap appears; its video jitter buffer then waits for the packet until 512 newer ones have arrived (seconds
of frozen picture) before it gives up and asks for a keyframe.  :func:`install` gives a receiver

- NACK retries: every ``NACK_RETRY_SECONDS`` the packets still missing are asked for again (aiortc's own
  generator forgets them after 128 newer packets);
- for audio (never retransmitted), a lost packet concealed (repeated) as soon as two newer ones wait,
  instead of aiortc's wait for 16 that also drops the frames queued before the hole;
- keyframe requests until the first keyframe decodes (and again after a frame was given up on), once
  per ``KEYFRAME_RETRY_SECONDS`` (longer when the arrival jitter is high): aiortc asks once, and a player
  whose first keyframe lost its start never decodes anything (the publisher sends keyframes only on request);
- a bounded wait: when the oldest incomplete frame has waited ``give_up`` seconds (longer when the
  stream's arrival jitter is high) its packets are dropped, decoding resumes at the next frame and one
  PLI asks the publisher for a keyframe.

With aiortc's own PLI on a decoder error, those are the only keyframe requests a player makes: never one per
lost packet, so the relay sees no PLI storm.

This is the SDK's only use of aiortc's private receiver state; it is version-checked and does nothing
(with a warning) on an aiortc it was not written for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add, uint16_gt

logger = logging.getLogger(__name__)

SUPPORTED_AIORTC = "1.16.0"
NACK_RETRY_SECONDS = 0.05
GIVE_UP_SECONDS = 0.3
"""The least time an incomplete frame is waited for (NACK retries have several round trips to repair it)."""
JITTER_FACTOR = 4.0
"""The wait grows to this many times the stream's interarrival jitter when that is longer."""
KEYFRAME_RETRY_SECONDS = 1.0
"""A player that has nothing decodable asks for a keyframe again after this long (longer with high jitter)."""
VIDEO_CLOCK = 90_000
_PREFIX = "_RTCRtpReceiver__"


class RecoveringJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer with a bounded wait for missing packets (see the module docstring)."""

    def __init__(
        self,
        capacity: int = 512,
        give_up: float = GIVE_UP_SECONDS,
        jitter: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
        codec_name: Callable[[int], str] = lambda payload_type: "",
    ) -> None:
        super().__init__(capacity=capacity, is_video=True)
        self.codec_name = codec_name
        """The codec name (``"VP8"``, ``"H264"``) of a payload type; keyframes are recognised for those."""
        self.awaiting_keyframe = True
        """No keyframe decoded since the start or the last frame given up on: ask again every KEYFRAME_RETRY."""
        self._last_request: float | None = None
        self.give_up = give_up
        self.jitter = jitter
        """The stream's current interarrival jitter in seconds."""
        self.clock = clock
        self.blocked_since: float | None = None
        self._newest: int | None = None
        self.frames_dropped = 0
        """Incomplete frames given up on."""

    def wait_limit(self) -> float:
        """How long an incomplete frame is waited for now."""
        return max(self.give_up, JITTER_FACTOR * self.jitter())

    def keyframe_retry(self) -> float:
        """How long to wait for a requested keyframe before asking again."""
        return max(KEYFRAME_RETRY_SECONDS, JITTER_FACTOR * self.jitter())

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = self._add(packet)
        now = self.clock()
        if frame is not None and self.awaiting_keyframe:
            self.awaiting_keyframe = not is_keyframe(self.codec_name(packet.payload_type), frame.data)
        if pli_flag:
            self.awaiting_keyframe = True
            self._last_request = now
        elif self.awaiting_keyframe:
            # Nothing decodable yet (the start of the first keyframe never came, or its repair was
            # given up on): the publisher sends keyframes only when asked, so ask again.
            if self._last_request is None:
                self._last_request = now
            elif now - self._last_request >= self.keyframe_retry():
                self._last_request = now
                pli_flag = True
        return pli_flag, frame

    def _add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._newest is None or uint16_gt(packet.sequence_number, self._newest):
            self._newest = packet.sequence_number
        pli_flag, frame = super().add(packet)
        gap = self._blocking_gap() if frame is None else None
        if gap is None:
            self.blocked_since = None
            return pli_flag, frame
        now = self.clock()
        if self.blocked_since is None:
            self.blocked_since = now
            return pli_flag, None
        if now - self.blocked_since < self.wait_limit():
            return pli_flag, None
        self.blocked_since = None
        complete = self._take_complete(gap)
        if complete is not None:
            gap = 0
        if not self._skip_through_frame_end(gap):
            return pli_flag, complete
        self.frames_dropped += 1
        return True, complete if complete is not None else self._remove_frame(packet.sequence_number)

    def _slot(self, offset: int) -> RtpPacket | None:
        assert self._origin is not None
        return self._packets[(self._origin + offset) % self._capacity]

    def _blocking_gap(self) -> int | None:
        """The offset from the oldest packet of the first missing one, when newer packets wait behind it."""
        if self._origin is None or self._newest is None:
            return None
        if uint16_gt(self._origin, self._newest):  # everything up to the newest packet was consumed or reset
            self._newest = self._origin
        span = min(uint16_add(self._newest, -self._origin), self._capacity - 1)
        for offset in range(span):
            if self._slot(offset) is None:
                return offset
        return None

    def _take_complete(self, gap: int) -> JitterFrame | None:
        """The frame before ``gap`` when it ended (marker) right before it: only its successor is broken."""
        if gap == 0:
            return None
        last = self._slot(gap - 1)
        if last is None or not last.marker:
            return None
        packets = [self._slot(offset) for offset in range(gap)]
        frame = JitterFrame(data=b"".join(p._data for p in packets if p is not None),  # type: ignore[attr-defined]
                            timestamp=packets[0].timestamp if packets[0] is not None else last.timestamp)
        self.remove(gap)
        return frame

    def _skip_through_frame_end(self, gap: int) -> bool:
        """Drop the broken frame: every packet up to the first end of frame (marker bit) after ``gap``."""
        for offset in range(gap, self._capacity):
            slot = self._slot(offset)
            if slot is not None and slot.marker:
                self.remove(offset + 1)
                return True
        return False


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """True when a depayloaded frame of ``codec_name`` is a keyframe (any frame of another codec counts)."""
    if codec_name == "VP8":
        return bool(data) and not data[0] & 0x01  # the frame tag's P bit: 0 = key frame
    if codec_name == "H264":
        index = data.find(b"\x00\x00\x01")
        while index != -1 and index + 3 < len(data):
            if data[index + 3] & 0x1F in (5, 7):  # IDR slice or SPS
                return True
            index = data.find(b"\x00\x00\x01", index + 3)
        return False
    return True


class AudioJitterBuffer(JitterBuffer):
    """aiortc's audio jitter buffer (16 packets, 4 prefetched) that conceals a lost packet at once.

    aiortc's waits until 16 newer packets have arrived, then drops the frames queued before the hole too
    (hundreds of ms of silence for each lost 20 ms packet).  Audio is not retransmitted, so as soon as
    ``patience`` packets wait behind a hole it is filled with a repeat of the packet before it (packet
    repetition, the simplest concealment) and playback goes on.
    """

    def __init__(self, capacity: int = 16, prefetch: int = 4, patience: int = 2) -> None:
        super().__init__(capacity=capacity, prefetch=prefetch)
        self.patience = patience
        self.packets_concealed = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is None and self._origin is not None and self._conceal():
            frame = self._remove_frame(packet.sequence_number)
        return pli_flag, frame

    def _conceal(self) -> bool:
        """Fill every hole that ``patience`` packets wait behind; True when one was filled."""
        assert self._origin is not None
        slots = [self._packets[(self._origin + i) % self._capacity] for i in range(self._capacity)]
        filled = False
        previous: RtpPacket | None = None
        for offset, slot in enumerate(slots):
            if slot is not None:
                previous = slot
                continue
            later = [(i, p) for i, p in enumerate(slots[offset + 1 :], offset + 1) if p is not None]
            if previous is None or len(later) < self.patience:
                continue
            after_offset, after = later[0]
            step = (after.timestamp - previous.timestamp) // max(after_offset - offset + 1, 1)
            filler = RtpPacket(
                payload_type=previous.payload_type,
                sequence_number=uint16_add(self._origin, offset),
                timestamp=(previous.timestamp + step) & 0xFFFFFFFF,
                ssrc=previous.ssrc,
            )
            filler._data = previous._data  # type: ignore[attr-defined]
            self._packets[(self._origin + offset) % self._capacity] = filler
            slots[offset] = previous = filler
            self.packets_concealed += 1
            filled = True
        return filled


async def _retry_nacks(receiver: RTCRtpReceiver, generator: Any, interval: float) -> None:
    """Ask again, every ``interval``, for the packets aiortc's NACK generator still misses."""
    send_nack = receiver._send_rtcp_nack
    while True:
        await asyncio.sleep(interval)
        missing = sorted(generator.missing)
        ssrc = _media_ssrc(receiver)
        if missing and ssrc is not None:
            try:
                await send_nack(ssrc, missing)
            except ConnectionError:
                return


def _media_ssrc(receiver: RTCRtpReceiver) -> int | None:
    streams: dict[int, Any] = getattr(receiver, _PREFIX + "remote_streams")
    rtx: dict[int, int] = getattr(receiver, _PREFIX + "rtx_ssrc")
    for ssrc in streams:
        if ssrc not in rtx:
            return ssrc
    return None


def _jitter_seconds(receiver: RTCRtpReceiver) -> float:
    ssrc = _media_ssrc(receiver)
    if ssrc is None:
        return 0.0
    stats = getattr(receiver, _PREFIX + "remote_streams").get(ssrc)
    return float(stats.jitter) / VIDEO_CLOCK if stats is not None else 0.0


def install(receiver: RTCRtpReceiver, give_up: float = GIVE_UP_SECONDS) -> asyncio.Task[None] | None:
    """Give a video receiver NACK retries and a bounded wait; the retry task (cancel it on close), or None.

    An audio receiver gets :class:`AudioJitterBuffer`.  Call it after the remote description is applied and
    before media flows.  An unsupported aiortc is left as it is.
    """
    if version("aiortc") != SUPPORTED_AIORTC:
        logger.warning("roomapi.recovery supports aiortc %s only: loss recovery left to aiortc", SUPPORTED_AIORTC)
        return None
    generator = getattr(receiver, _PREFIX + "nack_generator", None)
    if generator is None:  # audio: no retransmissions, only a shorter wait for lost packets
        setattr(receiver, _PREFIX + "jitter_buffer", AudioJitterBuffer())
        return None
    codecs: dict[int, Any] = getattr(receiver, _PREFIX + "codecs")

    def codec_name(payload_type: int) -> str:
        codec = codecs.get(payload_type)
        return str(codec.name) if codec is not None else ""

    buffer = RecoveringJitterBuffer(give_up=give_up, jitter=lambda: _jitter_seconds(receiver), codec_name=codec_name)
    setattr(receiver, _PREFIX + "jitter_buffer", buffer)
    return asyncio.ensure_future(_retry_nacks(receiver, generator, NACK_RETRY_SECONDS))

