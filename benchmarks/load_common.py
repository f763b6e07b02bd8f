"""Load benchmarks: the server under test (throwaway PostgreSQL database, Redis db, daphne processes, media
workers), client child processes driven over pipes, the raw WebSocket client they run, /proc sampling and small
statistics."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

from benchmarks.procs import cpu_seconds, free_port, production_environment

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
DAPHNE_WS_LIMITS = ["--websocket-max-message-size", "2097152", "--websocket-max-frame-size", "2097152"]
PG_BASE = os.environ.get("BENCH_PG_URL", "postgres://root@127.0.0.1:5432")
REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "7"))
# The server's flood control and per-IP cap are raised for the benchmark (0 = unlimited): 1,000 clients share
# one loopback address and send at fixed rates; docs/performance.md says so.
BENCH_LIMITS = {
    # As a PostgreSQL deployment should run (README): keep database connections instead of one per command.
    "DATABASE_CONN_MAX_AGE": "60",
    "WS_MAX_CONNECTIONS_PER_IP": "0",
    "WS_RATE_COMMANDS_PER_SECOND": "0",
    "WS_RATE_MESSAGES_PER_SECOND": "0",
}


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process in bytes, from /proc/<pid>/statm."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES


def _stat_fields(pid: int | str) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def backing_cpu() -> float:
    """CPU seconds so far of PostgreSQL (the postmaster, its reaped and live backends) and redis-server.

    These serve every database on the machine, so other people's work is included.
    """
    total = 0.0
    postmasters: set[str] = set()
    children: dict[str, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm not in ("postgres", "redis-server"):
                continue
            fields = _stat_fields(entry.name)
        except OSError:
            continue
        if comm == "redis-server":
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        elif fields[1] == "1":
            postmasters.add(entry.name)
            # utime, stime, and cutime, cstime of the backends it has reaped
            total += sum(int(x) for x in fields[11:15]) / CLOCK_TICKS
        else:
            children.setdefault(fields[1], []).append(entry.name)
    for parent in postmasters:
        for pid in children.get(parent, []):
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of values, NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope dy/dx of (x, y) points; NaN with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return float("nan")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return float("nan")
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


def load_text() -> str:
    """Load average and CPU pressure (PSI avg60) of the machine right now."""
    text = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        text += f" (CPU pressure avg60 {some.split('avg60=')[1].split()[0]}%)"
    except (OSError, IndexError):
        pass
    return text


@dataclass
class CpuMark:
    """CPU counters at one moment: the server's processes, PostgreSQL + Redis, the whole machine."""

    at: float
    server: float
    backing: float
    busy: float
    clients: float = 0.0

    @classmethod
    def take(cls, cluster: Cluster, pids: list[int] | None = None, children: list[Child] | None = None) -> CpuMark:
        """Read the counters now (``children``: the client processes)."""
        clients = sum(c.cpu() for c in children or [])
        return cls(time.monotonic(), cluster.cpu(pids), backing_cpu(), machine_busy()[0], clients)

    def since(self, earlier: CpuMark) -> dict[str, float]:
        """Shares of one core between ``earlier`` and this mark: server, backing (PostgreSQL + Redis), machine."""
        elapsed = max(self.at - earlier.at, 1e-6)
        return {"server": (self.server - earlier.server) / elapsed,
                "backing": (self.backing - earlier.backing) / elapsed,
                "machine": (self.busy - earlier.busy) / elapsed,
                "clients": (self.clients - earlier.clients) / elapsed}


class Database:
    """A throwaway PostgreSQL database ``bench_load_<pid>``: created, migrated, dropped."""

    def __init__(self) -> None:
        self.name = f"bench_load_{os.getpid()}"
        self.url = f"{PG_BASE}/{self.name}"
        self.redis_url = f"{REDIS_BASE}/{REDIS_DB}"

    def _pg(self, tool: str) -> None:
        host_port = PG_BASE.split("@", 1)[1]
        host, _, port = host_port.partition(":")
        user = PG_BASE.split("//", 1)[1].split("@", 1)[0]
        subprocess.run([tool, "-h", host, "-p", port or "5432", "-U", user, *(["--if-exists"] if tool == "dropdb"
                        else []), self.name], check=True, capture_output=True, timeout=60)

    def create(self) -> None:
        """Create and migrate the database; empty the Redis db."""
        self._pg("dropdb")
        self._pg("createdb")
        env = server_environment(self, {})
        result = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed: {result.stderr[-3000:]}")
        self.flush_redis()

    def flush_redis(self) -> None:
        """Empty this benchmark's Redis db (channel layer groups, connection counters, media registry)."""
        subprocess.run(["redis-cli", "-u", self.redis_url, "FLUSHDB"], check=False, capture_output=True, timeout=30)

    def drop(self) -> None:
        """Drop the database and empty the Redis db."""
        try:
            self._pg("dropdb")
        except (subprocess.SubprocessError, OSError):
            logger.warning("dropping %s failed", self.name, exc_info=True)
        self.flush_redis()


def server_environment(db: Database, extra: dict[str, str]) -> dict[str, str]:
    """The environment of every server process of a run."""
    env = dict(os.environ)
    env.pop("TEST_DB_NAME", None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "conference.settings",
        "DATABASE_URL": db.url,
        "REDIS_URL": db.redis_url,
        **production_environment(),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **BENCH_LIMITS,
    })
    env.update(extra)
    return env


@dataclass
class Cluster:
    """N daphne processes (clients are spread over their ports) and W media workers, sharing Redis and
    PostgreSQL: the layout of scripts/run_cluster.py without its Python TCP balancer (its CPU would be
    counted as the server's)."""

    db: Database
    daphnes: int = 2
    workers: int = 0
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-load-")))

    @property
    def daphne_pids(self) -> list[int]:
        """The daphne processes."""
        return [p.pid for p in self.processes]

    @property
    def worker_pids(self) -> list[int]:
        """The media worker processes."""
        return [p.pid for p in self.worker_processes]

    @property
    def pids(self) -> list[int]:
        """Every server process."""
        return self.daphne_pids + self.worker_pids

    @property
    def urls(self) -> list[str]:
        """The WebSocket URL of each daphne process."""
        return [f"ws://127.0.0.1:{port}/ws/" for port in self.ports]

    def _spawn(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        env = server_environment(self.db, self.env)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def start(self, timeout: float = 60.0) -> None:
        """Start every process and wait (bounded) until each daphne answers /healthz."""
        self.db.flush_redis()
        for index in range(self.daphnes):
            port = free_port()
            self.ports.append(port)
            self.processes.append(self._spawn(
                [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), *DAPHNE_WS_LIMITS,
                 "conference.asgi:application"], f"daphne-{index + 1}"))
        for index in range(self.workers):
            self.worker_processes.append(self._spawn(
                [sys.executable, "manage.py", "runmedia", "--worker-id", f"bench-worker-{index + 1}"],
                f"worker-{index + 1}"))
        deadline = time.monotonic() + timeout
        for port, process in zip(self.ports, self.processes, strict=True):
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"daphne on {port} did not start; logs in {self.log_dir}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.2)

    def cpu(self, pids: list[int] | None = None) -> float:
        """CPU seconds of the given (default: all) server processes so far."""
        return sum(cpu_seconds(pid) for pid in (self.pids if pids is None else pids))

    def rss(self, pids: list[int] | None = None) -> int:
        """Summed RSS of the given (default: daphne) processes in bytes."""
        return sum(rss_bytes(pid) for pid in (self.daphne_pids if pids is None else pids))

    def errors(self) -> list[str]:
        """Lines of the server logs that report an ERROR or a traceback."""
        found: list[str] = []
        for path in sorted(self.log_dir.glob("*.log")):
            for line in path.read_text(errors="replace").splitlines():
                if " ERROR " in line or line.startswith("Traceback"):
                    found.append(f"{path.stem}: {line[:200]}")
        return found

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL)."""
        for process in self.processes + self.worker_processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self.processes + self.worker_processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
        self.worker_processes.clear()


class Child:
    """A client process (``python -m MODULE``) that takes one JSON command per stdin line and answers one JSON
    line on stdout."""

    def __init__(self, module: str, name: str, log_dir: Path) -> None:
        self.module = module
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        """Start the child process."""
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, limit=1 << 28, start_new_session=True,
            )

    async def call(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one command and wait (bounded) for its answer."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{self.name} exited; its log:\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    def cpu(self) -> float:
        """CPU seconds of the child so far (0 once it is gone)."""
        try:
            return cpu_seconds(self.pid)
        except (OSError, AssertionError):
            return 0.0

    async def close(self) -> None:
        """Ask the child to exit, then make sure it has."""
        if self.process is None:
            return
        if self.process.returncode is None:
            try:
                await self.call({"op": "exit"}, 15)
            except (TimeoutError, RuntimeError, OSError, ConnectionError):
                pass
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await self.process.wait()


async def serve_commands(handlers: dict[str, Any]) -> None:
    """The child side of :class:`Child`: run ``handlers[op](command)`` for each stdin line, answer on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        op = command.get("op")
        if op == "exit":
            sys.stdout.write(json.dumps({"ok": True}) + "\n")
            sys.stdout.flush()
            return
        try:
            answer = await handlers[op](command)
        except Exception as exc:
            logger.exception("command %s failed", op)
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


@dataclass
class WsClient:
    """One raw ``websockets`` connection speaking the Room API: replies matched by rid (bounded waits); what else
    arrives goes to :meth:`on_event` (the client processes of benchmarks.load and benchmarks.large_room)."""

    url: str
    username: str
    token: str | None = None
    """A join token to say hello with, instead of the username (a guest)."""
    ws: Any = None
    reader: asyncio.Task[None] | None = None
    pending: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    errors: int = 0
    """Error events that answered no awaited request."""
    request_timeout: float = 30.0
    _rids: Any = field(default_factory=lambda: itertools.count(1))

    async def open(self) -> None:
        """Open the socket (no compression: it would cost both sides CPU on tiny frames; no keep-alive pings)."""
        origin = "http://" + self.url.split("//", 1)[1].split("/", 1)[0]
        self.ws = await websockets.connect(self.url, origin=origin, max_size=None,  # type: ignore[arg-type]
                                           compression=None, ping_interval=None, open_timeout=self.request_timeout)
        self.reader = asyncio.ensure_future(self._read())

    def on_event(self, event: dict[str, Any]) -> bool:
        """An incoming event, before it is matched to a request; True when it is not a reply (consumed here)."""
        return False

    def on_unanswered(self, event: dict[str, Any]) -> None:
        """An event with no awaited request (a reply to a fire-and-forget command, an event without rid)."""
        if event.get("type") == "error":
            self.errors += 1

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                event = json.loads(text)
                if self.on_event(event):
                    continue
                future = self.pending.pop(event["rid"], None) if "rid" in event else None
                if future is not None and not future.done():
                    future.set_result(event)
                else:
                    self.on_unanswered(event)
        except (websockets.ConnectionClosed, OSError):
            pass

    async def request(self, message: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a command and wait (bounded) for its reply."""
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        await self.ws.send(json.dumps({**message, "rid": rid}))
        try:
            return await asyncio.wait_for(future, self.request_timeout if timeout is None else timeout)
        finally:
            self.pending.pop(rid, None)

    async def send_nowait(self, message: dict[str, Any]) -> None:
        """Send a command whose reply only gets counted (:meth:`on_unanswered`)."""
        await self.ws.send(json.dumps({**message, "rid": f"n{next(self._rids)}"}))

    async def hello_join(self, room: str, max_participants: int | None = None) -> dict[str, Any]:
        """hello (with the token, else the username) then join; the state event (raises on a refusal)."""
        hello: dict[str, Any] = {"type": "hello", "version": 1}
        hello.update({"token": self.token} if self.token else {"username": self.username})
        reply = await self.request(hello)
        if reply.get("type") != "established":
            raise RuntimeError(f"hello refused: {reply}")
        join: dict[str, Any] = {"type": "join", "room": room}
        if max_participants:
            join["max_participants"] = max_participants
        reply = await self.request(join)
        if reply.get("type") != "state":
            raise RuntimeError(f"join refused: {reply}")
        return reply

    async def close(self) -> None:
        """Close the socket politely (bounded)."""
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except (TimeoutError, OSError, websockets.ConnectionClosed):
                pass
        if self.reader is not None:
            self.reader.cancel()

    def abort(self) -> None:
        """Drop the connection abruptly: the TCP socket is closed without a WebSocket close frame."""
        if self.ws is not None:
            self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()
