"""The handle of the layer above on the media relay: typed commands to the right worker's channel.

:func:`media_client` places each placement key (rooms passes a room's primary
key) on one live media worker (pinned for its life, least-loaded first) and
sends the command to that worker's channel.  Publishes go to the placement's
worker; a play goes to its stream's worker or, past MEDIA_CASCADE_AFTER peer
connections there, to the least-loaded live worker, which plays a relayed copy
(cascading, :mod:`media_relay.cascade`); a peer connection placed away from its
placement's worker is remembered in the registry, so its later commands (ice,
stop, set_quality) reach it.  Results come back through the
:mod:`media_relay.port`, so a caller never waits on the relay.  Failures to
route raise :class:`~media_relay.contract.MediaError`.
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings

from media_relay import candidates
from media_relay import contract as c
from media_relay.reaper import reap_dead_workers
from media_relay.registry import WorkerInfo, registry

logger = logging.getLogger(__name__)

PLACED_MEMORY = 4096
"""Peer connections whose worker a client remembers (its later ice/stop/set_quality then cost one registry read)."""


class MediaClient:
    """Routes media commands to the worker that serves a placement."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self._placed: dict[str, str] = {}
        """pc id -> worker id of the peer connections this client placed (a peer connection never moves)."""

    def _remember(self, pc_id: str, worker_id: str) -> None:
        if len(self._placed) >= PLACED_MEMORY:
            del self._placed[next(iter(self._placed))]
        self._placed[pc_id] = worker_id

    async def _ensure_local_worker(self) -> None:
        if settings.MEDIA_MODE == "inprocess":
            from media_relay.worker import ensure_inprocess_worker  # the worker pulls in aiortc: only when used

            await ensure_inprocess_worker()

    async def worker_for(self, placement: int, *, place: bool = True) -> WorkerInfo | None:
        """The live worker pinned to a placement; pins the least-loaded one if needed."""
        await self._ensure_local_worker()
        reg = registry()
        alive = {w.worker_id: w for w in await reg.alive()}
        pinned = await reg.pinned(placement)
        if pinned and pinned in alive:
            return alive[pinned]
        if pinned:
            await reap_dead_workers()
        if not place:
            return None
        if not alive:
            raise c.MediaError(c.MediaErrorCode.MEDIA_UNAVAILABLE, "no media worker is running; try again later")
        chosen = min(alive.values(), key=lambda w: (w.load, w.worker_id))
        await reg.pin(placement, chosen.worker_id)
        return chosen

    async def _send(self, placement: int, command: c.Command, *, place: bool = True) -> bool:
        worker = await self.worker_for(placement, place=place)
        if worker is None:
            return False
        await self.layer.send(worker.channel, command)
        return True

    async def _send_to_pc(self, pc_id: str, placement: int, command: c.Command) -> bool:
        """Send to the worker holding a peer connection (one placed away from its placement's worker, or that).

        One registry read (the live workers) for a peer connection this client placed, which is the usual case:
        the participant's own consumer sends its candidates."""
        reg = registry()
        holder = self._placed.get(pc_id)
        if holder is None:
            holder = await reg.routed(pc_id)
        if holder is not None:
            for worker in await reg.alive():
                if worker.worker_id == holder:
                    await self.layer.send(worker.channel, command)
                    return True
        return await self._send(placement, command, place=False)

    async def _place_play(self, command: c.PlayCommand) -> WorkerInfo:
        """The worker that plays: the stream's own, or (cascading) the least-loaded live one."""
        room_worker = await self.worker_for(command["placement"])
        assert room_worker is not None
        reg = registry()
        description = await reg.stream(command["stream_id"])
        if description is None:
            return room_worker
        alive = {w.worker_id: w for w in await reg.alive()}
        origin = alive.get(str(description.get("worker_id")))
        if origin is None:
            return room_worker
        if not origin.relay_port:
            return origin  # it cannot relay: its players stay with it
        threshold = settings.MEDIA_CASCADE_AFTER
        if threshold and origin.load < threshold:
            return origin
        candidates_ = [w for w in alive.values() if w is origin or w.relay_port]
        # Ties go to the origin: a relayed copy costs a little more than a local one.
        chosen = min(candidates_, key=lambda w: (w.load, w is not origin, w.worker_id))
        if chosen is not origin:
            command["origin"] = c.OriginInfo(
                worker_id=origin.worker_id,
                channel=origin.channel,
                host=origin.relay_host,
                port=origin.relay_port,
                tracks=list(description.get("tracks") or []),
            )
        return chosen

    async def _broadcast(self, command: c.Command) -> bool:
        """Send to every live worker; False when the registry is unavailable."""
        try:
            workers = await registry().alive()
        except Exception:  # the registry being down must not break leaving a room
            logger.exception("media registry unavailable")
            return False
        for worker in workers:
            await self.layer.send(worker.channel, command)
        return True

    async def publish(self, command: c.PublishCommand) -> None:
        """Ask the placement's worker to answer a publisher's offer (its candidates screened first)."""
        command["sdp"], _ = candidates.screen_offer(command["sdp"])
        worker = await self.worker_for(command["placement"])
        assert worker is not None
        self._remember(command["stream_id"], worker.worker_id)
        await self.layer.send(worker.channel, command)

    async def play(self, command: c.PlayCommand) -> None:
        """Ask the playing worker to answer a player's offer (its candidates screened first)."""
        command["sdp"], _ = candidates.screen_offer(command["sdp"])
        worker = await self._place_play(command)
        if worker.worker_id != await registry().pinned(command["placement"]):
            await registry().route(command["play_id"], worker.worker_id)
        self._remember(command["play_id"], worker.worker_id)
        await self.layer.send(worker.channel, command)

    async def set_quality(self, command: c.SetQualityCommand) -> None:
        """Change a playback's wanted quality; the worker acks or reports play_not_found."""
        if not await self._send_to_pc(command["play_id"], command["placement"], command):
            raise c.MediaError(c.MediaErrorCode.PLAY_NOT_FOUND, "no such playback")

    async def stop(self, command: c.StopCommand) -> None:
        """Stop a playback; the worker acks or reports play_not_found."""
        if not await self._send_to_pc(command["play_id"], command["placement"], command):
            raise c.MediaError(c.MediaErrorCode.PLAY_NOT_FOUND, "no such playback")

    async def ice(self, command: c.IceCommand) -> None:
        """Hand a trickled candidate to the peer connection it belongs to (screened first; an mDNS one is dropped)."""
        if not candidates.screen_trickled(command["candidate"]):
            command["candidate"] = None
        if not await self._send_to_pc(command["pc_id"], command["placement"], command):
            raise c.MediaError(c.MediaErrorCode.PLAY_NOT_FOUND, "no such peer connection")

    async def mute(self, command: c.MuteCommand) -> None:
        """Stop or resume forwarding a stream: every live worker hears it, the one holding the stream applies it."""
        await self._broadcast(command)

    async def participant_gone(self, command: c.ParticipantGoneCommand) -> None:
        """Close every peer connection of a participant that left or dropped (its plays may be on any worker)."""
        await self._broadcast(command)

    async def streams_closed(self, command: c.StreamsClosedCommand) -> None:
        """Close ended publications (and their players) on every live worker; unpin the closed placements."""
        if not await self._broadcast(command):
            return
        for placement in command["placements"]:
            await registry().unpin(placement)


_clients: dict[int, MediaClient] = {}


def media_client() -> MediaClient:
    """The media client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.layer is not get_channel_layer():
        client = _clients[id(loop)] = MediaClient()
    return client
