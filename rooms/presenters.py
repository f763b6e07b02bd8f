"""Wire shapes of Room, Participant, Stream and Message (docs/protocol.md, "Objects")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rooms.models import Message, Participant, Room, Stream
from rooms.protocol import StreamStatus


def iso(value: datetime | None) -> str | None:
    """An ISO 8601 timestamp in UTC, or None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def room_dict(room: Room) -> dict[str, Any]:
    """A room as clients see it."""
    return {
        "id": room.pk,
        "name": room.name,
        "record": room.record,
        "locked": room.locked,
        "max_participants": room.max_participants,
        "created_at": iso(room.created_at),
    }


def stream_dict(stream: Stream, login: str | None = None) -> dict[str, Any]:
    """A stream as clients see it."""
    return {
        "id": stream.public_id,
        "name": stream.name,
        "kind": stream.kind,
        "owner": login if login is not None else stream.participant.login,
        "status": stream.status,
        "audio_muted": stream.audio_muted,
        "video_muted": stream.video_muted,
        "has_audio": stream.has_audio,
        "has_video": stream.has_video,
        "audio_codec": stream.audio_codec,
        "video_codec": stream.video_codec,
        "record": stream.record,
    }


def participant_dict(participant: Participant, streams: list[Stream] | None = None) -> dict[str, Any]:
    """A participant with its live streams."""
    if streams is None:
        streams = [s for s in participant.streams.all() if s.status == StreamStatus.PUBLISHING]
    return {
        "login": participant.login,
        "state": participant.state,
        "role": participant.role,
        "joined_at": iso(participant.joined_at),
        "streams": [stream_dict(s, participant.login) for s in streams],
    }


def participant_wire(login: str, state: str, role: str, joined_at: str | None, streams: list[Stream]) -> dict[str, Any]:
    """:func:`participant_dict` of a participant known by its fields (no model instance; rooms.roster),
    ``joined_at`` already as its wire text."""
    return {
        "login": login,
        "state": state,
        "role": role,
        "joined_at": joined_at,
        "streams": [stream_dict(s, login) for s in streams],
    }


def message_dict(message: Message) -> dict[str, Any]:
    """A message: ``to`` is null for everyone, else the recipients' logins."""
    return {
        "id": message.pk,
        "from": message.sender_login or None,
        "to": None if message.to_everyone else list(message.recipient_logins),
        "text": message.text,
        "sent_at": iso(message.sent_at),
    }
