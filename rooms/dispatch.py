"""Carry out service outcomes after their transaction committed: events to connections, effects to media."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from rooms import media, services
from rooms.delivery import deliver
from rooms.services import Outcome

logger = logging.getLogger(__name__)

__all__ = ["deliver", "deliver_outcome", "schedule_expiry", "sweep_now_and_then"]


async def deliver_outcome(outcome: Outcome) -> None:
    """Deliver an outcome's events and hand its side effects (mutes, closed streams) to the media relay."""
    await media.apply_mutes(outcome.muted_streams)
    await deliver(outcome.deliveries)
    await media.streams_closed(outcome.closed_stream_ids, outcome.finalized_room_ids)


async def sweep_now_and_then() -> None:
    """Before a join, at most once a SWEEP_INTERVAL per process: expire the participants whose expiry timers
    were lost with their process (services.sweep_expired) and tell their rooms."""
    if services.sweep_due():
        await deliver_outcome(await database_sync_to_async(services.sweep_expired)())


_expiry_tasks: set[asyncio.Task[None]] = set()


def schedule_expiry(participant_id: int, disconnected_at: Any) -> None:
    """After ROOM_IDLE_TIMEOUT, expire a dropped participant that did not resume."""

    async def expire_later() -> None:
        await asyncio.sleep(settings.ROOM_IDLE_TIMEOUT)
        try:
            outcome = await database_sync_to_async(services.expire)(participant_id, disconnected_at)
            await deliver_outcome(outcome)
        except Exception:
            logger.exception("expiring participant %s failed", participant_id)

    task = asyncio.get_running_loop().create_task(expire_later())
    _expiry_tasks.add(task)
    task.add_done_callback(_expiry_tasks.discard)
