"""One timer for the periodic work of every peer connection of an event loop: a timer wheel.

aiortc and aioice run a task and a timer per peer connection for its RTCP reports and its ICE consent checks,
each waking the event loop on its own.  On a :class:`TimerWheel` every periodic job sits in a slot of ``TICK``
seconds, so the jobs of all peers due in one slot share one wake-up (4 a second for a worker at ``TICK`` 0.25,
whatever its number of peers); the loop is not woken when no job is due.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections.abc import Callable

logger = logging.getLogger(__name__)

TICK = 0.25
"""Seconds per slot: a job runs within this of its due time."""


class Job:
    """A periodic job on a wheel; :meth:`cancel` stops it."""

    __slots__ = ("callback", "cancelled", "period", "slot")

    def __init__(self, callback: Callable[[], None], period: int) -> None:
        self.callback = callback
        self.period = period
        """In slots."""
        self.slot = 0
        self.cancelled = False

    def cancel(self) -> None:
        """Stop running (idempotent)."""
        self.cancelled = True


class TimerWheel:
    """Periodic jobs of one event loop on a single timer (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: float = TICK) -> None:
        self.loop = loop
        self.tick = tick
        self._slots: dict[int, list[Job]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed_slot: int | None = None
        self.wakeups = 0
        """How many times the wheel woke the loop (for tests and profiles)."""

    def _now_slot(self) -> int:
        return int(self.loop.time() / self.tick)

    def every(self, period: float, callback: Callable[[], None], *, spread: bool = True) -> Job:
        """Run ``callback()`` (synchronous, never raising into the wheel) every ``period`` seconds (rounded to
        slots), the first time at a random point of the first period (``spread``) or one period from now."""
        slots = max(1, round(period / self.tick))
        job = Job(callback, slots)
        first = random.randint(1, slots) if spread else slots
        self._place(job, self._now_slot() + first)
        return job

    def _place(self, job: Job, slot: int) -> None:
        job.slot = slot
        self._slots.setdefault(slot, []).append(job)
        if self._armed_slot is None or slot < self._armed_slot:
            self._arm(slot)

    def _arm(self, slot: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_slot = slot
        self._handle = self.loop.call_at(slot * self.tick, self._run)

    def _run(self) -> None:
        self._handle = None
        self._armed_slot = None
        self.wakeups += 1
        now = self._now_slot()
        for slot in sorted(s for s in self._slots if s <= now):
            for job in self._slots.pop(slot):
                if job.cancelled:
                    continue
                try:
                    job.callback()
                except Exception:
                    logger.exception("periodic media job failed")
                if not job.cancelled:
                    job.slot = max(slot + job.period, now + 1)
                    self._slots.setdefault(job.slot, []).append(job)
        # Forget cancelled jobs so an idle wheel stops waking the loop.
        for slot in list(self._slots):
            jobs = [job for job in self._slots[slot] if not job.cancelled]
            if jobs:
                self._slots[slot] = jobs
            else:
                del self._slots[slot]
        if self._slots:
            self._arm(min(self._slots))

    def __len__(self) -> int:
        return sum(1 for jobs in self._slots.values() for job in jobs if not job.cancelled)


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = weakref.WeakKeyDictionary()


def wheel() -> TimerWheel:
    """The timer wheel of the running event loop."""
    loop = asyncio.get_running_loop()
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = TimerWheel(loop)
    return found
