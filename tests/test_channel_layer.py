"""The Redis channel layer (conference.layers) against a real Redis: a message to a channel of the same process is
delivered locally, at once and in order, even while another receiver of the process waits on Redis; messages from
another process still come through Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings

from conference.layers import ResilientRedisChannelLayer
from tests.conftest import require_redis

WAIT = 5.0


def new_layer() -> ResilientRedisChannelLayer:
    """A layer as settings configure it, with its own prefix (keys of other tests' layers are not touched)."""
    require_redis()
    layers: dict[str, dict[str, Any]] = settings.CHANNEL_LAYERS
    config = dict(layers["default"]["CONFIG"])
    config["prefix"] = "test-layer"
    return ResilientRedisChannelLayer(**config)


@pytest.mark.asyncio
async def test_a_local_message_skips_redis_and_wakes_its_receiver() -> None:
    """The receiver gets the message although another receiver (the process's Redis poller) blocks on Redis;
    nothing is written to Redis."""
    layer = new_layer()
    worker, consumer = await layer.new_channel(), await layer.new_channel()
    connection = layer.connection(layer.consistent_hash(consumer))
    try:
        await layer.send(consumer, {"type": "first"})
        assert await connection.zcard(layer.prefix + layer.non_local_name(consumer)) == 0  # not in Redis
        assert await asyncio.wait_for(layer.receive(consumer), WAIT) == {"type": "first"}
        waiting = asyncio.ensure_future(layer.receive(worker))  # another receiver, idle: Redis is quiet
        await asyncio.sleep(0.2)
        received = asyncio.ensure_future(layer.receive(consumer))
        await asyncio.sleep(0.2)
        await layer.send(consumer, {"type": "media.reply", "n": 1})
        assert await asyncio.wait_for(received, WAIT) == {"type": "media.reply", "n": 1}
        await layer.send(worker, {"type": "media.publish"})
        assert await asyncio.wait_for(waiting, WAIT) == {"type": "media.publish"}
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_local_messages_keep_their_order_and_are_copies() -> None:
    """Sent before anyone receives, read in order; the receiver gets a copy, as through Redis."""
    layer = new_layer()
    channel = await layer.new_channel()
    sent = [{"type": "x", "n": n, "items": [n]} for n in range(5)]
    try:
        for message in sent:
            await layer.send(channel, message)
        got = [await asyncio.wait_for(layer.receive(channel), WAIT) for _ in sent]
        assert got == sent
        assert all(a is not b and a["items"] is not b["items"] for a, b in zip(got, sent, strict=True))
    finally:
        await layer.flush()


@pytest.mark.asyncio
async def test_messages_from_another_process_come_through_redis() -> None:
    """Another layer instance (another process: another client prefix) reaches this process's channels."""
    layer, other = new_layer(), new_layer()
    channel = await layer.new_channel()
    try:
        received = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.1)
        await other.send(channel, {"type": "room.event", "n": 7})
        assert await asyncio.wait_for(received, WAIT) == {"type": "room.event", "n": 7}
        await layer.send(channel, {"type": "local"})
        await other.send(channel, {"type": "remote"})
        got = {(await asyncio.wait_for(layer.receive(channel), WAIT))["type"] for _ in range(2)}
        assert got == {"local", "remote"}
    finally:
        await other.close_pools()
        await layer.flush()
