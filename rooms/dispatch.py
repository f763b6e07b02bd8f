"""Hand service outcomes to the channel layer, after their transaction committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from rooms import services
from rooms.services import Delivery, Outcome

logger = logging.getLogger(__name__)

ROOM_EVENT = "room.event"


def layer_message(delivery: Delivery) -> dict[str, Any]:
    """The channel-layer message that carries one delivery to consumers."""
    return {"type": ROOM_EVENT, "event": delivery.event, "exclude": delivery.exclude}


async def deliver(deliveries: Iterable[Delivery]) -> None:
    """Send each delivery to its room group and/or channels, in order."""
    layer = get_channel_layer()
    if layer is None:
        return
    for delivery in deliveries:
        message = layer_message(delivery)
        if delivery.group:
            await layer.group_send(delivery.group, message)
        for channel in delivery.channels:
            await layer.send(channel, message)


async def deliver_outcome(outcome: Outcome) -> None:
    """Deliver an outcome's events and hand its side effects to the media layer."""
    await deliver(outcome.deliveries)
    if outcome.closed_stream_ids or outcome.finalized_room_ids:
        from media_relay.client import media_client

        await media_client().streams_closed(outcome.closed_stream_ids, outcome.finalized_room_ids)


_expiry_tasks: set[asyncio.Task[None]] = set()


def schedule_expiry(participant_id: int, disconnected_at: Any) -> None:
    """After ROOM_IDLE_TIMEOUT, expire a dropped participant that did not resume."""

    async def expire_later() -> None:
        await asyncio.sleep(settings.ROOM_IDLE_TIMEOUT)
        try:
            outcome = await database_sync_to_async(services.expire)(participant_id, disconnected_at)
            await deliver_outcome(outcome)
        except Exception:
            logger.exception("expiring participant %s failed", participant_id)

    task = asyncio.get_running_loop().create_task(expire_later())
    _expiry_tasks.add(task)
    task.add_done_callback(_expiry_tasks.discard)
