"""Hand service deliveries to the channel layer: room groups and single connections."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from channels.layers import get_channel_layer

from rooms.services import Delivery

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
