"""A media worker: takes publish/play work from its channel and runs the relay.

Under `make run` one worker runs inside the daphne process; `manage.py
runmedia` runs workers as separate processes.  Either way the worker listens
on its own channel of the channel layer and announces itself in the registry,
so signalling in any daphne process can reach it.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from media_relay import aiortc_compat
from media_relay import messages as m
from media_relay.peers import MediaError, Playback, Publication
from media_relay.recording.sink import recording_sink_factory
from media_relay.registry import HEARTBEAT_SECONDS, WorkerInfo, registry
from media_relay.stats import STATS
from rooms import protocol as p
from rooms import services
from rooms.dispatch import deliver
from rooms.exceptions import ErrorCode
from rooms.models import Stream
from rooms.presenters import stream_dict

logger = logging.getLogger(__name__)

db = database_sync_to_async


def _stream_payload(stream_id: str) -> dict[str, Any] | None:
    stream = Stream.objects.select_related("participant").filter(public_id=stream_id).first()
    return stream_dict(stream) if stream else None


class MediaWorker:
    """Publications and playbacks of the rooms placed on this worker."""

    def __init__(self, worker_id: str | None = None) -> None:
        self.worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.layer = get_channel_layer()
        self.channel = ""
        self.publications: dict[str, Publication] = {}
        self.playbacks: dict[str, Playback] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.sink_factories: list[Callable[[Publication, bool], Awaitable[None]]] = [recording_sink_factory]

    @property
    def load(self) -> int:
        """Peer connections served: the placement metric."""
        return len(self.publications) + len(self.playbacks)

    async def start(self) -> None:
        """Get a channel and announce this worker."""
        aiortc_compat.install(settings.MEDIA_UDP_PORTS)
        # The default prefix: channels_redis serves all of a process's channels from one key ("specific.<id>!").
        self.channel = await self.layer.new_channel()
        await self._announce()

    async def _announce(self) -> None:
        streams = tuple(self.publications)
        rooms = tuple({publication.room_id for publication in self.publications.values()})
        await registry().announce(WorkerInfo(self.worker_id, self.channel, self.load, time.time(), streams, rooms))

    async def run(self) -> None:
        """Serve until cancelled; heartbeats keep the registry entry alive."""
        if not self.channel:
            await self.start()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            while not self._stopping:
                try:
                    message = await self.layer.receive(self.channel)
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except Exception:
                    # A channel-layer hiccup (Redis restarting, a slow read) must not end the worker.
                    logger.exception("media worker could not read its channel; retrying")
                    await asyncio.sleep(0.5)
                    continue
                self._spawn(message)
        finally:
            heartbeat.cancel()
            await self.shutdown()

    async def _heartbeat(self) -> None:
        from media_relay.reaper import reap_dead_workers

        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._announce()
                for room_id in {publication.room_id for publication in self.publications.values()}:
                    await registry().pin(room_id, self.worker_id)  # survives a Redis restart
                await reap_dead_workers()
            except Exception:
                logger.exception("media worker heartbeat failed")

    def _spawn(self, message: dict[str, Any]) -> None:
        key = message.get("stream_id") or message.get("play_id") or message.get("pc_id") or "global"
        lock = self._locks[str(key)]
        task = asyncio.ensure_future(self._handle(message, lock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, message: dict[str, Any], lock: asyncio.Lock) -> None:
        async with lock:
            handler = {
                m.PUBLISH: self.publish,
                m.PLAY: self.play,
                m.STOP: self.stop,
                m.ICE: self.ice,
                m.MUTE: self.mute,
                m.PARTICIPANT_GONE: self.participant_gone,
                m.STREAMS_CLOSED: self.streams_closed,
            }.get(message.get("type", ""))
            if handler is None:
                logger.warning("unknown media message %r", message.get("type"))
                return
            try:
                await handler(message)
            except MediaError as exc:
                await self._reply_error(message, exc.code, exc.message)
            except Exception:
                logger.exception("media command %s failed", message.get("type"))
                await self._reply_error(message, ErrorCode.MEDIA_FAILED, "the media relay failed to handle this")

    async def _reply(self, channel: str | None, event: dict[str, Any]) -> None:
        if channel:
            await self.layer.send(channel, m.reply(event))

    async def _reply_error(self, message: dict[str, Any], code: str, text: str) -> None:
        await self._reply(message.get("reply_channel"), p.error_event(code, text, message.get("rid")))
        if message.get("type") == m.PUBLISH:
            await self._end_publication(message["stream_id"], Stream.Status.FAILED, text)

    # --- publish -----------------------------------------------------------------

    async def publish(self, message: dict[str, Any]) -> None:
        """Answer a publisher's offer; PUBLISHING follows when media arrives."""
        stream_id = message["stream_id"]

        async def failed(reason: str) -> None:
            await self._end_publication(stream_id, Stream.Status.FAILED, reason)

        publication = Publication(stream_id, message["room_id"], message["participant_id"], failed, self._media_flowing)
        publication.record = bool(message.get("record"))  # type: ignore[attr-defined]
        self.publications[stream_id] = publication
        STATS.publications_opened += 1
        await self._announce()
        sdp = await publication.answer(message["sdp"])
        stream = await db(_stream_payload)(stream_id)
        event = p.Event(p.ANSWER, {"pc": stream_id, "stream": stream, "sdp": sdp}).to_dict(message.get("rid"))
        await self._reply(message["reply_channel"], event)

    async def _media_flowing(self, publication: Publication) -> None:
        kinds = publication.codec_names()
        outcome = await db(services.stream_publishing)(
            publication.stream_id,
            has_audio="audio" in kinds,
            has_video="video" in kinds,
            audio_codec=kinds.get("audio", ""),
            video_codec=kinds.get("video", ""),
        )
        await deliver(outcome.deliveries)
        for factory in self.sink_factories:
            await factory(publication, bool(getattr(publication, "record", False)))

    async def _end_publication(self, stream_id: str, status: str, reason: str) -> None:
        outcome = await db(services.stream_ended)(stream_id, status, reason)
        await deliver(outcome.deliveries)
        await self._close_publication(stream_id)

    async def _close_publication(self, stream_id: str) -> None:
        publication = self.publications.pop(stream_id, None)
        if publication is None:
            return
        for playback in list(publication.playbacks):
            await self._end_playback(playback, p.STREAM_UNPUBLISHED, "the stream was unpublished")
        await publication.close()
        self._locks.pop(stream_id, None)

    # --- play ---------------------------------------------------------------------

    async def play(self, message: dict[str, Any]) -> None:
        """Answer a player's receive-only offer with the publisher's codecs."""
        publication = self.publications.get(message["stream_id"])
        if publication is None or publication.closed:
            raise MediaError(
                ErrorCode.STREAM_NOT_PUBLISHING, "the requested stream must be in the active state PUBLISHING"
            )
        play_id = message["play_id"]

        async def failed(reason: str) -> None:
            playback = self.playbacks.get(play_id)
            if playback is not None:
                await self._end_playback(playback, p.STREAM_FAILED, reason)

        playback = Playback(
            play_id, publication, message["participant_id"], message["reply_channel"], failed, self._playing
        )
        self.playbacks[play_id] = playback
        STATS.playbacks_opened += 1
        await self._announce()
        publication.playbacks.add(playback)
        try:
            sdp = await playback.answer(message["sdp"])
        except Exception:
            self.playbacks.pop(play_id, None)
            await playback.close()
            raise
        stream = await db(_stream_payload)(publication.stream_id)
        event = p.Event(p.ANSWER, {"pc": play_id, "play": play_id, "stream": stream, "sdp": sdp})
        await self._reply(message["reply_channel"], event.to_dict(message.get("rid")))

    def _play_status(self, playback: Playback, status: str, reason: str = "") -> dict[str, Any]:
        return p.Event(
            p.PLAY_STATUS,
            {"play": playback.play_id, "stream": playback.publication.stream_id, "status": status, "reason": reason},
        ).to_dict()

    async def _playing(self, playback: Playback) -> None:
        await self._reply(playback.reply_channel, self._play_status(playback, p.STREAM_PLAYING))

    async def _end_playback(self, playback: Playback, status: str, reason: str) -> None:
        self.playbacks.pop(playback.play_id, None)
        self._locks.pop(playback.play_id, None)
        await playback.close()
        await self._reply(playback.reply_channel, self._play_status(playback, status, reason))

    async def stop(self, message: dict[str, Any]) -> None:
        """Stop one playback of the asking connection."""
        playback = self.playbacks.get(message["play_id"])
        if playback is None or playback.reply_channel != message["reply_channel"]:
            raise MediaError(ErrorCode.PLAY_NOT_FOUND, "no such playback")
        await self._reply(message["reply_channel"], p.Event(p.ACK).to_dict(message.get("rid")))
        await self._end_playback(playback, p.STREAM_STOPPED, "stopped by the player")

    # --- other commands -------------------------------------------------------------

    async def ice(self, message: dict[str, Any]) -> None:
        """A trickled candidate for one of the participant's own peer connections."""
        pc_id = message["pc_id"]
        session: Publication | Playback | None = self.publications.get(pc_id) or self.playbacks.get(pc_id)
        if session is None or session.participant_id != message["participant_id"]:
            raise MediaError(ErrorCode.PLAY_NOT_FOUND, "no such peer connection of yours")
        await session.add_candidate(message.get("candidate"), message.get("sdp_mid"), message.get("sdp_mline_index"))
        await self._reply(message["reply_channel"], p.Event(p.ACK).to_dict(message.get("rid")))

    async def mute(self, message: dict[str, Any]) -> None:
        """Stop or resume forwarding a stream's audio and video."""
        publication = self.publications.get(message["stream_id"])
        if publication is not None:
            publication.set_mute(bool(message["audio"]), bool(message["video"]))

    async def participant_gone(self, message: dict[str, Any]) -> None:
        """Close the peer connections of a participant that left or dropped."""
        participant_id = message["participant_id"]
        for playback in [x for x in self.playbacks.values() if x.participant_id == participant_id]:
            await self._end_playback(playback, p.STREAM_STOPPED, "the player left")
        for stream_id in [k for k, v in self.publications.items() if v.participant_id == participant_id]:
            await self._end_publication(stream_id, Stream.Status.UNPUBLISHED, "the publisher left")

    async def streams_closed(self, message: dict[str, Any]) -> None:
        """Streams ended by the room service (unpublish, leave, finalize)."""
        room_ids = set(message.get("room_ids") or ())
        for stream_id in list(message.get("stream_ids") or ()):
            await self._close_publication(stream_id)
        for stream_id in [k for k, v in self.publications.items() if v.room_id in room_ids]:
            await self._end_publication(stream_id, Stream.Status.UNPUBLISHED, "the room was finalized")

    async def shutdown(self) -> None:
        """Close everything and leave the registry."""
        self._stopping = True
        for stream_id in list(self.publications):
            try:
                await self._end_publication(stream_id, Stream.Status.FAILED, "the media worker stopped")
            except Exception:
                logger.exception("closing publication %s failed", stream_id)
        for playback in list(self.playbacks.values()):
            await playback.close()
        self.playbacks.clear()
        from media_relay.recording.sink import wait_for_recordings

        await wait_for_recordings()
        try:
            await registry().withdraw(self.worker_id)
        except Exception:
            logger.exception("withdrawing media worker failed")


_inprocess: dict[int, tuple[MediaWorker, asyncio.Task[None]]] = {}


def all_inprocess_workers() -> list[MediaWorker]:
    """Every in-process worker of this process."""
    return [worker for worker, task in _inprocess.values() if not task.done()]


def inprocess_worker() -> MediaWorker | None:
    """The in-process worker of the running event loop, if any."""
    entry = _inprocess.get(id(asyncio.get_running_loop()))
    return entry[0] if entry else None


async def ensure_inprocess_worker() -> MediaWorker:
    """Start (once per event loop) the media worker that runs inside this process."""
    loop = asyncio.get_running_loop()
    entry = _inprocess.get(id(loop))
    if entry is not None and not entry[1].done() and entry[0].layer is get_channel_layer():
        return entry[0]
    for key, (worker, task) in list(_inprocess.items()):
        if key != id(loop) or task.done():
            # A worker of a finished loop (tests run one loop per test): forget it.
            _inprocess.pop(key, None)
            try:
                await registry().withdraw(worker.worker_id)
            except Exception:
                logger.exception("withdrawing a stale media worker failed")
    worker = MediaWorker()
    await worker.start()
    task = loop.create_task(worker.run())
    _inprocess[id(loop)] = (worker, task)
    atexit.register(_withdraw_at_exit, worker.worker_id)
    return worker


def _withdraw_at_exit(worker_id: str) -> None:
    """daphne stops its loop without cancelling our task: leave the shared registry on the way out."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    try:
        import redis

        from media_relay.registry import RedisRegistry

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        client.hdel(RedisRegistry.WORKERS, worker_id)
        client.close()
    except Exception:
        logger.warning("could not withdraw media worker %s at exit", worker_id)
