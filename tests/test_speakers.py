"""Active speakers from audio levels: smoothing, order, rate limit and staleness, on a controlled clock."""

from __future__ import annotations

import asyncio
import itertools

from media_relay.speakers import STALE, ActiveSpeakers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def speak(speakers: ActiveSpeakers, clock: Clock, levels: dict[str, int], seconds: float) -> None:
    """50 packets a second per stream for ``seconds``."""
    for _ in range(int(seconds * 50)):
        clock.now += 0.02
        for stream_id, level in levels.items():
            speakers.observe(stream_id, level)


def test_loudest_first_and_silence_is_not_speaking() -> None:
    """Two speakers ordered by level; a stream at -127 dBov never speaks."""
    clock = Clock()
    reports: list[list[str]] = []
    speakers = ActiveSpeakers(reports.append, interval=0.3, clock=clock)
    speak(speakers, clock, {"a": 30, "b": 10, "c": 127}, 1.0)
    assert reports[-1] == ["b", "a"]
    speak(speakers, clock, {"a": 5, "b": 35, "c": 127}, 2.0)
    assert reports[-1] == ["a", "b"]
    assert all("c" not in report for report in reports)


def test_reports_only_changes_at_most_once_per_interval() -> None:
    """Flapping levels are smoothed and reported at most every interval; no report without a change."""
    clock = Clock()
    reports: list[tuple[float, list[str]]] = []
    speakers = ActiveSpeakers(lambda ids: reports.append((clock.now, ids)), interval=0.3, clock=clock)
    for i in range(500):
        clock.now += 0.02
        speakers.observe("a", 10 if i % 2 else 60)  # loud on average: speaks throughout
        speakers.observe("b", 0 if (i // 15) % 2 else 127)  # 0.3 s bursts: flaps around the threshold
    assert len(reports) >= 2
    times = [when for when, _ in reports]
    assert all(b - a >= 0.3 - 1e-9 for a, b in itertools.pairwise(times))
    assert all(a != b for (_, a), (_, b) in itertools.pairwise(reports))
    speak(speakers, clock, {"a": 127, "b": 127}, 3.0)
    assert reports[-1][1] == []


async def test_a_stream_that_stops_stops_speaking() -> None:
    """Muted or gone (no packets): dropped from the list by the timer, without new packets."""
    reports: list[list[str]] = []
    speakers = ActiveSpeakers(reports.append, interval=0.05)
    for _ in range(10):
        speakers.observe("a", 10)
    speakers.evaluate()
    assert reports[-1] == ["a"]
    await asyncio.sleep(STALE + 0.3)
    assert reports[-1] == []
    speakers.observe("b", 10)
    speakers.remove("b")
    await asyncio.sleep(0.2)
    assert reports[-1] == []
    speakers.close()


def test_closing_with_speakers_reports_nobody() -> None:
    """The room's last publication ended while it spoke (the worker closes the detector at once): the room is
    told that nobody speaks, rather than keeping a stale highlight; a second close reports nothing more."""
    clock = Clock()
    reports: list[list[str]] = []
    speakers = ActiveSpeakers(reports.append, interval=0.3, clock=clock)
    speak(speakers, clock, {"a": 10}, 1.0)
    assert reports[-1] == ["a"]
    speakers.remove("a")
    speakers.close()
    assert reports[-1] == []
    count = len(reports)
    speakers.close()
    assert len(reports) == count
    quiet: list[list[str]] = []
    ActiveSpeakers(quiet.append).close()
    assert quiet == []
