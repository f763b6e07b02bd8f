"""`python -m benchmarks.load`: scale-out, load and soak benchmarks of issue 7 (signalling, soak, media).

    python -m benchmarks.load                 # every part, figures into docs/performance.md
    python -m benchmarks.load --part soak     # one part (signalling | soak | media)
    python -m benchmarks.load --quick         # everything tiny (~30 s), no doc

The server under test is started here: a throwaway PostgreSQL database ``bench_load_<pid>`` (created,
migrated, dropped), Redis db 7 (BENCH_REDIS_DB), several daphne processes and, for media, media workers.
Clients run in separate processes on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.load_common import (
    BENCH_LIMITS,
    Child,
    Cluster,
    CpuMark,
    Database,
    load_text,
    percentile,
    slope,
)

logger = logging.getLogger("benchmarks.load")

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
PARTS = ("signalling", "soak", "media")
SIGNAL_CLIENT = "benchmarks.load_signal_client"
MEDIA_CLIENT = "benchmarks.load_media_client"
MB = 1024 * 1024


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=[*PARTS, "all"], nargs="+", default=["all"], help="parts to run")
    parser.add_argument("--quick", action="store_true", help="every part tiny (~30 s), no doc")
    parser.add_argument("--daphne", type=int, default=2, help="daphne processes (signalling and soak)")
    parser.add_argument("--clients", type=int, default=1000, help="signalling: concurrent WebSocket clients")
    parser.add_argument("--rooms", type=int, default=250, help="signalling: rooms")
    parser.add_argument("--client-procs", type=int, default=4, help="signalling: client processes")
    parser.add_argument("--join-rate", type=float, default=40.0, help="signalling: joins per second (all)")
    parser.add_argument("--msg-rates", type=float, nargs="+", default=[0.025, 0.05, 0.075, 0.1, 0.2],
                        help="signalling: messages per second per client, one step each")
    parser.add_argument("--msg-seconds", type=float, default=10.0, help="signalling: seconds per message step")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="soak: duration")
    parser.add_argument("--soak-clients", type=int, default=200, help="soak: steady population")
    parser.add_argument("--soak-rooms", type=int, default=50, help="soak: rooms")
    parser.add_argument("--soak-life", type=float, nargs=2, default=[10.0, 50.0], metavar=("MIN", "MAX"),
                        help="soak: session lifetime, uniform between MIN and MAX seconds")
    parser.add_argument("--soak-msg-rate", type=float, default=0.1, help="soak: messages/s per client (Poisson)")
    parser.add_argument("--soak-sample", type=float, default=5.0, help="soak: seconds between RSS samples")
    parser.add_argument("--deadline", type=float, default=5.0,
                        help="soak: a message that reached nobody is in flight until this many seconds after its send")
    parser.add_argument("--media-max-rooms", type=int, default=40, help="media: stop the ramp here")
    parser.add_argument("--media-seconds", type=float, default=6.0, help="media: window per step")
    parser.add_argument("--media-workers", type=int, default=2, help="media: media worker processes")
    parser.add_argument("--media-client-procs", type=int, default=2, help="media: client processes")
    parser.add_argument("--media-audio", action=argparse.BooleanOptionalAction, default=True,
                        help="media: publish pre-encoded Opus next to the video")
    parser.add_argument("--doc", type=Path, default=None, help=f"write the figures here (full runs: {DOC})")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/performance.md")
    args = parser.parse_args(argv)
    if "all" in args.part:
        args.part = list(PARTS)
    args.settle = 1.0
    if args.quick:
        args.settle = 0.3
        args.clients, args.rooms, args.client_procs, args.join_rate = 40, 10, 2, 40.0
        args.msg_rates, args.msg_seconds = [1.0], 3.0
        args.soak_seconds, args.soak_clients, args.soak_rooms, args.soak_life = 20.0, 24, 6, [3.0, 8.0]
        args.soak_msg_rate, args.soak_sample, args.deadline = 1.0, 1.0, 3.0
        args.media_max_rooms, args.media_seconds = 1, 3.0
    if args.doc is None and not args.quick and not args.no_doc:
        args.doc = DOC
    return args


# --- part 1: signalling ------------------------------------------------------------------------------------


@dataclass
class MessageStep:
    """One fixed message rate."""

    rate: float
    seconds: float
    sent: int
    acked: int
    errors: int
    delivered: int
    expected: int
    duplicates: int
    latency_p50_ms: float
    latency_p99_ms: float
    cpu: dict[str, float]

    @property
    def kept_up(self) -> bool:
        """Every message acknowledged and delivered (within the window plus 5 s), delivery p99 under 1 s."""
        return self.acked >= self.sent and self.delivered >= self.expected and self.latency_p99_ms < 1000 \
            and not self.errors


@dataclass
class SignallingResult:
    """Figures of part 1."""

    clients: int
    rooms: int
    daphnes: int
    client_procs: int
    join_rate: float
    joined: int
    join_failures: list[str]
    join_p50_ms: float
    join_p99_ms: float
    join_max_ms: float
    join_throughput: float
    join_cpu: dict[str, float]
    rss_before_mb: float
    rss_after_mb: float
    per_participant_kb: float
    idle_cpu: dict[str, float]
    steps: list[MessageStep] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    # (participants joined so far, join latency ms) in the order the joins completed: the chart's raw series.
    joins: list[tuple[int, float]] = field(default_factory=list)


async def _start_children(module: str, count: int, cluster: Cluster, prefix: str) -> list[Child]:
    children = [Child(module, f"{prefix}-{i + 1}", cluster.log_dir) for i in range(count)]
    await asyncio.gather(*(c.start() for c in children))
    return children


async def _quiet(cluster: Cluster, limit: float = 60.0) -> None:
    """Wait (bounded) until the server processes use under 20% of a core over a second: backlog drained."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        mark = CpuMark.take(cluster)
        await asyncio.sleep(1.0)
        if CpuMark.take(cluster).since(mark)["server"] < 0.2:
            return


def _cpu_text(cpu: dict[str, float]) -> str:
    return (f"server {cpu['server'] * 100:.0f}%, PostgreSQL+Redis {cpu['backing'] * 100:.0f}%, "
            f"clients {cpu['clients'] * 100:.0f}%, machine {cpu['machine'] * 100:.0f}%")


def _cpu_cell(cpu: dict[str, float]) -> str:
    return " / ".join(f"{cpu[k] * 100:.0f}%" for k in ("server", "backing", "clients", "machine"))


async def run_signalling(db: Database, args: argparse.Namespace) -> SignallingResult:
    """1,000 clients in 250 rooms: join latency, memory per participant, fan-out at fixed message rates."""
    cluster = Cluster(db, daphnes=args.daphne, env={"MEDIA_MODE": "inprocess"})
    await asyncio.to_thread(cluster.start)
    children: list[Child] = []
    try:
        children = await _start_children(SIGNAL_CLIENT, args.client_procs, cluster, "signal")
        await asyncio.sleep(2.0 * args.settle)
        rss0 = cluster.rss()
        specs: list[list[dict[str, Any]]] = [[] for _ in children]
        tag = os.getpid()
        for i in range(args.clients):
            specs[i % len(children)].append({
                "url": cluster.urls[(i // args.rooms) % len(cluster.urls)],
                "username": f"c{i}",
                "room": f"load-{tag}-{i % args.rooms}",
            })
        start = time.time() + 3.0
        per_child_rate = args.join_rate / len(children)
        calls = asyncio.gather(*(
            child.call({"op": "join", "clients": spec, "rate": per_child_rate, "start": start,
                        "max_participants": 50}, timeout=args.clients / args.join_rate + 180)
            for child, spec in zip(children, specs, strict=True)))
        await asyncio.sleep(max(0.0, start - time.time()))
        mark0 = CpuMark.take(cluster, children=children)
        answers = await calls
        mark1 = CpuMark.take(cluster, children=children)
        latencies = [x * 1000 for a in answers for x in a["latencies"]]
        failures = [f for a in answers for f in a["failures"]]
        last = max(a["last"] for a in answers)
        await asyncio.sleep(3.0 * args.settle)
        rss1 = cluster.rss()
        idle0 = CpuMark.take(cluster)
        await asyncio.sleep(3.0 * args.settle)
        joined = len(latencies)
        result = SignallingResult(
            clients=args.clients, rooms=args.rooms, daphnes=args.daphne, client_procs=len(children),
            join_rate=args.join_rate, joined=joined, join_failures=failures[:5],
            join_p50_ms=percentile(latencies, 0.5), join_p99_ms=percentile(latencies, 0.99),
            join_max_ms=max(latencies, default=float("nan")),
            join_throughput=joined / max(last - start, 1e-3), join_cpu=mark1.since(mark0),
            rss_before_mb=rss0 / MB, rss_after_mb=rss1 / MB,
            per_participant_kb=(rss1 - rss0) / 1024 / joined if joined else float("nan"),
            idle_cpu=CpuMark.take(cluster).since(idle0),
            joins=[(n, round(latency * 1000, 2)) for n, (_at, latency) in
                   enumerate(sorted(tuple(j) for a in answers for j in a.get("joins", [])), start=1)],
        )
        _out(f"signalling: {joined}/{args.clients} joined ({result.join_throughput:.0f}/s), join p50 "
             f"{result.join_p50_ms:.1f} ms p99 {result.join_p99_ms:.1f} ms, server RSS {rss0 / MB:.0f} -> "
             f"{rss1 / MB:.0f} MB ({result.per_participant_kb:.1f} KiB/participant); joining: "
             f"{_cpu_text(result.join_cpu)}")
        per_room = args.clients // args.rooms
        for rate in args.msg_rates:
            await _quiet(cluster)
            start = time.time() + 2.0
            calls = asyncio.gather(*(
                child.call({"op": "messages", "rate": rate, "seconds": args.msg_seconds, "start": start,
                            "drain": 5.0}, timeout=args.msg_seconds + 120) for child in children))
            await asyncio.sleep(max(0.0, start - time.time()))
            mark0 = CpuMark.take(cluster, children=children)
            await asyncio.sleep(args.msg_seconds)
            cpu = CpuMark.take(cluster, children=children).since(mark0)
            step_answers = await calls
            delivery = [x for a in step_answers for x in a["latencies"]]
            sent = sum(a["sent"] for a in step_answers)
            step = MessageStep(
                rate=rate, seconds=args.msg_seconds, sent=sent, acked=sum(a["acked"] for a in step_answers),
                errors=sum(a["errors"] for a in step_answers), delivered=sum(a["delivered"] for a in step_answers),
                expected=sent * (per_room - 1), duplicates=sum(a["duplicates"] for a in step_answers),
                latency_p50_ms=percentile(delivery, 0.5),
                latency_p99_ms=percentile(delivery, 0.99), cpu=cpu,
            )
            result.steps.append(step)
            _out(f"signalling: {rate:g} msg/s per client: {sent / step.seconds:.0f} msg/s sent, "
                 f"{step.delivered / step.seconds:.0f} deliveries/s ({step.delivered}/{step.expected}), "
                 f"latency p50 {step.latency_p50_ms:.1f} ms p99 {step.latency_p99_ms:.1f} ms; {_cpu_text(cpu)}")
            if not step.kept_up:
                _out("signalling: saturated (a message unacknowledged or undelivered within the window + 5 s, "
                     "or delivery p99 >= 1 s): higher rates skipped")
                break
        await asyncio.gather(*(child.call({"op": "close"}, timeout=60) for child in children))
        result.server_errors = cluster.errors()[:10]
        return result
    finally:
        await asyncio.gather(*(child.close() for child in children), return_exceptions=True)
        await asyncio.to_thread(cluster.stop)


def signalling_table(r: SignallingResult) -> str:
    """Markdown tables of part 1 (CPU: share of one core; the machine has 200%)."""
    lines = [
        "| clients | rooms | daphne procs | joined | joins paced | joins done | join p50 ms | join p99 ms "
        "| join max ms | CPU joining: server / PG+Redis / clients / machine | server CPU idle | RSS before MB "
        "| RSS after MB | per participant |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r.clients} | {r.rooms} | {r.daphnes} | {r.joined} | {r.join_rate:g}/s | {r.join_throughput:.0f}/s "
        f"| {r.join_p50_ms:.1f} | {r.join_p99_ms:.1f} | {r.join_max_ms:.1f} | {_cpu_cell(r.join_cpu)} "
        f"| {r.idle_cpu['server'] * 100:.0f}% "
        f"| {r.rss_before_mb:.0f} | {r.rss_after_mb:.0f} | {r.per_participant_kb:.1f} KiB |",
        "",
        "| msg/s per client | messages/s | acked | errors | deliveries/s | delivered / expected | duplicates "
        "| delivery p50 ms | delivery p99 ms | CPU: server / PG+Redis / clients / machine | kept up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in r.steps:
        lines.append(
            f"| {s.rate:g} | {s.sent / s.seconds:.0f} | {s.acked} | {s.errors} | {s.delivered / s.seconds:.0f} "
            f"| {s.delivered}/{s.expected} | {s.duplicates} | {s.latency_p50_ms:.1f} | {s.latency_p99_ms:.1f} "
            f"| {_cpu_cell(s.cpu)} | {'yes' if s.kept_up else 'no'} |")
    return "\n".join(lines)


# --- part 2: soak ------------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    """Figures of part 2."""

    seconds: float
    population: int
    rooms: int
    life: list[float]
    msg_rate: float
    deadline: float
    counts: dict[str, int]
    messages: int
    required: int
    received: int
    lost: int
    lost_examples: list[str]
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    samples: list[tuple[float, float]]
    slope_all: float
    slope_after_warmup: float
    server_cpu: dict[str, float]
    server_errors: list[str] = field(default_factory=list)


def count_losses(sessions: list[dict[str, Any]], messages: list[dict[str, Any]],
                 deadline: float) -> tuple[int, int, list[str], list[float]]:
    """(required, lost, examples, delivery ms of the required pairs received).

    Message m is in flight from sent(m) (just before its sender wrote ``send_message``) until its last arrival
    at any session, or until sent(m) + ``deadline`` if it reached nobody. Session X must have received m (by
    id) iff X is in m's room, X did not send m, X had received its ``state`` before sent(m), and X began to
    leave or drop after the flight ended.
    """
    by_room: dict[str, list[dict[str, Any]]] = {}
    last_arrival: dict[int, float] = {}
    for s in sessions:
        arrivals = {i: at for i, at in s["ids"]}
        by_room.setdefault(s["room"], []).append({**s, "idset": arrivals})
        for i, at in arrivals.items():
            last_arrival[i] = max(at, last_arrival.get(i, 0.0))
    required = lost = 0
    examples: list[str] = []
    latencies: list[float] = []
    for m in messages:
        flight_end = last_arrival.get(m["id"], m["sent"] + deadline)
        for s in by_room.get(m["room"], ()):
            if s["sid"] != m["sid"] and s["joined"] < m["sent"] and flight_end < s["until"]:
                required += 1
                at = s["idset"].get(m["id"])
                if at is None:
                    lost += 1
                    if len(examples) < 5:
                        examples.append(f"message {m['id']} from {m['sid']} in {m['room']} not at {s['sid']}")
                else:
                    latencies.append((at - m["sent"]) * 1000)
    return required, lost, examples, latencies


async def run_soak(db: Database, args: argparse.Namespace) -> SoakResult:
    """A steady population joining, messaging, leaving and dropping; RSS slope and lost messages."""
    cluster = Cluster(db, daphnes=args.daphne, env={"MEDIA_MODE": "inprocess"})
    await asyncio.to_thread(cluster.start)
    procs = 2
    children: list[Child] = []
    try:
        children = await _start_children(SIGNAL_CLIENT, procs, cluster, "soak")
        tag = os.getpid()
        rooms = [f"soak-{tag}-{i}" for i in range(args.soak_rooms)]
        start = time.time() + 2.0
        drain = args.deadline + 2.0
        calls = asyncio.gather(*(
            child.call({"op": "soak", "slots": args.soak_clients // procs, "rooms": rooms, "urls": cluster.urls,
                        "start": start, "seconds": args.soak_seconds, "drain": drain,
                        "life_min": args.soak_life[0], "life_max": args.soak_life[1],
                        "msg_rate": args.soak_msg_rate, "drop_share": 0.5, "max_participants": 100},
                       timeout=args.soak_seconds + drain + 300) for child in children))
        await asyncio.sleep(max(0.0, start - time.time()))
        mark0 = CpuMark.take(cluster, children=children)
        t0 = mark0.at
        samples: list[tuple[float, float]] = []
        while time.monotonic() - t0 < args.soak_seconds:
            samples.append(((time.monotonic() - t0) / 60, cluster.rss() / MB))
            await asyncio.sleep(min(args.soak_sample, max(0.0, args.soak_seconds - (time.monotonic() - t0))))
        samples.append(((time.monotonic() - t0) / 60, cluster.rss() / MB))
        server_cpu = CpuMark.take(cluster, children=children).since(mark0)
        answers = await calls
        sessions = [s for a in answers for s in a["sessions"]]
        messages = [m for a in answers for m in a["messages"]]
        counts: dict[str, int] = {}
        for a in answers:
            for key, value in a["counts"].items():
                counts[key] = counts.get(key, 0) + value
        raw = cluster.log_dir / "soak-raw.json"
        raw.write_text(json.dumps({"sessions": sessions, "messages": messages, "samples": samples}))
        _out(f"soak: raw sessions and messages in {raw}")
        required, lost, examples, delivery = count_losses(sessions, messages, args.deadline)
        warm = args.soak_seconds / 60 / 5
        result = SoakResult(
            seconds=args.soak_seconds, population=args.soak_clients // procs * procs, rooms=args.soak_rooms,
            life=list(args.soak_life), msg_rate=args.soak_msg_rate, deadline=args.deadline, counts=counts,
            messages=len(messages), required=required, received=required - lost, lost=lost,
            lost_examples=examples, latency_p50_ms=percentile(delivery, 0.5),
            latency_p99_ms=percentile(delivery, 0.99), latency_max_ms=max(delivery, default=float("nan")),
            samples=samples, slope_all=slope(samples),
            slope_after_warmup=slope([p for p in samples if p[0] >= warm]), server_cpu=server_cpu,
            server_errors=cluster.errors()[:10],
        )
        _out(f"soak: {counts} {len(messages)} messages, {required} required deliveries, {lost} lost; RSS "
             f"{samples[0][1]:.0f} -> {samples[-1][1]:.0f} MB, slope {result.slope_all:+.2f} MB/min "
             f"({result.slope_after_warmup:+.2f} after the first fifth); {_cpu_text(server_cpu)}")
        return result
    finally:
        await asyncio.gather(*(child.close() for child in children), return_exceptions=True)
        await asyncio.to_thread(cluster.stop)


def soak_table(r: SoakResult) -> str:
    """Markdown table of part 2."""
    c = r.counts
    return "\n".join([
        "| duration | population | rooms | joins | leaves | drops | failed joins | messages | unacked "
        "| required deliveries | received | lost | duplicates | delivery p50 / p99 / max ms | RSS start MB "
        "| RSS end MB | slope MB/min (all) | slope MB/min (after 1st fifth) "
        "| CPU: server / PG+Redis / clients / machine |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r.seconds:g} s | {r.population} | {r.rooms} | {c.get('joins', 0)} | {c.get('leaves', 0)} "
        f"| {c.get('drops', 0)} | {c.get('failed_joins', 0)} | {r.messages} | {c.get('unacked', 0)} | {r.required} "
        f"| {r.received} | **{r.lost}** | {c.get('duplicates', 0)} "
        f"| {r.latency_p50_ms:.0f} / {r.latency_p99_ms:.0f} / {r.latency_max_ms:.0f} "
        f"| {r.samples[0][1]:.0f} | {r.samples[-1][1]:.0f} | {r.slope_all:+.2f} "
        f"| {r.slope_after_warmup:+.2f} | {_cpu_cell(r.server_cpu)} |",
    ])


# --- part 3: media ------------------------------------------------------------------------------------------


@dataclass
class MediaStep:
    """The whole system with ``rooms`` 3-person rooms."""

    rooms: int
    seconds: float
    video_fps: float
    """Mean video frames/s per played stream (expected 30)."""
    worst_fps: float
    video_loss: float
    audio_loss: float
    audio_pps: float
    relay_cpu: float
    signalling_cpu: float
    client_cpu: float
    ok: bool


@dataclass
class MediaResult:
    """Figures of part 3."""

    steps: list[MediaStep]
    held: int
    limited_by: str
    workers: int
    client_procs: int
    audio: bool
    clip: str
    error: str = ""
    server_errors: list[str] = field(default_factory=list)


def media_ok(step_fps: float, worst_fps: float, loss: float) -> bool:
    """Full frame rate (mean >= 29.4 fps, i.e. 98%, and no played stream under 27) and under 1% packet loss."""
    return step_fps >= 29.4 and worst_fps >= 27.0 and loss < 0.01


async def run_media(db: Database, args: argparse.Namespace) -> MediaResult:
    """Ramp 3-person rooms (each publishes VP8 640x480 + Opus and plays the other two) until it degrades."""
    cluster = Cluster(db, daphnes=1, workers=args.media_workers, env={"MEDIA_MODE": "workers"})
    await asyncio.to_thread(cluster.start)
    children: list[Child] = []
    steps: list[MediaStep] = []
    clip = ""
    error = ""
    try:
        children = await _start_children(MEDIA_CLIENT, args.media_client_procs, cluster, "media")
        prepared = await asyncio.gather(*(c.call({"op": "prepare", "audio": args.media_audio}, timeout=180)
                                          for c in children))
        clip = prepared[0]["clip"]
        await asyncio.sleep(3.0 * args.settle)  # let the workers register
        tag = os.getpid()
        for rooms in range(1, args.media_max_rooms + 1):
            child = children[(rooms - 1) % len(children)]
            try:
                await child.call({"op": "add_room", "url": cluster.urls[0], "room": f"media-{tag}-{rooms}"},
                                 timeout=90)
            except (TimeoutError, RuntimeError) as exc:
                error = f"room {rooms} could not be set up: {exc}"[:300]
                _out(f"media: {error}")
                break
            await asyncio.sleep(3.0 * args.settle)
            before = await asyncio.gather(*(c.call({"op": "snapshot"}, timeout=30) for c in children))
            r0, s0, t0 = cluster.cpu(cluster.worker_pids), cluster.cpu(cluster.daphne_pids), time.monotonic()
            await asyncio.sleep(args.media_seconds)
            after = await asyncio.gather(*(c.call({"op": "snapshot"}, timeout=30) for c in children))
            elapsed = time.monotonic() - t0
            relay = (cluster.cpu(cluster.worker_pids) - r0) / elapsed
            signalling = (cluster.cpu(cluster.daphne_pids) - s0) / elapsed
            step = _media_step(rooms, before, after, elapsed, relay, signalling)
            steps.append(step)
            _out(f"media: {rooms} rooms: {step.video_fps:.1f} fps mean (worst {step.worst_fps:.1f}), video loss "
                 f"{step.video_loss * 100:.2f}%, audio loss {step.audio_loss * 100:.2f}%, relay CPU "
                 f"{relay * 100:.0f}% ({relay * 100 / rooms:.1f}%/room), signalling {signalling * 100:.0f}%, "
                 f"clients {step.client_cpu * 100:.0f}% CPU -> {'ok' if step.ok else 'DEGRADED'}")
            if not step.ok:
                break
        server_errors = cluster.errors()[:10]
    finally:
        await asyncio.gather(*(child.close() for child in children), return_exceptions=True)
        await asyncio.to_thread(cluster.stop)
    held = 0
    for step in steps:
        if not step.ok:
            break
        held = step.rooms
    return MediaResult(steps=steps, held=held, limited_by=_limit(steps, args), workers=args.media_workers,
                       client_procs=args.media_client_procs, audio=args.media_audio, clip=clip, error=error,
                       server_errors=server_errors)


def _media_step(rooms: int, before: list[dict[str, Any]], after: list[dict[str, Any]], elapsed: float,
                relay: float, signalling: float) -> MediaStep:
    fps: list[float] = []
    video = [0, 0]  # received, expected
    audio = [0, 0]
    for b, a in zip(before, after, strict=True):
        for key, stream in a["streams"].items():
            old = b["streams"].get(key, {"frames": 0, "received": 0, "expected": 0})
            target = video if stream["kind"] == "video" else audio
            target[0] += stream["received"] - old["received"]
            target[1] += stream["expected"] - old["expected"]
            if stream["kind"] == "video":
                fps.append((stream["frames"] - old["frames"]) / elapsed)
    client_cpu = sum(a["cpu"] - b["cpu"] for b, a in zip(before, after, strict=True)) / elapsed
    video_loss = 1 - video[0] / video[1] if video[1] else 1.0
    audio_loss = 1 - audio[0] / audio[1] if audio[1] else 0.0
    mean_fps = statistics.fmean(fps) if fps else 0.0
    worst = min(fps, default=0.0)
    expected_streams = rooms * 6
    ok = len(fps) == expected_streams and media_ok(mean_fps, worst, max(video_loss, audio_loss))
    return MediaStep(rooms=rooms, seconds=elapsed, video_fps=mean_fps, worst_fps=worst, video_loss=video_loss,
                     audio_loss=audio_loss, audio_pps=audio[0] / elapsed / max(1, rooms * 6), relay_cpu=relay,
                     signalling_cpu=signalling, client_cpu=client_cpu, ok=ok)


def _limit(steps: list[MediaStep], args: argparse.Namespace) -> str:
    """Which side limited the figure, from the CPU shares at the first degraded step."""
    if not steps:
        return "nothing measured"
    last = steps[-1]
    if last.ok:
        return f"not reached: the ramp stopped at --media-max-rooms {args.media_max_rooms}"
    cores = os.cpu_count() or 1
    total = last.relay_cpu + last.signalling_cpu + last.client_cpu
    per_client_proc = last.client_cpu / max(1, args.media_client_procs)
    per_worker = last.relay_cpu / max(1, args.media_workers)
    facts = (f"at {last.rooms} rooms the clients used {last.client_cpu * 100:.0f}% CPU "
             f"({per_client_proc * 100:.0f}% per client process), the relay {last.relay_cpu * 100:.0f}% "
             f"({per_worker * 100:.0f}% per worker), signalling {last.signalling_cpu * 100:.0f}%, "
             f"together {total * 100:.0f}% of {cores * 100}%")
    if total >= 0.9 * cores:
        bigger = "the clients" if last.client_cpu > last.relay_cpu else "the relay"
        return f"the machine's CPU as a whole, {bigger} using the larger share — " + facts
    if per_client_proc >= 0.9:
        return "the clients (Python aiortc senders and receivers) — " + facts
    if per_worker >= 0.9:
        return "the relay — " + facts
    return "neither side's CPU (something else: network, scheduling) — " + facts


def media_table(r: MediaResult) -> str:
    """Markdown table of part 3."""
    lines = [
        "| rooms | played streams | video fps mean | worst | video loss | audio loss | audio pkts/s per stream "
        "| relay CPU | relay CPU per room | signalling CPU | client CPU | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in r.steps:
        lines.append(
            f"| {s.rooms} | {s.rooms * 6} | {s.video_fps:.1f} | {s.worst_fps:.1f} | {s.video_loss * 100:.2f}% "
            f"| {s.audio_loss * 100:.2f}% | {s.audio_pps:.0f} | {s.relay_cpu * 100:.0f}% "
            f"| {s.relay_cpu * 100 / s.rooms:.1f}% | {s.signalling_cpu * 100:.0f}% | {s.client_cpu * 100:.0f}% "
            f"| {'ok' if s.ok else 'degraded'} |")
    return "\n".join(lines)


# --- report -------------------------------------------------------------------------------------------------

SECTION_BEGIN = "<!-- benchmarks.load: section begin (python -m benchmarks.load replaces its own blocks) -->"
SECTION_END = "<!-- benchmarks.load: section end -->"
D_MARKER = "<!-- generated by python -m benchmarks"


def _block(part: str, body: str) -> str:
    return f"<!-- load:{part}:begin -->\n{body}\n<!-- load:{part}:end -->"


def write_doc(path: Path, blocks: dict[str, str]) -> None:
    """Put the section into ``path`` (before python -m benchmarks' generated tail, which it rewrites) and
    replace the blocks of the parts that ran; other parts' blocks stay as they were."""
    text = path.read_text() if path.exists() else ""
    if SECTION_BEGIN not in text:
        section = "\n".join([SECTION_BEGIN, "", SECTION_TEXT.strip(), "",
                             *(_block(p, "_Not run yet._") + "\n" for p in PARTS), SECTION_END, ""])
        if D_MARKER in text:
            head, tail = text.split(D_MARKER, 1)
            text = head.rstrip("\n") + "\n\n" + section + "\n" + D_MARKER + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section
    for part, body in blocks.items():
        begin, end = f"<!-- load:{part}:begin -->", f"<!-- load:{part}:end -->"
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + _block(part, body) + tail
    path.write_text(text)


SECTION_TEXT = """
## Scale-out, load and soak

`python -m benchmarks.load` (`make bench-load`; `make bench` runs it after `python -m benchmarks`) measures
the signalling server and the relay under many clients. It starts the server itself: a throwaway PostgreSQL
database `bench_load_<pid>` (created with `createdb`, migrated, dropped at the end), Redis db 7 (emptied
before each part), daphne processes started directly on free ports (the layout of `make run-cluster` without
its Python TCP balancer, whose CPU would otherwise count as the server's: clients are spread over the daphne
ports instead) and, for media, `manage.py runmedia` workers. Clients run in separate processes on loopback.
`--part signalling|soak|media` runs one part, `--quick` runs all three tiny (about a minute, no doc).

**Limits raised for the benchmark** through the environment of every server process:
`WS_MAX_CONNECTIONS_PER_IP=0` (no per-IP cap: all clients share 127.0.0.1, which is exempt by default
anyway), `WS_RATE_COMMANDS_PER_SECOND=0` and `WS_RATE_MESSAGES_PER_SECOND=0` (no flood control). Also
`DEBUG=false`, `LOG_LEVEL=WARNING`, and `DATABASE_CONN_MAX_AGE=60` (persistent database connections, as the
README advises for PostgreSQL). Everything else is the default (e.g. `ROOM_IDLE_TIMEOUT=60`).

How each figure is taken:

- **Signalling.** Raw `websockets` clients (no compression, no keep-alive pings) speaking the JSON protocol,
  spread over several client processes (uvloop) and over the daphne processes (`MEDIA_MODE=inprocess`, no
  media used). Members of one room sit on different daphne processes, so fan-out crosses the Redis channel
  layer. *Join latency*: from sending `hello` on an open socket to receiving `state` (hello -> established ->
  join -> state), joins paced at a fixed total rate. *Memory per participant*: summed RSS of the daphne
  processes (`/proc/<pid>/statm`) 3 s after the last join minus before the first connection, divided by the
  participants. *Server CPU*: utime+stime of all server processes from `/proc/<pid>/stat`, as a share of one
  core (200% = both cores). *Fan-out*: every client sends a public message every 1/rate s (random phase) for
  the window; each recipient counts the messages of others (not its own) whose send time, carried in the
  text, falls in the window, and the delay from send to receipt (wall clock, same host); expected = messages
  sent x (room size - 1).
- **Soak.** A steady population split over two client processes: each slot loops over sessions (connect,
  `hello`, `join` a random room, send public messages as a Poisson process, then after a lifetime drawn
  uniformly, either `leave` or drop: the TCP socket is aborted without a close frame; then a new session
  with a new login). Summed daphne RSS is sampled every few seconds; the slope is a least-squares fit in
  MB/minute over all samples and over the samples after the first fifth (warm-up: allocator arenas,
  connection pools, Django caches).
  **No lost message**, precisely: each sender records the message id (from its `ack`), the room and the
  wall time just before it wrote `send_message` (*sent*); each session records its room, when it had received
  `state` (*joined*), when it began to leave or drop (*until*) and the id and arrival time of every `message`
  event it got. Message m is *in flight* from sent(m) until its last arrival at any session (or sent(m) + 5 s
  if it reached nobody). Session X must have received m iff X is in m's room, X did not send m,
  joined(X) < sent(m), and until(X) > the end of m's flight. Lost = such pairs whose id X never got;
  duplicates = ids a session got twice. Sessions alive at the end stay 7 s after the last send. Only public
  messages are sent. The raw sessions and messages are kept in the run's log directory (`soak-raw.json`).
- **Media.** One daphne, two media workers (`MEDIA_MODE=workers`, rooms placed on the least-loaded worker).
  Rooms of 3 participants are added one at a time; each participant publishes VP8 640x480 at 30 fps (+ Opus,
  20 ms frames) and plays the other two. Publishers send **pre-encoded** packets (a clip encoded once with
  libvpx / libopus into `av.Packet`s, looped through a track whose `recv()` returns them, paced, like
  `python -m benchmarks`); players are aiortc peers whose receivers' `_handle_rtp_packet` is replaced by a
  counting function (no jitter buffer, no decoding, no NACKs). Per played stream: frames = RTP packets with
  the marker bit (one per VP8 frame); loss = 1 - received / expected, expected from the extended RTP
  sequence numbers (highest - first + 1) over the window (6 s, after 3 s settling). A step is *ok* with a
  mean >= 29.4 fps (98% of 30), no played stream under 27 fps, and under 1% loss (video and audio); the ramp
  stops at the first step that is not. Relay CPU = the media workers' CPU; signalling CPU = daphne's; client
  CPU = the client processes'.
- The machine has 2 cores, shared with other people's work while these ran: the load average is recorded
  with each run. The clients run on the same 2 cores as the server.
"""


def _machine(args: argparse.Namespace) -> str:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}, {os.cpu_count()} cores "
            f"({cpu_model or platform.machine()}), Python {platform.python_version()}, load average "
            f"{args.load_before} before, {load_text()} after")


def signalling_block(r: SignallingResult, command: str, args: argparse.Namespace) -> str:
    """The doc block of part 1."""
    lines = [
        "### Signalling: 1,000 clients",
        "",
        f"- Command: `{command}`; {_machine(args)}",
        f"- {r.clients} clients in {r.rooms} rooms ({r.clients // r.rooms} each), {r.client_procs} client "
        f"processes, {r.daphnes} daphne processes, joins paced at {r.join_rate:g}/s, message steps of "
        f"{r.steps[0].seconds:g} s" if r.steps else "",
        "",
        signalling_table(r),
        "",
    ]
    if r.join_failures:
        lines.append(f"Join failures (first): {'; '.join(r.join_failures)}")
    if r.server_errors:
        lines.append(f"Server log errors (first): {'; '.join(r.server_errors)}")
    return "\n".join(lines)


def soak_block(r: SoakResult, command: str, args: argparse.Namespace) -> str:
    """The doc block of part 2."""
    lines = [
        "### Soak",
        "",
        f"- Command: `{command}`; {_machine(args)}",
        f"- {r.population} clients in {r.rooms} rooms, lifetimes {r.life[0]:g}-{r.life[1]:g} s, half of the "
        f"departures are drops, {r.msg_rate:g} messages/s per client, D = {r.deadline:g} s, "
        f"{len(r.samples)} RSS samples",
        "",
        soak_table(r),
        "",
    ]
    standard = {"joins", "leaves", "drops", "failed_joins", "unacked", "duplicates"}
    refused = {k: v for k, v in r.counts.items() if k not in standard}
    if refused:
        lines.append(f"Commands refused with an error reply: {refused}")
    if r.lost_examples:
        lines.append(f"Lost (first): {'; '.join(r.lost_examples)}")
    if r.server_errors:
        lines.append(f"Server log errors (first): {'; '.join(r.server_errors)}")
    return "\n".join(lines)


def media_block(r: MediaResult, command: str, args: argparse.Namespace) -> str:
    """The doc block of part 3."""
    lines = [
        "### Media: 3-person rooms",
        "",
        f"- Command: `{command}`; {_machine(args)}",
        f"- {r.workers} media workers, 1 daphne, {r.client_procs} client processes; "
        f"{'VP8 + Opus' if r.audio else 'VP8 only'}; {r.clip}; {args.media_seconds:g} s window per step "
        f"after 3 s settling",
        f"- **Held: {r.held} rooms** ({r.held * 3} participants, {r.held * 6} played streams) at full frame rate "
        f"with under 1% loss" + (f"; relay CPU {r.steps[r.held - 1].relay_cpu * 100 / r.held:.1f}% of a core "
                                 f"per room there" if r.held else ""),
        f"- Limited by: {r.limited_by}",
        "",
        media_table(r),
        "",
    ]
    if r.error:
        lines.append(f"Stopped: {r.error}")
    if r.server_errors:
        lines.append(f"Server log errors (first): {'; '.join(r.server_errors)}")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, command: str) -> tuple[dict[str, str], dict[str, Any], bool]:
    """Run the chosen parts against a throwaway database; the doc blocks, the raw series for the charts
    (benchmarks/charts.py) and whether the soak lost nothing."""
    db = Database()
    await asyncio.to_thread(db.create)
    blocks: dict[str, str] = {}
    series: dict[str, Any] = {}
    healthy = True
    try:
        for part in args.part:
            try:
                if part == "signalling":
                    sig = await run_signalling(db, args)
                    _out("\n" + signalling_table(sig) + "\n")
                    blocks["signalling"] = signalling_block(sig, command, args)
                    series["joins"] = {"clients": sig.clients, "join_rate": sig.join_rate, "points": sig.joins}
                    healthy = healthy and sig.joined == sig.clients
                elif part == "soak":
                    soak = await run_soak(db, args)
                    _out("\n" + soak_table(soak) + "\n")
                    blocks["soak"] = soak_block(soak, command, args)
                    series["soak"] = {"seconds": soak.seconds, "population": soak.population,
                                      "samples": [[round(m, 3), round(mb, 1)] for m, mb in soak.samples]}
                    healthy = healthy and soak.lost == 0
                elif part == "media":
                    media = await run_media(db, args)
                    _out("\n" + media_table(media) + f"\nheld: {media.held} rooms; limited by {media.limited_by}\n")
                    blocks["media"] = media_block(media, command, args)
                    healthy = healthy and media.held > 0
            except Exception as exc:
                logger.exception("part %s failed", part)
                blocks[part] = f"Part {part} failed in `{command}`: {type(exc).__name__}: {str(exc)[:300]}"
                healthy = False
    finally:
        await asyncio.to_thread(db.drop)
    return blocks, series, healthy


def main(argv: list[str] | None = None) -> int:
    """Run, print the tables, write the doc section; non-zero when a part failed outright or lost messages."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = "make bench-load" if os.environ.get("MAKELEVEL") and not given else (
        "python -m benchmarks.load " + shlex.join(given)).strip()
    args.load_before = load_text()
    _out(f"limits raised for the benchmark: {BENCH_LIMITS}")
    started = time.monotonic()
    blocks, series, healthy = uvloop.run(run(args, command))
    _out(f"took {(time.monotonic() - started) / 60:.1f} min")
    if args.doc is not None and not args.no_doc:
        write_doc(args.doc, blocks)
        _out(f"wrote {args.doc}")
        if series:
            from benchmarks.charts import SERIES, update_series

            update_series(SERIES, series)
            _out(f"raw series for the charts in {SERIES} (python -m benchmarks.charts draws them)")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
