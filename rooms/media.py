"""Rooms' commands to the media relay: the one module that sends them and maps the relay's errors.

Each function takes a connection's :class:`MediaSession` (identity from the
connection, never from a payload), builds a typed command of
media_relay.contract and hands it to the media client.  The room's primary key
is the placement key that pins the room to one media worker.  Results come back
through rooms.media_events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from channels.db import database_sync_to_async

from media_relay import candidates
from media_relay import contract as c
from media_relay.client import media_client
from rooms import services
from rooms.delivery import deliver
from rooms.exceptions import ErrorCode, RoomError
from rooms.models import Stream

logger = logging.getLogger(__name__)

db = database_sync_to_async

#: The relay's error codes as protocol error codes (the one place they are mapped).
ERROR_CODES: dict[c.MediaErrorCode, ErrorCode] = {
    c.MediaErrorCode.INVALID_SDP: ErrorCode.INVALID_SDP,
    c.MediaErrorCode.INVALID_FIELD: ErrorCode.INVALID_FIELD,
    c.MediaErrorCode.STREAM_NOT_PUBLISHING: ErrorCode.STREAM_NOT_PUBLISHING,
    c.MediaErrorCode.PLAY_NOT_FOUND: ErrorCode.PLAY_NOT_FOUND,
    c.MediaErrorCode.MEDIA_UNAVAILABLE: ErrorCode.MEDIA_UNAVAILABLE,
    c.MediaErrorCode.MEDIA_FAILED: ErrorCode.MEDIA_FAILED,
    c.MediaErrorCode.TOO_MANY_PLAYS: ErrorCode.TOO_MANY_PLAYS,
    c.MediaErrorCode.TOO_MANY_PENDING: ErrorCode.TOO_MANY_PENDING,
    c.MediaErrorCode.TOO_MANY_CANDIDATES: ErrorCode.TOO_MANY_CANDIDATES,
    c.MediaErrorCode.CANDIDATE_REFUSED: ErrorCode.CANDIDATE_REFUSED,
}


def error_code(code: c.MediaErrorCode) -> ErrorCode:
    """The protocol error code of a relay error code."""
    return ERROR_CODES.get(code, ErrorCode.MEDIA_FAILED)


def room_error(exc: c.MediaError) -> RoomError:
    """A relay error as the Room API's error."""
    return RoomError(error_code(exc.code), exc.message)


@contextmanager
def relay_errors() -> Iterator[None]:
    """Raise the relay's errors inside the block as the Room API's errors."""
    try:
        yield
    except c.MediaError as exc:
        raise room_error(exc) from None


@dataclass(frozen=True)
class MediaSession:
    """Who asks: the connection's room, participant and channel (replies go there)."""

    room_id: int
    participant_id: int
    reply_channel: str


async def publish(session: MediaSession, kind: str, sdp: str, record: bool, rid: c.RequestId) -> None:
    """Open a PENDING stream and ask the room's worker to answer the offer; the stream FAILS if none can.

    An offer whose candidates the relay refuses is refused before any stream exists."""
    with relay_errors():
        candidates.screen_offer(sdp)
    stream = await db(services.create_stream)(session.participant_id, kind, record)
    command = c.PublishCommand(
        type=c.PUBLISH,
        placement=session.room_id,
        participant_id=session.participant_id,
        stream_id=stream.public_id,
        sdp=sdp,
        reply_channel=session.reply_channel,
        rid=rid,
    )
    try:
        await media_client().publish(command)
    except c.MediaError as exc:
        outcome = await db(services.stream_ended)(stream.public_id, Stream.Status.FAILED, exc.message)
        await deliver(outcome.deliveries)
        raise room_error(exc) from None


async def play(session: MediaSession, stream_id: str, sdp: str, quality: str, rid: c.RequestId) -> None:
    """Ask the room's worker to answer a player's offer for a stream (services.playable_stream checked it)."""
    command = c.PlayCommand(
        type=c.PLAY,
        placement=session.room_id,
        participant_id=session.participant_id,
        stream_id=stream_id,
        play_id=uuid.uuid4().hex,
        sdp=sdp,
        quality=quality,
        reply_channel=session.reply_channel,
        rid=rid,
    )
    with relay_errors():
        await media_client().play(command)


async def set_quality(session: MediaSession, play_id: str, quality: str, rid: c.RequestId) -> None:
    """Change the quality one of the connection's playbacks wants."""
    command = c.SetQualityCommand(
        type=c.SET_QUALITY,
        placement=session.room_id,
        play_id=play_id,
        quality=quality,
        reply_channel=session.reply_channel,
        rid=rid,
    )
    with relay_errors():
        await media_client().set_quality(command)


async def stop(session: MediaSession, play_id: str, rid: c.RequestId) -> None:
    """Stop one of the connection's playbacks."""
    command = c.StopCommand(
        type=c.STOP, placement=session.room_id, play_id=play_id, reply_channel=session.reply_channel, rid=rid
    )
    with relay_errors():
        await media_client().stop(command)


async def ice(
    session: MediaSession, pc_id: str, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None,
    rid: c.RequestId,
) -> None:
    """A trickled candidate for one of the participant's peer connections."""
    command = c.IceCommand(
        type=c.ICE,
        placement=session.room_id,
        participant_id=session.participant_id,
        pc_id=pc_id,
        candidate=candidate,
        sdp_mid=sdp_mid,
        sdp_mline_index=sdp_mline_index,
        reply_channel=session.reply_channel,
        rid=rid,
    )
    with relay_errors():
        await media_client().ice(command)


async def participant_gone(room_id: int | None, participant_id: int) -> None:
    """Close every peer connection of a participant that left, dropped or was kicked."""
    if room_id is not None:
        command = c.ParticipantGoneCommand(
            type=c.PARTICIPANT_GONE, placement=room_id, participant_id=participant_id
        )
        await media_client().participant_gone(command)


async def apply_mutes(muted_streams: Iterable[tuple[str, bool, bool]]) -> None:
    """Stop or resume forwarding streams whose mute flags changed: (stream id, audio muted, video muted)."""
    for stream_id, audio, video in muted_streams:
        await media_client().mute(c.MuteCommand(type=c.MUTE, stream_id=stream_id, audio=audio, video=video))


async def streams_closed(stream_ids: list[str], room_ids: list[int]) -> None:
    """Close the publications of ended streams, and all publications of finalized rooms."""
    if stream_ids or room_ids:
        command = c.StreamsClosedCommand(
            type=c.STREAMS_CLOSED, stream_ids=list(stream_ids), placements=list(room_ids)
        )
        await media_client().streams_closed(command)
