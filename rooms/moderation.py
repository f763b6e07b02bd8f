"""Moderator actions, shared by the WebSocket command, REST and the admin: room services, then deliveries."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from rooms import protocol as p
from rooms import services
from rooms.dispatch import deliver_outcome
from rooms.exceptions import ErrorCode, RoomError
from rooms.protocol import ModerationAction

db = database_sync_to_async


async def apply(
    room_id: int, command: p.Moderate, by_participant_id: int | None = None, by: str = "a moderator"
) -> None:
    """Carry out one moderation command and tell the live connections."""
    action = command.action
    if action == ModerationAction.KICK:
        assert command.login is not None
        await deliver_outcome(await db(services.kick)(room_id, command.login, f"kicked by {by}"))
    elif action == ModerationAction.MUTE:
        assert command.stream is not None
        outcome = await db(services.set_mute)(command.stream, command.audio, command.video, room_id=room_id)
        await deliver_outcome(outcome)
    elif action == ModerationAction.UNPUBLISH:
        assert command.stream is not None
        await deliver_outcome(await db(services.unpublish_in_room)(room_id, command.stream, f"unpublished by {by}"))
    elif action in (ModerationAction.LOCK, ModerationAction.UNLOCK):
        locked = action == ModerationAction.LOCK
        await deliver_outcome(await db(services.update_room)(room_id, locked=locked))
    elif action == ModerationAction.SET_MAX_PARTICIPANTS:
        if command.max_participants is None:
            raise RoomError(ErrorCode.MISSING_FIELD, "'max_participants' is required")
        await deliver_outcome(await db(services.update_room)(room_id, max_participants=command.max_participants))
    elif action == ModerationAction.FINALIZE:
        await deliver_outcome(await db(services.finalize_room)(room_id, f"finalized by {by}"))


def run(room_id: int, action: str, *, by: str = "the server", **fields: Any) -> None:
    """Apply a moderation action from sync code (REST views, the admin); live clients hear of it at once.

    Call it outside any ``transaction.atomic`` block (use ``transaction.on_commit``): its database calls
    run through ``database_sync_to_async``, which must not share an open transaction.
    """
    async_to_sync(apply)(room_id, p.Moderate(action=action, **fields), by=by)
