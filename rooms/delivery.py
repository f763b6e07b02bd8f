"""Hand service deliveries to the channel layer: room groups and single connections.

Each event is encoded to JSON text once, here, and the channel-layer message carries that text; the hub of each
process frames it once and every local connection writes that frame as it is (rooms.wire: no per-recipient
encoding, framing or ASGI hop, no database).

A room group's event crosses Redis **once per server process**, not once per member: each process's
:class:`RoomHub` is the one member of the channel-layer group ``<room group>.hub`` for the rooms it has
connections in, and hands every event to its local consumers itself (no per-consumer channel-layer message, no
per-message ``close_old_connections`` of the consumer's dispatch).  Events for one connection (replies of the
relay, ``kicked``, ``stream_status``) still go to its own channel.

Presence deliveries of big rooms (``Delivery.coalesce``) are batched per room group for
ROOM_PRESENCE_BATCH_WINDOW seconds into one ``presence`` event, in the process that serves the WebSockets (see
:func:`serve_batched`); any other event for that group first flushes the batch, so a room's events keep their
order.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from rooms import protocol as p
from rooms import wire
from rooms.services import Delivery

logger = logging.getLogger(__name__)

ROOM_EVENT = "room.event"
AUDIENCE_COUNT_WINDOW = 1.0
"""Seconds a batch holding only a new audience count waits (at least): a webinar's count need not move faster."""


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


def hub_group(group: str) -> str:
    """The channel-layer group of the processes with members in room group ``group``."""
    return f"{group}.hub"


class Member(Protocol):
    """A local connection in a room: rooms.consumers.RoomConsumer, or a WHIP session (rooms.whip_sessions).  One
    may also have ``room_event_now(message) -> bool``, tried first: the event handled without a coroutine."""

    @property
    def channel_name(self) -> str: ...

    async def room_event(self, message: dict[str, Any]) -> None: ...


class RoomHub:
    """This process's room groups: one channel-layer membership per group, local fan-out to its members."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.members: dict[str, dict[str, Member]] = {}
        self.subscribed: set[str] = set()
        """Room groups whose hub group this process has joined (the channel layer acknowledged it)."""
        self._members_lock = threading.Lock()  # add_if_subscribed comes from a database thread
        self.channel = ""
        self._receiver: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._started = asyncio.Lock()

    async def _start(self) -> None:
        async with self._started:
            if self._receiver is not None:
                return
            layer = get_channel_layer()
            assert layer is not None
            self.channel = await layer.new_channel()  # "specific.": read by the same loop as the consumers
            self._receiver = asyncio.ensure_future(self._receive(layer))
            self._refresher = asyncio.ensure_future(self._refresh(layer))

    async def add(self, group: str, member: Member) -> None:
        """``member`` is in ``group`` now (this process joins the group's hub group with its first member)."""
        await self._start()
        with self._members_lock:
            self.members.setdefault(group, {})[member.channel_name] = member
        if group not in self.subscribed:
            layer = get_channel_layer()
            assert layer is not None
            await layer.group_add(hub_group(group), self.channel)
            self.subscribed.add(group)

    def add_if_subscribed(self, group: str, member: Member) -> bool:
        """From any thread: ``member`` is in ``group`` now if this process receives the group's events already
        (no round trip to the event loop or the channel layer); False, doing nothing, if not (then :meth:`add`)."""
        with self._members_lock:
            local = self.members.get(group)
            if not local or group not in self.subscribed:
                return False
            local[member.channel_name] = member
            return True

    async def discard(self, group: str, member: Member) -> None:
        """``member`` left ``group`` (the process leaves the hub group with its last member)."""
        with self._members_lock:
            local = self.members.get(group)
            if not local or local.pop(member.channel_name, None) is None:
                return
            last = not local
            if last:
                del self.members[group]
                self.subscribed.discard(group)
        if last:
            layer = get_channel_layer()
            if layer is not None and self.channel:
                await layer.group_discard(hub_group(group), self.channel)

    async def _receive(self, layer: Any) -> None:
        while True:
            try:
                message = await layer.receive(self.channel)
                await self.dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("room hub: dispatching an event failed")

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand one group event to each local member but the excluded one."""
        local = self.members.get(message.get("group", ""))
        if not local:
            return
        exclude = message.get("exclude")
        if "text" in message:  # one frame for every local recipient (rooms.wire)
            message["frame"] = wire.prepare(message["text"])
        for channel, member in list(local.items()):
            if channel == exclude:
                continue
            try:
                now = getattr(member, "room_event_now", None)
                if now is None or not now(message):
                    await member.room_event(message)
            except Exception:
                logger.exception("room hub: delivering to %s failed", channel)

    async def _refresh(self, layer: Any) -> None:
        """Re-join the hub groups now and then: a restarted Redis forgets group memberships."""
        while True:
            await asyncio.sleep(settings.WS_GROUP_REFRESH_SECONDS)
            for group in list(self.members):
                try:
                    await layer.group_add(hub_group(group), self.channel)
                except Exception:
                    logger.warning("refreshing the room hub's group failed", exc_info=True)


_hub: RoomHub | None = None


def hub() -> RoomHub:
    """This process's room hub (one per event loop)."""
    global _hub
    loop = asyncio.get_running_loop()
    if _hub is None or _hub.loop is not loop:
        _hub = RoomHub(loop)
    return _hub


async def group_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    """Send a room event to every process with members in ``group``."""
    await layer.group_send(hub_group(group), {**message, "group": group})


@dataclass
class _Batch:
    changes: list[dict[str, Any]] = field(default_factory=list)
    viewers: int | None = None
    due: float | None = None


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
        event = delivery.event
        if event.get("type") == p.EventType.PRESENCE:
            batch.changes.extend(event.get("changes", ()))
            if event.get("viewers") is not None:
                batch.viewers = event["viewers"]
        else:
            batch.changes.append({"event": event["type"], "participant": event["participant"]})
        # A flush timer per batch: the window, or for a batch that only counts the audience (so far) a longer one;
        # the first change brings it forward.  A timer that finds its batch sent already finds nothing to send.
        window = settings.ROOM_PRESENCE_BATCH_WINDOW
        due = asyncio.get_running_loop().time() + (window if batch.changes else max(window, AUDIENCE_COUNT_WINDOW))
        if batch.due is None or due < batch.due:
            batch.due = due
            asyncio.get_running_loop().call_at(due, self._flush_later, delivery.group, batch)

    def _flush_later(self, group: str, batch: _Batch) -> None:
        late = batch.due is not None and batch.due <= asyncio.get_running_loop().time() + 0.05
        if self.pending.get(group) is not batch or not late:
            return  # sent already, or brought forward and due later
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
            await group_send(layer, group, event_message(p.Event(p.EventType.PRESENCE, fields).to_dict()))


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
            await group_send(layer, delivery.group, message)
        for channel in delivery.channels:
            await layer.send(channel, message)
