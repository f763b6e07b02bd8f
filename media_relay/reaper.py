"""Clean up after a media worker that died: its rooms' streams FAIL and the rooms are unpinned.

Any process may notice a dead worker (a silent heartbeat); the registry's claim
makes exactly one of them do the work.  Clients then publish again and land on
a live worker; signalling never depended on the dead one.
"""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async

from media_relay.registry import registry
from rooms import services
from rooms.dispatch import deliver

logger = logging.getLogger(__name__)

REASON = "the media worker serving this room stopped; publish again"


async def reap_dead_workers() -> int:
    """Fail the streams of rooms pinned to dead workers; returns how many workers were reaped."""
    reg = registry()
    reaped = 0
    for worker in await reg.dead():
        if not await reg.claim(worker.worker_id):
            continue
        reaped += 1
        logger.warning("media worker %s is gone; failing its %d streams", worker.worker_id, len(worker.streams))
        for room_id in worker.rooms:
            if await reg.pinned(room_id) == worker.worker_id:
                await reg.unpin(room_id)
        for stream_id in worker.streams:
            outcome = await database_sync_to_async(services.stream_ended)(stream_id, "FAILED", REASON)
            await deliver(outcome.deliveries)
    return reaped
