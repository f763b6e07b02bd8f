"""A media worker's heartbeat thread: liveness that media load on the event loop cannot starve.

The worker's event loop may be saturated by packet work for seconds at a time;
a heartbeat task on that loop then misses its turns and other processes reap a
worker that is alive and serving (found by benchmarks/cascade.py at K=240).
This daemon thread stamps the worker's beat in the registry every
HEARTBEAT_SECONDS from its own thread (and, with Redis, its own blocking
client), which the loop's load cannot delay beyond the GIL's switch interval.

It also watches the loop: with each beat it schedules a no-op callback on the
loop (`call_soon_threadsafe`) that records when it ran.  If no such callback has
run for `stall_seconds` (LOOP_STALL_SECONDS by default) the loop is wedged, not
busy, and the thread stops beating: the worker goes silent and is reaped after
DEAD_AFTER_SECONDS like a dead process.  Beats resume if the loop turns again.
The thread writes only the beat; the loop keeps announcing the worker's full
entry (media_relay/registry.py), so neither overwrites the other.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from media_relay.registry import HEARTBEAT_SECONDS, LOOP_STALL_SECONDS, Registry

logger = logging.getLogger(__name__)


class Heartbeat:
    """The heartbeat thread of one worker and the event loop it vouches for."""

    def __init__(
        self,
        registry: Registry,
        worker_id: str,
        loop: asyncio.AbstractEventLoop,
        stall_seconds: float = LOOP_STALL_SECONDS,
    ) -> None:
        self.registry = registry
        self.worker_id = worker_id
        self.loop = loop
        self.stall_seconds = stall_seconds
        self.turned = time.monotonic()
        """When the loop last ran this thread's callback (written on the loop, read by the thread: one float)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{worker_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating; returns once the thread has made its last write (bounded by the registry's timeout)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * HEARTBEAT_SECONDS + 1)

    def stalled_for(self) -> float:
        """Seconds since the loop last turned (as far as this thread has seen)."""
        return time.monotonic() - self.turned

    def _turned(self) -> None:
        self.turned = time.monotonic()

    def _run(self) -> None:
        stalled = False
        while not self._stop.is_set():
            if self.loop.is_closed():
                return  # its loop ended without stopping us (a test's loop, daphne's exit)
            if self.stalled_for() <= self.stall_seconds:
                if stalled:
                    logger.warning("media worker %s: its event loop turns again; beating again", self.worker_id)
                stalled = False
                try:
                    self.registry.beat(self.worker_id, time.time())
                except Exception:
                    logger.exception("media worker %s: heartbeat failed", self.worker_id)
            elif not stalled:
                stalled = True
                logger.error(
                    "media worker %s: its event loop has not turned for %.0f s; no longer beating (it will be reaped)",
                    self.worker_id,
                    self.stalled_for(),
                )
            try:
                self.loop.call_soon_threadsafe(self._turned)
            except RuntimeError:
                return  # the loop is closed
            self._stop.wait(HEARTBEAT_SECONDS)
