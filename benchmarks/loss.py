"""`python -m benchmarks.loss`: the three-way chat under random UDP loss on every hop, ours and Janus, one run.

The scenario of tests/network/test_loss.py (issue 12): a network namespace with a veth pair (198.18.0.1 and
198.18.0.2, the benchmarking range) holds the server and three participant processes (ann, bob, cat); each
publishes a 320x240 30 fps counter video (aiortc VP8) and a tone (Opus) and plays the two others; an nftables
rule drops N % of the UDP packets arriving in the namespace.  "ours": daphne (relay in-process, SQLite, no
Redis) and participants on the Python SDK (tests/network/chat.py); "janus": Janus 1.1.2's VideoRoom with the
anchor's configuration (../shared/anchors/janus/) and a room created with the same 600 kbit/s publisher cap,
participants on aiortc with the Python SDK's receivers (benchmarks/janus_chat.py; "janus-aiortc": plain aiortc
receivers).  Needs root (ip netns, nft); figures go to
docs/performance.md, "Real networks" (the block between its markers), unless ``--no-doc``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.janus import ANCHOR, JanusServer
from benchmarks.procs import free_port, production_environment
from tests.network.netns import Namespace, cleanup_leftovers, missing_requirements
from tests.network.scenario import PRIORITY, Report, run_chat, table

logger = logging.getLogger("benchmarks.loss")

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
ARTIFACT = ROOT / "artifacts" / "bench-loss.json"
BEGIN = "<!-- benchmarks.loss: begin (python -m benchmarks.loss replaces this block) -->"
END = "<!-- benchmarks.loss: end -->"
BITRATE = 600_000
START_TIMEOUT = 60.0


class OurChatServer:
    """daphne inside the namespace: SQLite in a temporary directory, the in-memory channel layer, relay in-process."""

    name = "ours"

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-loss-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "daphne.log"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("TEST_DB_NAME", None)
        env.update({
            "DJANGO_SETTINGS_MODULE": "conference.settings",
            "DATABASE_URL": f"sqlite:///{self.workdir / 'bench.sqlite3'}",
            "REDIS_URL": "",
            "LOG_LEVEL": "WARNING",
            "MEDIA_CONNECT_TIMEOUT": "15",
            "MEDIA_PUBLISHER_MAX_BITRATE": str(BITRATE),
            **production_environment(),
        })
        return env

    def start(self) -> None:
        env = self.environment()
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True,
                       timeout=300)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.namespace.wrap([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                                     "conference.asgi:application"], nice=PRIORITY),
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait(self.namespace, f"http://127.0.0.1:{self.port}/healthz", None, self.process, self.log)

    def stop(self) -> None:
        _stop(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


class JanusChatServer:
    """Janus inside the namespace with the anchor's configuration (benchmarks.janus.JanusServer._configure)."""

    name = "janus"

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.janus = JanusServer()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.janus.url

    def start(self) -> None:
        self.janus._configure()
        workdir = self.janus.workdir
        log = workdir / "janus.log"
        self.process = subprocess.Popen(
            self.namespace.wrap(["janus", "-F", str(workdir), "-C", str(workdir / "janus.jcfg"), "-o", "-L",
                                 str(log)], nice=PRIORITY),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        body = json.dumps({"janus": "info", "transaction": "probe"}).encode()
        _wait(self.namespace, self.janus.url, body, self.process, log)

    def stop(self) -> None:
        _stop(self.process)
        if os.environ.get("BENCH_KEEP"):
            sys.stderr.write(f"janus log: {self.janus.workdir}/janus.log\n")
        else:
            self.janus.cleanup()


def _wait(namespace: Namespace, url: str, body: bytes | None, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``url`` from inside the namespace until it answers 200 (bounded)."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if namespace.call(answers, timeout=10):
            return
        time.sleep(0.2)
    text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT} s; log:\n{text}")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def summary(report: Report) -> dict[str, Any]:
    """The row of one run: fps range, streams that froze over 500 ms, longest gap, streams never decoded, audio."""
    streams = [figures for played in report.values() for figures in played.values()]
    fps = [f["fps"] for f in streams]
    audio = [f["audio_frames"] for f in streams]
    return {
        "fps_min": min(fps), "fps_max": max(fps), "fps_median": statistics.median(fps),
        "froze": sum(1 for f in streams if f["freezes"]),
        "longest_gap_ms": max(f["max_gap_ms"] for f in streams),
        "never": sum(1 for f in streams if f["first_frame_ms"] is None),
        "first_frame_ms": max((f["first_frame_ms"] for f in streams if f["first_frame_ms"] is not None), default=None),
        "audio_min": min(audio), "audio_max": max(audio),
        "stall_ms": max(f["viewer_max_stall_ms"] for f in streams),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| loss per hop | server | video fps (min-max of 6 streams) | streams that froze > 500 ms | longest gap "
        "| never decoded | latest first frame | audio frames | participants' loops late by up to |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        first = f"{row['first_frame_ms'] / 1000:.1f} s" if row["first_frame_ms"] is not None else "-"
        lines.append(
            f"| {row['loss']} % | {row['server']} | {row['fps_min']:.1f}-{row['fps_max']:.1f} | {row['froze']} "
            f"| {row['longest_gap_ms'] / 1000:.2f} s | {row['never']} | {first} "
            f"| {row['audio_min']}-{row['audio_max']} | {row['stall_ms']:.0f} ms |"
        )
    return "\n".join(lines)


def write_doc(doc: Path, text: str) -> None:
    """Replace the block between BEGIN and END in ``doc`` (it must exist)."""
    content = doc.read_text()
    start, end = content.index(BEGIN), content.index(END)
    doc.write_text(content[: start + len(BEGIN)] + "\n" + text + "\n" + content[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loss", description=__doc__.splitlines()[0])
    parser.add_argument("--losses", type=int, nargs="+", default=[0, 3, 5, 10], help="loss per hop, %%")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured media per run (first 3 s excluded)")
    parser.add_argument("--servers", nargs="+", default=["ours", "janus"], choices=["ours", "janus", "janus-aiortc"],
                        help="janus-aiortc: Janus with plain aiortc receivers instead of the SDK's")
    parser.add_argument("--no-doc", action="store_true", help=f"do not write {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    reason = missing_requirements()
    if reason:
        sys.stderr.write(f"benchmarks.loss skipped: {reason}\n")
        return 0
    if any(s.startswith("janus") for s in args.servers) and not JanusServer.available():
        sys.stderr.write(f"benchmarks.loss: janus or its anchor config ({ANCHOR}) is missing; running ours only\n")
        args.servers = [s for s in args.servers if not s.startswith("janus")]
    cleanup_leftovers()
    signal.signal(signal.SIGTERM, _terminated)  # a stopped run still removes its namespace and servers
    started = time.monotonic()
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    reports: dict[str, Any] = {}
    lan = Namespace.create("bench")
    try:
        lan.veth("v0", "198.18.0.1/24", peer=lan, peer_device="v1", peer_address="198.18.0.2/24")
        for loss in args.losses:
            for name in args.servers:
                server = OurChatServer(lan) if name == "ours" else JanusChatServer(lan)
                server.start()
                try:
                    lan.drop_udp(loss)
                    module = "tests.network.chat" if name == "ours" else "benchmarks.janus_chat"
                    report = run_chat(lan, None, f"loss-{loss}" if name == "ours" else str(4000 + loss),
                                      seconds=args.seconds, module=module, url=server.url,
                                      recovery=name != "janus-aiortc")
                finally:
                    lan.drop_udp(0)
                    server.stop()
                reports[f"{name} {loss}%"] = report
                row = {"loss": loss, "server": name, **summary(report)}
                rows.append(row)
                sys.stdout.write(f"=== {name}, {loss} % loss on every hop\n{table(report)}\n")
                sys.stdout.flush()
    finally:
        lan.delete()
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"rows": rows, "reports": reports}, indent=1))
    result = markdown(rows)
    sys.stdout.write(result + "\n")
    if not args.no_doc:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        load_after = os.getloadavg()
        stalls = max(row["stall_ms"] for row in rows)
        write_doc(DOC, (
            f"Run {when}, `python -m benchmarks.loss` (part of `make bench`; took "
            f"{(time.monotonic() - started) / 60:.1f} min), load average {load_before[0]:.1f} before and "
            f"{load_after[0]:.1f} after on the shared 2-core machine; the participants' event loops stalled up to "
            f"{stalls:.0f} ms (a late loop decodes late: gaps that long are the machine's).\n\n{result}"
        ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
