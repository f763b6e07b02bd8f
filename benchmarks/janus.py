"""The anchor: Janus 1.1.2 VideoRoom (room 1234) over its HTTP API, run from shared/anchors/janus/."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from benchmarks.media import PacketTrack, PlayerCounter, Probe, install_counter
from benchmarks.ours import vp8_only
from benchmarks.procs import free_port, pinned, stop_process

logger = logging.getLogger(__name__)

# shared/ sits beside the repository (as on CI); JANUS_ANCHOR overrides.
ANCHOR = Path(os.environ.get("JANUS_ANCHOR", Path(__file__).resolve().parents[2] / "shared" / "anchors" / "janus"))
ROOM = 1234
TIMEOUT = 20.0


class JanusServer:
    """Janus pinned to the relay CPU, with the anchor's loopback config on free ports."""

    name = "janus"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-janus-"))
        self.port = 0
        self.session = 0
        self.publisher_id = 0
        self.pcs: list[RTCPeerConnection] = []
        self.handles: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._tx = itertools.count(1)
        self.debug_level = ""
        self.event_loops = ""

    @property
    def pid(self) -> int:
        """The Janus process."""
        assert self.process is not None
        return self.process.pid

    @staticmethod
    def available() -> bool:
        """Janus and its anchor config are installed."""
        return shutil.which("janus") is not None and (ANCHOR / "janus.jcfg").exists()

    def _configure(self) -> None:
        for source in ANCHOR.glob("*.jcfg"):
            shutil.copy(source, self.workdir / source.name)
        main = self.workdir / "janus.jcfg"
        text = main.read_text().replace("@CONFIGS_FOLDER@", str(self.workdir))
        main.write_text(text)
        level = re.search(r"^\s*debug_level\s*=\s*(\d+)", text, re.MULTILINE)
        loops = re.search(r"^\s*event_loops\s*=\s*(\d+)", text, re.MULTILINE)
        self.debug_level = level.group(1) if level else "default (4)"
        self.event_loops = loops.group(1) if loops else "not set (a thread per handle)"
        # Free ports instead of 8088/8188, so that a run never collides with another Janus.
        self.port = free_port()
        http = self.workdir / "janus.transport.http.jcfg"
        http.write_text(re.sub(r"^(\s*port\s*=\s*)8088", rf"\g<1>{self.port}", http.read_text(), flags=re.MULTILINE))
        ws = self.workdir / "janus.transport.websockets.jcfg"
        if ws.exists():
            ws.write_text(re.sub(r"^(\s*ws_port\s*=\s*)8188", rf"\g<1>{free_port()}", ws.read_text(),
                                 flags=re.MULTILINE))

    async def start(self) -> None:
        """Start Janus pinned and wait until the HTTP API answers."""
        self._configure()
        log = self.workdir / "janus.log"
        self.process = subprocess.Popen(
            pinned(["janus", "-F", str(self.workdir), "-C", str(self.workdir / "janus.jcfg"), "-o", "-L", str(log)]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        for _ in range(300):
            if self.process.poll() is not None:
                break
            try:
                reply = await self._post("", {"janus": "info"})
                if reply.get("janus") == "server_info":
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise RuntimeError(f"janus did not start; log:\n{text}")

    @property
    def url(self) -> str:
        """The HTTP API base."""
        return f"http://127.0.0.1:{self.port}/janus"

    def _http(self, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        body = {**body, "transaction": f"t{next(self._tx)}"}
        return await asyncio.to_thread(self._http, path, body, TIMEOUT)

    async def _poll(self) -> None:
        while True:
            try:
                events = await asyncio.to_thread(self._http, f"/{self.session}?maxev=50", None, 40)
            except OSError as exc:
                logger.debug("janus long poll: %s", exc)
                await asyncio.sleep(0.2)
                continue
            for event in events if isinstance(events, list) else [events]:
                queue = self.handles.get(event.get("sender", 0))
                if queue is not None:
                    queue.put_nowait(event)

    async def _attach(self) -> int:
        if not self.session:
            reply = await self._post("", {"janus": "create"})
            self.session = reply["data"]["id"]
            self._poller = asyncio.ensure_future(self._poll())
        reply = await self._post(f"/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = int(reply["data"]["id"])
        self.handles[handle] = asyncio.Queue()
        return handle

    async def _message(self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            message["jsep"] = jsep
        reply = await self._post(f"/{self.session}/{handle}", message)
        if reply.get("janus") not in ("ack", "success"):
            raise RuntimeError(f"janus refused {body}: {reply}")

    async def _event(self, handle: int, wanted: str) -> dict[str, Any]:
        """The next plugin event of a handle whose data has ``wanted`` (``videoroom`` value or key)."""
        async def find() -> dict[str, Any]:
            while True:
                event = await self.handles[handle].get()
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise RuntimeError(f"janus error: {data}")
                if data.get("videoroom") == wanted or wanted in data:
                    return event
        return await asyncio.wait_for(find(), TIMEOUT)

    async def _core_event(self, handle: int, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next event of a handle that matches (e.g. Janus's "media" once it receives)."""
        async def find() -> dict[str, Any]:
            while True:
                event = await self.handles[handle].get()
                if predicate(event):
                    return event
        return await asyncio.wait_for(find(), TIMEOUT)

    async def publish(self, track: PacketTrack, players: int) -> None:
        """Join room 1234 as a publisher and publish the track (returns when Janus answered)."""
        handle = await self._attach()
        await self._message(handle, {"request": "join", "ptype": "publisher", "room": ROOM, "display": "bench"})
        joined = await self._event(handle, "joined")
        self.publisher_id = joined["plugindata"]["data"]["id"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        vp8_only(pc.addTransceiver(track, direction="sendonly"))
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp, "trickle": False}
        await self._message(handle, {"request": "publish", "audio": False, "video": True}, offer)
        event = await self._event(handle, "configured")
        await pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"], "answer"))
        await self._core_event(handle, lambda e: e.get("janus") == "media" and e.get("receiving") is True)

    async def play(self, index: int, counter: PlayerCounter, probe: Probe) -> None:
        """Subscribe to the publisher; Janus offers, the player answers with a counting receiver."""
        handle = await self._attach()
        body = {"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": self.publisher_id}]}
        await self._message(handle, body)
        event = await self._event(handle, "attached")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(event["jsep"]["sdp"], "offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                install_counter(transceiver.receiver, counter, probe)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": "answer", "sdp": pc.localDescription.sdp, "trickle": False}
        await self._message(handle, {"request": "start"}, answer)
        await self._event(handle, "started")

    async def teardown(self) -> None:
        """Close the peer connections and destroy the session."""
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        self.pcs.clear()
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self.session:
            try:
                await self._post(f"/{self.session}", {"janus": "destroy"})
            except OSError:
                pass
        self.session = 0
        self.handles.clear()

    async def stop(self) -> None:
        """SIGTERM Janus."""
        await asyncio.to_thread(stop_process, self.process)
        self.process = None

    def describe(self) -> str:
        """How Janus ran, for the report."""
        return f"Janus 1.1.2 VideoRoom, debug_level={self.debug_level}, event_loops={self.event_loops}"

    def cleanup(self) -> None:
        """Remove the work directory."""
        shutil.rmtree(self.workdir, ignore_errors=True)
