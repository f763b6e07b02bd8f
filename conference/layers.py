"""A Redis channel layer that rides out a Redis restart instead of dropping every connection.

channels-redis raises on any connection error; a consumer whose receive loop
raises is torn down with its WebSocket.  Here receive retries until Redis is
back, and send/group operations retry for a bounded time.  Redis keeps group
memberships in memory, so consumers re-add themselves periodically
(rooms.consumers) and media workers re-pin their rooms on every heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from channels_redis.core import RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
SEND_RETRY_SECONDS = 15.0


class ResilientRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    """RedisChannelLayer with retries around Redis outages."""

    async def _retry(self, operation: Callable[[], Awaitable[T]], what: str, limit: float | None) -> T:
        delay, waited = 0.1, 0.0
        while True:
            try:
                return await operation()
            except TRANSIENT as exc:
                if limit is not None and waited >= limit:
                    raise
                logger.warning("channel layer %s failed (%s); retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 2.0)

    async def receive(self, channel: str) -> Any:
        return await self._retry(lambda: super(ResilientRedisChannelLayer, self).receive(channel), "receive", None)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._retry(
            lambda: super(ResilientRedisChannelLayer, self).send(channel, message), "send", SEND_RETRY_SECONDS
        )

    async def group_add(self, group: str, channel: str) -> None:
        await self._retry(
            lambda: super(ResilientRedisChannelLayer, self).group_add(group, channel), "group_add", SEND_RETRY_SECONDS
        )

    async def group_discard(self, group: str, channel: str) -> None:
        await self._retry(
            lambda: super(ResilientRedisChannelLayer, self).group_discard(group, channel), "group_discard", 5.0
        )

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._retry(
            lambda: super(ResilientRedisChannelLayer, self).group_send(group, message), "group_send", SEND_RETRY_SECONDS
        )
