"""A hostile client: a raw WebSocket speaking the Room API by hand (bounded waits), and shared helpers.

The tests of tests/security/ each play one attacker of issue 11 against the
real server; this module holds what several of them need.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import websockets
from aiortc import RTCPeerConnection

WAIT = 15.0

#: xfail reason prefix: every finding of issue 11 not fixed yet.
PENDING = "issue 11: {}, fixed in a later change"


def pending(finding: str) -> str:
    """The xfail reason of a test whose fix has not landed."""
    return PENDING.format(finding)


class RawClient:
    """A raw WebSocket to a real daphne: send any frame, await frames by predicate."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.rids = itertools.count(1)
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, ws_url: str, username: str | None = None, *, headers: dict[str, str] | None = None, **hello: Any
    ) -> RawClient:
        """Connect (with an Origin daphne accepts) and, when ``username`` or ``hello`` fields are given, say hello."""
        origin = ws_url.replace("ws://", "http://", 1)
        ws = await websockets.connect(
            f"{ws_url}/ws/", origin=origin, max_size=None, additional_headers=headers  # type: ignore[arg-type]
        )
        client = cls(ws)
        if username is not None or hello:
            fields = {"type": "hello", "version": 1, **hello}
            if username is not None:
                fields["username"] = username
            reply = await client.request(fields)
            assert reply["type"] == "established", reply
        return client

    async def send(self, payload: dict[str, Any]) -> None:
        """Send one JSON frame."""
        await self.ws.send(json.dumps(payload))

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next frame."""
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert isinstance(frame, dict)
        return frame

    async def until(self, match: str | Callable[[dict[str, Any]], bool], timeout: float = WAIT) -> dict[str, Any]:
        """The first frame (already seen or new) matching a type or a predicate."""
        check = (lambda e: e.get("type") == match) if isinstance(match, str) else match
        for frame in self.seen:
            if check(frame):
                self.seen.remove(frame)
                return frame

        async def scan() -> dict[str, Any]:
            while True:
                frame = await self.receive(timeout)
                if check(frame):
                    return frame
                self.seen.append(frame)

        return await asyncio.wait_for(scan(), timeout)

    async def request(self, payload: dict[str, Any], timeout: float = WAIT) -> dict[str, Any]:
        """Send a command with a fresh rid; the reply echoing it."""
        rid = next(self.rids)
        await self.send({**payload, "rid": rid})
        return await self.until(lambda e: e.get("rid") == rid, timeout)

    async def alive(self) -> None:
        """The connection still answers a ping."""
        assert (await self.request({"type": "ping"}))["type"] == "pong"

    async def close(self) -> None:
        """Close the socket."""
        await self.ws.close()


async def recvonly_offer(video: bool = True, audio: bool = True) -> str:
    """A real receive-only offer from aiortc (with its gathered host candidates)."""
    pc = RTCPeerConnection()
    if video:
        pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def with_candidates(sdp: str, candidates: list[str]) -> str:
    """``sdp`` with extra ``a=candidate:`` lines after each media section's first line."""
    extra = "".join(f"a={c}\r\n" for c in candidates)
    out: list[str] = []
    for line in sdp.split("\r\n"):
        if not line:
            continue
        out.append(line + "\r\n")
        if line.startswith("m="):
            out.append(extra)
    return "".join(out)


def host_candidate(address: str, port: int, foundation: int = 1) -> str:
    """An ICE host candidate line (without ``a=``)."""
    return f"candidate:{foundation} 1 udp 2130706431 {address} {port} typ host"
