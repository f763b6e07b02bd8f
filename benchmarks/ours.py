"""Our server under test: daphne (conference.asgi, in-process media) and its Room API signalling."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from benchmarks.media import PacketTrack, PlayerCounter, Probe, install_counter
from benchmarks.procs import free_port, pinned, production_environment, stop_process

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20.0
ENDED_PLAYS: dict[str, int] = {}
"""Play statuses other than PLAYING the players were told (status: reason -> count), for the run's report."""


def vp8_only(transceiver: Any) -> None:
    """Offer VP8 (and its RTX) only."""
    wanted = ("video/vp8", "video/rtx")
    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() in wanted]
    transceiver.setCodecPreferences(codecs)


class Signalling:
    """One Room API WebSocket: requests matched by rid, other events queued."""

    _rids = itertools.count(1)

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, origin: str, username: str) -> Signalling:
        """Open the socket and do the hello handshake."""
        ws = await websockets.connect(url, origin=origin, max_size=None)  # type: ignore[arg-type]
        self = cls(ws)
        reply = await self.request({"type": "hello", "version": 1, "username": username})
        if reply["type"] != "established":
            raise RuntimeError(f"hello failed: {reply}")
        return self

    async def _read(self) -> None:
        async for text in self.ws:
            event = json.loads(text)
            future = self.pending.pop(event.get("rid"), None) if "rid" in event else None
            if future is not None and not future.done():
                future.set_result(event)
            elif event.get("type") in ("stream_status", "play_status"):
                if event["type"] == "stream_status" and event.get("status") != "PUBLISHING":
                    logger.warning("%.3f stream_status %s", time.time(), event)
                if event["type"] == "play_status" and event.get("status") != "PLAYING":
                    ENDED_PLAYS[f"{event.get('status')}: {event.get('reason')}"] = (
                        ENDED_PLAYS.get(f"{event.get('status')}: {event.get('reason')}", 0) + 1
                    )
                self.events.put_nowait(event)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a command and wait (bounded) for its reply."""
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        await self.ws.send(json.dumps({**message, "rid": rid}))
        return await asyncio.wait_for(future, TIMEOUT)

    async def wait_event(self, type_: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next queued event of a type."""
        async def next_of_type() -> dict[str, Any]:
            while True:
                event = await self.events.get()
                if event["type"] == type_:
                    return event
        return await asyncio.wait_for(next_of_type(), timeout)

    async def close(self) -> None:
        """Close the socket and stop reading."""
        await self.ws.close()
        self.reader.cancel()


class OurServer:
    """daphne serving conference.asgi with MEDIA_MODE=inprocess, pinned to the relay CPU."""

    name = "ours"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-ours-"))
        self.log_path = self.workdir / "daphne.log"
        self.room = ""
        self.stream_id = ""
        self.sockets: list[Signalling] = []
        self.pcs: list[RTCPeerConnection] = []
        self.closing = False
        """The run is over: peer connections closing now are closed by us."""
        self._room_counter = itertools.count(1)

    @property
    def pid(self) -> int:
        """The process that runs the relay."""
        assert self.process is not None
        return self.process.pid

    def environment(self) -> dict[str, str]:
        """A throwaway SQLite database, the in-memory channel layer (no Redis), in-process media."""
        env = dict(os.environ)
        env.update({
            "DJANGO_SETTINGS_MODULE": "conference.settings",
            "DATABASE_URL": f"sqlite:///{self.workdir / 'bench.sqlite3'}",
            "MEDIA_MODE": "inprocess",
            **production_environment(),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("REDIS_URL", None)
        env.pop("TEST_DB_NAME", None)
        return env

    async def start(self) -> None:
        """Migrate the throwaway database, start daphne pinned, wait for /healthz."""
        env = self.environment()
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "manage.py", "migrate", "--noinput", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(migrate.communicate(), 120)
        if migrate.returncode != 0:
            raise RuntimeError(f"migrate failed: {err.decode(errors='replace')[-2000:]}")
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                pinned([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                        "conference.asgi:application"]),
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        for _ in range(600):
            if self.process.poll() is not None:
                break
            try:
                await asyncio.to_thread(self._health)
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"daphne did not start; log:\n{self.log_path.read_text(errors='replace')[-4000:]}")

    def _health(self) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
            response.read()

    async def _participant(self, username: str, max_participants: int | None = None) -> Signalling:
        url = f"ws://127.0.0.1:{self.port}/ws/"
        sig = await Signalling.connect(url, f"http://127.0.0.1:{self.port}", username)
        join: dict[str, Any] = {"type": "join", "room": self.room}
        if max_participants is not None:
            join["max_participants"] = max_participants
        reply = await sig.request(join)
        if reply["type"] != "state":
            raise RuntimeError(f"join failed: {reply}")
        self.sockets.append(sig)
        return sig

    async def publish(self, track: PacketTrack, players: int) -> None:
        """Join a fresh room as the publisher and publish the track; returns when PUBLISHING."""
        self.room = f"bench-{os.getpid()}-{next(self._room_counter)}"
        sig = await self._participant("publisher", max_participants=players + 5)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and not self.closing:
                logger.warning("%.3f the publisher's peer connection is %s (ICE %s)", time.time(),
                               pc.connectionState, pc.iceConnectionState)

        vp8_only(pc.addTransceiver(track, direction="sendonly"))
        await pc.setLocalDescription(await pc.createOffer())
        reply = await sig.request({"type": "publish", "kind": "camera", "sdp": pc.localDescription.sdp})
        if reply["type"] != "answer":
            raise RuntimeError(f"publish refused: {reply}")
        self.stream_id = reply["pc"]
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        status = await sig.wait_event("stream_status")
        if status["status"] != "PUBLISHING":
            raise RuntimeError(f"publish failed: {status}")

    async def play(self, index: int, counter: PlayerCounter, probe: Probe) -> None:
        """One more participant plays the stream with a counting receiver."""
        sig = await self._participant(f"player{index}")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        transceiver = pc.addTransceiver("video", direction="recvonly")
        vp8_only(transceiver)
        install_counter(transceiver.receiver, counter, probe)
        await pc.setLocalDescription(await pc.createOffer())
        reply = await sig.request({"type": "play", "stream": self.stream_id, "sdp": pc.localDescription.sdp})
        if reply["type"] != "answer":
            raise RuntimeError(f"play refused: {reply}")
        counter.play_id = str(reply.get("pc") or "")
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def teardown(self) -> None:
        """Close every peer connection and socket of the run."""
        self.closing = True
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)
        self.pcs.clear()
        self.sockets.clear()

    async def stop(self) -> None:
        """Stop daphne and remove the throwaway directory."""
        await asyncio.to_thread(stop_process, self.process)
        self.process = None

    def describe(self) -> str:
        """How the server ran, for the report."""
        return "daphne conference.asgi, MEDIA_MODE=inprocess, SQLite, in-memory channel layer, DEBUG=false"

    def cleanup(self) -> None:
        """Remove the work directory (keeps it if the server failed, for its log)."""
        shutil.rmtree(self.workdir, ignore_errors=True)
