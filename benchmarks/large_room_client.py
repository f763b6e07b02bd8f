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
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import uvloop

from benchmarks.load_common import WsClient, serve_commands

logger = logging.getLogger(__name__)

PRESENCE_KINDS = ("joined", "left", "participant_updated")


def cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU of every thread of ``pid`` (``/proc/<pid>/task/*/schedstat``: exact, where
    ``/proc/<pid>/stat``'s utime + stime move in 10 ms ticks, too coarse for one broadcast's few milliseconds)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
            continue
    return total


@dataclass
class Tally:
    """Arrivals of each broadcast message over all clients, and the server's CPU when the last copy arrived."""

    pid: int = 0
    expected: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    done: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Message text -> (perf_counter, server CPU ns) when its last copy arrived."""

    def arrived(self, text: str) -> None:
        count = self.counts[text] = self.counts.get(text, 0) + 1
        if count == self.expected and self.pid:
            self.done[text] = (time.perf_counter(), cpu_ns(self.pid))


@dataclass
class Client(WsClient):
    """One WebSocket in the room: its roster, presence notices and broadcast arrivals recorded."""

    known: set[str] = field(default_factory=set)
    """Logins this client was told are present (besides itself)."""
    viewers: int | None = None
    frames: int = 0
    notices: int = 0
    """Presence notices received: one per participant per ``joined``/``left``/``participant_updated``, whether it
    came alone or in a batched ``presence`` event."""
    arrivals: dict[str, float] = field(default_factory=dict)
    """Broadcast message text -> perf_counter when it arrived."""
    request_timeout: float = 60.0
    tally: Tally | None = None

    def _presence(self, kind: str, participant: dict[str, Any]) -> None:
        self.notices += 1
        login = participant["login"]
        if login == self.username:
            return
        if kind == "left":
            self.known.discard(login)
        else:
            self.known.add(login)

    def on_event(self, event: dict[str, Any]) -> bool:
        self.frames += 1
        kind = event.get("type")
        if kind == "message":
            text = event["message"]["text"]
            self.arrivals[text] = time.perf_counter()
            if self.tally is not None:
                self.tally.arrived(text)
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
        return False  # a state is also the reply to join


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
        reached each other client (None: it did not within ``drain`` s), and with ``pid`` the server's CPU (ns)
        from just before the send until the last copy arrived, and the idle CPU rate (ns/s) measured first."""
        count, interval, drain = int(command["count"]), float(command["interval"]), float(command["drain"])
        pid = int(command.get("pid", 0))
        sender, others = self.clients[0], self.clients[1:]
        tally = Tally(pid=pid, expected=len(others))
        for client in others:
            client.tally = tally
        idle_rate = 0.0
        if pid:
            idle0, at0 = cpu_ns(pid), time.perf_counter()
            await asyncio.sleep(float(command.get("idle", 2.0)))
            idle_rate = (cpu_ns(pid) - idle0) / (time.perf_counter() - at0)
        sent: dict[str, tuple[float, int]] = {}
        for n in range(count):
            text = f"broadcast-{uuid.uuid4().hex[:8]}-{n}"
            sent[text] = (time.perf_counter(), cpu_ns(pid) if pid else 0)
            await sender.ws.send(json.dumps({"type": "send_message", "text": text, "rid": f"b{n}"}))
            await asyncio.sleep(interval)
        deadline = time.perf_counter() + drain
        while time.perf_counter() < deadline and not all(t in c.arrivals for c in others for t in sent):
            await asyncio.sleep(0.05)
        results, windows = [], []
        for text, (at, cpu0) in sent.items():
            delays = [round((c.arrivals[text] - at) * 1000, 2) if text in c.arrivals else None for c in others]
            results.append(delays)
            if text in tally.done:
                last_at, cpu1 = tally.done[text]
                windows.append({"seconds": last_at - at, "cpu_ns": cpu1 - cpu0})
        for client in others:
            client.tally = None
        return {"messages": results, "windows": windows, "idle_ns_per_s": idle_rate}

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
