"""Flood control for WebSocket connections: per-connection token buckets (commands, messages, bytes) and a
per-IP connection cap.

Both are enforced by rooms.consumers.  A command over its budget is refused with
``rate_limited`` and the connection stays up; a connection over its address's
cap is accepted only to be closed with code 4429 and a reason.  The per-IP count
lives in Redis when REDIS_URL is set (shared by every daphne process, kept alive by
each process's heartbeat while its connections are open) and in this process
otherwise.  The address is the real client's (conference.client_address sets it).
docs/operations.md describes the settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from rooms import protocol as p
from rooms.exceptions import ErrorCode, RoomError
from rooms.redis_client import loop_redis

logger = logging.getLogger(__name__)

#: Close code of a connection refused because its address holds too many.
CLOSE_TOO_MANY_CONNECTIONS = 4429
#: The reason given (in an error frame, then in the close frame) for that close.
TOO_MANY_CONNECTIONS = "too many connections from your address; close one and retry"
#: Redis key prefix of the per-IP counts: a sorted set per address, one member per open connection.
REDIS_KEY_PREFIX = "conference:ws-conns:"


@dataclass
class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each action takes one.  A rate of 0 means unlimited."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 0:
            raise ValueError("rate and burst must not be negative")
        if self.tokens < 0:
            self.tokens = max(self.burst, 1.0)

    @property
    def unlimited(self) -> bool:
        """True when the bucket never refuses."""
        return self.rate <= 0

    def take(self, now: float | None = None, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if there are that many; False (nothing taken) when there are not."""
        if self.unlimited:
            return True
        now = time.monotonic() if now is None else now
        capacity = max(self.burst, 1.0)
        self.tokens = min(capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False


class ConnectionLimits:
    """The buckets of one connection: every command, and chat messages on top."""

    def __init__(self) -> None:
        self.commands = TokenBucket(settings.WS_RATE_COMMANDS_PER_SECOND, settings.WS_RATE_COMMANDS_BURST)
        self.messages = TokenBucket(settings.WS_RATE_MESSAGES_PER_SECOND, settings.WS_RATE_MESSAGES_BURST)
        self.bytes = TokenBucket(settings.WS_RATE_MESSAGE_BYTES_PER_SECOND, settings.WS_RATE_MESSAGE_BYTES_BURST)

    def check_bytes(self, size: int) -> None:
        """Charge a frame of ``size`` bytes to the byte budget; raise RoomError(rate_limited) when over it
        (the frame is then not charged: it is not handled)."""
        if not self.bytes.take(amount=float(size)):
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                f"too many bytes: at most {self.bytes.rate:g} a second (bursts of {self.bytes.burst:g});"
                " wait a moment and retry",
            )

    def check(self, kind: Any) -> None:
        """Charge one command of ``kind``; raise RoomError(rate_limited) when over a budget."""
        if not self.commands.take():
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                f"too many commands: at most {self.commands.rate:g} a second (bursts of {self.commands.burst:g});"
                " slow down and retry",
            )
        if kind == p.CommandType.SEND_MESSAGE and not self.messages.take():
            raise RoomError(
                ErrorCode.RATE_LIMITED,
                f"too many messages: at most {self.messages.rate:g} a second (bursts of {self.messages.burst:g});"
                " slow down and retry",
            )


def announced() -> dict[str, int]:
    """The size limits ``established`` announces, which the SDKs check before sending."""
    return {"max_message_bytes": settings.MESSAGE_MAX_BYTES, "max_frame_bytes": settings.WS_MAX_FRAME_BYTES}


# --- connections per IP ---------------------------------------------------------------------------

_local_counts: dict[str, int] = {}


def client_address(scope: dict[str, Any]) -> str | None:
    """The client IP of a connection's scope (the real one: conference.client_address puts it there)."""
    client = scope.get("client")
    if not client:
        return None
    host = str(client[0])[:64]
    return host or None


def _exempt(address: str) -> bool:
    for entry in settings.WS_MAX_CONNECTIONS_EXEMPT:
        try:
            if ipaddress.ip_address(address) in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            if address == entry:
                return True
    return False


class ConnectionSlot:
    """One connection's place in its address's count; ``release`` gives it back (idempotent).

    In Redis a place is a member of the address's sorted set whose score is the time it expires;
    this process's heartbeat pushes that time forward for every open place, so a place never
    expires while its connection is open and outlives a crashed process by at most
    WS_CONNECTION_COUNT_TTL.  ``refresh`` does the same for one place at once.
    """

    def __init__(self, address: str | None, backend: str | None, member: str = "") -> None:
        self.address = address
        self.backend = backend
        self.member = member

    @property
    def key(self) -> str:
        """The Redis key of this slot's address."""
        return REDIS_KEY_PREFIX + (self.address or "")

    async def refresh(self) -> None:
        """Push this place's expiry forward now (the process heartbeat does it for every open place)."""
        if self.backend == "redis" and self.address is not None:
            await _refresh_places([self])

    async def release(self) -> None:
        """Give the slot back."""
        address, backend = self.address, self.backend
        self.address = self.backend = None
        if address is None or backend is None:
            return
        if backend == "local":
            remaining = _local_counts.get(address, 0) - 1
            if remaining > 0:
                _local_counts[address] = remaining
            else:
                _local_counts.pop(address, None)
            return
        _open_places().discard(self)
        try:
            await loop_redis().zrem(REDIS_KEY_PREFIX + address, self.member)
        except Exception as exc:  # the place expires by itself without heartbeats
            logger.warning("could not release a connection slot of %s in Redis: %s", address, exc)


def _ttl() -> float:
    return max(float(settings.WS_CONNECTION_COUNT_TTL), 0.3)


async def _refresh_places(slots: list[ConnectionSlot]) -> None:
    """One round trip: every open place of ``slots`` expires a TTL from now again."""
    ttl = _ttl()
    expires = time.time() + ttl
    async with loop_redis().pipeline(transaction=False) as pipe:
        for slot in slots:
            if slot.address is None:
                continue
            pipe.zadd(slot.key, {slot.member: expires}, xx=True)
            pipe.expire(slot.key, math.ceil(ttl) + 1)
        await pipe.execute()


_places: dict[int, set[ConnectionSlot]] = {}
_heartbeats: dict[int, asyncio.Task[None]] = {}


def _open_places() -> set[ConnectionSlot]:
    """This event loop's open Redis places."""
    return _places.setdefault(id(asyncio.get_running_loop()), set())


async def _heartbeat(places: set[ConnectionSlot]) -> None:
    """Refresh every open place of this loop each third of the TTL; ends when none is left."""
    while places:
        await asyncio.sleep(_ttl() / 3)
        try:
            await _refresh_places(list(places))
        except Exception as exc:
            logger.warning("could not refresh the connection counts in Redis: %s", exc)
    loop_id = id(asyncio.get_running_loop())  # nothing left: forget this loop (the next acquire starts again)
    if _places.get(loop_id) is places:
        del _places[loop_id]
        _heartbeats.pop(loop_id, None)


def _ensure_heartbeat() -> None:
    loop_id = id(asyncio.get_running_loop())
    task = _heartbeats.get(loop_id)
    if task is None or task.done():
        _heartbeats[loop_id] = asyncio.ensure_future(_heartbeat(_open_places()))


async def acquire_connection(scope: dict[str, Any]) -> ConnectionSlot | None:
    """A slot for a new connection, or None when its address already holds WS_MAX_CONNECTIONS_PER_IP.

    Connections without a client address, from an exempt address, or with the cap at 0 are not counted.
    When Redis does not answer, the connection is let in (and a warning logged).
    """
    limit = settings.WS_MAX_CONNECTIONS_PER_IP
    address = client_address(scope)
    if limit <= 0 or address is None or _exempt(address):
        return ConnectionSlot(None, None)
    if not settings.REDIS_URL:
        count = _local_counts.get(address, 0)
        if count >= limit:
            return None
        _local_counts[address] = count + 1
        return ConnectionSlot(address, "local")
    slot = ConnectionSlot(address, "redis", uuid.uuid4().hex)
    ttl = _ttl()
    now = time.time()
    try:
        async with loop_redis().pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(slot.key, "-inf", now)  # places of processes that died
            pipe.zadd(slot.key, {slot.member: now + ttl})
            pipe.zcard(slot.key)
            pipe.expire(slot.key, math.ceil(ttl) + 1)
            _, _, count, _ = await pipe.execute()
    except Exception as exc:
        logger.warning("connection count of %s unavailable in Redis (letting it in): %s", address, exc)
        return ConnectionSlot(None, None)
    if count > limit:
        await slot.release()
        return None
    _open_places().add(slot)
    _ensure_heartbeat()
    return slot


def redis_connection_count(address: str) -> int:
    """How many places ``address`` holds in Redis now (synchronous; for tests and operators)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return int(client.zcount(REDIS_KEY_PREFIX + address, time.time(), "+inf"))
    finally:
        client.close()
