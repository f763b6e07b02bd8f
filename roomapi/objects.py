"""Client-side views of the protocol's objects: Stream, Participant, Message, and a room event."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from roomapi.constants import STREAM_STATUS
from roomapi.media import PlayingStream, play
from roomapi.session import Session


class RoomHandle(Protocol):
    """What a stream or a participant needs of its room (roomapi.room.Room)."""

    connection: Session

    async def send_message(self, text: str, to: Iterable[str] | str | None = None) -> Message:
        """Send a message to everyone or to some logins."""
        ...


@dataclass
class Stream:
    """A stream published in the room (docs/protocol.md, "Stream")."""

    id: str
    """Public stream id; the ``stream`` field of play, mute and unpublish."""
    name: str = ""
    kind: str = "camera"
    """``camera`` or ``screen``."""
    owner: str = ""
    """Login of the publishing participant."""
    status: str = STREAM_STATUS.PENDING
    """A STREAM_STATUS value: PENDING, PUBLISHING, UNPUBLISHED or FAILED."""
    audio_muted: bool = False
    video_muted: bool = False
    has_audio: bool = False
    has_video: bool = False
    audio_codec: str = ""
    video_codec: str = ""
    record: bool = False
    room: RoomHandle | None = field(default=None, repr=False, compare=False)
    """The room the stream is in (set when it is reached through a participant)."""

    async def play(self, quality: str = "auto") -> PlayingStream:
        """Play this stream: ``.video`` / ``.audio`` of the result are tracks to read frames from.

        ``quality`` (a QUALITY value) caps the layer of a simulcast stream; change it with ``set_quality``.
        """
        if self.room is None:
            raise RuntimeError("this stream is not attached to a room")
        return await play(self.room, self, quality=quality)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stream:
        """Build a stream from its wire form."""
        stream = cls(id=str(data["id"]))
        stream.update(data)
        return stream

    def update(self, data: dict[str, Any]) -> None:
        """Apply the fields of a newer wire form."""
        for key in (
            "name", "kind", "owner", "status", "audio_muted", "video_muted",
            "has_audio", "has_video", "audio_codec", "video_codec", "record",
        ):
            if key in data and data[key] is not None:
                setattr(self, key, data[key])


@dataclass(eq=False)
class Participant:
    """Another participant of the room, kept current by the room's events."""

    login: str
    state: str = "connected"
    """``connected``, ``disconnected`` (dropped, may resume) or ``left``."""
    role: str = "publisher"
    joined_at: str | None = None
    streams: dict[str, Stream] = field(default_factory=dict)
    """Its live (PUBLISHING) streams by id."""
    room: RoomHandle | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The participant's name (its login), as in the reference SDK."""
        return self.login

    def get_streams(self) -> list[Stream]:
        """The participant's live streams."""
        for stream in self.streams.values():
            stream.room = self.room
        return list(self.streams.values())

    async def play(self, quality: str = "auto") -> PlayingStream:
        """Play the participant's first live stream (the reference's ``participant.play``)."""
        streams = self.get_streams()
        if not streams:
            raise RuntimeError(f"{self.login} publishes nothing")
        return await streams[0].play(quality)

    async def send_message(self, text: str) -> Message:
        """Send a private message to this participant; returns the stored message."""
        if self.room is None:
            raise RuntimeError("this participant is not attached to a room")
        return await self.room.send_message(text, to=[self.login])

    @classmethod
    def from_dict(cls, data: dict[str, Any], room: RoomHandle | None = None) -> Participant:
        """Build a participant (and its streams) from its wire form."""
        participant = cls(login=str(data["login"]), room=room)
        participant.update(data)
        return participant

    def update(self, data: dict[str, Any]) -> None:
        """Apply the fields of a newer wire form; ``streams`` replaces the known set if present."""
        self.state = data.get("state", self.state)
        self.role = data.get("role", self.role)
        self.joined_at = data.get("joined_at", self.joined_at)
        if "streams" in data and data["streams"] is not None:
            fresh: dict[str, Stream] = {}
            for raw in data["streams"]:
                stream = self.streams.get(str(raw["id"]))
                if stream is None:
                    stream = Stream.from_dict(raw)
                else:
                    stream.update(raw)
                fresh[stream.id] = stream
            self.streams = fresh


@dataclass(frozen=True)
class Message:
    """A text message: ``to`` is None when it went to everyone."""

    id: int | None
    sender: str | None
    """Login of the sender; None for a message from the server."""
    to: tuple[str, ...] | None
    text: str
    sent_at: str | None = None

    @property
    def private(self) -> bool:
        """True when the message went to chosen recipients only."""
        return self.to is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        """Build a message from its wire form."""
        to = data.get("to")
        return cls(
            id=data.get("id"),
            sender=data.get("from"),
            to=tuple(to) if to is not None else None,
            text=str(data.get("text", "")),
            sent_at=data.get("sent_at"),
        )


@dataclass
class RoomEvent:
    """What a room callback receives: the ROOM_EVENT name plus the objects it concerns."""

    name: str
    """A ROOM_EVENT value."""
    type: str
    """The protocol event type that caused it (``joined``, ``message``, ``state``...)."""
    data: dict[str, Any]
    """The raw protocol event."""
    participant: Participant | None = None
    stream: Stream | None = None
    message: Message | None = None
    code: str | None = None
    """For CLOSED, KICKED and FAILED: why (``room_closed``, ``kicked``, ``stream_failed``)."""
    info: str = ""
    """For CLOSED, KICKED and FAILED: human text (the server's reason)."""
    speakers: tuple[str, ...] = ()
    """For ACTIVE_SPEAKERS: the ids of the streams speaking, loudest first."""
    viewers: int | None = None
    """For PRESENCE: the room's audience count (also ``room.viewers``)."""
