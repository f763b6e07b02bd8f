"""Hand service deliveries to the channel layer: room groups and single connections.

Each event is encoded to JSON text once, here, and the channel-layer message carries that text: every
recipient's consumer sends it as it is (no per-recipient encoding, no database).  Presence deliveries of big rooms
(``Delivery.coalesce``) are batched per room group for ROOM_PRESENCE_BATCH_WINDOW seconds into one ``presence``
event, in the process that serves the WebSockets (see :func:`serve_batched`); any other event for that group
first flushes the batch, so a room's events keep their order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from rooms import protocol as p
from rooms.services import Delivery

logger = logging.getLogger(__name__)

ROOM_EVENT = "room.event"


def layer_message(delivery: Delivery) -> dict[str, Any]:
    """The channel-layer message that carries one delivery to consumers: the event's JSON text, its type, and
    what the consumer itself must know of it (the room id of ``room_closed``)."""
    return event_message(delivery.event, delivery.exclude)


def event_message(event: dict[str, Any], exclude: str | None = None) -> dict[str, Any]:
    """The channel-layer message of one encoded event."""
    kind = event.get("type")
    message: dict[str, Any] = {"type": ROOM_EVENT, "text": p.encode(event), "kind": kind, "exclude": exclude}
    if kind == p.EventType.ROOM_CLOSED:
        message["room_id"] = event.get("room", {}).get("id")
    return message


@dataclass
class _Batch:
    changes: list[dict[str, Any]] = field(default_factory=list)
    viewers: int | None = None


class PresenceBatcher:
    """The presence events of big rooms, gathered per room group for a short window."""

    def __init__(self) -> None:
        self.pending: dict[str, _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, delivery: Delivery) -> None:
        """Add one presence delivery to its group's batch (a flush is scheduled with the batch's first)."""
        assert delivery.group is not None
        batch = self.pending.get(delivery.group)
        if batch is None:
            batch = self.pending[delivery.group] = _Batch()
            loop = asyncio.get_running_loop()
            loop.call_later(settings.ROOM_PRESENCE_BATCH_WINDOW, self._flush_later, delivery.group)
        event = delivery.event
        if event.get("type") == p.EventType.PRESENCE:
            batch.changes.extend(event.get("changes", ()))
            if event.get("viewers") is not None:
                batch.viewers = event["viewers"]
        else:
            batch.changes.append({"event": event["type"], "participant": event["participant"]})

    def _flush_later(self, group: str) -> None:
        task = asyncio.ensure_future(self.flush(group))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("sending batched presence failed", exc_info=task.exception())

    async def flush(self, group: str) -> None:
        """Send the group's batch now, if it has one."""
        batch = self.pending.pop(group, None)
        if batch is None:
            return
        fields: dict[str, Any] = {"changes": batch.changes}
        if batch.viewers is not None:
            fields["viewers"] = batch.viewers
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(group, event_message(p.Event(p.EventType.PRESENCE, fields).to_dict()))


batcher = PresenceBatcher()
_serving_loop: asyncio.AbstractEventLoop | None = None


def serve_batched() -> None:
    """Batch big rooms' presence in the running loop (the WebSocket server's; called by the consumers). Other
    loops, e.g. a REST view's ``async_to_sync``, which ends with the call, send every event at once."""
    global _serving_loop
    _serving_loop = asyncio.get_running_loop()


def _batching() -> bool:
    return settings.ROOM_PRESENCE_BATCH_WINDOW > 0 and asyncio.get_running_loop() is _serving_loop


async def deliver(deliveries: Iterable[Delivery]) -> None:
    """Send each delivery to its room group and/or channels, in order."""
    layer = get_channel_layer()
    if layer is None:
        return
    batching = _batching()
    for delivery in deliveries:
        if delivery.group and delivery.coalesce and batching:
            batcher.add(delivery)
            continue
        message = layer_message(delivery)
        if delivery.group:
            await batcher.flush(delivery.group)
            await layer.group_send(delivery.group, message)
        for channel in delivery.channels:
            await layer.send(channel, message)
