"""A signalling load client process: many raw ``websockets`` clients speaking the Room API JSON protocol.

Driven by benchmarks.load over stdin/stdout (one JSON command and one JSON answer per line):
``join`` (connect, hello, join at a paced rate; join latencies), ``messages`` (every client sends at a fixed
rate; deliveries and delivery latencies counted at the recipients), ``soak`` (a steady population that
joins, sends, leaves or drops and rejoins; every session's membership window and received message ids),
``close``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop
import websockets

from benchmarks.load_common import WsClient, serve_commands

logger = logging.getLogger(__name__)

@dataclass
class Client(WsClient):
    """One WebSocket: chat messages and acknowledgements counted, its streams' statuses kept."""

    received: list[tuple[int, float, str]] = field(default_factory=list)
    """(message id, wall time received, text) of each chat message from someone else."""
    acks: int = 0
    statuses: dict[str, str] = field(default_factory=dict)
    """Last ``stream_status`` status of each of this client's streams, by stream id."""

    def on_event(self, event: dict[str, Any]) -> bool:
        kind = event.get("type")
        if kind == "message":
            message = event["message"]
            if message.get("from") != self.username:
                self.received.append((message["id"], time.time(), message.get("text", "")))
            return True
        if kind == "stream_status":
            self.statuses[event["stream"]["id"]] = event["status"]
            return True
        return False

    def on_unanswered(self, event: dict[str, Any]) -> None:
        if event.get("type") == "ack" and "message" in event:
            self.acks += 1
        super().on_unanswered(event)


class SignalClients:
    """The clients of this process and the commands that drive them."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.rooms: list[str] = []
        self.tag = os.getpid()

    async def join(self, command: dict[str, Any]) -> dict[str, Any]:
        """Connect every client, then hello + join at ``rate`` per second from wall time ``start``."""
        specs = command["clients"]
        rate, start = float(command["rate"]), float(command["start"])
        self.clients = [Client(s["url"], s["username"]) for s in specs]
        self.rooms = [s["room"] for s in specs]
        latencies: list[float] = []
        failures: list[str] = []
        done: list[float] = []
        joins: list[tuple[float, float]] = []  # (wall time done, latency s), for the chart against clients
        gate = asyncio.Semaphore(50)

        async def one(index: int, client: Client) -> None:
            try:
                async with gate:
                    await client.open()
                await asyncio.sleep(max(0.0, start + index / rate - time.time()))
                begun = time.perf_counter()
                await client.hello_join(self.rooms[index], command.get("max_participants"))
                latencies.append(time.perf_counter() - begun)
                done.append(time.time())
                joins.append((done[-1], latencies[-1]))
            except Exception as exc:
                failures.append(repr(exc)[:200])

        await asyncio.gather(*(one(i, c) for i, c in enumerate(self.clients)))
        return {"latencies": latencies, "failures": failures, "last": max(done, default=start), "joins": joins}

    async def messages(self, command: dict[str, Any]) -> dict[str, Any]:
        """Every client sends a public message every 1/rate s for ``seconds`` from ``start``; count deliveries."""
        rate, seconds, start = float(command["rate"]), float(command["seconds"]), float(command["start"])
        drain = float(command.get("drain", 5.0))
        end = start + seconds
        for client in self.clients:
            client.received.clear()
            client.acks = client.errors = 0
        stamps: list[float] = []

        async def sender(client: Client) -> None:
            due = start + random.random() / rate
            while due < end:
                await asyncio.sleep(max(0.0, due - time.time()))
                stamp = time.time()
                try:
                    await client.send_nowait({"type": "send_message", "text": f"{stamp:.6f}"})
                except (websockets.ConnectionClosed, OSError):
                    return
                stamps.append(stamp)
                due += 1 / rate

        await asyncio.gather(*(sender(c) for c in self.clients if c.ws is not None))
        await asyncio.sleep(max(0.0, end + drain - time.time()))
        delivered = duplicates = 0
        latencies: list[float] = []
        for client in self.clients:
            seen: set[int] = set()
            for message_id, at, text in client.received:
                try:
                    sent_at = float(text)
                except ValueError:
                    continue
                if not start <= sent_at < end:
                    continue
                if message_id in seen:
                    duplicates += 1
                    continue
                seen.add(message_id)
                delivered += 1
                latencies.append(round((at - sent_at) * 1000, 2))
        return {
            # by the time written into the text, as the recipients count them (a sender woken late can write
            # a message just after the window: it counts on neither side)
            "sent": sum(1 for t in stamps if start <= t < end),
            "acked": sum(c.acks for c in self.clients),
            "errors": sum(c.errors for c in self.clients),
            "delivered": delivered,
            "duplicates": duplicates,
            "latencies": latencies,
        }

    async def close(self, command: dict[str, Any]) -> dict[str, Any]:
        """Close every client."""
        await asyncio.gather(*(c.close() for c in self.clients))
        self.clients.clear()
        return {"ok": True}

    async def soak(self, command: dict[str, Any]) -> dict[str, Any]:
        """``slots`` clients, each a loop of sessions: join a random room, send at ``msg_rate``, then leave or
        drop after a random lifetime, and again, until ``seconds`` pass; then everyone stays ``drain`` s.

        Returns every session (room, joined = state received, until = leave/drop begun, received ids) and
        every acknowledged message (id, room, sent = send_message written, sender session).
        """
        slots, rooms, urls = int(command["slots"]), list(command["rooms"]), list(command["urls"])
        start, seconds, drain = float(command["start"]), float(command["seconds"]), float(command["drain"])
        life_min, life_max = float(command["life_min"]), float(command["life_max"])
        msg_rate, drop_share = float(command["msg_rate"]), float(command["drop_share"])
        end = start + seconds
        sessions: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        counts = {"joins": 0, "leaves": 0, "drops": 0, "failed_joins": 0, "unacked": 0, "duplicates": 0}
        generation = itertools.count(1)
        rng = random.Random(self.tag)

        def received(client: Client) -> list[list[Any]]:
            ids = [m[0] for m in client.received]
            counts["duplicates"] += len(ids) - len(set(ids))
            return [[m[0], m[1]] for m in client.received]

        async def session(slot: int) -> bool:
            sid = f"{self.tag}-{slot}-{next(generation)}"
            client = Client(urls[rng.randrange(len(urls))], f"u{sid}")
            room = rooms[rng.randrange(len(rooms))]
            try:
                await client.open()
                await client.hello_join(room, command.get("max_participants"))
            except Exception as exc:
                logger.warning("join failed: %r", exc)
                counts["failed_joins"] += 1
                client.abort()
                return False
            record: dict[str, Any] = {"sid": sid, "room": room, "joined": time.time()}
            counts["joins"] += 1
            leave_at = min(time.time() + rng.uniform(life_min, life_max), end)
            next_message = time.time() + rng.expovariate(msg_rate)
            while True:
                now = time.time()
                if next_message < leave_at:
                    await asyncio.sleep(max(0.0, next_message - now))
                    sent_at = time.time()
                    try:
                        reply = await client.request({"type": "send_message", "text": sid})
                    except (TimeoutError, websockets.ConnectionClosed, OSError):
                        counts["unacked"] += 1
                    else:
                        if reply.get("type") == "ack":
                            messages.append({"id": reply["message"]["id"], "room": room, "sent": sent_at,
                                             "sid": sid})
                        else:  # an error reply: the message was refused (counted by code)
                            key = f"refused {reply.get('code')}"
                            counts[key] = counts.get(key, 0) + 1
                    next_message += rng.expovariate(msg_rate)
                    continue
                await asyncio.sleep(max(0.0, leave_at - now))
                break
            if time.time() >= end:  # the soak is over: stay through the drain, then leave
                await asyncio.sleep(max(0.0, end + drain - time.time()))
                record["until"] = time.time()
                record["ids"] = received(client)
                sessions.append(record)
                await client.close()
                return True
            record["until"] = time.time()
            if rng.random() < drop_share:
                record["ids"] = received(client)
                client.abort()
                counts["drops"] += 1
            else:
                try:
                    reply = await client.request({"type": "leave"})
                    if reply.get("type") != "ack":
                        key = f"leave refused {reply.get('code')}"
                        counts[key] = counts.get(key, 0) + 1
                except (TimeoutError, websockets.ConnectionClosed, OSError):
                    pass
                record["ids"] = received(client)
                await client.close()
                counts["leaves"] += 1
            sessions.append(record)
            return True

        async def slot_loop(slot: int) -> None:
            await asyncio.sleep(max(0.0, start + rng.uniform(0, life_min) - time.time()))
            while time.time() < end:
                if not await session(slot):
                    await asyncio.sleep(1.0)

        await asyncio.gather(*(slot_loop(i) for i in range(slots)))
        return {"sessions": sessions, "messages": messages, "counts": counts}


async def main() -> None:
    """Serve commands from benchmarks.load until told to exit."""
    clients = SignalClients()
    await serve_commands({
        "join": clients.join, "messages": clients.messages, "close": clients.close, "soak": clients.soak,
    })


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(main())
