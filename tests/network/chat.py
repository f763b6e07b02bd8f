"""One participant of a video chat, as a process: publish camera + microphone, play everyone else, measure.

Run inside a network namespace by the loss tests (``python -m tests.network.chat --url ws://... --name ann
--others bob,cat``).  It publishes a 30 fps counter video (aiortc's VP8 encoder, or ``--codec``) and a
tone (Opus), plays the others' streams through the SDK, decodes everything, and prints one JSON line
of what it saw per played stream once ``--seconds`` of media have been measured.  It keeps publishing
until its standard input closes, so that the others' measurements are never cut short by its leaving.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import roomapi
from roomapi import ROOM_EVENT, STREAM_STATUS
from tests.media_sources import CounterVideoTrack, ToneAudioTrack

logger = logging.getLogger(__name__)

FREEZE_MS = 500.0
STALL = 0.1
"""A loop that wakes this many seconds late was starved of CPU: frames could not be decoded in time."""
WAIT = 30.0


@dataclass
class Watch:
    """What a player saw of one stream within the measured window (times in ms from the play request)."""

    publisher: str
    first_frame_ms: float | None = None
    frames: int = 0
    fps: float = 0.0
    max_gap_ms: float = 0.0
    freezes: int = 0
    """Gaps longer than FREEZE_MS between decoded frames (window edges count as frames)."""
    frozen_ms: float = 0.0
    """The total length of those gaps."""
    last_frame_age_ms: float | None = None
    audio_frames: int = 0
    status: str = ""
    times: list[float] = field(default_factory=list, repr=False)


def measure(watch: Watch, started: float, window: tuple[float, float]) -> None:
    """Fill ``watch``'s figures from its frame times (monotonic seconds) over ``window`` (start, end)."""
    low, high = window
    times = watch.times
    if times:
        watch.first_frame_ms = round((times[0] - started) * 1000, 1)
        watch.last_frame_age_ms = round((high - times[-1]) * 1000, 1)
    inside = [t for t in times if low <= t <= high]
    watch.frames = len(inside)
    watch.fps = round(len(inside) / (high - low), 2)
    edges = [low, *inside, high]
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(edges)]
    watch.max_gap_ms = round(max(gaps), 1)
    long = [g for g in gaps if g > FREEZE_MS]
    watch.freezes = len(long)
    watch.frozen_ms = round(sum(long), 1)


async def consume_video(track: Any, watch: Watch, until: float) -> None:
    """Decode (aiortc does, in its receiver) and time every video frame until ``until``."""
    while time.monotonic() < until:
        try:
            await asyncio.wait_for(track.recv(), max(until - time.monotonic(), 0.01))
        except TimeoutError:
            return
        watch.times.append(time.monotonic())


async def consume_audio(track: Any, watch: Watch, until: float) -> None:
    """Read every decoded audio frame until ``until``."""
    while time.monotonic() < until:
        try:
            await asyncio.wait_for(track.recv(), max(until - time.monotonic(), 0.01))
        except TimeoutError:
            return
        watch.audio_frames += 1


async def watch_loop(stalls: list[tuple[float, float]], until: float, tick: float = 0.01) -> None:
    """Record (when, seconds) each time this process's event loop ran ``STALL`` late (a busy machine)."""
    while time.monotonic() < until:
        before = time.monotonic()
        await asyncio.sleep(tick)
        late = time.monotonic() - before - tick
        if late > STALL:
            stalls.append((before, late))


async def stream_of(room: Any, login: str) -> Any:
    """The first stream of participant ``login``, waiting (bounded) for it to be published."""
    participant = room.get_participant(login)
    if participant is None or not participant.get_streams():
        await room.wait_for(ROOM_EVENT.PUBLISHED, lambda e: e.participant.login == login, timeout=WAIT)
        participant = room.get_participant(login)
    return participant.get_streams()[0]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Join, publish, play the others, measure; the report (after which we keep publishing until stdin closes)."""
    color = tuple(int(v) for v in args.color.split(","))
    connection = await roomapi.connect(args.url, args.name, timeout=WAIT)
    room = await connection.join(args.room)
    published = await room.publish(
        video=CounterVideoTrack(color), audio=ToneAudioTrack(), video_codec=args.codec  # type: ignore[arg-type]
    )
    await published.wait_for(STREAM_STATUS.PUBLISHING, timeout=WAIT)
    others = [login for login in args.others.split(",") if login]
    streams = [await stream_of(room, login) for login in others]
    started = time.monotonic()
    until = started + args.seconds
    playing = [await stream.play() for stream in streams]
    watches = [Watch(login) for login in others]
    stalls: list[tuple[float, float]] = []
    tasks = [watch_loop(stalls, until)]
    for play, watch in zip(playing, watches, strict=True):
        if play.video is not None:
            tasks.append(consume_video(play.video, watch, until))
        if play.audio is not None:
            tasks.append(consume_audio(play.audio, watch, until))
    await asyncio.gather(*tasks)
    low = started + args.warmup
    report: dict[str, Any] = {
        "name": args.name,
        "played": {},
        "max_stall_ms": round(max((late for when, late in stalls if when >= low), default=0.0) * 1000, 1),
    }
    for play, watch in zip(playing, watches, strict=True):
        watch.status = play.status()
        measure(watch, started, (low, until))
        data = asdict(watch)
        data.pop("times")
        report["played"][watch.publisher] = data
    print(json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await connection.disconnect()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--room", default="chat")
    parser.add_argument("--name", required=True)
    parser.add_argument("--others", required=True, help="comma-separated logins to play")
    parser.add_argument("--color", default="200,40,40")
    parser.add_argument("--codec", default="VP8")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--no-recovery", action="store_true", help="leave loss recovery to aiortc (a baseline)")
    args = parser.parse_args()
    if args.no_recovery:
        from roomapi import recovery

        recovery.install = lambda receiver, give_up=0.0: None  # type: ignore[assignment]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
