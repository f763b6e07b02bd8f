"""One measurement: a publisher and K lean players through one server, then the figures."""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmarks.media import (
    FPS,
    EncodedClip,
    PacketTrack,
    PlayerCounter,
    Probe,
    keep_client_consent,
    time_publisher_sends,
    udp_receive_buffer_drops,
)
from benchmarks.procs import cpu_seconds

logger = logging.getLogger(__name__)

CONNECT_CONCURRENCY = 8
FIRST_FRAME_TIMEOUT = 15.0


class Server(Protocol):
    """What the runner needs of a server under test (ours or Janus)."""

    name: str

    @property
    def pid(self) -> int: ...

    async def start(self) -> None: ...

    async def publish(self, track: PacketTrack, players: int) -> None: ...

    async def play(self, index: int, counter: PlayerCounter, probe: Probe) -> None: ...

    async def teardown(self) -> None: ...

    async def stop(self) -> None: ...

    def describe(self) -> str: ...

    def cleanup(self) -> None: ...


@dataclass
class Result:
    """The figures of one server at one K."""

    server: str
    players: int
    seconds: float
    packets_per_s: float
    frames_per_s: float
    relay_cpu: float
    """Relay CPU over the window, as a fraction of one core."""
    client_cpu: float
    """Client process CPU (publisher + all players) as a fraction of one core."""
    latency_p50_ms: float
    """Added latency (the relay's): the publisher's socket sending the frame's last packet to the kernel's receive
    of it at the player's socket, so without the client's own queueing (benchmarks.media)."""
    latency_p99_ms: float
    latency_samples: int
    connected: int
    error: str = ""
    client_latency_p50_ms: float = float("nan")
    """Client latency: publisher's send to the player's handler seeing the frame's first packet, in the client
    process that reads, unprotects and parses every player's packets (the figure reported before)."""
    client_latency_p99_ms: float = float("nan")
    sent_frames_per_s: float = float("nan")
    """Frames the publisher sent per second (30 when the client keeps up; its pacing drops frames behind by 1 s)."""
    udp_drops: int = 0
    """Datagrams the kernel dropped for full socket receive buffers during the window (machine-wide)."""

    @property
    def expected_frames_per_s(self) -> float:
        """30 frames/s for every player."""
        return FPS * self.players

    @property
    def us_per_packet(self) -> float:
        """Relay CPU microseconds per delivered packet."""
        return self.relay_cpu * 1e6 / self.packets_per_s if self.packets_per_s else float("nan")


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of values, NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


async def measure(
    server: Server, clip: EncodedClip, players: int, warmup: float, seconds: float, profile: Path | None = None,
) -> Result:
    """Start the server, connect 1 publisher and ``players`` players, measure a window, stop everything.

    With ``profile`` (a file), py-spy samples the relay process during the window (collapsed stacks).
    """
    keep_client_consent()
    probe = Probe()
    counters = [PlayerCounter() for _ in range(players)]
    untime = time_publisher_sends(probe)
    try:
        return await _measure(server, clip, players, warmup, seconds, profile, probe, counters)
    finally:
        untime()


async def _measure(
    server: Server, clip: EncodedClip, players: int, warmup: float, seconds: float, profile: Path | None,
    probe: Probe, counters: list[PlayerCounter],
) -> Result:
    await server.start()
    try:
        track = PacketTrack(clip, probe)
        await server.publish(track, players)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(index: int) -> None:
            async with gate:
                await server.play(index, counters[index], probe)

        outcomes = await asyncio.gather(*(connect(i) for i in range(players)), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures[:3]:
            logger.warning("%s: a player failed to connect: %r", server.name, failure)
        deadline = time.monotonic() + FIRST_FRAME_TIMEOUT
        while time.monotonic() < deadline and any(c.frames == 0 for c in counters):
            await asyncio.sleep(0.2)
        connected = sum(1 for c in counters if c.frames > 0)
        await asyncio.sleep(warmup)
        spy = None
        if profile is not None:
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(server.pid), "--duration",
                str(max(1, int(seconds))), "--rate", "250", "--format", "raw", "--nonblocking", "--output",
                str(profile), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
        result = await _window(server, counters, probe, players, seconds, connected, len(failures))
        if spy is not None:
            await asyncio.wait_for(spy.wait(), 30)
        return result
    finally:
        try:
            await server.teardown()
        finally:
            await server.stop()


def relay_seconds(server: Server) -> float:
    """CPU time of the relay: the server's own sum when it has several processes (cascading), else its pid's."""
    total = getattr(server, "cpu_seconds", None)
    return float(total()) if callable(total) else cpu_seconds(server.pid)


async def _window(
    server: Server, counters: list[PlayerCounter], probe: Probe, players: int, seconds: float, connected: int,
    failures: int,
) -> Result:
    packets0 = sum(c.packets for c in counters)
    frames0 = sum(c.frames for c in counters)
    relay0, client0, t0 = relay_seconds(server), cpu_seconds(), time.perf_counter()
    drops0, sent0 = udp_receive_buffer_drops(), probe.frames_sent
    probe.measuring = True
    await asyncio.sleep(seconds)
    probe.measuring = False
    relay1, client1, t1 = relay_seconds(server), cpu_seconds(), time.perf_counter()
    drops1, sent1 = udp_receive_buffer_drops(), probe.frames_sent
    packets1 = sum(c.packets for c in counters)
    frames1 = sum(c.frames for c in counters)
    elapsed = t1 - t0
    latencies = [x * 1000 for x in probe.added_latencies]
    client_latencies = [x * 1000 for x in probe.latencies]
    return Result(
        server=server.name,
        players=players,
        seconds=elapsed,
        packets_per_s=(packets1 - packets0) / elapsed,
        frames_per_s=(frames1 - frames0) / elapsed,
        relay_cpu=(relay1 - relay0) / elapsed,
        client_cpu=(client1 - client0) / elapsed,
        latency_p50_ms=statistics.median(latencies) if latencies else float("nan"),
        latency_p99_ms=percentile(latencies, 0.99),
        latency_samples=len(latencies),
        connected=connected,
        error=f"{failures} players failed to connect" if failures else "",
        client_latency_p50_ms=statistics.median(client_latencies) if client_latencies else float("nan"),
        client_latency_p99_ms=percentile(client_latencies, 0.99),
        sent_frames_per_s=(sent1 - sent0) / elapsed,
        udp_drops=drops1 - drops0,
    )


def failed_result(server: str, players: int, error: Any) -> Result:
    """A row for a measurement that could not run."""
    nan = float("nan")
    return Result(server, players, 0.0, nan, nan, nan, nan, nan, nan, 0, 0, error=str(error)[:200])
