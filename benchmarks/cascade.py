"""`python -m benchmarks.cascade`: 1 publisher to K players spread over 2 media workers (cascading).

daphne (MEDIA_MODE=workers) and two `manage.py runmedia` workers share a throwaway
redis-server (REDIS_URL only when no redis-server binary is installed).  MEDIA_CASCADE_AFTER=0 places every
play on the least-loaded worker, so half the players play the stream on the
publisher's worker and half play the copy relayed to the other worker.  The
measurement (players' frames, added latency from the publisher's socket to the
kernel's receive at a player's socket, client latency) is the K sweep's
(:mod:`benchmarks.runner`, :mod:`benchmarks.media`); the relay CPU is both
workers' together.  Here the publisher runs on its own event loop (a thread),
and the added latency is also split by worker and frame kind; plays the
workers ended before the teardown are listed with their reason.  Figures go to
docs/performance.md ("Cascading") by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import uvloop

from benchmarks.media import PlayerCounter, Probe, encode_clip
from benchmarks.ours import ENDED_PLAYS, ROOT, OurServer
from benchmarks.procs import CLIENT_CPU, RELAY_CPU, cpu_seconds, free_port, pin_self, pinned, stop_process
from benchmarks.report import text_table
from benchmarks.runner import Result, failed_result, measure

logger = logging.getLogger("benchmarks.cascade")

WORKERS = 2
T = TypeVar("T")


class PublisherThread:
    """An event loop of its own, in a thread of the benchmark process, for the publisher's peer connection.

    With 240 players in the benchmark's main loop that loop turns only every few hundred ms under load; a
    publisher on it sends the frames due meanwhile in one burst, and the relay's fan-out of that burst is what
    the players' latency then shows.  On its own loop the publisher paces its frames as a browser does (it
    waits for the GIL at most a switch interval, 5 ms).
    """

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="publisher", daemon=True)
        self.thread.start()

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the publisher's loop and wait for it from the caller's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    def stop(self) -> None:
        """Stop the loop and the thread (bounded)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class ThrowawayRedis:
    """A redis-server on a free port, no persistence (when REDIS_URL is not given)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait (bounded) until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("no REDIS_URL and no redis-server binary: cascading needs Redis")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


class CascadeServer(OurServer):
    """daphne for signalling and two media workers, each pinned to its own CPU; plays spread by load."""

    name = "cascade"

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.workers: list[subprocess.Popen[bytes]] = []
        self.counters: list[PlayerCounter] = []
        self.publisher: PublisherThread | None = None
        self.lags: list[tuple[float, float]] = []
        """(seconds into the run, how late the players' event loop woke for a 0.1 s sleep), one per wake-up."""
        self._lag_task: asyncio.Task[None] | None = None
        self._publisher_pc: Any = None
        self._publisher_signalling: Any = None
        self.breakdown = ""
        self.ended: dict[str, int] = {}
        """Play statuses other than PLAYING told before the teardown (status: reason -> count)."""
        """Added latency per worker and frame kind, once the run is over."""

    @property
    def pid(self) -> int:
        """The first media worker (the runner samples it with py-spy when profiling)."""
        return self.workers[0].pid if self.workers else super().pid

    def cpu_seconds(self) -> float:
        """CPU time of both media workers (the relay of this setup)."""
        return sum(cpu_seconds(worker.pid) for worker in self.workers)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update({"MEDIA_MODE": "workers", "REDIS_URL": self.redis_url, "MEDIA_CASCADE_AFTER": "0"})
        return env

    async def start(self) -> None:
        """Flush the registry, start daphne (unpinned: signalling only) and the workers (CPU 0 and 1)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter("media:*"):
            client.delete(key)
        await super().start()
        env = self.environment()
        for index in range(WORKERS):
            log = (self.workdir / f"runmedia-{index}.log").open("ab")
            self.workers.append(subprocess.Popen(
                pinned([sys.executable, "manage.py", "runmedia", "--worker-id", f"bench-w{index}"],
                       cpu=(RELAY_CPU + index) % max(os.cpu_count() or 1, 1)),
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
        deadline = time.monotonic() + 60
        while len(client.hkeys("media:workers")) < WORKERS:
            if time.monotonic() > deadline or any(w.poll() is not None for w in self.workers):
                raise RuntimeError("media workers did not start; see " + str(self.workdir))
            await asyncio.sleep(0.2)

    def _health(self) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            response.read()

    async def publish(self, track: Any, players: int) -> None:
        """As ours, but the publisher's signalling and peer connection live on their own loop and thread."""
        self.publisher = PublisherThread()
        self._lag_task = asyncio.ensure_future(self._watch_lag())

        async def publish() -> None:
            await OurServer.publish(self, track, players)
            self._publisher_pc, self._publisher_signalling = self.pcs.pop(), self.sockets.pop()

        await self.publisher.run(publish())

    async def _watch_lag(self) -> None:
        """How late the players' loop turns (it answers the workers' ICE consent checks, 0.5 s allowed)."""
        start = time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            self.lags.append((before - start, time.monotonic() - before - 0.1))

    def lag_summary(self) -> str:
        """The players' loop lag: how many 1 s stretches had a wake-up later than 0.5 s, and when."""
        late = sorted({int(at) for at, lag in self.lags if lag > 0.5})
        worst = max((lag for _, lag in self.lags), default=0.0)
        spans = f"{late[0]}-{late[-1]} s into the run" if late else "never"
        return (f"  players' event loop: {len(late)} one-second stretches with a wake-up > 0.5 s late ({spans}), "
                f"worst {worst * 1000:.0f} ms\n")

    async def play(self, index: int, counter: PlayerCounter, probe: Probe) -> None:
        """As ours; keeps the counter to split the figures by worker."""
        self.counters.append(counter)
        await super().play(index, counter, probe)

    async def teardown(self) -> None:
        """Split the added latency by the worker each player's media came from, then close everything."""
        import json

        import redis

        self.ended = dict(ENDED_PLAYS)
        if self._lag_task is not None:
            self._lag_task.cancel()
        try:
            entries = redis.Redis.from_url(self.redis_url, decode_responses=True).hgetall("media:workers")
            plays = {play[0]: str(worker) for worker, raw in entries.items() for play in json.loads(raw)["plays"]}
            self.breakdown = latency_breakdown(self.counters, plays)
        except (OSError, redis.RedisError) as exc:
            self.breakdown = f"no breakdown: {exc}"
        self.closing = True
        if self.publisher is not None:
            pc, sig = self._publisher_pc, self._publisher_signalling

            async def close() -> None:
                if pc is not None:
                    await pc.close()
                if sig is not None:
                    await sig.close()

            try:
                await asyncio.wait_for(self.publisher.run(close()), 20)
            except Exception:
                logger.exception("closing the publisher failed")
            await asyncio.to_thread(self.publisher.stop)
            self.publisher = None
        await super().teardown()

    async def stop(self) -> None:
        for worker in self.workers:
            await asyncio.to_thread(stop_process, worker)
        self.workers.clear()
        await super().stop()

    def describe(self) -> str:
        return (
            f"daphne (signalling) + {WORKERS} `runmedia` workers pinned to CPUs 0 and 1, MEDIA_MODE=workers, "
            "Redis channel layer and registry, MEDIA_CASCADE_AFTER=0 (plays on the least-loaded worker), SQLite"
        )


def latency_breakdown(counters: list[PlayerCounter], plays: dict[str, str]) -> str:
    """Added latency p50/p99 per media worker serving the players (``plays``: play id -> worker) and per frame
    kind (keyframe or not)."""
    from benchmarks.runner import percentile

    groups: dict[str, list[PlayerCounter]] = {}
    for counter in counters:
        groups.setdefault(plays.get(counter.play_id, "unknown"), []).append(counter)
    lines = []
    for name, members in sorted(groups.items()):
        for kind, wanted in (("keyframes", True), ("other frames", False)):
            values = [x * 1000 for c in members for x, key in c.added if key == wanted]
            lines.append(f"  {name} ({len(members)} players) {kind}: {len(values)} frames, added latency p50 "
                         f"{percentile(values, 0.5):.1f} ms p99 {percentile(values, 0.99):.1f} ms "
                         f"max {max(values, default=float('nan')):.1f} ms")
    return "\n".join(lines)


async def run(args: argparse.Namespace, redis_url: str) -> list[Result]:
    """Each K in turn."""
    clip = await asyncio.to_thread(encode_clip, 300)
    results = []
    for players in args.players:
        server = CascadeServer(redis_url)
        ENDED_PLAYS.clear()
        sys.stdout.write(f"K={players} cascade: connecting...\n")
        sys.stdout.flush()
        try:
            result = await measure(server, clip, players, args.warmup, args.seconds)
            if args.keep:
                sys.stdout.write(f"logs kept in {server.workdir}\n")
            else:
                server.cleanup()
        except Exception as exc:
            logger.exception("K=%s failed", players)
            result = failed_result(server.name, players, exc)
        results.append(result)
        sys.stdout.write(
            f"K={players}: {result.frames_per_s:.0f}/{result.expected_frames_per_s:.0f} frames/s (publisher sent "
            f"{result.sent_frames_per_s:.1f}/s), relay "
            f"{result.relay_cpu * 100:.1f}% CPU (2 workers), {result.us_per_packet:.1f} us/pkt, added latency p50 "
            f"{result.latency_p50_ms:.1f} ms p99 {result.latency_p99_ms:.1f} ms ({result.latency_samples} frames), "
            f"client latency p50 {result.client_latency_p50_ms:.1f} ms p99 {result.client_latency_p99_ms:.1f} ms, "
            f"client {result.client_cpu * 100:.1f}% CPU, {result.udp_drops} datagrams dropped on full receive "
            "buffers (machine-wide)"
            + (f" [{result.error}]" if result.error else "") + "\n"
            + (server.breakdown + "\n" if server.breakdown else "")
            + "".join(f"  plays ended before teardown: {n} x {why}\n" for why, n in server.ended.items())
            + server.lag_summary()
        )
        sys.stdout.flush()
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and print the table."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    consent = logging.getLogger("aioice.ice")  # a client-side ICE consent expiry closes that peer connection
    consent.setLevel(logging.INFO)
    consent.addFilter(lambda record: record.levelno >= logging.WARNING or "Consent" in record.getMessage())
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cascade", description=__doc__)
    parser.add_argument("--players", "-k", type=int, nargs="+", default=[80, 240], help="K values")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per K")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after every player got a frame")
    parser.add_argument("--nice", type=int, default=-10, help="niceness of clients and servers (as make bench)")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (daphne and worker logs)")
    parser.add_argument("--quick", action="store_true", help="smoke run: K=4, 3 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.players, args.seconds, args.warmup = [4], 3.0, 1.0
    pin_self(CLIENT_CPU)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)  # the servers started later inherit it
    except OSError as exc:
        logger.warning("cannot set niceness %s: %s", args.nice, exc)
    redis_server = None
    redis_url = "" if shutil.which("redis-server") else os.environ.get("REDIS_URL", "")
    if not redis_url:
        redis_server = ThrowawayRedis()
        redis_server.start()
        redis_url = redis_server.url
    try:
        results = uvloop.run(run(args, redis_url))
    finally:
        if redis_server is not None:
            redis_server.stop()
    sys.stdout.write("\n" + text_table(results) + "\n")
    for result in results:
        full = result.frames_per_s >= 0.95 * result.expected_frames_per_s
        sys.stdout.write(
            f"K={result.players}: full frame rate {'met' if full else 'missed'}, p99 added latency "
            f"{result.latency_p99_ms:.1f} ms ({'met' if result.latency_p99_ms < 20 else 'missed'}: target < 20 ms)\n"
        )
    return 1 if any(r.error and r.connected == 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
