"""Clean up after a media worker that died: its placements are unpinned and the port hears WorkerGone.

Any process may notice a dead worker (a silent heartbeat); the registry's claim
makes exactly one of them do the work.  The layer above fails the lost streams;
clients then publish again and land on a live worker.
"""

from __future__ import annotations

import logging

from media_relay.contract import WorkerGone
from media_relay.port import media_events
from media_relay.registry import registry

logger = logging.getLogger(__name__)


async def reap_dead_workers() -> int:
    """Report the publications of dead workers as gone; returns how many workers were reaped."""
    reg = registry()
    reaped = 0
    for worker in await reg.dead():
        if not await reg.claim(worker.worker_id):
            continue
        reaped += 1
        logger.warning("media worker %s is gone; failing its %d streams", worker.worker_id, len(worker.streams))
        for placement in worker.rooms:
            if await reg.pinned(placement) == worker.worker_id:
                await reg.unpin(placement)
        await media_events().worker_gone(WorkerGone(worker.worker_id, worker.streams, worker.rooms))
    return reaped
