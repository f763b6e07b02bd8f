"""A media worker: takes publish/play work from its channel and runs the relay.

Under `make run` one worker runs inside the daphne process; `manage.py
runmedia` runs workers as separate processes.  Either way the worker listens
on its own channel of the channel layer and announces itself in the registry,
so signalling in any daphne process can reach it.  Its loop re-announces its
entry every HEARTBEAT_SECONDS; its heartbeat thread (media_relay/liveness.py)
keeps it alive while that loop is saturated, not while it is wedged.  A worker
reaped as dead whose loop turns again drops what the reaper failed and comes
back without it (:meth:`MediaWorker._announce`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

from channels.layers import get_channel_layer
from django.conf import settings

from media_relay import aiortc_compat, candidates, logcontext, stats
from media_relay import contract as c
from media_relay.cascade import Address, CascadeEndpoint, Relay, RelayTrack, RemotePublication, describe_tracks
from media_relay.liveness import Heartbeat
from media_relay.peers import REMOTE_CLOSED, Playback, Publication
from media_relay.port import media_events
from media_relay.reaper import reap_dead_workers
from media_relay.recording.sink import recording_format, start_recording, wait_for_recordings
from media_relay.registry import HEARTBEAT_SECONDS, LOOP_STALL_SECONDS, RedisRegistry, WorkerInfo, registry
from media_relay.speakers import ActiveSpeakers

logger = logging.getLogger(__name__)

ORIGIN_GONE = "the stream's media worker stopped"
"""Why the players of a relayed stream fail when its origin died or was reaped."""


@dataclass
class _KeyLock:
    """The lock that orders the commands of one id, kept only while commands for that id are in flight."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class MediaWorker:
    """Publications and playbacks of the placements pinned to this worker."""

    def __init__(
        self, worker_id: str | None = None, *, cascading: bool = True, loop_stall_seconds: float = LOOP_STALL_SECONDS
    ) -> None:
        self.cascading = cascading
        """Open a cascading socket (the in-process worker of `make run`, alone by definition, does not)."""
        self.loop_stall_seconds = loop_stall_seconds
        """How long its loop may go without turning before its heartbeat thread lets it be reaped."""
        self._liveness: Heartbeat | None = None
        self.worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.layer = get_channel_layer()
        self.channel = ""
        self.publications: dict[str, Publication] = {}
        self.playbacks: dict[str, Playback] = {}
        self._locks: dict[str, _KeyLock] = {}
        """One entry per id with commands in flight: an id that names nothing leaves nothing behind."""
        self._candidates: dict[str, int] = {}
        """Remote candidates given to each open peer connection (offer and trickled)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._speakers: dict[int, ActiveSpeakers] = {}
        self._reported_quality: dict[str, str | None] = {}
        self._stopping = False
        self.cascade: CascadeEndpoint | None = None
        """The cascading socket (None: it could not be opened; plays of remote streams are refused)."""
        self.relays: dict[tuple[str, str], Relay] = {}
        """Copies of local publications sent to other workers, by (stream id, worker id)."""
        self.remote: dict[str, RemotePublication] = {}
        """Publications of other workers played here, by stream id."""
        self._bytes_sample: tuple[float, dict[int, int]] = (time.monotonic(), {})
        self._bitrates: dict[int, int] = {}
        self._entry: WorkerInfo | None = None
        """The registry entry last written: what a reaper fails if it finds this worker dead."""
        self._recovering = False

    @property
    def load(self) -> int:
        """Peer connections served: the placement metric."""
        return len(self.publications) + len(self.playbacks)

    def figures(self) -> stats.WorkerFigures:
        """What this worker holds open, for the process's relay figures."""
        lost = expected = 0
        for publication in list(self.publications.values()):
            for ingest in list(publication.ingests.values()):
                ingest_lost, ingest_expected = ingest.packet_loss()
                lost += ingest_lost
                expected += ingest_expected
        return stats.WorkerFigures(len(self.publications), len(self.playbacks), lost, expected)

    def placement_figures(self) -> dict[int, stats.PlacementFigures]:
        """What this worker relays for each placement: publications, playbacks, inbound bitrate, loss."""
        rows: dict[int, list[int]] = {}
        for publication in list(self.publications.values()):
            row = rows.setdefault(publication.room_id, [0, 0, 0, 0])
            row[0] += 1
            for ingest in list(publication.ingests.values()):
                lost, expected = ingest.packet_loss()
                row[2] += lost
                row[3] += expected
        for playback in list(self.playbacks.values()):
            rows.setdefault(_placement(playback), [0, 0, 0, 0])[1] += 1
        return {
            placement: stats.PlacementFigures(
                publications, playbacks, self._bitrates.get(placement, 0), lost, expected
            )
            for placement, (publications, playbacks, lost, expected) in rows.items()
        }

    def _sample_bitrates(self) -> None:
        """Inbound bits per second of each placement since the previous sample (called by the heartbeat)."""
        now = time.monotonic()
        received: dict[int, int] = {}
        for publication in list(self.publications.values()):
            octets = sum(ingest.bytes_received for ingest in list(publication.ingests.values()))
            received[publication.room_id] = received.get(publication.room_id, 0) + octets
        then, before = self._bytes_sample
        elapsed = now - then
        self._bitrates = {
            placement: max(0, int(8 * (octets - before.get(placement, octets)) / elapsed))
            for placement, octets in received.items()
        } if elapsed > 0 else {}
        self._bytes_sample = (now, received)

    async def start(self) -> None:
        """Get a channel and announce this worker."""
        aiortc_compat.install(settings.MEDIA_UDP_PORTS)
        # The default prefix: channels_redis serves all of a process's channels from one key ("specific.<id>!").
        self.channel = await self.layer.new_channel()
        try:
            if self.cascading:
                self.cascade = await CascadeEndpoint.open(
                    settings.MEDIA_CASCADE_HOST, settings.MEDIA_CASCADE_PORT, self._cascade_control
                )
        except OSError:
            logger.exception("the cascading socket could not be opened; this worker plays only its own streams")
        stats.LIVE_WORKERS.add(self)
        await self._announce()

    def _info(self) -> WorkerInfo:
        streams = tuple(self.publications)
        placements = tuple({publication.room_id for publication in self.publications.values()})
        plays = tuple((p.play_id, p.publication.stream_id, p.reply_channel) for p in self.playbacks.values())
        host, port = (self.cascade.host, self.cascade.port) if self.cascade is not None else ("", 0)
        return WorkerInfo(self.worker_id, self.channel, self.load, time.time(), streams, placements, host, port, plays)

    async def _announce(self) -> None:
        """Write this worker's registry entry: the first time afresh, then only as a refresh of it.

        A refused refresh means another process reaped this worker as dead (its loop silent for too long) and
        failed what its last entry listed; those publications and playbacks are dropped without a word (their
        statuses were told) and the worker announces itself afresh with what it holds besides.
        """
        info = self._info()
        if await registry().announce(info, refresh=self._entry is not None):
            self._entry = info
            return
        if self._recovering:
            return  # another task is dropping what was reaped; it announces when done
        self._recovering = True
        try:
            if self._entry is not None:
                await self._drop_reaped(self._entry)
        finally:
            self._recovering = False
        info = self._info()
        await registry().announce(info)
        self._entry = info

    async def _drop_reaped(self, entry: WorkerInfo) -> None:
        """Close what a reaper failed (``entry``'s streams and plays) and tell no one above: it was told."""
        failed_plays = {play[0] for play in entry.plays}
        logger.warning(
            "media worker %s was reaped as dead and runs again: dropping its %d failed streams and %d failed plays",
            self.worker_id, len(entry.streams), len(failed_plays),
        )
        for playback in [p for p in self.playbacks.values() if p.play_id in failed_plays]:
            await self._end_playback(playback, c.PlaybackState.FAILED, ORIGIN_GONE, report=False)
        for stream_id in [s for s in entry.streams if s in self.publications]:
            try:
                await self._close_publication(stream_id, reaped=True)
            except Exception:
                logger.exception("closing reaped publication %s failed", stream_id)

    async def run(self) -> None:
        """Serve until cancelled; heartbeats keep the registry entry alive."""
        if not self.channel:
            await self.start()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        self._liveness = Heartbeat(registry(), self.worker_id, asyncio.get_running_loop(), self.loop_stall_seconds)
        self._liveness.start()
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
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self._sample_bitrates()
            try:
                await self._announce()
                for placement in {publication.room_id for publication in self.publications.values()}:
                    await registry().pin(placement, self.worker_id)  # survives a Redis restart
                await reap_dead_workers()
                if self.relays or self.remote:
                    await self._drop_dead_peers({w.worker_id for w in await registry().alive()})
            except Exception:
                logger.exception("media worker heartbeat failed")

    def _spawn(self, message: c.Command) -> None:
        key = str(message.get("stream_id") or message.get("play_id") or message.get("pc_id") or "global")
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock()
        entry.users += 1
        task = asyncio.ensure_future(self._handle(message, entry.lock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _task: self._release(key, entry))

    def _release(self, key: str, entry: _KeyLock) -> None:
        entry.users -= 1
        if entry.users == 0 and self._locks.get(key) is entry:
            del self._locks[key]

    def _check_quota(self, participant_id: int, placement: int, *, playing: bool) -> None:
        """Refuse a new peer connection over the caps of its participant and its room (too_many_*)."""
        sessions: list[Publication | Playback] = [*self.publications.values(), *self.playbacks.values()]
        mine = [s for s in sessions if s.participant_id == participant_id and not s.closed]
        plays = settings.MEDIA_MAX_PLAYS_PER_PARTICIPANT
        if playing and plays and sum(isinstance(s, Playback) for s in mine) >= plays:
            raise c.MediaError(c.MediaErrorCode.TOO_MANY_PLAYS, f"at most {plays} plays per participant; stop one")
        pending = settings.MEDIA_MAX_PENDING_PER_PARTICIPANT
        if pending and sum(_pending(s) for s in mine) >= pending:
            raise c.MediaError(
                c.MediaErrorCode.TOO_MANY_PENDING,
                f"at most {pending} peer connections per participant may be connecting; wait for them",
            )
        room_pending = settings.MEDIA_MAX_PENDING_PER_ROOM
        if room_pending and sum(_pending(s) and _placement(s) == placement for s in sessions) >= room_pending:
            raise c.MediaError(
                c.MediaErrorCode.TOO_MANY_PENDING,
                f"at most {room_pending} peer connections per room may be connecting; try again shortly",
            )

    async def _handle(self, message: c.Command, lock: asyncio.Lock) -> None:
        # This command's task logs with its room id (placement), participant id and request id (LOG_FORMAT=json).
        logcontext.bind(room_id=message.get("placement"), participant_id=message.get("participant_id"),
                        request_id=message.get("rid"))
        async with lock:
            try:
                await self._route(message)
            except c.MediaError as exc:
                await self._failed(message, exc.code, exc.message)
            except Exception:
                logger.exception("media command %s failed", message.get("type"))
                await self._failed(message, c.MediaErrorCode.MEDIA_FAILED, "the media relay failed to handle this")

    async def _route(self, message: c.Command) -> None:
        # Narrowed on the literal ``type``: each handler gets its own command type.
        if message["type"] == c.PUBLISH:
            await self.publish(message)
        elif message["type"] == c.PLAY:
            await self.play(message)
        elif message["type"] == c.STOP:
            await self.stop(message)
        elif message["type"] == c.SET_QUALITY:
            await self.set_quality(message)
        elif message["type"] == c.ICE:
            await self.ice(message)
        elif message["type"] == c.MUTE:
            await self.mute(message)
        elif message["type"] == c.PARTICIPANT_GONE:
            await self.participant_gone(message)
        elif message["type"] == c.STREAMS_CLOSED:
            await self.streams_closed(message)
        elif message["type"] == c.RELAY_TO:
            await self.relay_to(message)
        elif message["type"] == c.RELAY_STOP:
            self._stop_relay(message["stream_id"], message["worker_id"])
        elif message["type"] == c.RELAY_CLOSED:
            ended = c.PlaybackState.FAILED if message["reason"] == ORIGIN_GONE else c.PlaybackState.UNPUBLISHED
            await self._close_remote(message["stream_id"], ended, message["reason"])
        else:
            logger.warning("unknown media message %r", message.get("type"))

    async def _failed(self, message: c.Command, code: c.MediaErrorCode, text: str) -> None:
        if message["type"] == c.PUBLISH:
            failed = c.CommandFailed(message["reply_channel"], message["rid"], code, text, message["stream_id"])
        elif message["type"] in (c.PLAY, c.STOP, c.ICE, c.SET_QUALITY):
            failed = c.CommandFailed(message["reply_channel"], message["rid"], code, text)
        else:  # mute, participant_gone, streams_closed: nobody waits for an answer
            logger.warning("media command %s failed: %s", message["type"], text)
            return
        await media_events().command_failed(failed)
        if failed.stream_id is not None:
            await self._close_publication(failed.stream_id)

    # --- publish -----------------------------------------------------------------

    async def publish(self, command: c.PublishCommand) -> None:
        """Answer a publisher's offer; PublicationFlowing follows when media arrives."""
        stream_id = command["stream_id"]
        self._check_quota(command["participant_id"], command["placement"], playing=False)
        sdp, offered = candidates.screen_offer(command["sdp"])

        async def failed(reason: str) -> None:
            status = c.PublicationStatus.UNPUBLISHED if reason == REMOTE_CLOSED else c.PublicationStatus.FAILED
            await self._end_publication(stream_id, status, reason)

        reply_channel = command["reply_channel"]

        def layers_wanted(rids: set[str]) -> None:
            ordered = tuple(rid for rid in publication.rids if rid in rids)
            self._report(media_events().layers_wanted(c.LayersWanted(reply_channel, stream_id, ordered)))

        publication = Publication(
            stream_id,
            command["placement"],
            command["participant_id"],
            failed,
            self._media_flowing,
            speakers=self._speakers_of(command["placement"]),
            on_layers_wanted=layers_wanted,
        )
        self.publications[stream_id] = publication
        self._candidates[stream_id] = offered
        stats.STATS.publications_opened += 1
        await self._announce()
        sdp = await publication.answer(sdp)
        await media_events().answer(
            c.Answer(command["reply_channel"], command["rid"], stream_id, stream_id, None, sdp)
        )

    def _speakers_of(self, placement: int) -> ActiveSpeakers:
        """The active speaker detector of a placement (one per room on this worker)."""
        speakers = self._speakers.get(placement)
        if speakers is None:

            def changed(stream_ids: list[str]) -> None:
                self._report(media_events().active_speakers(c.ActiveSpeakers(placement, tuple(stream_ids))))

            speakers = self._speakers[placement] = ActiveSpeakers(changed)
        return speakers

    def _report(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Report a result from a synchronous callback of the packet path (a task, kept until done)."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._report_done)

    def _report_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("reporting a media result failed", exc_info=task.exception())

    async def _media_flowing(self, publication: Publication) -> None:
        if self.cascade is not None:
            tracks = describe_tracks(publication.ingests, publication.rids)
            await registry().describe_stream(publication.stream_id, {"worker_id": self.worker_id, "tracks": tracks})
        flowing = c.PublicationFlowing(publication.stream_id, publication.codec_names(), recording_format(publication))
        target = await media_events().publication_flowing(flowing)
        if target is not None:
            await start_recording(publication, target)

    async def _end_publication(self, stream_id: str, status: c.PublicationStatus, reason: str) -> None:
        await media_events().publication_ended(c.PublicationEnded(stream_id, status, reason))
        await self._close_publication(stream_id)

    async def _close_publication(self, stream_id: str, *, reaped: bool = False) -> None:
        """Close a publication, its relays and its players here (``reaped``: it FAILED when this worker was
        reaped, so its relayed copies' players fail too)."""
        await self._close_remote(stream_id, c.PlaybackState.UNPUBLISHED, "the stream was unpublished")
        publication = self.publications.pop(stream_id, None)
        if publication is None:
            return
        ended = ORIGIN_GONE if reaped else "the stream was unpublished"
        for worker_id, relay in [(w, r) for (s, w), r in self.relays.items() if s == stream_id]:
            self._stop_relay(stream_id, worker_id)
            closed = c.RelayClosedCommand(type=c.RELAY_CLOSED, stream_id=stream_id, reason=ended)
            try:
                await self.layer.send(relay.channel, closed)
            except Exception:
                logger.exception("telling worker %s that %s closed failed", worker_id, stream_id)
        if publication.publishing and self.cascade is not None:
            try:
                await registry().forget_stream(stream_id)
            except Exception:
                logger.exception("forgetting the description of %s failed", stream_id)
        for playback in list(publication.playbacks):
            status = c.PlaybackState.FAILED if reaped else c.PlaybackState.UNPUBLISHED
            await self._end_playback(playback, status, ended)
        self._candidates.pop(stream_id, None)
        await publication.close()
        placement = publication.room_id
        if not any(p.room_id == placement for p in self.publications.values()):
            speakers = self._speakers.pop(placement, None)
            if speakers is not None:
                speakers.close()

    # --- play ---------------------------------------------------------------------

    async def play(self, command: c.PlayCommand) -> None:
        """Answer a player's receive-only offer with the publisher's codecs (a remote stream's: cascading)."""
        publication: Publication | RemotePublication | None = self.publications.get(command["stream_id"])
        origin = command.get("origin")
        if publication is None and origin is not None and origin["worker_id"] != self.worker_id:
            publication = await self._remote_publication(command, origin)
        if publication is None or publication.closed:
            raise c.MediaError(
                c.MediaErrorCode.STREAM_NOT_PUBLISHING, "the requested stream must be in the active state PUBLISHING"
            )
        play_id = command["play_id"]
        self._check_quota(command["participant_id"], command["placement"], playing=True)
        offer, offered = candidates.screen_offer(command["sdp"])

        async def failed(reason: str) -> None:
            playback = self.playbacks.get(play_id)
            if playback is not None:
                status = c.PlaybackState.STOPPED if reason == REMOTE_CLOSED else c.PlaybackState.FAILED
                await self._end_playback(playback, status, reason)

        playback = Playback(
            play_id,
            cast(Publication, publication),  # a RemotePublication offers what a Playback uses of a Publication
            command["participant_id"],
            command["reply_channel"],
            failed,
            self._playing,
            quality=command.get("quality") or "auto",
            on_quality=self._quality_changed,
        )
        self.playbacks[play_id] = playback
        self._candidates[play_id] = offered
        stats.STATS.playbacks_opened += 1
        await self._announce()
        publication.playbacks.add(playback)
        try:
            sdp = await playback.answer(offer)
        except Exception:
            self.playbacks.pop(play_id, None)
            self._candidates.pop(play_id, None)
            await playback.close()
            await self._forget_unplayed(publication)
            raise
        await media_events().answer(
            c.Answer(command["reply_channel"], command["rid"], play_id, publication.stream_id, play_id, sdp)
        )

    async def _playing(self, playback: Playback) -> None:
        await self._playback_status(playback, c.PlaybackState.PLAYING)

    async def _quality_changed(self, playback: Playback, quality: str) -> None:
        """The relay forwards another layer: PLAYING again, with the new quality (once PLAYING was told)."""
        if playback.play_id in self._reported_quality and self._reported_quality[playback.play_id] != quality:
            await self._playback_status(playback, c.PlaybackState.PLAYING)

    async def _playback_status(self, playback: Playback, status: c.PlaybackState, reason: str = "") -> None:
        quality = playback.forwarded_quality if status == c.PlaybackState.PLAYING else None
        if status == c.PlaybackState.PLAYING:
            self._reported_quality[playback.play_id] = quality
        await media_events().playback_status(
            c.PlaybackStatus(
                playback.reply_channel, playback.play_id, playback.publication.stream_id, status, reason, quality
            )
        )

    async def _end_playback(
        self, playback: Playback, status: c.PlaybackState, reason: str, *, report: bool = True
    ) -> None:
        self.playbacks.pop(playback.play_id, None)
        self._candidates.pop(playback.play_id, None)
        self._reported_quality.pop(playback.play_id, None)
        await playback.close()
        if report:
            await self._playback_status(playback, status, reason)
        await self._forget_unplayed(playback.publication)

    async def stop(self, command: c.StopCommand) -> None:
        """Stop one playback of the asking connection."""
        playback = self.playbacks.get(command["play_id"])
        if playback is None or playback.reply_channel != command["reply_channel"]:
            raise c.MediaError(c.MediaErrorCode.PLAY_NOT_FOUND, "no such playback")
        await media_events().acked(c.Acked(command["reply_channel"], command["rid"]))
        await self._end_playback(playback, c.PlaybackState.STOPPED, "stopped by the player")

    async def set_quality(self, command: c.SetQualityCommand) -> None:
        """Change the quality one playback of the asking connection wants."""
        playback = self.playbacks.get(command["play_id"])
        if playback is None or playback.reply_channel != command["reply_channel"]:
            raise c.MediaError(c.MediaErrorCode.PLAY_NOT_FOUND, "no such playback")
        playback.set_quality(command["quality"])
        await media_events().acked(c.Acked(command["reply_channel"], command["rid"]))

    # --- cascading -------------------------------------------------------------------

    async def _remote_publication(self, command: c.PlayCommand, origin: c.OriginInfo) -> RemotePublication:
        """The local stand-in of another worker's publication; the origin is asked to relay it here."""
        stream_id = command["stream_id"]
        remote = self.remote.get(stream_id)
        if remote is not None and not remote.closed:
            return remote
        if self.cascade is None:
            raise c.MediaError(c.MediaErrorCode.MEDIA_UNAVAILABLE, "this media worker cannot play remote streams")
        remote = self.remote[stream_id] = RemotePublication(stream_id, command["placement"], origin, self.cascade)
        relay = c.RelayToCommand(
            type=c.RELAY_TO,
            stream_id=stream_id,
            worker_id=self.worker_id,
            channel=self.channel,
            host=self.cascade.host,
            port=self.cascade.port,
            feeds=remote.feeds,
        )
        await self.layer.send(origin["channel"], relay)
        return remote

    async def _forget_unplayed(self, publication: Publication | RemotePublication) -> None:
        """A remote publication without players here: the origin stops relaying it."""
        if not isinstance(publication, RemotePublication) or publication.playbacks:
            return
        if self.remote.get(publication.stream_id) is publication:
            del self.remote[publication.stream_id]
        if publication.closed:
            return
        publication.close()
        stop = c.RelayStopCommand(type=c.RELAY_STOP, stream_id=publication.stream_id, worker_id=self.worker_id)
        try:
            await self.layer.send(publication.origin["channel"], stop)
        except Exception:
            logger.exception("asking the origin to stop relaying %s failed", publication.stream_id)

    async def _close_remote(self, stream_id: str, status: c.PlaybackState, reason: str) -> None:
        """A remote publication ended (at its origin, or its origin died): its players here end."""
        remote = self.remote.pop(stream_id, None)
        if remote is None:
            return
        remote.close()
        for playback in list(remote.playbacks):
            await self._end_playback(playback, status, reason)

    async def relay_to(self, command: c.RelayToCommand) -> None:
        """Origin side: send one copy of a publication's packets to another worker."""
        stream_id, worker_id = command["stream_id"], command["worker_id"]
        publication = self.publications.get(stream_id)
        if publication is None or publication.closed or self.cascade is None:
            closed = c.RelayClosedCommand(
                type=c.RELAY_CLOSED, stream_id=stream_id, reason="the stream is not published on its media worker"
            )
            await self.layer.send(command["channel"], closed)
            return
        self._stop_relay(stream_id, worker_id)
        address: Address = (command["host"], command["port"])
        tracks = {
            kind: RelayTrack(kind, feed, self.cascade, address)
            for kind, feed in command["feeds"].items()
            if kind in publication.ingests
        }
        self.relays[(stream_id, worker_id)] = Relay(stream_id, worker_id, command["channel"], address, tracks)
        publication.relays += 1
        for kind, track in tracks.items():
            publication.ingests[kind].add(track)
        publication.update_layers_wanted()

    def _stop_relay(self, stream_id: str, worker_id: str) -> None:
        """Origin side: stop sending a publication's copy to a worker."""
        relay = self.relays.pop((stream_id, worker_id), None)
        publication = self.publications.get(stream_id)
        if relay is None or publication is None:
            return
        publication.relays -= 1
        for kind, track in relay.tracks.items():
            ingest = publication.ingests.get(kind)
            if ingest is not None:
                ingest.remove(track)
        publication.update_layers_wanted()

    def _cascade_control(self, message: dict[str, Any], address: Address) -> None:
        """Origin side: a keyframe request from a worker that plays one of our publications."""
        if message.get("op") != "pli":
            return
        stream_id = message.get("stream")
        if not any(s == stream_id and r.address == address for (s, _), r in self.relays.items()):
            return
        publication = self.publications.get(str(stream_id))
        ingest = publication.ingests.get(str(message.get("kind"))) if publication is not None else None
        layer = message.get("layer")
        if ingest is not None and isinstance(layer, int):
            ingest.request_keyframe(layer)

    async def _drop_dead_peers(self, alive: set[str]) -> None:
        """Stop relaying to dead workers; FAIL the players of streams whose origin died."""
        for stream_id, worker_id in [key for key in self.relays if key[1] not in alive]:
            logger.warning("media worker %s is gone; no longer relaying %s to it", worker_id, stream_id)
            self._stop_relay(stream_id, worker_id)
        for stream_id, remote in list(self.remote.items()):
            if remote.origin["worker_id"] not in alive:
                await self._close_remote(stream_id, c.PlaybackState.FAILED, ORIGIN_GONE)

    # --- other commands -------------------------------------------------------------

    async def ice(self, command: c.IceCommand) -> None:
        """A trickled candidate for one of the participant's own peer connections."""
        pc_id = command["pc_id"]
        session: Publication | Playback | None = self.publications.get(pc_id) or self.playbacks.get(pc_id)
        if session is None or session.participant_id != command["participant_id"]:
            raise c.MediaError(c.MediaErrorCode.PLAY_NOT_FOUND, "no such peer connection of yours")
        if command["candidate"] and candidates.screen_trickled(command["candidate"]):
            given = self._candidates.get(pc_id, 0) + 1
            limit = settings.MEDIA_MAX_CANDIDATES_PER_OFFER
            if limit and given > limit:
                raise c.MediaError(
                    c.MediaErrorCode.TOO_MANY_CANDIDATES, f"at most {limit} ICE candidates per peer connection"
                )
            self._candidates[pc_id] = given
        else:
            command["candidate"] = None
        await session.add_candidate(command["candidate"], command["sdp_mid"], command["sdp_mline_index"])
        await media_events().acked(c.Acked(command["reply_channel"], command["rid"]))

    async def mute(self, command: c.MuteCommand) -> None:
        """Stop or resume forwarding a stream's audio and video (if this worker holds it)."""
        publication = self.publications.get(command["stream_id"])
        if publication is not None:
            publication.set_mute(command["audio"], command["video"])

    async def participant_gone(self, command: c.ParticipantGoneCommand) -> None:
        """Close the peer connections of a participant that left or dropped."""
        participant_id = command["participant_id"]
        for playback in [x for x in self.playbacks.values() if x.participant_id == participant_id]:
            await self._end_playback(playback, c.PlaybackState.STOPPED, "the player left")
        for stream_id in [k for k, v in self.publications.items() if v.participant_id == participant_id]:
            await self._end_publication(stream_id, c.PublicationStatus.UNPUBLISHED, "the publisher left")

    async def streams_closed(self, command: c.StreamsClosedCommand) -> None:
        """Streams ended above (unpublish, leave, finalize); placements whose publications all end."""
        placements = set(command["placements"])
        for stream_id in list(command["stream_ids"]):
            await self._close_publication(stream_id)
        for stream_id in [k for k, v in self.publications.items() if v.room_id in placements]:
            await self._end_publication(stream_id, c.PublicationStatus.UNPUBLISHED, "the room was finalized")

    async def shutdown(self) -> None:
        """Close everything and leave the registry."""
        self._stopping = True
        for stream_id in list(self.publications):
            try:
                await self._end_publication(stream_id, c.PublicationStatus.FAILED, "the media worker stopped")
            except Exception:
                logger.exception("closing publication %s failed", stream_id)
        for stream_id in list(self.remote):
            await self._close_remote(stream_id, c.PlaybackState.FAILED, "the media worker stopped")
        for playback in list(self.playbacks.values()):
            await playback.close()
        self.playbacks.clear()
        if self.cascade is not None:
            self.cascade.close()
        self._candidates.clear()
        for speakers in self._speakers.values():
            speakers.close()
        self._speakers.clear()
        await wait_for_recordings()
        stats.LIVE_WORKERS.discard(self)
        if self._liveness is not None:
            await asyncio.to_thread(self._liveness.stop)  # its last beat lands before the withdrawal
        try:
            await registry().withdraw(self.worker_id)
        except Exception:
            logger.exception("withdrawing media worker failed")


def _pending(session: Publication | Playback) -> bool:
    """A peer connection still connecting: it holds relay ports and makes ICE checks."""
    return not session.closed and session.pc.connectionState != "connected"


def _placement(session: Publication | Playback) -> int:
    return session.room_id if isinstance(session, Publication) else session.publication.room_id


_inprocess: dict[int, tuple[MediaWorker, asyncio.Task[None]]] = {}


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
            stats.LIVE_WORKERS.discard(worker)
            try:
                await registry().withdraw(worker.worker_id)
            except Exception:
                logger.exception("withdrawing a stale media worker failed")
    worker = MediaWorker(cascading=False)
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

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        client.hdel(RedisRegistry.WORKERS, worker_id)
        client.hdel(RedisRegistry.ALIVE, worker_id)
        client.close()
    except Exception:
        logger.warning("could not withdraw media worker %s at exit", worker_id)
