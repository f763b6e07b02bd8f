"""Moderator actions, shared by the WebSocket command, REST and the admin."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction

from rooms import protocol as p
from rooms import services
from rooms.dispatch import deliver, deliver_outcome
from rooms.exceptions import ErrorCode, RoomError
from rooms.models import Participant, Room
from rooms.presenters import participant_dict, room_dict
from rooms.services import Delivery, Outcome

db = database_sync_to_async


@transaction.atomic
def kick(room_id: int, login: str, reason: str = "kicked by a moderator") -> Outcome:
    """Remove a present participant: it gets KICKED, the room gets LEFT."""
    room = services._lock(Room.objects.filter(pk=room_id)).get()  # the room first: services' lock order
    participant = services._lock(
        Participant.objects.filter(room_id=room_id, login=login, state__in=services.PRESENT)
    ).first()
    if participant is None:
        raise RoomError(ErrorCode.PARTICIPANT_NOT_FOUND, f"'{login}' is not in this room")
    outcome = Outcome()
    if participant.channel_name:
        event = p.Event(p.KICKED, {"participant": participant_dict(participant, []), "reason": reason}).to_dict()
        outcome.deliveries.append(Delivery(event, channels=(participant.channel_name,)))
    participant.room = room
    services._mark_left(participant, outcome)
    services._finalize_if_empty(room, outcome)
    return outcome


@transaction.atomic
def update_room(room_id: int, **changes: Any) -> Outcome:
    """Lock, unlock or resize a room; everyone gets ROOM_UPDATED."""
    room = services._lock(Room.objects.filter(pk=room_id, finalized_at__isnull=True)).get()
    for key, value in changes.items():
        setattr(room, key, value)
    room.save(update_fields=list(changes))
    event = p.Event(p.ROOM_UPDATED, {"room": room_dict(room)}).to_dict()
    return Outcome(deliveries=[Delivery(event, group=room.group_name)])


def _stream_in_room(room_id: int, stream_id: str) -> None:
    from rooms.models import Stream

    if not Stream.objects.filter(public_id=stream_id, participant__room_id=room_id).exists():
        raise RoomError(ErrorCode.STREAM_NOT_FOUND, "no such stream in this room")


async def apply(
    room_id: int, command: p.Moderate, by_participant_id: int | None = None, by: str = "a moderator"
) -> None:
    """Carry out one moderation command and tell the live connections."""
    action = command.action
    if action == "kick":
        assert command.login is not None
        outcome = await db(kick)(room_id, command.login, f"kicked by {by}")
        await deliver_outcome(outcome)
    elif action == "mute":
        assert command.stream is not None
        await db(_stream_in_room)(room_id, command.stream)
        audio = command.audio if command.audio is not None else (None if command.video is not None else True)
        await deliver_outcome(await db(services.set_mute)(command.stream, audio, command.video))
    elif action == "unpublish":
        assert command.stream is not None
        await db(_stream_in_room)(room_id, command.stream)
        await deliver_outcome(await db(services.stream_ended)(command.stream, reason=f"unpublished by {by}"))
    elif action in ("lock", "unlock"):
        await deliver((await db(update_room)(room_id, locked=action == "lock")).deliveries)
    elif action == "set_max_participants":
        if command.max_participants is None:
            raise RoomError(ErrorCode.MISSING_FIELD, "'max_participants' is required")
        await deliver((await db(update_room)(room_id, max_participants=command.max_participants)).deliveries)
    elif action == "finalize":
        await deliver_outcome(await db(services.finalize_room)(room_id, f"finalized by {by}"))


def run(room_id: int, action: str, *, by: str = "the server", **fields: Any) -> None:
    """Apply a moderation action from sync code (REST views, the admin); live clients hear of it at once.

    Call it outside any ``transaction.atomic`` block (use ``transaction.on_commit``): its database calls
    run through ``database_sync_to_async``, which must not share an open transaction.
    """
    async_to_sync(apply)(room_id, p.Moderate(action=action, **fields), by=by)
