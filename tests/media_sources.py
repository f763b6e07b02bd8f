"""Synthetic media for tests: video frames that carry a counter, and a tone.

Each video frame shows its frame number as 16 black/white blocks across the
top and a solid colour below, so a receiver can check order and freshness and
tell publishers apart after lossy coding.
"""

from __future__ import annotations

import fractions
import math

import av
import numpy as np
from aiortc.mediastreams import AUDIO_PTIME, AudioStreamTrack, VideoStreamTrack

WIDTH, HEIGHT = 320, 240
BITS = 16
BLOCK = WIDTH // BITS
BAR = 40


def counter_frame(number: int, color: tuple[int, int, int], width: int = WIDTH, height: int = HEIGHT) -> av.VideoFrame:
    """An RGB frame with ``number`` in binary blocks on top of a solid ``color``."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, :] = color
    for bit in range(BITS):
        value = 255 if (number >> (BITS - 1 - bit)) & 1 else 0
        image[:BAR, bit * BLOCK : (bit + 1) * BLOCK] = value
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    frame.pict_type = av.video.frame.PictureType.NONE
    return frame


def read_counter(frame: av.VideoFrame) -> int:
    """The frame number drawn by :func:`counter_frame` (after scaling to the same size)."""
    image = frame.to_ndarray(format="rgb24")
    height, width = image.shape[:2]
    block = width // BITS
    number = 0
    for bit in range(BITS):
        x = bit * block + block // 2
        y = (BAR * height // HEIGHT) // 2
        number = (number << 1) | (1 if image[y, x].mean() > 128 else 0)
    return number


def body_color(frame: av.VideoFrame) -> tuple[int, int, int]:
    """The average colour of the frame below the counter bar."""
    image = frame.to_ndarray(format="rgb24")
    height = image.shape[0]
    region = image[height // 2 :, :]
    return tuple(int(v) for v in region.reshape(-1, 3).mean(axis=0))  # type: ignore[return-value]


class CounterVideoTrack(VideoStreamTrack):
    """A 30 fps video track of counter frames in one colour."""

    def __init__(self, color: tuple[int, int, int] = (200, 40, 40), width: int = WIDTH, height: int = HEIGHT) -> None:
        super().__init__()
        self.color = color
        self.width = width
        self.height = height
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = counter_frame(self.count, self.color, self.width, self.height)
        frame.pts = pts
        frame.time_base = time_base
        self.count += 1
        return frame


class ToneAudioTrack(AudioStreamTrack):
    """A 20 ms-per-frame sine tone (mono, 48 kHz, s16)."""

    def __init__(self, frequency: float = 440.0, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self._sample = 0

    async def recv(self) -> av.AudioFrame:
        rate = 48000
        samples = int(AUDIO_PTIME * rate)
        frame_number = self._sample
        t = (np.arange(samples) + frame_number) / rate
        data = (self.amplitude * 32767 * np.sin(2 * math.pi * self.frequency * t)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = frame_number
        frame.time_base = fractions.Fraction(1, rate)
        self._sample += samples
        await self._pace(frame_number / rate)
        return frame

    async def _pace(self, offset: float) -> None:
        import asyncio
        import time

        if getattr(self, "_t0", None) is None:
            self._t0 = time.time()
        wait = self._t0 + offset - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
