"""media_relay.timers: the timer wheel that runs the periodic work of every peer of a loop."""

from __future__ import annotations

import asyncio

from media_relay.timers import TimerWheel, wheel


async def test_jobs_run_at_their_period_and_share_wake_ups() -> None:
    """Forty jobs of 0.1 s on a 0.05 s wheel wake the loop about once per slot, not once per job, and each runs
    about ten times a second."""
    timers = TimerWheel(asyncio.get_running_loop(), tick=0.05)
    runs = [0] * 40
    jobs = [timers.every(0.1, lambda i=i: runs.__setitem__(i, runs[i] + 1)) for i in range(40)]
    await asyncio.sleep(1.0)
    assert all(8 <= n <= 11 for n in runs), runs
    assert timers.wakeups <= 22, timers.wakeups  # ~20 slots in 1 s, whatever the number of jobs
    for job in jobs:
        job.cancel()


async def test_a_cancelled_job_stops_and_an_idle_wheel_stops_waking() -> None:
    timers = TimerWheel(asyncio.get_running_loop(), tick=0.02)
    runs: list[str] = []
    kept = timers.every(0.04, lambda: runs.append("kept"), spread=False)
    dropped = timers.every(0.04, lambda: runs.append("dropped"), spread=False)
    await asyncio.sleep(0.1)
    dropped.cancel()
    before = runs.count("dropped")
    await asyncio.sleep(0.1)
    assert runs.count("dropped") == before and runs.count("kept") >= 3
    kept.cancel()
    await asyncio.sleep(0.05)
    wakeups = timers.wakeups
    await asyncio.sleep(0.2)
    assert timers.wakeups == wakeups and len(timers) == 0


async def test_a_failing_job_is_logged_and_keeps_its_period(caplog: object) -> None:
    timers = TimerWheel(asyncio.get_running_loop(), tick=0.02)
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    job = timers.every(0.02, failing, spread=False)
    await asyncio.sleep(0.15)
    job.cancel()
    assert calls >= 3


async def test_one_wheel_per_loop() -> None:
    assert wheel() is wheel()
    assert wheel().loop is asyncio.get_running_loop()
