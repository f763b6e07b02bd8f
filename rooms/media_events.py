"""Rooms' implementation of the media relay's port: results become protocol events, service calls, deliveries.

Registered from ``RoomsConfig.ready`` (media_relay.port.set_media_events), so
the in-process worker and ``manage.py runmedia`` workers both report here.
Replies to one connection go to its channel as ``media.reply`` messages that
the consumer passes on; room-wide news goes through the service layer and
rooms.delivery.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, TypedDict

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from media_relay import contract as c
from rooms import protocol as p
from rooms import services, speakers
from rooms.delivery import deliver
from rooms.media import error_code
from rooms.models import Stream
from rooms.presenters import stream_dict
from rooms.recordings import store

logger = logging.getLogger(__name__)

db = database_sync_to_async

MEDIA_REPLY: Literal["media.reply"] = "media.reply"


class MediaReply(TypedDict):
    """A protocol event for one connection (handled by RoomConsumer.media_reply, sent as is)."""

    type: Literal["media.reply"]
    event: dict[str, Any]


WORKER_GONE_REASON = "the media worker serving this room stopped; publish again"


def _stream_payload(stream_id: str) -> dict[str, Any] | None:
    stream = Stream.objects.select_related("participant").filter(public_id=stream_id).first()
    return stream_dict(stream) if stream else None


async def _reply(channel: str, event: dict[str, Any]) -> None:
    await get_channel_layer().send(channel, MediaReply(type=MEDIA_REPLY, event=event))


async def _end_stream(stream_id: str, status: str, reason: str) -> None:
    outcome = await db(services.stream_ended)(stream_id, status, reason)
    await deliver(outcome.deliveries)


class RoomMediaEvents:
    """The media relay's results, as the Room API tells them (implements media_relay.port.MediaEvents)."""

    async def answer(self, result: c.Answer) -> None:
        """The SDP answer, with the stream it concerns, to the asking connection."""
        stream = await db(_stream_payload)(result.stream_id)
        data: dict[str, Any] = {"pc": result.pc_id}
        if result.play_id is not None:
            data["play"] = result.play_id
        data.update(stream=stream, sdp=result.sdp)
        await _reply(result.reply_channel, p.Event(p.EventType.ANSWER, data).to_dict(result.rid))

    async def command_failed(self, result: c.CommandFailed) -> None:
        """An error to the asking connection; a failed publish FAILS its stream."""
        await _reply(result.reply_channel, p.error_event(error_code(result.code), result.text, result.rid))
        if result.stream_id is not None:
            await _end_stream(result.stream_id, Stream.Status.FAILED, result.text)

    async def acked(self, result: c.Acked) -> None:
        """An ack to the asking connection."""
        await _reply(result.reply_channel, p.Event(p.EventType.ACK).to_dict(result.rid))

    async def publication_flowing(self, result: c.PublicationFlowing) -> c.RecordingTarget | None:
        """The stream is PUBLISHING; a recorded stream gets a recording row and a file to write."""
        codecs = result.codecs
        outcome = await db(services.stream_publishing)(
            result.stream_id,
            has_audio="audio" in codecs,
            has_video="video" in codecs,
            audio_codec=codecs.get("audio", ""),
            video_codec=codecs.get("video", ""),
        )
        await deliver(outcome.deliveries)
        if result.recording_format is None:
            return None
        created = await db(store.create_stream_recording)(result.stream_id, result.recording_format)
        if created is None:
            return None
        token, path = created
        return c.RecordingTarget(path, token)

    async def publication_ended(self, result: c.PublicationEnded) -> None:
        """The stream ends with the relay's status and reason."""
        await _end_stream(result.stream_id, Stream.Status(result.status.value), result.reason)

    async def playback_status(self, result: c.PlaybackStatus) -> None:
        """A play_status event to the player."""
        data = {
            "play": result.play_id,
            "stream": result.stream_id,
            "status": result.status.value,
            "reason": result.reason,
            "quality": result.quality,
        }
        await _reply(result.reply_channel, p.Event(p.EventType.PLAY_STATUS, data).to_dict())

    async def layers_wanted(self, result: c.LayersWanted) -> None:
        """Dynacast: a layers_wanted event to the simulcast publisher."""
        data = {"stream": result.stream_id, "rids": list(result.rids)}
        await _reply(result.reply_channel, p.Event(p.EventType.LAYERS_WANTED, data).to_dict())

    async def active_speakers(self, result: c.ActiveSpeakers) -> None:
        """An active_speakers event to the whole room; the list is kept for joiners first."""
        await speakers.remember(result.placement, list(result.stream_ids))
        await deliver(services.active_speakers(result.placement, list(result.stream_ids)))

    async def worker_gone(self, result: c.WorkerGone) -> None:
        """The dead worker's streams FAIL; their publishers may publish again."""
        for stream_id in result.stream_ids:
            await _end_stream(stream_id, Stream.Status.FAILED, WORKER_GONE_REASON)

    async def recording_finished(self, result: c.RecordingFinished) -> None:
        """The recording row becomes DONE or FAILED from what its file holds."""
        await db(store.finish_stream_recording)(
            result.token,
            failure=result.failure,
            first_packet_at=result.first_packet_at,
            detail=result.detail,
            stopped=result.stopped,
        )
