"""`python -m benchmarks`: our relay against Janus, 1 publisher to K players; `--quick` for a smoke run."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import uvloop

from benchmarks.janus import JanusServer
from benchmarks.media import encode_clip
from benchmarks.ours import OurServer
from benchmarks.procs import CLIENT_CPU, RELAY_CPU, pin_self
from benchmarks.profile import summarize
from benchmarks.report import markdown_table, text_table, verdicts
from benchmarks.runner import Result, Server, failed_result, measure

logger = logging.getLogger("benchmarks")

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: K=2, 3 s, our server only, no doc")
    parser.add_argument("--players", "-k", type=int, nargs="+", default=[20, 40, 80, 160], help="K values")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per K and server")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after every player got a frame")
    parser.add_argument("--servers", nargs="+", default=["ours", "janus"], choices=["ours", "janus"])
    parser.add_argument("--doc", type=Path, default=None, help=f"write the report here (full runs: {DOC})")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/performance.md")
    parser.add_argument("--nice", type=int, default=-10,
                        help="niceness of the clients and the servers (they inherit it), to shield the "
                             "measurement from other work on a shared machine; needs root below 0")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="sample our relay with py-spy during each window into DIR (implies --no-doc: "
                             "the sampler costs the relay CPU)")
    args = parser.parse_args(argv)
    if args.quick:
        args.players, args.seconds, args.warmup = [2], 3.0, 1.0
        if "--servers" not in (argv if argv is not None else sys.argv[1:]):
            args.servers = ["ours"]
    if args.profile is not None:
        args.no_doc = True
    if args.doc is None and not args.quick and not args.no_doc:
        args.doc = DOC
    return args


def _renice(target: int) -> int:
    """Set this process's niceness (servers started later inherit it); the niceness in effect."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, target)
    except OSError as exc:
        logger.warning("cannot set niceness %s: %s", target, exc)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _load() -> str:
    """Load average, and the share of time some task waited for a CPU (PSI, last 60 s) when available."""
    text = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        text += f" (CPU pressure avg60 {some.split('avg60=')[1].split()[0]}%)"
    except (OSError, IndexError):
        pass
    return text


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def make_server(name: str) -> Server:
    """A fresh server object for one measurement."""
    return OurServer() if name == "ours" else JanusServer()


async def run(args: argparse.Namespace) -> tuple[list[Result], dict[str, str], str]:
    """Every (K, server) measurement in turn."""
    started = time.monotonic()
    clip = await asyncio.to_thread(encode_clip, 300)
    clip_text = (
        f"{len(clip.packets)} pre-encoded VP8 frames 640x480 (libvpx), {clip.bitrate / 1e6:.2f} Mbit/s at 30 fps, "
        f"{clip.keyframes} keyframes per cycle (one every 2 s), {len(clip.unique)} distinct frame keys"
    )
    _out(f"clip: {clip_text} (encoded in {time.monotonic() - started:.1f} s)")
    results: list[Result] = []
    descriptions: dict[str, str] = {}
    for players in args.players:
        for name in args.servers:
            if name == "janus" and not JanusServer.available():
                _out("janus: not installed (apt-get install janus) or anchor config missing; skipped")
                continue
            server = make_server(name)
            _out(f"K={players} {name}: connecting...")
            try:
                profile = None
                if args.profile is not None and name == "ours":
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile = args.profile / f"ours-k{players}.txt"
                result = await measure(server, clip, players, args.warmup, args.seconds, profile)
                if profile is not None and profile.exists():
                    _out(summarize(profile))
                server.cleanup()
            except Exception as exc:
                logger.exception("K=%s %s failed", players, name)
                result = failed_result(name, players, exc)
            descriptions[name] = server.describe()
            results.append(result)
            _out(
                f"K={players} {name}: {result.packets_per_s:.0f} pkts/s, {result.frames_per_s:.0f}/"
                f"{result.expected_frames_per_s:.0f} frames/s, relay {result.relay_cpu * 100:.1f}% CPU, "
                f"{result.us_per_packet:.1f} us/pkt, latency p50 {result.latency_p50_ms:.1f} ms "
                f"p99 {result.latency_p99_ms:.1f} ms, client {result.client_cpu * 100:.1f}% CPU"
                + (f" [{result.error}]" if result.error else "")
            )
    return results, descriptions, clip_text


def write_doc(path: Path, command: str, results: list[Result], descriptions: dict[str, str], clip: str,
              args: argparse.Namespace, elapsed: float) -> None:
    """Replace the generated section of docs/performance.md (text above the marker is kept)."""
    marker = "<!-- generated by python -m benchmarks: everything below is replaced on each run -->"
    head = ""
    if path.exists() and marker in path.read_text():
        head = path.read_text().split(marker)[0]
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        marker,
        "",
        "## Latest run",
        "",
        f"- Command: `{command}` (took {elapsed / 60:.1f} min)",
        f"- Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {os.cpu_count()} cores ({cpu_model or platform.machine()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; shared with other work while it ran "
        f"(load average {args.load_before} before, {args.load_after} after)",
        f"- Relay pinned to CPU {RELAY_CPU} (`taskset -c {RELAY_CPU}`), all clients in one process pinned "
        f"to CPU {CLIENT_CPU}, both at niceness {args.niceness} (the servers inherit it), loopback",
        f"- Media: {clip}; one publisher, K players, video only",
        f"- Window: {args.seconds:g} s per K and server after every player received a frame and "
        f"{args.warmup:g} s of warm-up",
    ]
    for name, text in descriptions.items():
        lines.append(f"- {name}: {text}")
    lines += ["", markdown_table(results), ""]
    lines += ["Targets (issue 3):", ""] + [f"- {v}" for v in verdicts(results)] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the doc."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    pin_self(CLIENT_CPU)
    args.niceness = _renice(args.nice)
    command = "make bench" if os.environ.get("MAKELEVEL") else "python -m benchmarks " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    started = time.monotonic()
    args.load_before = _load()
    results, descriptions, clip = uvloop.run(run(args))
    args.load_after = _load()
    elapsed = time.monotonic() - started
    _out()
    _out(text_table(results))
    _out()
    for line in verdicts(results):
        _out(line)
    for name, text in descriptions.items():
        _out(f"{name}: {text}")
    _out(f"load average: {args.load_before} before, {args.load_after} after; niceness {args.niceness}")
    if args.doc is not None:
        write_doc(args.doc, command, results, descriptions, clip, args, elapsed)
        _out(f"written to {args.doc}")
    failed = [r for r in results if r.error and r.connected == 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
