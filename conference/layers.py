"""A Redis channel layer that rides out a Redis restart instead of dropping every connection.

channels-redis raises on any connection error; a consumer whose receive loop
raises is torn down with its WebSocket.  Here receive retries until Redis is
back, and send/group operations retry for a bounded time.  Redis keeps group
memberships in memory, so consumers re-add themselves periodically
(rooms.consumers) and media workers re-pin their rooms on every heartbeat.

A message to a channel of this very process (the in-process media worker's
commands, its replies to the connections of this process) is put straight into
the receive buffer its receiver reads, not through Redis: channels-redis spends
four Redis round trips on a send and four more on a receive, and receives one
message at a time for the whole process, so on a busy event loop every local
hop queued for seconds behind the others (a publish's two hops behind a room's
burst of trickled candidates and their acks went past the SDK's 20 s timeout).
For that, one poller task per process reads Redis into the buffers (channels-redis
lets whichever receiver holds its lock read, which would sit in a blocking pop
while a local message waits in its own buffer).
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
    """RedisChannelLayer with retries around Redis outages, and local delivery within the process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poller: asyncio.Task[None] | None = None
        self._waiting: dict[str, int] = {}
        """Receivers waiting on each channel's buffer (a buffer nobody waits on and that is empty is dropped)."""

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
        """A message of a process-specific channel comes from its buffer, filled by this process's one poller of
        Redis and by local sends; a general channel is read from Redis directly."""
        if "!" not in channel:
            return await self._retry(lambda: super(ResilientRedisChannelLayer, self).receive(channel), "receive", None)
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        real_channel = self.non_local_name(channel)
        assert real_channel.endswith(self.client_prefix + "!"), "Wrong client prefix"
        self._ensure_poller(real_channel)
        buffer = self.receive_buffer[channel]
        waiting = self._waiting
        waiting[channel] = waiting.get(channel, 0) + 1
        try:
            return await buffer.get()
        finally:
            waiting[channel] -= 1
            if not waiting[channel]:
                del waiting[channel]
                if buffer.empty() and self.receive_buffer.get(channel) is buffer:
                    del self.receive_buffer[channel]

    def _ensure_poller(self, real_channel: str) -> None:
        """Start the poller on this event loop (again after a loop of an earlier test ended)."""
        loop = asyncio.get_running_loop()
        if self._poller is not None and not self._poller.done():
            if self._poller.get_loop() is loop:
                return
            if self._poller.get_loop().is_running():
                raise RuntimeError("Two event loops are trying to receive() on one channel layer at once!")
        self._poller = loop.create_task(self._poll(real_channel))

    async def _poll(self, real_channel: str) -> None:
        """Move this process's messages from Redis into the channels' buffers, one at a time, for ever."""
        delay = 0.1
        while True:
            try:
                message_channel, message = await self.receive_single(real_channel)
            except TRANSIENT as exc:
                logger.warning("channel layer receive failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception:
                logger.exception("channel layer receive failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            for name in message_channel if isinstance(message_channel, list) else [message_channel]:
                self.receive_buffer[name].put_nowait(message)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        if self._deliver_locally(channel, message):
            return
        await self._retry(
            lambda: super(ResilientRedisChannelLayer, self).send(channel, message), "send", SEND_RETRY_SECONDS
        )

    def _deliver_locally(self, channel: str, message: dict[str, Any]) -> bool:
        """Put a message for a channel of this process into its receive buffer (a serialized copy, as Redis would
        hand it over); False for any other channel, or when this process receives on another event loop.
        A full buffer drops its oldest message, as channels-redis's buffers do (a channel that stopped reading)."""
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if "!" not in channel or not self.non_local_name(channel).endswith(self.client_prefix + "!"):
            return False
        if self._poller is not None and self._poller.get_loop() is not asyncio.get_running_loop():
            return False
        self.receive_buffer[channel].put_nowait(self.deserialize(self.serialize(message)))
        return True

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
