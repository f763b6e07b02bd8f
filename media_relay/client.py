"""The signalling side's handle on the media relay.

Consumers call :func:`media_client`; it places each room on one live media
worker (pinned for the room's life, least-loaded first) and sends the work to
that worker's channel.  Replies come back to the consumer's own channel as
``media.reply`` messages, so a consumer never waits on the relay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from media_relay import messages as m
from media_relay.registry import WorkerInfo, registry
from rooms.exceptions import ErrorCode, RoomError

logger = logging.getLogger(__name__)


class MediaClient:
    """Routes media commands to the worker that serves a room."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()

    async def _ensure_local_worker(self) -> None:
        if settings.MEDIA_MODE == "inprocess":
            from media_relay.worker import ensure_inprocess_worker

            await ensure_inprocess_worker()

    async def worker_for_room(self, room_id: int, *, place: bool = True) -> WorkerInfo | None:
        """The live worker pinned to a room; pins the least-loaded one if needed."""
        await self._ensure_local_worker()
        reg = registry()
        alive = {w.worker_id: w for w in await reg.alive()}
        pinned = await reg.pinned(room_id)
        if pinned and pinned in alive:
            return alive[pinned]
        if pinned:
            from media_relay.reaper import reap_dead_workers

            await reap_dead_workers()
        if not place:
            return None
        if not alive:
            raise RoomError(ErrorCode.MEDIA_UNAVAILABLE, "no media worker is running; try again later")
        chosen = min(alive.values(), key=lambda w: (w.load, w.worker_id))
        await reg.pin(room_id, chosen.worker_id)
        return chosen

    async def _send(self, room_id: int, message: dict[str, Any], *, place: bool = True) -> bool:
        worker = await self.worker_for_room(room_id, place=place)
        if worker is None:
            return False
        await self.layer.send(worker.channel, message)
        return True

    async def publish(
        self,
        *,
        room_id: int,
        participant_id: int,
        stream_id: str,
        sdp: str,
        record: bool,
        reply_channel: str,
        rid: str | int | None,
    ) -> None:
        """Ask the room's worker to answer a publisher's offer."""
        await self._send(room_id, m.publish(room_id, participant_id, stream_id, sdp, record, reply_channel, rid))

    async def play(
        self,
        *,
        room_id: int,
        participant_id: int,
        stream_id: str,
        play_id: str,
        sdp: str,
        reply_channel: str,
        rid: str | int | None,
    ) -> None:
        """Ask the room's worker to answer a player's offer."""
        await self._send(room_id, m.play(room_id, participant_id, stream_id, play_id, sdp, reply_channel, rid))

    async def stop(self, *, room_id: int, play_id: str, reply_channel: str, rid: str | int | None) -> None:
        """Stop a playback; the worker replies ack or play_not_found."""
        if not await self._send(room_id, m.stop(room_id, play_id, reply_channel, rid), place=False):
            raise RoomError(ErrorCode.PLAY_NOT_FOUND, "no such playback")

    async def ice(
        self,
        *,
        room_id: int,
        participant_id: int,
        pc_id: str,
        candidate: str | None,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
        reply_channel: str,
        rid: str | int | None,
    ) -> None:
        """Hand a trickled candidate to the peer connection it belongs to."""
        message = m.ice(room_id, participant_id, pc_id, candidate, sdp_mid, sdp_mline_index, reply_channel, rid)
        if not await self._send(room_id, message, place=False):
            raise RoomError(ErrorCode.PLAY_NOT_FOUND, "no such peer connection")

    async def mute(self, *, room_id: int, stream_id: str, audio: bool, video: bool) -> None:
        """Stop or resume forwarding a stream's audio and video."""
        await self._send(room_id, m.mute(room_id, stream_id, audio, video), place=False)

    async def participant_gone(self, room_id: int | None, participant_id: int) -> None:
        """Close every peer connection of a participant that left or dropped."""
        if room_id is not None:
            await self._send(room_id, m.participant_gone(room_id, participant_id), place=False)

    async def streams_closed(self, stream_ids: list[str], room_ids: list[int]) -> None:
        """Close ended publications (and their players) on every live worker."""
        try:
            workers = await registry().alive()
        except Exception:  # the registry being down must not break leaving a room
            logger.exception("media registry unavailable")
            return
        for worker in workers:
            await self.layer.send(worker.channel, m.streams_closed(stream_ids, room_ids))
        for room_id in room_ids:
            await registry().unpin(room_id)


_clients: dict[int, MediaClient] = {}


def media_client() -> MediaClient:
    """The media client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.layer is not get_channel_layer():
        client = _clients[id(loop)] = MediaClient()
    return client
