"""The client process of benchmarks.large_room: N raw ``websockets`` clients in one room.

Driven over stdin/stdout like benchmarks.load_signal_client (benchmarks.load_common.Child): ``join`` (connect
everyone, then hello + join one by one at a paced rate; join latencies in join order), ``broadcast`` (the first
client sends public messages; when each reached each other client), ``report`` (what every client knows of the
room: the participants it was told about, the audience count, frames and presence notices received),
``close``.

Each client keeps the room's roster as an SDK would: ``state.participants``, then ``joined`` / ``left`` /
``participant_updated`` events and the entries of batched ``presence`` events, and the audience count
(``state.room.viewers``, ``presence.viewers``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import uvloop
import websockets

from benchmarks.load_common import serve_commands

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 60.0
PRESENCE_KINDS = ("joined", "left", "participant_updated")


@dataclass
class Client:
    """One WebSocket in the room: replies matched by rid, presence and broadcast messages recorded."""

    url: str
    username: str
    token: str | None = None
    ws: Any = None
    reader: asyncio.Task[None] | None = None
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    """Logins this client was told are present (besides itself)."""
    viewers: int | None = None
    frames: int = 0
    notices: int = 0
    """Presence notices received: one per participant per ``joined``/``left``/``participant_updated``, whether it
    came alone or in a batched ``presence`` event."""
    arrivals: dict[str, float] = field(default_factory=dict)
    """Broadcast message text -> perf_counter when it arrived."""
    errors: int = 0
    _rids: Any = field(default_factory=lambda: itertools.count(1))

    async def open(self) -> None:
        """Open the socket (no compression, no keep-alive pings)."""
        origin = "http://" + self.url.split("//", 1)[1].split("/", 1)[0]
        self.ws = await websockets.connect(self.url, origin=origin, max_size=None,  # type: ignore[arg-type]
                                           compression=None, ping_interval=None, open_timeout=REQUEST_TIMEOUT)
        self.reader = asyncio.ensure_future(self._read())

    def _presence(self, kind: str, participant: dict[str, Any]) -> None:
        self.notices += 1
        login = participant["login"]
        if login == self.username:
            return
        if kind == "left":
            self.known.discard(login)
        else:
            self.known.add(login)

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.frames += 1
                event = json.loads(text)
                kind = event.get("type")
                if kind == "message":
                    self.arrivals[event["message"]["text"]] = time.perf_counter()
                elif kind in PRESENCE_KINDS:
                    self._presence(kind, event["participant"])
                elif kind == "presence":
                    for change in event.get("changes", ()):
                        self._presence(change["event"], change["participant"])
                    if "viewers" in event:
                        self.viewers = event["viewers"]
                elif kind == "state":
                    self.known.update(p["login"] for p in event["participants"])
                    self.viewers = event["room"].get("viewers")
                if "rid" in event:
                    future = self.pending.pop(event["rid"], None)
                    if future is not None and not future.done():
                        future.set_result(event)
                    elif kind == "error":
                        self.errors += 1
        except (websockets.ConnectionClosed, OSError):
            pass

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a command and wait (bounded) for its reply."""
        rid = next(self._rids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        await self.ws.send(json.dumps({**message, "rid": rid}))
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        finally:
            self.pending.pop(rid, None)

    async def hello_join(self, room: str, max_participants: int) -> None:
        """hello then join (raises on a refusal)."""
        hello: dict[str, Any] = {"type": "hello", "version": 1}
        hello.update({"token": self.token} if self.token else {"username": self.username})
        reply = await self.request(hello)
        if reply.get("type") != "established":
            raise RuntimeError(f"hello refused: {reply}")
        reply = await self.request({"type": "join", "room": room, "max_participants": max_participants})
        if reply.get("type") != "state":
            raise RuntimeError(f"join refused: {reply}")

    async def close(self) -> None:
        """Close the socket (bounded)."""
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 5)
            except (TimeoutError, OSError, websockets.ConnectionClosed):
                pass
        if self.reader is not None:
            self.reader.cancel()


def viewer_token(secret: str, room: str, login: str) -> str:
    """A join token for ``login`` as a viewer of ``room`` (rooms.tokens' format, signed with the server's key)."""
    now = datetime.now(UTC)
    claims = {"aud": "roomapi", "iat": now, "exp": now + timedelta(hours=2), "jti": uuid.uuid4().hex,
              "sub": login, "room": room, "role": "viewer"}
    return jwt.encode(claims, secret, algorithm="HS256")


class LargeRoom:
    """The clients of one room and the commands that drive them."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.room = ""

    async def join(self, command: dict[str, Any]) -> dict[str, Any]:
        """Connect every client, then hello + join at ``rate`` per second from wall time ``start``."""
        self.room = command["room"]
        rate, start, size = float(command["rate"]), float(command["start"]), int(command["max_participants"])
        secret = command.get("secret", "")
        self.clients = [
            Client(command["url"], s["username"],
                   viewer_token(secret, self.room, s["username"]) if s.get("viewer") else None)
            for s in command["clients"]
        ]
        gate = asyncio.Semaphore(50)
        await asyncio.gather(*(self._open(c, gate) for c in self.clients))
        latencies: list[float | None] = [None] * len(self.clients)
        failures: list[str] = []

        async def one(index: int, client: Client) -> None:
            await asyncio.sleep(max(0.0, start + index / rate - time.time()))
            begun = time.perf_counter()
            try:
                await client.hello_join(self.room, size)
                latencies[index] = (time.perf_counter() - begun) * 1000
            except Exception as exc:
                failures.append(f"{client.username}: {exc!r}"[:200])

        await asyncio.gather(*(one(i, c) for i, c in enumerate(self.clients)))
        return {"latencies": latencies, "failures": failures}

    @staticmethod
    async def _open(client: Client, gate: asyncio.Semaphore) -> None:
        async with gate:
            await client.open()

    async def broadcast(self, command: dict[str, Any]) -> dict[str, Any]:
        """The first client sends ``count`` public messages ``interval`` s apart; per message, the ms until it
        reached each other client (None: it did not within ``drain`` s)."""
        count, interval, drain = int(command["count"]), float(command["interval"]), float(command["drain"])
        sender, others = self.clients[0], self.clients[1:]
        sent: dict[str, float] = {}
        for n in range(count):
            text = f"broadcast-{uuid.uuid4().hex[:8]}-{n}"
            sent[text] = time.perf_counter()
            await sender.ws.send(json.dumps({"type": "send_message", "text": text, "rid": f"b{n}"}))
            await asyncio.sleep(interval)
        deadline = time.perf_counter() + drain
        while time.perf_counter() < deadline and not all(t in c.arrivals for c in others for t in sent):
            await asyncio.sleep(0.05)
        results = []
        for text, at in sent.items():
            delays = [round((c.arrivals[text] - at) * 1000, 2) if text in c.arrivals else None for c in others]
            results.append(delays)
        return {"messages": results}

    async def report(self, command: dict[str, Any]) -> dict[str, Any]:
        """What each client knows now."""
        return {"clients": [
            {"username": c.username, "known": sorted(c.known), "viewers": c.viewers, "frames": c.frames,
             "notices": c.notices, "errors": c.errors}
            for c in self.clients
        ]}

    async def close(self, command: dict[str, Any]) -> dict[str, Any]:
        """Close every client."""
        await asyncio.gather(*(c.close() for c in self.clients))
        self.clients.clear()
        return {"ok": True}


async def main() -> None:
    """Serve commands from benchmarks.large_room until told to exit."""
    room = LargeRoom()
    await serve_commands({"join": room.join, "broadcast": room.broadcast, "report": room.report,
                          "close": room.close})


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(main())
