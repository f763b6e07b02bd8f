"""Re-establishing a room's media after the connection resumed (docs/protocol.md, "Reconnection in the SDKs").

When the socket drops, :func:`suspend_media` closes the peer connections of the
room's published and played streams but keeps their objects; once the room is
resumed, :func:`restore_media` publishes the same tracks again and plays the same
remote streams again, and each object the application holds adopts the new peer
connection and id (a new stream id for a publication, a new play id and new
tracks for a playback).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from roomapi.constants import ERROR_CODE, STREAM_STATUS
from roomapi.errors import RoomApiError
from roomapi.media import TERMINAL, PlayingStream, PublishedStream, play, publish
from roomapi.session import InRoom

logger = logging.getLogger(__name__)

Restorable = PublishedStream | PlayingStream


class Borrowed(MediaStreamTrack):
    """A track that reads the application's track for one peer connection and, when that ends, leaves it live.

    aiortc ends a sender's track when its peer connection closes; a resume must publish the same track again.
    Frames are pulled from the source as the sender asks for them, exactly as without the wrapper.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source

    async def recv(self) -> Any:
        """The source's next frame, while this wrapper is live."""
        if self.readyState != "live":
            raise MediaStreamError
        return await self.source.recv()


@dataclass
class Sources:
    """The application's tracks of one publication; each peer connection borrows them (:class:`Borrowed`)."""

    video: MediaStreamTrack | None = None
    audio: MediaStreamTrack | None = None

    def tracks(self) -> tuple[MediaStreamTrack | None, MediaStreamTrack | None]:
        """Fresh (video, audio) wrappers for one peer connection."""
        return (
            Borrowed(self.video) if self.video is not None else None,
            Borrowed(self.audio) if self.audio is not None else None,
        )


async def suspend_media(room: InRoom) -> list[Restorable]:
    """Close the peer connections of the room's live streams; the streams to restore, in order."""
    items = [
        item for item in list(room.connection._media)
        if isinstance(item, PublishedStream | PlayingStream) and item.room is room and item.status() not in TERMINAL
    ]
    items.sort(key=lambda item: isinstance(item, PlayingStream))  # publications first
    for item in items:
        try:
            await item._suspend()
        except Exception:
            logger.exception("closing %r after the drop failed", item)
    return items


async def restore_media(room: InRoom, items: list[Restorable], find_stream: Any) -> None:
    """Publish and play again what was published and played; a playback whose stream is gone is UNPUBLISHED.

    ``find_stream(stream_id)`` is the room's live remote stream of that id, or None.
    """
    for item in items:
        try:
            if isinstance(item, PublishedStream):
                await _republish(item)
            else:
                await _replay(item, find_stream(item.stream.id))
        except RoomApiError as exc:
            if exc.code == ERROR_CODE.DISCONNECTED:
                continue  # dropped again: the next resume restores it (it stays suspended)
            logger.warning("re-establishing %r after the resume failed: %s", item, exc)
            item._set_status(STREAM_STATUS.FAILED, exc.message)
            await item._close()


async def _republish(stream: PublishedStream) -> None:
    recipe = dict(stream.recipe)
    sources = recipe.pop("sources", None)
    if not isinstance(sources, Sources):
        raise RoomApiError(ERROR_CODE.MEDIA_FAILED, "the stream's tracks are unknown; publish it again")
    video, audio = sources.tracks()
    fresh = await publish(stream.room, video=video, audio=audio, **recipe)
    stream._adopt(fresh)
    if stream.audio_muted or stream.video_muted:
        await stream._mute(audio=stream.audio_muted, video=stream.video_muted)


async def _replay(playing: PlayingStream, remote: Any) -> None:
    if remote is None:
        playing._set_status(STREAM_STATUS.UNPUBLISHED, "unpublished while reconnecting")
        await playing._close()
        return
    playing.stream = remote
    fresh = await play(playing.room, remote)
    playing._adopt(fresh)
