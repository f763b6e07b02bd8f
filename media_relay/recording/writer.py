"""The per-stream writer: an ffmpeg process remuxing RTP from loopback UDP into a Matroska/WebM file.

ffmpeg binds its RTP and RTCP sockets to 127.0.0.1 only (``-localaddr``): nobody
outside the host can feed a recording or end it with an RTCP BYE.

The relay keeps the encoded packets; ffmpeg depacketizes them (VP8, VP9, H.264,
Opus, G.711) and writes them with ``-c copy`` (G.711 alone is transcoded to
Opus, which WebM requires).  One process per recording: a crash of the writer
loses nothing but its own last second, and what it wrote still plays because
Matroska clusters are closed at least once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import random
import signal
import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

COPY_VIDEO = {"VP8", "VP9", "H264"}
COPY_AUDIO = {"OPUS"}
WEBM_VIDEO = {"VP8", "VP9"}
MAX_PENDING = 4000
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
PR_SET_PDEATHSIG = 1
LOOPBACK = "127.0.0.1"


@dataclass
class TrackSpec:
    """One RTP stream to record: its kind and codec as negotiated with the publisher."""

    kind: str
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    parameters: dict[str, object] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("audio", "video"):
            raise ValueError(f"bad track kind {self.kind!r}")
        self.name = self.name.upper()

    def sdp(self) -> str:
        """The SDP media section telling ffmpeg where and what to receive."""
        encoding = f"{self.name}/{self.clock_rate}" + (f"/{self.channels}" if self.channels else "")
        lines = [f"m={self.kind} {self.port} RTP/AVP {self.payload_type}", f"a=rtpmap:{self.payload_type} {encoding}"]
        if self.parameters:
            fmtp = ";".join(f"{k}={v}" if v is not None else str(k) for k, v in self.parameters.items())
            lines.append(f"a=fmtp:{self.payload_type} {fmtp}")
        lines.append("a=recvonly")
        return "\r\n".join(lines) + "\r\n"


def container_for(tracks: list[TrackSpec]) -> tuple[str, str]:
    """The (ffmpeg format, file extension) for the tracks: WebM for VP8/VP9/Opus, else Matroska."""
    video = [t for t in tracks if t.kind == "video"]
    if all(t.name in WEBM_VIDEO for t in video):
        return "webm", "webm"
    return "matroska", "mkv"


def session_sdp(tracks: list[TrackSpec]) -> str:
    """A whole SDP session for ffmpeg's sdp demuxer."""
    head = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=recording\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    return head + "".join(t.sdp() for t in tracks)


def _finish_with_parent() -> None:
    """In the child before exec: get SIGINT (finish the file) when the server process dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def _port_pair_free(port: int) -> bool:
    for candidate in (port, port + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((LOOPBACK, candidate))
            except OSError:
                return False
    return True


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def free_port_pairs(count: int) -> list[int]:
    """``count`` even ports each followed by a free odd one (RTP + RTCP for ffmpeg)."""
    ports: list[int] = []
    low, high = settings.RECORDING_UDP_PORTS
    for _ in range(2000):
        port = random.randrange(low, high) & ~1
        if port not in ports and _port_pair_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise OSError("no free UDP port pair for the recorder")


class RtpFileWriter:
    """One ffmpeg process fed with RTP packets over loopback UDP.

    ``send`` never blocks: packets wait in memory until ffmpeg listens, then go
    out through a non-blocking socket.
    """

    def __init__(self, path: Path, tracks: list[TrackSpec]) -> None:
        self.path = path
        self.tracks = {t.kind: t for t in tracks}
        self.process: asyncio.subprocess.Process | None = None
        self.ready = False
        self.closed = False
        self.stopping = False
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self._pending: deque[tuple[str, bytes]] = deque()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self.dropped = 0
        self._stderr_task: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int | None:
        """The writer process id (None before it starts)."""
        return self.process.pid if self.process else None

    def command(self, sdp_path: Path) -> list[str]:
        """The ffmpeg command line."""
        fmt, _ = container_for(list(self.tracks.values()))
        audio = self.tracks.get("audio")
        copy_audio = audio is None or audio.name in COPY_AUDIO
        audio_codec = ["-c:a", "copy"] if copy_audio else ["-c:a", "libopus", "-b:a", "48k"]
        return [
            settings.RECORDING_FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-protocol_whitelist", "file,udp,rtp",
            "-analyzeduration", "3000000", "-probesize", "5000000",
            "-reorder_queue_size", "500",
            "-localaddr", LOOPBACK, "-f", "sdp", "-i", str(sdp_path),
            "-map", "0", "-c:v", "copy", *audio_codec,
            "-f", fmt, "-cluster_time_limit", "1000", "-cluster_size_limit", "524288", "-flush_packets", "1",
            "-y", str(self.path),
        ]

    async def start(self) -> None:
        """Start ffmpeg on free ports and wait until it listens (retrying on a port race)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sdp_path = self.path.with_suffix(".sdp")
        for attempt in range(3):
            ports = await asyncio.to_thread(free_port_pairs, len(self.tracks))
            for track, port in zip(self.tracks.values(), ports, strict=True):
                track.port = port
            sdp_path.write_text(session_sdp(list(self.tracks.values())))
            self.process = await asyncio.create_subprocess_exec(
                *self.command(sdp_path), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, preexec_fn=_finish_with_parent,
            )
            self._stderr_task = asyncio.ensure_future(self._read_stderr(self.process))
            if await self._wait_listening(ports):
                self.ready = True
                self._flush()
                logger.info("recording %s: ffmpeg %s listening on %s", self.path.name, self.process.pid, ports)
                return
            logger.warning("recording %s: ffmpeg did not listen (attempt %d): %s", self.path.name, attempt + 1,
                           " | ".join(self.stderr_tail))
            await self._kill()
        raise RuntimeError("the recorder process did not start: " + " | ".join(self.stderr_tail))

    async def _wait_listening(self, ports: list[int]) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while loop.time() < deadline:
            if self.process is None or self.process.returncode is not None:
                return False
            if all(_port_taken(p) for p in ports):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _read_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            line = await process.stderr.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            logger.debug("ffmpeg %s: %s", process.pid, text)

    def send(self, kind: str, data: bytes) -> None:
        """Queue or send one RTP packet of ``kind`` (never blocks)."""
        if self.closed or self.stopping:
            return
        if not self.ready:
            if len(self._pending) < MAX_PENDING:
                self._pending.append((kind, data))
            else:
                self.dropped += 1
            return
        self._send(kind, data)

    def _send(self, kind: str, data: bytes) -> None:
        track = self.tracks.get(kind)
        if track is None:
            return
        try:
            self._sock.sendto(data, (LOOPBACK, track.port))
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            self.dropped += 1
            logger.debug("recorder send failed: %s", exc)

    def _flush(self) -> None:
        while self._pending:
            self._send(*self._pending.popleft())

    def request_stop(self) -> None:
        """Ask ffmpeg to finish the file (SIGINT: it writes the cues and duration, then exits)."""
        if self.stopping:
            return
        self.stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)

    async def wait(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Wait for ffmpeg to exit (killed after ``timeout``); its return code."""
        process = self.process
        try:
            if process is None:
                return None
            try:
                return await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                logger.warning(
                    "recording %s: ffmpeg did not finish in %.0f s; killing it (%s)",
                    self.path.name, timeout, " | ".join(self.stderr_tail),
                )
                await self._kill()
                return process.returncode
        finally:
            self.close_socket()

    async def _kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 5)

    def close_socket(self) -> None:
        """Release the sending socket and the SDP file."""
        if not self.closed:
            self.closed = True
            self._sock.close()
            with contextlib.suppress(OSError):
                self.path.with_suffix(".sdp").unlink()
