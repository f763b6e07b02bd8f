"""The Redis clients for room state kept in REDIS_URL's Redis: the asyncio one of the running event loop, and
one synchronous one per process.

redis.asyncio clients are bound to the loop that made them, so one is kept per loop (and made again when
REDIS_URL changes, as tests do).
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings

SOCKET_TIMEOUT_SECONDS = 2.0

_clients: dict[int, tuple[str, Any]] = {}


def loop_redis() -> Any:
    """A Redis client of the running event loop for REDIS_URL."""
    import redis.asyncio as aioredis

    loop_id = id(asyncio.get_running_loop())
    cached = _clients.get(loop_id)
    if cached is None or cached[0] != settings.REDIS_URL:
        cached = (settings.REDIS_URL, aioredis.from_url(settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT_SECONDS))
        _clients[loop_id] = cached
    return cached[1]


_sync_clients: dict[str, Any] = {}


def sync_redis() -> Any:
    """This process's synchronous Redis client for REDIS_URL (thread-safe: it keeps a connection pool), for the
    database thread's short reads; one second to connect or answer."""
    import redis

    client = _sync_clients.get(settings.REDIS_URL)
    if client is None:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        _sync_clients[settings.REDIS_URL] = client
    return client
