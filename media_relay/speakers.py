"""Active speakers of a room, from the audio level header extension (RFC 6464) of its publications.

Each audio packet's level (-dBov, 0 loudest, 127 silence) is smoothed per stream; a stream speaks while its
smoothed level is louder than ``-active_level`` dBov (-40 dBov by default).  The ordered list of speaking
stream ids (loudest first) is reported through ``on_change`` when it changes, at most once per ``interval``;
a stream whose packets stop (muted, gone) stops speaking after ``STALE`` seconds, and closing the detector
reports an empty list if anyone was speaking.  No decoding: the relay
reads one byte per packet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

SILENCE = 127
STALE = 1.0
SMOOTHING = 0.1
"""Weight of each new packet (50 packets/s: a time constant of ~0.2 s)."""
ACTIVE_LEVEL = 40
"""A stream whose smoothed level is louder than -ACTIVE_LEVEL dBov speaks."""


class ActiveSpeakers:
    """Speaking streams of one room, reported at most every ``interval`` seconds."""

    def __init__(
        self,
        on_change: Callable[[list[str]], None],
        interval: float = 0.35,
        active_level: int = ACTIVE_LEVEL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_change = on_change
        self.interval = interval
        self.threshold = SILENCE - active_level
        """Smoothed loudness (127 - level) at and above which a stream speaks."""
        self.clock = clock
        self._loudness: dict[str, float] = {}
        self._heard: dict[str, float] = {}
        self._reported: list[str] = []
        self._last_report = float("-inf")
        self._timer: asyncio.TimerHandle | None = None

    def observe(self, stream_id: str, level: int) -> None:
        """One packet's audio level of a stream (-dBov, 0..127)."""
        now = self.clock()
        loudness = SILENCE - min(max(level, 0), SILENCE)
        previous = self._loudness.get(stream_id)
        self._loudness[stream_id] = loudness if previous is None else previous + SMOOTHING * (loudness - previous)
        self._heard[stream_id] = now
        if now - self._last_report >= self.interval:
            self.evaluate()

    def remove(self, stream_id: str) -> None:
        """A publication ended: forget it (reported at the next evaluation)."""
        self._loudness.pop(stream_id, None)
        self._heard.pop(stream_id, None)
        if stream_id in self._reported:
            self._schedule()

    def speaking(self) -> list[str]:
        """The streams speaking now, loudest first."""
        now = self.clock()
        active = [
            (loudness, stream_id)
            for stream_id, loudness in self._loudness.items()
            if loudness >= self.threshold and now - self._heard.get(stream_id, now) <= STALE
        ]
        return [stream_id for _, stream_id in sorted(active, key=lambda item: (-item[0], item[1]))]

    def evaluate(self) -> None:
        """Report the speaking list if it changed and the interval has passed; keep a timer while anyone speaks."""
        now = self.clock()
        if now - self._last_report < self.interval:
            self._schedule()
            return
        speaking = self.speaking()
        if speaking != self._reported:
            self._reported = speaking
            self._last_report = now
            try:
                self.on_change(list(speaking))
            except Exception:
                logger.exception("active speakers callback failed")
        if self._reported:
            self._schedule()  # so a stream that goes quiet or stops is noticed without new packets

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._timer = loop.call_later(self.interval, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.evaluate()

    def close(self) -> None:
        """Stop the timer; a room told that someone speaks is told that nobody does (its publications ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reported:
            self._reported = []
            self._loudness.clear()
            self._heard.clear()
            try:
                self.on_change([])
            except Exception:
                logger.exception("active speakers callback failed")
